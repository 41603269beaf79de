"""Many HEADs at once, for the sizes of a directory's files (blocking, in one worker thread).

A provider that publishes no sizes (Spectrum) needs a HEAD per file before `ls -l` can show
it. Each is a round trip, so what bounds a directory's sizes on a real link is how many are in
flight: libcurl's multi interface keeps many at once and does the HTTP work in C (about 30 µs
of CPU per HEAD, against a few hundred through Python HTTP clients). An HTTPS host that
speaks HTTP/2 (CDNs do) gets them all as streams of one connection; others get a keep-alive
connection per request in flight. Only what is simple
is taken: a 200 with a Content-Length. Anything else (an error, a redirect, a refusal) is
answered "no size", and the file's own stat asks again under the full request policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from ..providers.http import Unreachable, redact
from .curl import ca_options, close_all, multiplexing, new_handle, no_answer

if TYPE_CHECKING:
    import pycurl

K = TypeVar("K")  # what the caller knows a URL by
# Seconds between two rounds of answers: each round wakes the event loop and the stats and
# readdirs waiting on it, which once per HEAD would cost more CPU than the HEADs.
ANSWER_EVERY = 0.002


def head_sizes(
    urls: Iterable[tuple[K, str]],
    *,
    headers: Callable[[str], list[str]],
    at_once: int,
    timeout: float,
    before: Callable[[str], None],
    answer: Callable[[list[tuple[K, int | None]]], None],
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """HEAD each (key, url), `at_once` in flight, and `answer([(key, size or None), …])`
    with the requests that ended, a round at a time. `headers(url)` gives a request's
    header lines (credentials only where they belong), `before(url)` is called before each
    request is sent (the rate budget).
    Raises Unreachable, after answering the requests in flight, when a host did not answer."""
    import pycurl  # here, not at start: libcurl and OpenSSL take 9 MB a mount that never asks does not need

    silent = no_answer()
    todo = iter(urls)
    multi = multiplexing()
    ca = ca_options()
    idle: list[pycurl.Curl] = []
    made = 0  # handles made: no more than requests, nor than `at_once`
    busy: dict[pycurl.Curl, tuple[K, str]] = {}
    unreachable: Unreachable | None = None
    answered: list[tuple[K, int | None]] = []  # ended, not yet passed on
    last = time.monotonic()
    try:
        while True:
            while (idle or made < at_once) and unreachable is None and not stopped():
                item = next(todo, None)
                if item is None:
                    break
                key, url = item
                before(url)
                if not idle:
                    idle.append(_handle(timeout, ca))
                    made += 1
                handle = idle.pop()
                handle.setopt(pycurl.URL, url)
                # Over TLS, wait to learn whether the connection being made speaks HTTP/2 (a stream
                # of it, not one more connection); plain HTTP is HTTP/1.1: a connection each.
                handle.setopt(pycurl.PIPEWAIT, url.startswith("https:"))
                handle.setopt(pycurl.HTTPHEADER, headers(url))
                busy[handle] = item
                multi.add_handle(handle)
            if not busy:
                break
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            ended: list[tuple[K, int | None]] = []
            while True:
                left, done, failed = multi.info_read()
                for handle in done:
                    key, _ = busy.pop(handle)
                    multi.remove_handle(handle)
                    idle.append(handle)
                    length = handle.getinfo(pycurl.CONTENT_LENGTH_DOWNLOAD_T)
                    ended.append((key, length if handle.getinfo(pycurl.RESPONSE_CODE) == 200 and length >= 0 else None))
                for handle, code, message in failed:
                    key, url = busy.pop(handle)
                    multi.remove_handle(handle)
                    idle.append(handle)
                    ended.append((key, None))
                    if code in silent and unreachable is None:
                        unreachable = Unreachable(f"HEAD {redact(url)}: {message}", url, f"libcurl error {code}")
                if not left:
                    break
            if ended:
                answered.extend(ended)  # and the next ones are sent at once
            now = time.monotonic()
            if answered and (not busy or unreachable is not None or now - last >= ANSWER_EVERY):
                answer(answered)
                answered, last = [], now
            if busy and not ended:
                multi.select(ANSWER_EVERY if answered else 0.5)
    finally:
        close_all(multi, busy, idle)
    if unreachable is not None:
        raise unreachable


def _handle(timeout: float, ca: dict[int, str]) -> pycurl.Curl:
    import pycurl

    handle = new_handle(timeout, ca)
    handle.setopt(pycurl.NOBODY, 1)
    return handle
