"""Reads of one content version, shared by every handle open on it.

Blocks come from memory, then the disk cache (one mapping on the event loop when every
block of a read is there: no thread hop), then ranged GETs for each run of missing blocks:
a long run is split into a few GETs at once (FLOWS), since over a long path a single flow is
capped by its window and its losses while several are not.
Concurrent readers of a block wait on the same fetch; one that needs only the start of a
block gets it as soon as it has come, not when the whole block has. Each handle has a
cursor: while its reads stay sequential the read-ahead window doubles (up to `max_ahead`
blocks); a seek resets it. Reads within a window of the cursor count as sequential: the
kernel's read-ahead sends several requests at once, and they reach us slightly out of
order. A published md5 is checked once the whole file has come in order; small files are
fetched whole and checked before any byte is cached or returned.
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
FLOWS = 8  # GETs at once for one run of blocks
FLOW_MIN = 2 << 20  # bytes: a run is split no finer (a GET costs a round trip before its first byte)
FETCH_ATTEMPTS = 4


@dataclass
class Cursor:
    """One open handle's reading position, for sequential detection: `next_offset` is the
    end of the furthest read so far."""

    next_offset: int = 0
    window: int = 1
    disk_ahead: int = 0  # blocks up to this one were asked of the disk ahead of the reader


class Pending:
    """A block on its way; its readers wait for `progressed`, set when it is done or failed.
    A reader that needs only its first bytes says how many (`want`): the download thread
    then fills `buffer` in pieces and wakes it once `filled` reaches that."""

    __slots__ = ("data", "error", "dropped", "buffer", "filled", "want", "progressed")

    def __init__(self):
        self.data: bytes | bytearray | None = None
        self.error: BaseException | None = None
        self.dropped = False  # a fetch made elsewhere (ahead) brought nothing: a reader asks itself
        self.buffer: bytearray | None = None  # set by the download thread, then `filled` grows
        self.filled = 0
        self.want = 0  # bytes of the block a waiting reader needs (0: none is waiting for a part)
        self.progressed = trio.Event()

    def done(self) -> bool:
        return self.data is not None or self.error is not None or self.dropped

    def available(self, end: int) -> bytes | bytearray | None:
        """The block's bytes if its first `end` bytes are in (they never change once in)."""
        if self.data is not None:
            return self.data
        return self.buffer if self.filled >= end else None

    async def wait_for(self, end: int) -> None:
        """Until the first `end` bytes are in, the block is done or failed (or sooner: check again)."""
        if not self.want or end < self.want:
            self.want = end
        await self.progressed.wait()

    def wake(self) -> None:
        """Wake every reader waiting for a part (on the event loop)."""
        woken, self.progressed = self.progressed, trio.Event()
        woken.set()


