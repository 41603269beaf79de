"""Spool files: what a user writes, on local disk, until the provider confirms it."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

CHUNK = 1 << 20


class SpoolFile:
    """One file's bytes on local disk, read and written at any offset."""

    def __init__(self, path: Path, create: bool = False):
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = os.open(path, flags, 0o600)

    def write(self, offset: int, data: bytes) -> int:
        return os.pwrite(self.fd, data, offset)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def sync(self) -> None:
        os.fsync(self.fd)

    def md5(self) -> str:
        digest, offset = hashlib.md5(), 0
        while chunk := os.pread(self.fd, CHUNK, offset):
            digest.update(chunk)
            offset += len(chunk)
        return digest.hexdigest()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Spool:
    """The directory of spool files (0700: what users write is nobody else's business)."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        self.directory = directory

    def new(self) -> SpoolFile:
        return SpoolFile(self.directory / uuid.uuid4().hex, create=True)

    def open(self, path: str | Path) -> SpoolFile:
        return SpoolFile(Path(path))

    def discard(self, path: str | Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
