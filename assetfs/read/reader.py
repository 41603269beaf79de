"""Reads of one content version, shared by every handle open on it.

Blocks come from memory, then the disk cache (one `pread` on the event loop when every
block of a read is there: no thread hop), then one ranged GET per run of missing blocks.
Concurrent readers of a block wait on the same fetch. Each handle has a cursor: while its
reads stay sequential the read-ahead window doubles (up to `max_ahead` blocks);
a seek resets it. A published md5 is checked once the whole file has come in order;
small files are fetched whole and checked before any byte is cached or returned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..errors import AuthFailed, ChecksumMismatch, NotFound, ProviderError
from ..providers.base import Content
from ..providers.http import CredentialsRejected, ProviderHTTP, Unavailable
from ..stats import Stats
from .blockcache import BlockCache
from .transfer import ConnectionPool, UrlRefused, fetch_range

log = logging.getLogger("assetfs.read")

WHOLE_FILE_LIMIT = 8 << 20  # files up to this size (with a checksum) are fetched and checked whole
FETCH_ATTEMPTS = 4

@dataclass
class Cursor:
    """One open handle's reading position, for sequential detection."""

    next_offset: int = 0
    window: int = 1


class _Pending:
    __slots__ = ("event", "data", "error")

    def __init__(self):
        self.event = trio.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None


