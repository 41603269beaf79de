"""Files that exist here before (or instead of) on the provider: being written, waiting
for their upload (the write-back delay), or temporary (never uploaded). Once the provider
has one, it is that asset's file and the view shows it from the listing."""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import queue
import re
import threading
import time
from dataclasses import dataclass, field

from ..providers.base import Entry
from .journal import FAILED, PendingUpload
from .spool import SpoolFile
from .stream import LiveUpload

# Editors, rsync and file managers write under these names first; they never leave the machine.
# Backup names too: where a save renames the previous file away (emacs `x~`, Blender
# `x.blend1`…`x.blend32` and its `x.blend@`, LibreOffice `x.osl-tmp`, Word `~WRL….tmp` and its
# owner file `~$x`, `*.bak`).
_TEMPORARY = (
    "*~",
    "*.swp",
    "*.swx",
    "*.swo",
    "4913",
    "#*#",
    "*.tmp",
    "*.part",
    "*.crdownload",
    "*.bak",
    "*.osl-tmp",
    "~WRL*.tmp",
    "~$*",
    "*.blend@",
)
_BLENDER_BACKUP = re.compile(r".*\.blend([1-9]|[12][0-9]|3[0-2])")


def is_temporary(name: str) -> bool:
    return (
        name.startswith(".")
        or any(fnmatch.fnmatchcase(name, pattern) for pattern in _TEMPORARY)
        or _BLENDER_BACKUP.fullmatch(name) is not None
    )


class State(str, enum.Enum):
    """Where a local file stands; its `user.assetfs.state` xattr."""

    OPEN = "open"  # open for writing
    WAITING = "waiting"  # closed; uploaded once the write-back delay has passed
    UPLOADING = "uploading"
    KEPT = "local"  # a temporary name, or nothing new since its upload: nothing to send
    FAILED = "failed"  # the provider refused it for good; kept under .assetfs/pending/
    PENDING_COPY = "pending"  # the read-only copy shown under .assetfs/pending/


@dataclass
class LocalFile:
    """Bytes held here, in the spool: a new file, new content for an asset, or a
    temporary file. The writer moves it through its states; the view shows it."""

    spool: SpoolFile
    record: PendingUpload | None = None  # its journal record, once it is meant for the provider
    mtime: float = field(default_factory=time.time)
    mode: int = 0o644
    xattrs: dict[str, str] = field(default_factory=dict)
    dirty: bool = False  # bytes the provider has not been sent
    replaces: Entry | None = None  # the asset whose content this file becomes
    read_only: bool = False  # a view of a pending upload under .assetfs/pending/
    writers: int = 0  # handles open for writing
    handles: int = 0  # handles open at all (the spool stays open for them)
    uploading: bool = False
    live: LiveUpload | None = None  # its upload, under way while it is written (stream.py)
    _hasher: _OrderedHasher | None = field(default_factory=lambda: _OrderedHasher(), repr=False)

    @property
    def state(self) -> State:
        if self.read_only:
            return State.PENDING_COPY
        if self.writers:
            return State.OPEN
        if self.uploading:
            return State.UPLOADING
        if self.record is None:
            return State.KEPT
        if self.record.state == FAILED:
            return State.FAILED
        return State.WAITING

    @property
    def size(self) -> int:
        return self.spool.size

    def write(self, offset: int, data: bytes) -> int:
        """Write to the spool; while writes come in order (cp, rsync) the checksum is made
        alongside, so closing the file needs no second pass over it."""
        written = self.spool.write(offset, data)
        if self._hasher is not None and not self._hasher.feed(offset, data, written):
            self._stop_hashing()
        return written

    def truncate(self, size: int) -> None:
        self.spool.truncate(size)
        if size == 0:
            self._stop_hashing()
            self._hasher = _OrderedHasher()
        elif self._hasher is None or size != self._hasher.fed:
            self._stop_hashing()

    def _stop_hashing(self) -> None:
        """No checksum made alongside the writes (they came out of order): one pass over
        the spool at close makes it."""
        if self._hasher is not None:
            self._hasher.stop()
            self._hasher = None

    def close(self) -> None:
        """Its spool is done with (uploaded, removed, given up): so is the checksum being
        made of it, whose thread would otherwise wait for more bytes as long as the mount runs."""
        self._stop_hashing()
        self.spool.close()

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
            if self._thread is None or self._queue is None:
                self._queue = queue.Queue(maxsize=32)
                self._thread = threading.Thread(target=self._run, args=(self._queue,), name="assetfs-md5", daemon=True)
                self._thread.start()
            self._queue.put(chunk)
        self.fed += length
        return True

    def _run(self, chunks: queue.Queue) -> None:
        while (chunk := chunks.get()) is not None:
            self._md5.update(chunk)

    def hexdigest(self) -> str:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        return self._md5.hexdigest()

    def stop(self) -> None:
        """Given up: its thread ends once it has hashed what it was handed."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread = None
