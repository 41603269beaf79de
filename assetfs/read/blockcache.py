"""Content blocks on disk (diskcache, LRU, size-limited), keyed by content version and
block index, with a small in-memory LRU in front for the blocks being read right now."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import diskcache


class BlockCache:
    def __init__(self, directory: Path, size_limit: int, block_size: int = 1 << 20, memory_blocks: int = 48):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.block_size = block_size
        self._disk = diskcache.Cache(
            str(directory), size_limit=size_limit, eviction_policy="least-recently-used",
            cull_limit=16, statistics=False,
        )
        self._memory: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._memory_blocks = memory_blocks

    def get_memory(self, version: str, index: int) -> bytes | None:
        data = self._memory.get((version, index))
        if data is not None:
            self._memory.move_to_end((version, index))
        return data

    def get_disk(self, version: str, index: int) -> bytes | None:
        """Blocking: call from a worker thread."""
        return self._disk.get((version, index))

    def remember(self, version: str, index: int, data: bytes) -> None:
        self._memory[(version, index)] = data
        self._memory.move_to_end((version, index))
        while len(self._memory) > self._memory_blocks:
            self._memory.popitem(last=False)

    def store(self, version: str, index: int, data: bytes) -> None:
        """Blocking: call from a worker thread."""
        self._disk.set((version, index), data)

    def contains(self, version: str, index: int) -> bool:
        return (version, index) in self._memory or (version, index) in self._disk

    def drop(self, version: str, blocks: int) -> None:
        for index in range(blocks):
            self._memory.pop((version, index), None)
            self._disk.delete((version, index))

    def volume(self) -> int:
        return self._disk.volume()

    def clear(self) -> None:
        self._memory.clear()
        self._disk.clear()

    def close(self) -> None:
        self._disk.close()