class Reader:
    def __init__(
        self,
        content: Content,
        http: ProviderHTTP,
        cache: BlockCache,
        nursery: trio.Nursery,
        stats: Stats,
        max_ahead: int = 32,
        connections: ConnectionPool | None = None,
        renew_url: Callable[[str], Awaitable[str]] | None = None,
    ):
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
        self.inflight: dict[int, Pending] = {}
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
        if abs(offset - cursor.next_offset) > cursor.window * self.bs:
            cursor.window, cursor.next_offset, cursor.disk_ahead = 1, end, 0  # a seek
        elif end > cursor.next_offset:  # onwards: the window grows (a read behind keeps it)
            cursor.window, cursor.next_offset = min(self.max_ahead, cursor.window * 2), end
        first, last = offset // self.bs, (end - 1) // self.bs
        window = self.blocks if self.whole else cursor.window
        self._prefetch(first, last + 1 - first, window)
        if window > 1 and (ahead := min(self.blocks, last + 1 + window)) > cursor.disk_ahead:
            self.cache.will_need(self.content.version, max(cursor.disk_ahead, last + 1), ahead)
            cursor.disk_ahead = ahead
        data = self._at_hand(first, last, offset, end)
        if data is None:
            parts = [await self._part(index, lo, hi, window) for index, lo, hi in self._spans(first, last, offset, end)]
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.stats.add("bytes_read", end - offset)
        return data

    def claim_first_block(self) -> Pending | None:
        """Register the first block as coming, for a fetch made elsewhere (first blocks
        asked ahead: read/firstblocks.py), which ends with `first_block_came` or
        `first_block_dropped`; None if it is cached or coming already, or is not a fetch of
        its own (a file checked whole is one only if it is one block)."""
        version = self.content.version
        if self.failed or not self.blocks or (self.whole and self.blocks > 1) or 0 in self.inflight:
            return None
        if self.cache.get_memory(version, 0) is not None or self.cache.on_disk(version, 0, 0):
            return None
        self.stats.add("block_misses")
        self.stats.add("requests")
        pending = self.inflight[0] = Pending()
        return pending

    def first_block_came(self, pending: Pending, data: bytes) -> bool:
        """The first block claimed came: cached and handed to the readers waiting for it
        (checked first if it is the whole file and has a published md5). False if it was
        refused (a reader then fetches it itself)."""
        if self.whole and hashlib.md5(data).hexdigest() != (self.content.md5 or "").lower():
            log.info("%s: the first block fetched ahead does not match the md5; asked again", self.content.version)
            self.first_block_dropped(pending)
            return False
        self.stats.add("bytes_downloaded", len(data))
        self._deliver(0, data, pending)
        self.cache.offer(self.content.version, 0, data)
        return True

    def first_block_dropped(self, pending: Pending) -> None:
        """The first block claimed did not come: readers waiting for it fetch it themselves."""
        if self.inflight.get(0) is pending:
            del self.inflight[0]
        pending.dropped = True
        pending.wake()

    def _at_hand(self, first: int, last: int, offset: int, end: int):
        """Bytes [offset, end) if every block they touch is in memory (no copy for one block,
        one copy for more) or on disk (mapped, no copy), else None."""
        version = self.content.version
        blocks = []
        for index in range(first, last + 1):
            if (block := self.cache.get_memory(version, index)) is None:
                break
            blocks.append(block)
        else:
            self.stats.add("block_hits", len(blocks))
            if len(blocks) == 1:
                return memoryview(blocks[0])[offset - first * self.bs : end - first * self.bs]
            return b"".join(
                memoryview(block)[lo:hi] for (_, lo, hi), block in zip(self._spans(first, last, offset, end), blocks)
            )
        if self.cache.on_disk(version, first, last):
            self.stats.add("block_hits", last - first + 1)
            return self.cache.read(version, offset, end - offset)
        return None

    def _spans(self, first: int, last: int, offset: int, end: int):
        """(block, start, end within the block) of each block that bytes [offset, end) touch."""
        for index in range(first, last + 1):
            base = index * self.bs
            yield index, max(offset, base) - base, min(end, base + self.bs) - base

    async def _part(self, index: int, lo: int, hi: int, window: int):
        """Bytes [lo, hi) of a block: from memory, disk, or the download bringing it (as soon
        as they are in, when it brings them in pieces)."""
        attempt = 0
        while True:
            data = self.cache.get_memory(self.content.version, index)
            if data is not None:
                self.stats.add("block_hits")
                return memoryview(data)[lo:hi]
            pending = self.inflight.get(index)
            if pending is None:
                if self.cache.on_disk(self.content.version, index, index):
                    self.stats.add("block_hits")
                    return self.cache.read(self.content.version, index * self.bs + lo, hi - lo)
                pending = self._start(index, window)
            while not pending.done():
                if (part := pending.available(hi)) is not None:
                    return memoryview(part)[lo:hi]
                await pending.wait_for(hi)
            if pending.data is not None:
                return memoryview(pending.data)[lo:hi]
            if pending.dropped:  # fetched ahead in vain: this read asks for it itself, at once
                continue
            error = pending.error or ProviderError(
                f"{self.content.version}: block {index}: the download brought nothing"
            )
            final = (ChecksumMismatch, AuthFailed, NotFound, Unavailable, UrlRefused)
            attempt += 1
            if isinstance(error, final) or attempt == FETCH_ATTEMPTS:
                raise error
            log.info("%s: block %d: %s; trying again", self.content.version, index, error)
            # The provider's Retry-After when it sent one (the syscall's deadline still bounds the wait).
            await trio.sleep(max(0.2 * 2 ** (attempt - 1), min(60.0, getattr(error, "retry_after", None) or 0.0)))

    def _prefetch(self, start: int, asked: int, window: int) -> None:
        """Make sure the `asked` blocks from `start` and the `window` after them are cached
        or coming, with one run from the first gap to the window's end: at once when the gap
        is among the blocks asked for (the first of them comes first), else once it is half
        the window long or reaches the end of the file. A sequential reader so costs one
        run (a few GETs at once) per half window and never has more than a window of blocks ahead of it
        (more would push blocks not yet read out of the memory tier)."""
        stop = min(self.blocks, start + asked + window)
        index = self.cache.first_missing(self.content.version, start, stop, self.inflight)
        if index is not None and (index < start + asked or 2 * (stop - index) >= window or stop == self.blocks):
            self._start(index, stop - index)

    def _start(self, first: int, count: int) -> Pending:
        """Register blocks [first, first+count) as coming (stopping at one already coming)
        and fetch them in the background, in up to FLOWS GETs at once."""
        if self.whole:
            first, count = 0, self.blocks
        last = min(self.blocks, first + max(1, count))
        last = self.cache.first_present(self.content.version, first + 1, last, self.inflight) or last
        pendings = {i: self.inflight.setdefault(i, Pending()) for i in range(first, last)}
        flows = 1 if self.whole else max(1, min(FLOWS, (last - first) * self.bs // FLOW_MIN))
        step = -(-(last - first) // flows)
        for lo in range(first, last, step):
            hi = min(last, lo + step)
            self.nursery.start_soon(self._fetch, lo, hi, {i: pendings[i] for i in range(lo, hi)})
        return pendings[first]

    async def _fetch(self, first: int, last: int, pendings: dict[int, Pending]) -> None:
        try:
            await self._download(first, last, pendings)
        except BaseException as e:
            error = (
                e if isinstance(e, (ProviderError, AuthFailed, NotFound)) else ProviderError(f"{type(e).__name__}: {e}")
            )
            for i, pending in pendings.items():
                if not pending.done():
                    pending.error = error
                    self.inflight.pop(i, None)
                    pending.wake()
            if not isinstance(e, Exception):
                raise

    async def _download(self, first: int, last: int, pendings: dict[int, Pending]) -> None:
        start, end = first * self.bs, min(self.size, last * self.bs)
        self.stats.add("block_misses", last - first)
        self.stats.add("requests")
        sink = _Sink(self, pendings, trio.lowlevel.current_trio_token())
        url = self.content.url
        if url is None:  # the view resolves it before a file is opened
            raise ProviderError(f"{self.content.version}: no URL to download it from")
        renewed = refreshed = False
        while True:
            try:
                async with self.http.outside(url, "GET") as grant:
                    await trio.to_thread.run_sync(
                        fetch_range,
                        self.connections,
                        url,
                        start,
                        end,
                        self.bs,
                        self.http.is_trusted,
                        grant.credentials,
                        grant.user_agent,
                        sink,
                        first,
                        grant.pace,
                        abandon_on_cancel=True,
                    )
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
            whole = sink.whole
            digest = hashlib.md5(b"".join(whole)).hexdigest()
            if digest != (self.content.md5 or "").lower():
                self.stats.add("checksum_mismatches")
                raise ChecksumMismatch(
                    f"{self.content.version}: md5 {digest} does not match the provider's "
                    f"{self.content.md5}; nothing was cached"
                )
            await trio.to_thread.run_sync(self._store_run, first, whole)
            for i, data in enumerate(whole, first):
                self._deliver(i, data, pendings[i])

    def _block_len(self, index: int) -> int:
        return min(self.bs, self.size - index * self.bs)

    def _store_run(self, first: int, blocks: list[bytes | bytearray]) -> None:
        for index, data in enumerate(blocks, first):
            self.cache.store(self.content.version, index, data)

    def _deliver_soon(self, index: int, data: bytes | bytearray, pending: Pending) -> None:
        """`_deliver` as a callback of the event loop, where an exception would end the mount."""
        try:
            self._deliver(index, data, pending)
        except Exception as e:
            log.error("%s: block %d: %s: %s", self.content.version, index, type(e).__name__, e)
            self.failed = ProviderError(f"{self.content.version}: {type(e).__name__}: {e}")

    def _deliver(self, index: int, data: bytes | bytearray, pending: Pending) -> None:
        self.cache.remember(self.content.version, index, data)
        pending.data = data
        self.inflight.pop(index, None)
        pending.wake()
        self._hash_in_order()

    def _hash_in_order(self) -> None:
        """Feed blocks to the md5 in file order while they are at hand (in memory, or on disk
        from an earlier read); check at the end. Runs as downloaded blocks arrive."""
        if self._hasher is None:
            return
        while self._hashed < self.blocks:
            data: bytes | bytearray | memoryview | None = self.cache.get_memory(self.content.version, self._hashed)
            if data is None:
                data = self.cache.get_disk(self.content.version, self._hashed)
            if data is None:
                return
            self._hasher.update(data)
            self._hashed += 1
        digest = self._hasher.hexdigest()
        self._hasher = None
        if digest != (self.content.md5 or "").lower():
            self.stats.add("checksum_mismatches")
            self.failed = ChecksumMismatch(
                f"{self.content.version}: md5 {digest} does not match the provider's "
                f"{self.content.md5}; its cached blocks were dropped"
            )
            log.error("%s", self.failed)
            self.cache.drop(self.content.version, self.blocks)


class _Sink:
    """The download thread's side of one GET: each block goes to the event loop (without
    waiting for it) and to the disk cache; a block a reader waits for the start of is
    reported piece by piece. For a file checked whole, blocks are kept until the check."""

    def __init__(self, reader: Reader, pendings: dict[int, Pending], token: trio.lowlevel.TrioToken):
        self.reader = reader
        self.pendings = pendings
        self.token = token
        self.whole: list[bytes | bytearray] = []

    def watched(self, index: int) -> int:
        want = self.pendings[index].want
        return want if not self.reader.whole and want < self.reader._block_len(index) else 0

    def progress(self, index: int, buffer: bytearray, filled: int) -> None:
        pending = self.pendings[index]
        pending.buffer = buffer
        pending.filled = filled
        if pending.want and filled >= pending.want:
            pending.want = 0
            self.token.run_sync_soon(pending.wake)

    def block(self, index: int, data: bytes | bytearray) -> None:
        if self.reader.whole:
            self.whole.append(data)
            return
        self.token.run_sync_soon(self.reader._deliver_soon, index, data, self.pendings[index])
        self.reader.cache.offer(self.reader.content.version, index, data)
