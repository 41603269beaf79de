"""One Reader per content version while any handle has it open, so concurrent readers
of a file share fetches and read-ahead."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import trio

from ..providers.base import Content
from ..stats import Stats
from .blockcache import BlockCache
from .reader import FLOWS, Reader
from .transfer import ConnectionPool


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