class Reader:
    def __init__(self, content: Content, http: ProviderHTTP, cache: BlockCache, nursery: trio.Nursery,
                 stats: Stats, max_ahead: int = 32, connections: ConnectionPool | None = None,
                 renew_url: Callable[[str], Awaitable[str]] | None = None):
        self.content = content
        # Asked for a new URL when a signed one is refused (it expired while the file was open).
        self.renew_url = renew_url
        self.connections = connections or ConnectionPool(http.timeout)
        self.size = content.size or 0
        self.http = http
        self.cache = cache
        self.nursery = nursery
        self.stats = stats
        self.bs = cache.block_size
        self.blocks = (self.size + self.bs - 1) // self.bs
        self.max_ahead = max(1, max_ahead)
        self.inflight: dict[int, _Pending] = {}
        self.whole = bool(content.md5) and self.size <= WHOLE_FILE_LIMIT
        self._hasher = hashlib.md5() if content.md5 and not self.whole else None
        self._hashed = 0
        self.failed: BaseException | None = None

    async def read(self, cursor: Cursor, offset: int, size: int) -> bytes:
        if self.failed:
            raise self.failed
        if offset >= self.size or size <= 0:
            return b""
        end = min(self.size, offset + size)
        if offset == cursor.next_offset:
            cursor.window = min(self.max_ahead, cursor.window * 2)
        else:
            cursor.window = 1
        cursor.next_offset = end
        first, last = offset // self.bs, (end - 1) // self.bs
        window = self.blocks if self.whole else cursor.window
        # One run for the blocks asked for and the read-ahead after them: the first block
        # asked for comes first, and a sequential reader costs one request per window.
        self._prefetch(first, last + 1 - first + window)
        version = self.content.version
        if first == last and (block := self.cache.get_memory(version, first)) is not None:
            self.stats.add("block_hits")
            self.stats.add("bytes_read", end - offset)
            return memoryview(block)[offset - first * self.bs:end - first * self.bs]  # no copy
        if self.cache.on_disk(version, first, last):
            self.stats.add("block_hits", last - first + 1)
            self.stats.add("bytes_read", end - offset)
            return self.cache.read(version, offset, end - offset)
        parts = []
        for index in range(first, last + 1):
            block = await self._block(index, window)
            lo = offset - index * self.bs if index == first else 0
            hi = end - index * self.bs if index == last else len(block)
            parts.append(block[lo:hi])
        self.stats.add("bytes_read", end - offset)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _block(self, index: int, window: int) -> bytes:
        for attempt in range(FETCH_ATTEMPTS):
            data = self.cache.get_memory(self.content.version, index)
            if data is not None:
                self.stats.add("block_hits")
                return data
            pending = self.inflight.get(index)
            if pending is None:
                if self.cache.on_disk(self.content.version, index, index):
                    self.stats.add("block_hits")
                    return self.cache.read(self.content.version, index * self.bs, self._block_len(index))
                pending = self._start(index, window)
            await pending.event.wait()
            if pending.data is not None:
                return pending.data
            final = (ChecksumMismatch, AuthFailed, NotFound, Unavailable, UrlRefused)
            if isinstance(pending.error, final) or attempt == FETCH_ATTEMPTS - 1:
                raise pending.error
            log.info("%s: block %d: %s; trying again", self.content.version, index, pending.error)
            # The provider's Retry-After when it sent one (the syscall's deadline still bounds the wait).
            await trio.sleep(max(0.2 * 2 ** attempt, min(60.0, getattr(pending.error, "retry_after", None) or 0.0)))
        raise AssertionError("unreachable")

    def _prefetch(self, start: int, count: int) -> None:
        """Make sure blocks [start, start+count) are cached or coming. A gap is filled
        with a run of `count` blocks."""
        index = self.cache.first_missing(self.content.version, start, min(self.blocks, start + count), self.inflight)
        if index is not None:
            self._start(index, count)

    def _start(self, first: int, count: int) -> _Pending:
        """Register blocks [first, first+count) as coming (stopping at one already coming)
        and fetch them in the background."""
        if self.whole:
            first, count = 0, self.blocks
        last = min(self.blocks, first + max(1, count))
        last = self.cache.first_present(self.content.version, first + 1, last, self.inflight) or last
        pendings = {i: self.inflight.setdefault(i, _Pending()) for i in range(first, last)}
        self.nursery.start_soon(self._fetch, first, last, pendings)
        return pendings[first]

    async def _fetch(self, first: int, last: int, pendings: dict[int, _Pending]) -> None:
        try:
            await self._download(first, last, pendings)
        except BaseException as e:
            error = e if isinstance(e, (ProviderError, AuthFailed)) else ProviderError(f"{type(e).__name__}: {e}")
            for i, pending in pendings.items():
                if pending.data is None and not pending.event.is_set():
                    pending.error = error
                    self.inflight.pop(i, None)
                    pending.event.set()
            if not isinstance(e, Exception):
                raise

    async def _download(self, first: int, last: int, pendings: dict[int, _Pending]) -> None:
        start, end = first * self.bs, min(self.size, last * self.bs)
        self.stats.add("block_misses", last - first)
        self.stats.add("requests")
        whole: list[bytes] = []
        token = trio.lowlevel.current_trio_token()

        def on_block(index: int, data: bytes) -> None:  # runs in the download thread
            if self.whole:
                whole.append(data)
            else:  # hand the block over without waiting for the event loop, and to the disk
                token.run_sync_soon(self._deliver_soon, index, data, pendings[index])
                self.cache.offer(self.content.version, index, data)

        url = self.content.url
        renewed = refreshed = False
        while True:
            try:
                async with self.http.outside(url) as grant:
                    await trio.to_thread.run_sync(
                        fetch_range, self.connections, url, start, end, self.bs, self.http.is_trusted,
                        grant.credentials, grant.user_agent, on_block, first, grant.pace, abandon_on_cancel=True)
                break
            except CredentialsRejected as e:
                if refreshed:
                    raise AuthFailed(f"{e}: the provider refused a fresh token too") from None
                refreshed = True  # a revoked or expired token: the client fetches a new one, once
            except UrlRefused as e:
                if renewed or self.renew_url is None:
                    raise
                renewed = True  # a signed URL expired while the file was open: ask for a new one, once
                log.info("%s; asking the provider for a new URL", e)
                url = await self.renew_url(url)
                self.content = dataclasses.replace(self.content, url=url)
        self.stats.add("bytes_downloaded", end - start)
        if self.whole:
            digest = hashlib.md5(b"".join(whole)).hexdigest()
            if digest != self.content.md5.lower():
                self.stats.add("checksum_mismatches")
                raise ChecksumMismatch(f"{self.content.version}: md5 {digest} does not match the provider's "
                                       f"{self.content.md5}; nothing was cached")
            await trio.to_thread.run_sync(self._store_run, first, whole)
            for i, data in enumerate(whole, first):
                self._deliver(i, data, pendings[i])

    def _block_len(self, index: int) -> int:
        return min(self.bs, self.size - index * self.bs)

    def _store_run(self, first: int, blocks: list[bytes]) -> None:
        for index, data in enumerate(blocks, first):
            self.cache.store(self.content.version, index, data)

    def _deliver_soon(self, index: int, data: bytes, pending: _Pending) -> None:
        """`_deliver` as a callback of the event loop, where an exception would end the mount."""
        try:
            self._deliver(index, data, pending)
        except Exception as e:
            log.error("%s: block %d: %s: %s", self.content.version, index, type(e).__name__, e)
            self.failed = ProviderError(f"{self.content.version}: {type(e).__name__}: {e}")

    def _deliver(self, index: int, data: bytes, pending: _Pending) -> None:
        self.cache.remember(self.content.version, index, data)
        pending.data = data
        self.inflight.pop(index, None)
        pending.event.set()
        self._hash_in_order()

    def _hash_in_order(self) -> None:
        """Feed blocks to the md5 in file order while they are at hand (in memory, or on disk
        from an earlier read); check at the end. Runs as downloaded blocks arrive."""
        if self._hasher is None:
            return
        while self._hashed < self.blocks:
            data = self.cache.get_memory(self.content.version, self._hashed)
            if data is None:
                data = self.cache.get_disk(self.content.version, self._hashed)
            if data is None:
                return
            self._hasher.update(data)
            self._hashed += 1
        digest = self._hasher.hexdigest()
        self._hasher = None
        if digest != self.content.md5.lower():
            self.stats.add("checksum_mismatches")
            self.failed = ChecksumMismatch(f"{self.content.version}: md5 {digest} does not match the provider's "
                                           f"{self.content.md5}; its cached blocks were dropped")
            log.error("%s", self.failed)
            self.cache.drop(self.content.version, self.blocks)
