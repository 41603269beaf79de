"""Content blocks on disk: one sparse file per content version plus a bitmap of the blocks
it holds, so a read of cached bytes is one mapping of the file (no copy). A small
in-memory LRU in front keeps the blocks being read right now (in flight, or waiting for
their checksum).

Files are named after a hash of the version and the block size: `<hash>-<bs>.data` holds
block i at offset i × bs; `<hash>-<bs>.map` has bit i set once block i is written. The
size limit is kept by evicting whole versions, least recently used first (a version's use
is its map file's mtime). Downloaded blocks are written by one writer thread through a
bounded queue: when the disk cannot keep up with the network, a block is served without
being kept, so a cold read runs at network speed and memory stays bounded. A cache holds
only what can be fetched again: a crash at worst loses a block's bit, and an older cache
layout is cleared."""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import queue
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("assetfs.read")

EVICT_TO = 0.9  # evicting stops at this fraction of the limit, so it does not run on every block
TOUCH_EVERY = 60.0  # seconds between updates of a version's last use on disk
WRITE_QUEUE_BLOCKS = 32
OPEN_VERSIONS = 128  # versions whose files stay open (two descriptors each), most recently used


class _Version:
    """One content version's sparse file and bitmap, open while the cache is."""

    __slots__ = ("data_path", "map_path", "fd", "map_fd", "bits", "used", "touched")

    def __init__(self, data_path: Path, map_path: Path, create: bool):
        self.data_path, self.map_path = data_path, map_path
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.map_fd = os.open(map_path, flags, 0o600)  # FileNotFoundError when absent and not created
        try:
            self.fd = os.open(data_path, flags, 0o600)
        except OSError:
            os.close(self.map_fd)
            raise
        self.bits = bytearray(os.pread(self.map_fd, os.fstat(self.map_fd).st_size, 0))
        self.used = self.touched = 0.0

    def has(self, index: int) -> bool:
        byte = index >> 3
        return byte < len(self.bits) and bool(self.bits[byte] & (1 << (index & 7)))

    def mark(self, index: int) -> None:
        byte = index >> 3
        if byte >= len(self.bits):
            self.bits.extend(bytes(byte + 1 - len(self.bits)))
        self.bits[byte] |= 1 << (index & 7)
        os.pwrite(self.map_fd, self.bits[byte : byte + 1], byte)

    def touch(self) -> None:
        """Note a use: in memory each time, on disk (the map's mtime) once a minute."""
        self.used = now = time.time()
        if now - self.touched > TOUCH_EVERY:
            self.touched = now
            os.utime(self.map_fd, (now, now))

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.map_fd)


class _Absent:
    """A version with no files yet: looking does not create them."""

    @staticmethod
    def has(index: int) -> bool:
        return False


_ABSENT = _Absent()


# Blocks in memory. A sequential reader's read-ahead is up to two thirds of it: 32 MiB
# ahead keeps a 40 ms path busy at several flows' speed (16 MiB measured 2.7× one flow's
# rate, 32 MiB 3.5×).
MEMORY_BLOCKS = 48


