"""Files that exist here before (or instead of) on the provider.

A *local* file is being written, has a temporary name (never uploaded), or waits for its
upload. A *written* file was uploaded through the mount and stays listed under the name it
was written with — across remounts — so that rsync and friends find what they copied.
"""

from __future__ import annotations

import fnmatch
import hashlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import diskcache

from ..providers.base import Entry
from .journal import PendingUpload
from .spool import SpoolFile

# Editors, rsync and file managers write under these names first; they never leave the machine.
_TEMPORARY = ("*~", "*.swp", "*.swx", "*.swo", "4913", "#*#", "*.tmp", "*.part", "*.crdownload")


def is_temporary(name: str) -> bool:
    return name.startswith(".") or any(fnmatch.fnmatchcase(name, pattern) for pattern in _TEMPORARY)


@dataclass
class LocalFile:
    spool: SpoolFile
    record: PendingUpload | None = None   # its journal record (a draft until closed)
    mtime: float = field(default_factory=time.time)
    mode: int = 0o644
    xattrs: dict[str, str] = field(default_factory=dict)
    dirty: bool = False
    replaces: Entry | None = None         # the asset whose content this file overwrites
    read_only: bool = False               # a view of a pending upload under .assetfs/pending/
    _hasher: _OrderedHasher | None = field(default_factory=lambda: _OrderedHasher(), repr=False)

    def write(self, offset: int, data: bytes) -> int:
        """Write to the spool; while writes come in order (cp, rsync) the checksum is made
        alongside, so closing the file needs no second pass over it."""
        written = self.spool.write(offset, data)
        if self._hasher is not None and not self._hasher.feed(offset, data, written):
            self._hasher = None
        return written

    def truncate(self, size: int) -> None:
        self.spool.truncate(size)
        if size == 0:
            self._hasher = _OrderedHasher()
        elif self._hasher is None or size != self._hasher.fed:
            self._hasher = None

    def md5_if_known(self) -> str | None:
        if self._hasher is not None and self._hasher.fed == self.spool.size:
            return self._hasher.hexdigest()
        return None


class _OrderedHasher:
    """md5 of bytes written in order, computed on a thread of its own so that a write
    returns as soon as its bytes are in the spool."""

    def __init__(self):
        self.fed = 0
        self._md5 = hashlib.md5()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def feed(self, offset: int, data: bytes, length: int) -> bool:
        if offset != self.fed:
            return False
        chunk = memoryview(data)[:length]
        if length < (64 << 10) and self._thread is None:
            self._md5.update(chunk)
        else:
            if self._thread is None:
                self._queue = queue.Queue(maxsize=32)
                self._thread = threading.Thread(target=self._run, name="assetfs-md5", daemon=True)
                self._thread.start()
            self._queue.put(chunk)
        self.fed += length
        return True

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._md5.update(chunk)

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        return self._md5.hexdigest()


@dataclass
class WrittenFile:
    asset: Entry                          # the asset the upload became
    size: int
    md5: str
    mtime: float
    mode: int = 0o644


class WrittenNames:
    """Per directory, the names of files uploaded through the mount (kept on disk)."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = diskcache.Cache(str(directory), size_limit=1 << 34, eviction_policy="none")

    def of(self, directory_key: str) -> dict[str, WrittenFile]:
        return self._db.get(directory_key, {})

    def put(self, directory_key: str, name: str, written: WrittenFile) -> None:
        with self._db.transact():
            names = dict(self.of(directory_key))
            names[name] = written
            self._db.set(directory_key, names)

    def remove(self, directory_key: str, name: str) -> None:
        with self._db.transact():
            names = dict(self.of(directory_key))
            if names.pop(name, None) is not None:
                self._db.set(directory_key, names)

    def close(self) -> None:
        self._db.close()
