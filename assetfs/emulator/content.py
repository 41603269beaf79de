"""Serving a blob over HTTP the way a CDN does: Range, ETag, Last-Modified, streaming."""

from __future__ import annotations

import re
from email.utils import formatdate

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .blobs import Blob

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive) for a single satisfiable range, None to send the whole file,
    or "unsatisfiable". Multi-range requests are answered with the whole file (RFC 9110 allows it)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m:
        return None
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


def blob_response(request: Request, blob: Blob) -> Response:
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": blob.etag,
        "Last-Modified": formatdate(blob.mtime, usegmt=True),
        "Content-Type": blob.content_type,
    }
    wanted = parse_range(request.headers.get("range"), blob.size)
    if isinstance(wanted, str):  # "unsatisfiable"
        headers["Content-Range"] = f"bytes */{blob.size}"
        return Response(status_code=416, headers=headers)
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range and if_range != blob.etag:
        wanted = None
    if wanted is None:
        start, end, status = 0, blob.size - 1, 200
    else:
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    return StreamingResponse(blob.chunks(start, length), status_code=status, headers=headers)