class BlockCache:
    def __init__(self, directory: Path, size_limit: int, block_size: int = 1 << 20, memory_blocks: int = MEMORY_BLOCKS):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self.size_limit = size_limit
        self.block_size = block_size
        self.memory_blocks = memory_blocks
        self._memory: OrderedDict[tuple[str, int], bytes | bytearray] = OrderedDict()
        self._open: OrderedDict[str, _Version] = OrderedDict()
        self._dropped: set[str] = set()
        # Held while a descriptor is used, so eviction never closes one under a read or write.
        self._lock = threading.RLock()
        self._clear_old_layout()
        # The versions with files here, known without a stat per look (a stat of a file that is
        # not there can wait on the disk for the directory): read once, kept as files come and go.
        self._stems = {p.stem for p in directory.glob("*.map")}
        self._volume = sum(_allocated(p) for p in directory.glob("*.data"))
        self._writes: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE_BLOCKS)
        self._writer = threading.Thread(target=self._write_loop, name="assetfs-block-writer", daemon=True)
        self._writer.start()

    def _clear_old_layout(self) -> None:
        if (self.directory / "cache.db").exists():
            log.info(
                "%s: clearing a block cache of an older layout (its bytes are fetched again when read)", self.directory
            )
            for child in self.directory.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    # -- memory ---------------------------------------------------------------------------

    def get_memory(self, version: str, index: int) -> bytes | bytearray | None:
        data = self._memory.get((version, index))
        if data is not None:
            self._memory.move_to_end((version, index))
        return data

    def remember(self, version: str, index: int, data: bytes | bytearray) -> None:
        self._memory[(version, index)] = data
        self._memory.move_to_end((version, index))
        while len(self._memory) > self.memory_blocks:
            self._memory.popitem(last=False)

    # -- disk -----------------------------------------------------------------------------

    def _version(self, version: str, create: bool = False) -> _Version | _Absent:
        v = self._open.get(version)
        if v is not None:
            self._open.move_to_end(version)
            return v
        stem = f"{hashlib.sha256(version.encode()).hexdigest()}-{self.block_size}"
        if not create and stem not in self._stems:
            return _ABSENT
        with self._lock:
            v = self._open.get(version)
            if v is None:
                try:
                    v = _Version(self.directory / f"{stem}.data", self.directory / f"{stem}.map", create)
                except FileNotFoundError:  # deleted by `assetfs cache clear` meanwhile
                    self._stems.discard(stem)
                    return _ABSENT
                self._open[version] = v
                self._stems.add(stem)
                while len(self._open) > OPEN_VERSIONS:
                    self._open.popitem(last=False)[1].close()
        return v

    def on_disk(self, version: str, first: int, last: int) -> bool:
        """Whether blocks [first, last] are all on disk: the bitmap, and one fstat to see
        that `assetfs cache clear` did not delete the files meanwhile."""
        v = self._version(version)
        if not all(v.has(i) for i in range(first, last + 1)):
            return False
        with self._lock:
            if self._open.get(version) is not v:
                return False  # evicted meanwhile
            if os.fstat(v.map_fd).st_nlink:
                return True
            self._forget(version)
            return False

    def first_missing(self, version: str, start: int, stop: int, coming) -> int | None:
        """The first block in [start, stop) neither in memory, on disk nor in `coming`."""
        v = self._version(version)
        for index in range(start, stop):
            if index not in coming and not v.has(index) and (version, index) not in self._memory:
                return index
        return None

    def first_present(self, version: str, start: int, stop: int, coming) -> int | None:
        """The first block in [start, stop) in memory, on disk or in `coming` (no need to fetch it)."""
        v = self._version(version)
        for index in range(start, stop):
            if index in coming or v.has(index) or (version, index) in self._memory:
                return index
        return None

    def read(self, version: str, offset: int, size: int) -> bytes | memoryview:
        """Bytes [offset, offset+size) of blocks that `on_disk` reported, mapped from the
        cache file rather than copied out of it: a FUSE reply copies them straight from the
        page cache (a pread would copy each MiB once more). A pread if the file is shorter
        than its bitmap says (a crash can leave that), where a mapping would fault."""
        with self._lock:
            v = self._version(version, create=True)
            if isinstance(v, _Absent):  # its files could not be made: the cache directory is gone
                raise FileNotFoundError(f"{self.directory}: the files of a cached version could not be made")
            v.touch()
            if os.fstat(v.fd).st_size < offset + size:
                return os.pread(v.fd, size, offset)
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            mapped = mmap.mmap(v.fd, offset + size - start, prot=mmap.PROT_READ, offset=start)
        return memoryview(mapped)[offset - start :]

    def will_need(self, version: str, first: int, stop: int) -> None:
        """Start reading the blocks of [first, stop) that are on disk into the page cache,
        without waiting for them: a sequential read of cached blocks then finds them in
        memory, where each mapping's page faults would otherwise wait for the disk on the
        event loop. Blocks not on disk are left alone (reading a hole would cache zeros)."""
        v = self._version(version)
        index = first
        while index < stop:
            if not v.has(index):
                index += 1
                continue
            run = index + 1
            while run < stop and v.has(run):
                run += 1
            with self._lock:
                if isinstance(v, _Version) and self._open.get(version) is v:
                    os.posix_fadvise(
                        v.fd, index * self.block_size, (run - index) * self.block_size, os.POSIX_FADV_WILLNEED
                    )
            index = run

    def get_disk(self, version: str, index: int) -> bytes | memoryview | None:
        if not self.on_disk(version, index, index):
            return None
        return self.read(version, index * self.block_size, self.block_size)

    def offer(self, version: str, index: int, data: bytes | bytearray) -> None:
        """Queue a block for the disk unless the queue is full (never waits)."""
        try:
            self._writes.put_nowait((version, index, data))
        except queue.Full:
            pass

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            try:
                self.store(*item)
            except OSError as e:
                log.warning("block cache: %s", e)
            finally:
                self._writes.task_done()
        self._writes.task_done()

    def store(self, version: str, index: int, data: bytes | bytearray) -> None:
        """Write a block and set its bit (blocking: call from a worker thread). A block that
        does not fit, even after evicting other versions, is served without being kept."""
        if version in self._dropped or not self._make_room(version, len(data)):
            return
        with self._lock:
            v = self._version(version, create=True)
            if isinstance(v, _Absent) or v.has(index):  # no files (the cache directory is gone): not kept
                return
            os.pwrite(v.fd, data, index * self.block_size)
            v.mark(index)
            v.touch()
            self._volume += len(data)

    def _make_room(self, keep: str, size: int) -> bool:
        with self._lock:
            if self._volume + size <= self.size_limit:
                return True
            target = int(self.size_limit * EVICT_TO) - size
            keep_stem = self._open[keep].data_path.stem if keep in self._open else None
            used = {v.map_path: v.used for v in self._open.values()}
            by_use = sorted(self.directory.glob("*.map"), key=lambda p: used.get(p) or _mtime(p))
            for map_path in by_use:
                if self._volume <= target:
                    break
                if map_path.stem != keep_stem:
                    self._volume -= self._evict(map_path)
            return self._volume + size <= self.size_limit

    def _evict(self, map_path: Path) -> int:
        """Delete one version's files (called with the lock held); the bytes it freed."""
        data_path = map_path.with_suffix(".data")
        freed = _allocated(data_path)
        for version, v in list(self._open.items()):
            if v.map_path == map_path:
                self._forget(version)
        for path in (data_path, map_path):
            path.unlink(missing_ok=True)
        self._stems.discard(map_path.stem)
        return freed

    def _forget(self, version: str) -> None:
        """Close a version's files (called with the lock held); its readers fetch again."""
        v = self._open.pop(version)
        v.bits = bytearray()
        v.close()

    def flush(self) -> None:
        """Wait until every queued block is on disk."""
        self._writes.join()

    def contains(self, version: str, index: int) -> bool:
        return (version, index) in self._memory or self.on_disk(version, index, index)

    def drop(self, version: str, blocks: int) -> None:
        """Forget a version's blocks (its bytes failed their checksum)."""
        self._dropped.add(version)
        self.flush()
        for index in range(blocks):
            self._memory.pop((version, index), None)
        v = self._version(version)
        if isinstance(v, _Version):
            with self._lock:
                self._volume -= self._evict(v.map_path)

    def volume(self) -> int:
        return self._volume

    def clear(self) -> int:
        """Delete every version's files; how many versions there were."""
        self.flush()
        self._memory.clear()
        with self._lock:
            maps = list(self.directory.glob("*.map"))
            for map_path in maps:
                self._evict(map_path)
            self._volume = sum(_allocated(p) for p in self.directory.glob("*.data"))
        return len(maps)

    def close(self) -> None:
        self._writes.put(None)
        self._writer.join(timeout=30)
        with self._lock:
            for v in self._open.values():
                v.close()
            self._open.clear()


def _allocated(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
