"""Fault switches: the ways a real provider misbehaves, on demand.

Settable at start (`assetfs emulator --latency 2 --fail-status 503 …`) and at run time
(`POST /_emulator/faults` with the same fields as JSON). They apply to every provider and
CDN route whose path starts with `only_prefix` (all of them by default), never to the
emulator's own `/_emulator/` control routes. All but `reset_mid_upload` are decided when a
request arrives; that one acts on a request body already coming in (a streamed upload).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import anyio


@dataclass
class Faults:
    latency: float = 0.0  # seconds added before each answer
    hang: bool = False  # accept the request and never answer
    fail_status: int = 0  # answer this status (e.g. 500, 503) …
    fail_count: int = 0  # … to the next N requests (-1: until switched off)
    retry_after: int = 0  # Retry-After header sent with fail_status (0: none)
    reset_mid_body: int = 0  # the next N responses with a body are cut off mid-body (connection reset)
    truncate_body: int = 0  # the next N responses with a body end early (short of Content-Length)
    reset_mid_upload: int = 0  # the next N request bodies still coming in are cut off (the request fails)
    only_prefix: str = ""  # apply only to paths starting with this

    def update(self, values: dict) -> None:
        names = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown fault switch {key!r}; known: {', '.join(names)}")
            setattr(self, key, type(getattr(self, key))(value))

    def as_dict(self) -> dict:
        return asdict(self)


class FaultMiddleware:
    """ASGI middleware applying the current `Faults` to each request."""

    def __init__(self, app, faults: Faults):
        self.app = app
        self.faults = faults

    async def __call__(self, scope, receive, send):
        f = self.faults
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_emulator/") or not path.startswith(f.only_prefix):
            return await self.app(scope, receive, send)
        receive = _cutting_receive(receive, f)
        if f.hang:
            await anyio.sleep_forever()
        if f.latency:
            await anyio.sleep(f.latency)
        if f.fail_status and f.fail_count != 0:
            if f.fail_count > 0:
                f.fail_count -= 1
            return await _fail(send, f.fail_status, f.retry_after)
        mode = None
        if f.reset_mid_body > 0:
            f.reset_mid_body -= 1
            mode = "reset"
        elif f.truncate_body > 0:
            f.truncate_body -= 1
            mode = "truncate"
        if mode is None:
            return await self.app(scope, receive, send)
        await self.app(scope, receive, _breaking_send(send, mode))


async def _fail(send, status: int, retry_after: int) -> None:
    body = json.dumps({"message": f"emulated failure {status}"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _ConnectionReset(Exception):
    """Raised inside the server to drop the connection in the middle of a body."""


def _cutting_receive(receive, faults: Faults):
    """A request body that breaks off while more of it is coming, when `reset_mid_upload`
    is on at that moment: the route fails (the server answers 500 and closes the connection)."""

    async def wrapped():
        message = await receive()
        if message["type"] == "http.request" and message.get("more_body") and faults.reset_mid_upload > 0:
            faults.reset_mid_upload -= 1
            raise _ConnectionReset("emulated connection lost mid-upload")
        return message

    return wrapped


def _breaking_send(send, mode: str):
    sent = 0
    limit: int | None = None  # set by the response's start

    async def wrapped(message):
        nonlocal sent, limit
        if message["type"] == "http.response.start":
            length = dict(message.get("headers", [])).get(b"content-length")
            limit = max(1, int(length) // 2) if length else 1
            return await send(message)
        if message["type"] != "http.response.body" or limit is None:
            return await send(message)
        body = message.get("body", b"")
        room = limit - sent
        if len(body) < room and message.get("more_body"):
            sent += len(body)
            return await send(message)
        await send({"type": "http.response.body", "body": body[:room], "more_body": mode == "reset"})
        if mode == "reset":
            raise _ConnectionReset("emulated connection reset mid-body")
        # truncate: the body ends here, short of its Content-Length; swallow the rest.
        sent = limit + 1

    async def swallowing(message):
        if limit is not None and sent > limit and message["type"] == "http.response.body":
            return None
        return await wrapped(message)

    return swallowing
