"""Many small GETs at once over shared connections: libcurl's multi interface, on one worker
thread that lives as long as the mount.

A file manager drawing a folder's thumbnails wants the first block of dozens of files at
once (read/firstblocks.py). Through the reader's own path each GET costs about 2 ms of the
mount's CPU (a worker thread, http.client in Python, the event loop's bookkeeping): forty of
them were what bounded a thumbnail storm on a 2-core machine. Here each costs tens of µs, in
C, with the GIL released. And since the thread and its multi handle outlive a batch, the
connection a `warm` request opened when the directory was listed (an HTTP/2 connection, on
a host that speaks it, as CDNs do) carries the batch without a handshake.

Only what is simple is taken: a 206 with the range asked, or a 200 with the whole file.
Anything else (an error, a redirect, a refusal) ends the fetch with `error` set, and the
file's own read asks again under the full request policy.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .curl import ca_options, close_all, multiplexing, new_handle, no_answer

if TYPE_CHECKING:
    import pycurl

log = logging.getLogger("assetfs.read")

WAKE_EVERY = 0.005  # seconds a batch submitted while others are in flight waits at most to be sent
AT_ONCE = 64  # requests in flight, all batches together (the rest wait their turn)
WARM_BODY = 64 << 10  # bytes of an answer to a warm-up read (and dropped) before its connection is let go


@dataclass(eq=False)
class Fetch:
    """A GET of bytes [0, end) of `url` (or, `end` 0, an OPTIONS: see `warm`), and its outcome."""

    url: str
    headers: list[str]
    end: int
    whole: bool = False  # [0, end) is the whole file: a 200 with all of it is right too
    body: bytes = b""  # the bytes asked, once it succeeded
    error: str | None = None  # why it did not (None: it did)
    unreachable: bool = False  # the host did not answer at all
    _chunks: list[bytes] = field(default_factory=list, repr=False)
    _range: str = field(default="", repr=False)


Ended = Callable[[list[Fetch]], None]  # called in the worker thread with each round of fetches that ended


class CurlWorker:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._jobs: queue.SimpleQueue[tuple[list[Fetch], Ended] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, fetches: list[Fetch], ended: Ended) -> None:
        """Send these, in order, as soon as fewer than AT_ONCE are in flight; `ended` gets
        each round of them that ended (every one ends: done, failed, or timed out)."""
        with self._lock:
            if self._closed:
                for f in fetches:
                    f.error = "the mount is stopping"
                ended(fetches)
                return
            self._jobs.put((fetches, ended))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="assetfs-multi", daemon=True)
                self._thread.start()

    def warm(self, url: str, headers: list[str]) -> None:
        """An OPTIONS of `url` (safe, no body, not a read of the file), its answer ignored: it
        opens the connection that the next batch for this host finds ready."""
        self.submit([Fetch(url, headers, 0)], lambda ended: None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._jobs.put(None)
        if thread is not None:
            thread.join(self.timeout)

    # -- the worker thread --------------------------------------------------------------------

    def _run(self) -> None:
        import pycurl  # here: libcurl and OpenSSL take memory a mount that never asks does not need

        multi = multiplexing()
        ca = ca_options()
        silent = no_answer()
        idle: list[pycurl.Curl] = []
        busy: dict[pycurl.Curl, tuple[Fetch, Ended]] = {}
        waiting: list[tuple[Fetch, Ended]] = []
        try:
            while True:
                if self._take(waiting, block=not busy and not waiting):
                    _fail(waiting + list(busy.values()), "the mount is stopping")
                    return
                while waiting and len(busy) < AT_ONCE:
                    fetch, ended = waiting.pop(0)
                    handle = idle.pop() if idle else new_handle(self.timeout, ca)
                    self._prepare(handle, fetch)
                    busy[handle] = (fetch, ended)
                    multi.add_handle(handle)
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                rounds: dict[int, tuple[Ended, list[Fetch]]] = {}
                while True:
                    left, done, failed = multi.info_read()
                    for handle in done:
                        fetch, ended = busy.pop(handle)
                        multi.remove_handle(handle)
                        self._judge(handle, fetch)
                        idle.append(handle)
                        rounds.setdefault(id(ended), (ended, []))[1].append(fetch)
                    for handle, code, message in failed:
                        fetch, ended = busy.pop(handle)
                        multi.remove_handle(handle)
                        fetch.error = f"libcurl error {code}: {message}"
                        fetch.unreachable = code in silent
                        fetch._chunks.clear()
                        idle.append(handle)
                        rounds.setdefault(id(ended), (ended, []))[1].append(fetch)
                    if not left:
                        break
                for ended, fetches in rounds.values():
                    try:
                        ended(fetches)
                    except Exception:  # a caller's bug must not stop every later batch
                        log.exception("fetches ahead: delivering %d answers", len(fetches))
                if busy:
                    multi.select(WAKE_EVERY)
        except Exception as e:  # every fetch still waiting ends; the next batch starts a new thread
            log.exception("fetches ahead: %s", e)
            _fail(waiting + list(busy.values()), f"{type(e).__name__}: {e}")
        finally:
            close_all(multi, busy, idle)
            with self._lock:
                self._thread = None

    def _take(self, waiting: list, block: bool) -> bool:
        """Move submitted batches to `waiting` (waiting for one when `block`: idle, the
        thread sleeps until there is work); True once the mount is stopping."""
        try:
            job = self._jobs.get() if block else self._jobs.get_nowait()
        except queue.Empty:
            return False
        while True:
            if job is None:
                return True
            fetches, ended = job
            waiting.extend((f, ended) for f in fetches)
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return False

    def _prepare(self, handle: pycurl.Curl, fetch: Fetch) -> None:
        import pycurl

        handle.setopt(pycurl.URL, fetch.url)
        handle.setopt(pycurl.HTTPHEADER, fetch.headers)
        # Over TLS, wait to learn whether the connection being made speaks HTTP/2 (a stream
        # of it, not one more connection); plain HTTP is HTTP/1.1: a connection each.
        handle.setopt(pycurl.PIPEWAIT, fetch.url.startswith("https:"))
        handle.setopt(pycurl.HTTPGET, 1)  # (a handle is reused: every option set either way)
        if fetch.end:
            handle.unsetopt(pycurl.CUSTOMREQUEST)
            handle.setopt(pycurl.RANGE, f"0-{fetch.end - 1}")
        else:  # a body it may have is read and dropped: left unread, it would spoil the connection
            handle.unsetopt(pycurl.RANGE)
            handle.setopt(pycurl.CUSTOMREQUEST, "OPTIONS")
        chunks, came = fetch._chunks, [0]
        most = fetch.end or WARM_BODY

        def body(data: bytes) -> int | None:
            came[0] += len(data)
            if fetch.end:
                chunks.append(data)
            return 0 if came[0] > most else None  # more than asked (a range ignored): stop it

        def header(line: bytes) -> None:
            if line[:14].lower() == b"content-range:":
                fetch._range = line[14:].decode("latin-1").strip()

        handle.setopt(pycurl.WRITEFUNCTION, body)
        handle.setopt(pycurl.HEADERFUNCTION, header)

    def _judge(self, handle: pycurl.Curl, fetch: Fetch) -> None:
        """Whether a fetch that ended with an answer brought what was asked."""
        import pycurl

        status = handle.getinfo(pycurl.RESPONSE_CODE)
        data = b"".join(fetch._chunks)
        fetch._chunks.clear()
        if not fetch.end:
            return
        if status == 206 and fetch._range.startswith(f"bytes 0-{fetch.end - 1}/") and len(data) == fetch.end:
            fetch.body = data
        elif status == 200 and fetch.whole and len(data) == fetch.end:
            fetch.body = data
        else:
            fetch.error = f"HTTP {status}, {len(data)} bytes, range {fetch._range or 'none'}"


def _fail(pending: list[tuple[Fetch, Ended]], why: str) -> None:
    for fetch, ended in pending:
        fetch.error = why
        try:
            ended([fetch])
        except Exception:
            log.exception("fetches ahead: delivering a failure")
