"""The inode table: numbers for nodes, and the kernel's lookup counts (released in forget)."""

from __future__ import annotations

import itertools

import pyfuse3

from .errors import NotFound


class InodeTable:
    def __init__(self):
        self._nodes: dict[int, object] = {}
        self._lookups: dict[int, int] = {}
        self._next = itertools.count(pyfuse3.ROOT_INODE + 1)

    def new_ino(self) -> int:
        return next(self._next)

    def add_root(self, node) -> None:
        self._nodes[node.ino] = node
        self._lookups[node.ino] = 1  # the kernel never forgets the root

    def get(self, ino: int):
        try:
            return self._nodes[ino]
        except KeyError:
            raise NotFound(f"inode {ino} is gone") from None

    def remember(self, node) -> None:
        """The kernel now holds one more reference (a lookup reply or a readdir entry)."""
        self._nodes[node.ino] = node
        self._lookups[node.ino] = self._lookups.get(node.ino, 0) + 1

    def forget(self, ino: int, count: int) -> None:
        left = self._lookups.get(ino, 0) - count
        if left > 0:
            self._lookups[ino] = left
        elif ino != pyfuse3.ROOT_INODE:
            self._lookups.pop(ino, None)
            self._nodes.pop(ino, None)

    def __len__(self) -> int:
        return len(self._nodes)
