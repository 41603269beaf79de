"""Ranged GETs of content on the data plane, in worker threads.

The standard library's http.client reads a body straight into a block buffer
(`readinto`), which is several times faster than streaming through an async client in
Python; the API calls stay on httpx. Connections are kept per origin and reused.
Credentials are added only for the provider's own hosts, also across redirects.
"""

from __future__ import annotations

import http.client
import queue
import select
import ssl
from collections.abc import Callable
from typing import NoReturn, Protocol
from urllib.parse import urljoin, urlsplit

from ..errors import Gone, ProviderError
from ..providers.http import (
    MAX_REDIRECTS,
    CredentialsRejected,
    Retryable,
    Unreachable,
    redact,
    retry_after,
    unreachable_error,
)

_ssl_context = ssl.create_default_context()
PIECE = 64 << 10  # a watched block is read and reported this many bytes at a time


class UrlRefused(ProviderError):
    """A URL with a query string (a signature) was refused (401, 403, 410): a signed URL
    that expired or was revoked. A new URL from the provider may work."""


class ConnectionPool:
    """Idle keep-alive connections per (scheme, host, port). One the server has closed
    while it sat idle is dropped when taken, not sent a request that would fail."""

    def __init__(self, timeout: float, per_origin: int = 8):
        self.timeout = timeout
        self.per_origin = per_origin
        self._idle: dict[tuple, queue.LifoQueue] = {}

    def get(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        pool = self._idle.setdefault((scheme, host, port), queue.LifoQueue())
        while True:
            try:
                conn = pool.get_nowait()
            except queue.Empty:
                return self._new(scheme, host, port)
            if _still_open(conn):
                return conn
            conn.close()

    def idle(self, scheme: str, host: str, port: int | None) -> int:
        pool = self._idle.get((scheme, host, port))
        return pool.qsize() if pool is not None else 0

    def open_ahead(self, scheme: str, host: str, port: int | None) -> None:
        """Connect (TCP and TLS handshakes, blocking) and keep the connection idle for the
        next request to this origin. Raises OSError if the host cannot be reached."""
        conn = self._new(scheme, host, port)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        self.put(scheme, host, port, conn)

    def _new(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=_ssl_context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def put(self, scheme: str, host: str, port: int | None, conn: http.client.HTTPConnection) -> None:
        pool = self._idle.setdefault((scheme, host, port), queue.LifoQueue())
        if pool.qsize() < self.per_origin:
            pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        for pool in self._idle.values():
            while not pool.empty():
                pool.get_nowait().close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can carry a request: nothing to read on it (something
    readable on an idle connection is the server's close), or only TLS records that carry no
    data (TLS 1.3 session tickets arrive after the handshake)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if not select.select([sock], [], [], 0)[0]:
            return True
        sock.setblocking(False)
        try:
            sock.recv(1)  # end of stream (b""), or bytes no request asked for: either way not reusable
            return False
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        finally:
            sock.settimeout(conn.timeout)
    except (OSError, ValueError):
        return False


class BlockSink(Protocol):
    """Where `fetch_range` puts what it reads (called in the download thread)."""

    def watched(self, index: int) -> int:
        """How many leading bytes of this block a reader waits for (0: none, or all of it):
        those are read first, then the rest in pieces, each reported."""

    def progress(self, index: int, buffer: bytearray, filled: int) -> None:
        """The first `filled` bytes of a watched block are in `buffer` (they stay as they are)."""

    def block(self, index: int, data: bytes | bytearray) -> None:
        """A whole block."""


def fetch_range(
    pool: ConnectionPool,
    url: str,
    start: int,
    end: int,
    block_size: int,
    trusted: Callable[[str], bool],
    auth_headers: dict[str, str],
    user_agent: str,
    sink: BlockSink,
    first_block: int,
    pace: Callable[[str], None] = lambda url: None,
) -> None:
    """GET bytes [start, end) of `url` (blocking) and hand each block to `sink` as it
    arrives. Raises Retryable for network trouble or a short body (Unreachable when a host
    did not answer at all). `pace(url)` is called before each redirected request (the
    caller paces the first one before it starts this thread)."""

    def take(response, target: str) -> None:
        status = response.status
        if status == 206:
            want = f"bytes {start}-{end - 1}/"
            got = response.getheader("content-range") or ""
            if not got.startswith(want):
                raise ProviderError(f"GET {redact(target)}: asked for {want}, got {got!r}")
        elif not (status == 200 and start == 0):
            _refuse("GET", response, target, trusted, response.read(512).decode(errors="replace"))
        _read_blocks(response, start, end, block_size, sink, first_block, target)

    _request(
        pool,
        "GET",
        url,
        {"Range": f"bytes={start}-{end - 1}", "User-Agent": user_agent},
        trusted,
        auth_headers,
        pace,
        take,
    )


def _request(
    pool: ConnectionPool,
    method: str,
    url: str,
    headers: dict[str, str],
    trusted: Callable[[str], bool],
    auth_headers: dict[str, str],
    pace: Callable[[str], None],
    take: Callable,
):
    """Send a request over a pooled connection, following redirects (credentials only to
    trusted hosts), and return what `take(response, url)` makes of the final answer.
    Network trouble raises Retryable (Unreachable when the host did not answer at all)."""
    target = url
    for hop in range(MAX_REDIRECTS + 1):
        if hop:
            pace(target)
        parts = urlsplit(target)
        if not parts.hostname:
            raise ProviderError(f"{redact(target)}: not a URL of a host")
        sent = dict(headers, **(auth_headers if trusted(target) else {}))
        conn = pool.get(parts.scheme, parts.hostname, parts.port)
        reusable = False
        try:
            conn.request(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=sent)
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("location"):
                response.read()
                reusable = not response.will_close
                target = urljoin(target, response.getheader("location"))
                continue
            result = take(response, target)
            reusable = not response.will_close
            return result
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            message = f"{method} {redact(target)}: {type(e).__name__}: {e or 'connection lost'}"
            if unreachable_error(e):
                raise Unreachable(message, target, type(e).__name__) from None
            raise Retryable(message) from None
        finally:
            if reusable:
                pool.put(parts.scheme, parts.hostname, parts.port, conn)
            else:
                conn.close()
    raise ProviderError(f"{redact(url)}: too many redirects")


def _refuse(method: str, response, target: str, trusted: Callable[[str], bool], body: str) -> NoReturn:
    """The error a status other than success stands for."""
    status = response.status
    where = f"{method} {redact(target)}"
    detail = " ".join(body.split())[:200]
    if status == 404:
        raise Gone(f"{where}: not found")
    if status == 401 and trusted(target):
        raise CredentialsRejected(f"{where}: HTTP 401")
    if status in (401, 403, 410) and "?" in target:
        raise UrlRefused(f"{where}: HTTP {status} {detail}".rstrip())
    if status in (429, 500, 502, 503, 504):
        raise Retryable(f"{where}: HTTP {status}", retry_after=retry_after(response))
    raise ProviderError(f"{where}: HTTP {status} {detail}".rstrip())


def _read_blocks(response, start: int, end: int, block_size: int, sink: BlockSink, index: int, target: str) -> None:
    offset = start
    while offset < end:
        want = min(block_size - offset % block_size, end - offset)
        if first_piece := sink.watched(index):
            data = _read_in_pieces(response, want, first_piece, index, sink)
        else:
            data = response.read(want)  # one allocation, filled in C
        if len(data) < want:
            raise Retryable(f"GET {redact(target)}: body ended at {offset + len(data) - start} of {end - start} bytes")
        sink.block(index, data)
        offset += want
        index += 1


def _read_in_pieces(response, size: int, first_piece: int, index: int, sink: BlockSink) -> bytearray:
    """A block read `first_piece` bytes first, then PIECE bytes at a time, each piece
    reported as it lands: a reader that wants the first bytes of the block gets them
    without waiting for the rest."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        n = response.readinto(view[filled : filled + (PIECE if filled else first_piece)])
        if not n:
            return buffer[:filled]
        filled += n
        sink.progress(index, buffer, filled)
    return buffer
