"""One Reader per content version while any handle has it open, so concurrent readers
of a file share fetches and read-ahead; and connections to a content host opened as soon as
a directory's listing names it, so that a cold file's first GET does not wait for the TCP and
TLS handshakes (two round trips of three, 80 ms at a 40 ms round trip): WARM for the
readers' own GETs, and one for the batches of first blocks asked ahead (read/multi.py)."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import trio

from ..providers.base import Content
from ..stats import Stats
from .blockcache import BlockCache
from .multi import CurlWorker
from .reader import FLOWS, Reader
from .transfer import ConnectionPool

log = logging.getLogger("assetfs.read")

# Connections kept ready per content host a listing names: a file manager reads its first
# screen's thumbnails 8 at a time, and a sequential read starts FLOWS GETs.
WARM = FLOWS
MULTI_KEPT = 60.0  # seconds libcurl is trusted to keep an idle connection open (it checks before reuse)


class ReaderPool:
    def __init__(self, cache: BlockCache, stats: Stats, read_ahead: int, timeout: float = 30.0):
        self.cache = cache
        self.stats = stats
        # At most a window of blocks ahead is in memory unread, and the tier drops the least
        # recently used first (blocks already read): two thirds of it leave room for those.
        self.max_ahead = max(1, min(read_ahead // cache.block_size, cache.memory_blocks * 2 // 3))
        self.nursery: trio.Nursery | None = None
        self._readers: dict[str, tuple[Reader, int]] = {}
        self.connections = ConnectionPool(max(1.0, timeout / 2), per_origin=2 * FLOWS)  # two runs' GETs kept alive
        self._opening: Counter[tuple] = Counter()  # connections being opened ahead, per origin
        self.warm = WARM  # connections opened ahead per listed host
        self.multi = CurlWorker(timeout)  # batches of small GETs (first blocks ahead)
        self.warm_multi = False  # whether a listing opens a connection for those batches too
        self._multi_warmed: dict[tuple, float] = {}  # origin -> when a listing last opened it one

    def open(self, content: Content, http, renew_url: Callable[[str], Awaitable[str]] | None = None) -> Reader:
        reader, users = self._readers.get(content.version, (None, 0))
        if reader is None:
            if self.nursery is None:
                raise RuntimeError("a file opened before the mount started its readers")
            reader = Reader(
                content, http, self.cache, self.nursery, self.stats, self.max_ahead, self.connections, renew_url
            )
        elif content.url and content.url != reader.content.url:
            reader.content = dataclasses.replace(reader.content, url=content.url)  # a fresher signed URL
        self._readers[content.version] = (reader, users + 1)
        return reader

    def close(self, reader: Reader) -> None:
        current, users = self._readers.get(reader.content.version, (None, 0))
        if current is not reader:
            return
        if users <= 1:
            del self._readers[reader.content.version]
        else:
            self._readers[reader.content.version] = (reader, users - 1)

    def listed(
        self, urls: Iterable[str | None], held_down: Callable[[str], bool] = lambda url: False, fetched: bool = False
    ) -> None:
        """A directory's listing names these content URLs: have WARM connections open to
        the host of the first (a directory's files share a host), in the background; not
        to a host the request policy holds down (its probe says when it is back). When the
        listing was `fetched` from the provider just now, the first blocks' batches get
        their connection too: that takes a request (`warm`), and a listing from the disk
        cache asks nothing of the network."""
        url = next((u for u in urls if u), None)
        if url is None or self.nursery is None or held_down(url):
            return
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return
        try:
            origin = (parts.scheme, parts.hostname, parts.port)
        except ValueError:  # a port that is not a number
            return
        for _ in range(self.warm - self.connections.idle(*origin) - self._opening[origin]):
            self._opening[origin] += 1
            self.nursery.start_soon(self._open_ahead, origin)
        now = trio.current_time()
        if fetched and self.warm_multi and now - self._multi_warmed.get(origin, -MULTI_KEPT) >= MULTI_KEPT:
            self._multi_warmed[origin] = now
            self.multi.warm(url, [])  # a HEAD without credentials: its answer does not matter

    def stop(self) -> None:
        """At unmount: the batches' thread ends, idle connections close."""
        self.multi.close()
        self.connections.close()

    async def _open_ahead(self, origin: tuple) -> None:
        try:
            await trio.to_thread.run_sync(self.connections.open_ahead, *origin, abandon_on_cancel=True)
        except OSError as e:  # the read will meet the same trouble under the request policy
            log.debug("connecting ahead to %s://%s: %s", origin[0], origin[1], e)
        finally:
            self._opening[origin] -= 1
