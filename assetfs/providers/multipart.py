"""A one-file multipart/form-data body for an upload still being written (`Upload.growing`):
framed exactly as httpx frames `files=`, so a streamed upload is the same request as one
sent from the spool, only in chunked transfer encoding."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx

from .base import Upload


def growing_form(upload: Upload, field: str = "file") -> tuple[Callable[[], AsyncIterator[bytes]], str]:
    """(a factory of the body — each call starts again at the first byte, for a request
    sent again after a 401 — and the Content-Type with its boundary)."""
    growing = upload.growing
    if growing is None:
        raise ValueError(f"{upload.name}: a multipart body of a growing file, but the upload is not growing")
    template = httpx.Request(
        "POST", "http://frame.invalid/", files={field: (upload.name, b"", upload.mime or "application/octet-stream")}
    )
    framed = template.read()
    split = framed.index(b"\r\n\r\n") + 4
    head, tail = framed[:split], framed[split:]

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in growing.chunks():
            yield chunk
        yield tail

    return body, template.headers["content-type"]
