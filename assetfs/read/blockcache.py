"""Content blocks on disk (diskcache, LRU, size-limited), keyed by content version and
block index, with a small in-memory LRU in front for the blocks being read right now.

Writes to disk go through one writer thread with a bounded queue. Caching is best
effort: when the disk cannot keep up with the network, a block is served without being
kept, so a cold read runs at network speed and memory stays bounded."""

from __future__ import annotations

import io
import queue
import threading
from collections import OrderedDict
from pathlib import Path

import diskcache

WRITE_QUEUE_BLOCKS = 32


class BlockCache:
    def __init__(self, directory: Path, size_limit: int, block_size: int = 1 << 20, memory_blocks: int = 32):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.block_size = block_size
        self._disk = diskcache.Cache(
            str(directory), size_limit=size_limit, eviction_policy="least-recently-used", cull_limit=16,
        )
        self._memory: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.memory_blocks = memory_blocks
        self._dropped: set[str] = set()
        # One disk operation at a time: SQLite makes concurrent writers (and an LRU get is a
        # write) wait in a sleeping busy-loop, which costs tens of milliseconds per clash.
        self._disk_lock = threading.Lock()
        self._writes: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE_BLOCKS)
        self._writer = threading.Thread(target=self._write_loop, name="assetfs-block-writer", daemon=True)
        self._writer.start()

    # -- memory ---------------------------------------------------------------------------

    def get_memory(self, version: str, index: int) -> bytes | None:
        data = self._memory.get((version, index))
        if data is not None:
            self._memory.move_to_end((version, index))
        return data

    def remember(self, version: str, index: int, data: bytes) -> None:
        self._memory[(version, index)] = data
        self._memory.move_to_end((version, index))
        while len(self._memory) > self.memory_blocks:
            self._memory.popitem(last=False)

    # -- disk -----------------------------------------------------------------------------

    def open_disk(self, version: str, index: int):
        """A readable file of a block on disk, or None. Blocking: call from a worker thread.
        Only the index lookup is serialized; reading the bytes can run in parallel."""
        with self._disk_lock:
            return self._disk.get((version, index), read=True)

    def open_disk_run(self, version: str, first: int, last: int) -> list:
        """Readable files of blocks [first, last) on disk, stopping at the first one missing:
        one worker-thread call for a whole read-ahead window instead of one per block."""
        handles = []
        with self._disk_lock:
            for index in range(first, last):
                handle = self._disk.get((version, index), read=True)
                if handle is None:
                    break
                handles.append(handle)
        return handles

    def get_disk(self, version: str, index: int) -> bytes | None:
        """Blocking: call from a worker thread."""
        handle = self.open_disk(version, index)
        if handle is None:
            return None
        with handle:
            return handle.read()

    def offer(self, version: str, index: int, data: bytes) -> None:
        """Queue a block for the disk unless the queue is full (never waits)."""
        try:
            self._writes.put_nowait((version, index, data))
        except queue.Full:
            pass

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            version, index, data = item
            if version not in self._dropped:
                with self._disk_lock:
                    self._disk.set((version, index), io.BytesIO(data), read=True)
            self._writes.task_done()
        self._writes.task_done()

    def flush(self) -> None:
        """Wait until every queued block is on disk."""
        self._writes.join()

    def contains(self, version: str, index: int) -> bool:
        return (version, index) in self._memory or (version, index) in self._disk

    def drop(self, version: str, blocks: int) -> None:
        """Forget a version's blocks (its bytes failed their checksum)."""
        self._dropped.add(version)
        self.flush()
        for index in range(blocks):
            self._memory.pop((version, index), None)
            with self._disk_lock:
                self._disk.delete((version, index))

    def volume(self) -> int:
        return self._disk.volume()

    def clear(self) -> None:
        self.flush()
        self._memory.clear()
        self._disk.clear()

    def close(self) -> None:
        self._writes.put(None)
        self._writer.join(timeout=30)
        self._disk.close()
