"""The emulator's stored files: generated on demand, kept on disk, or uploaded.

A blob is immutable: a new upload is a new blob. Large files live on disk and are read
in chunks, never held whole in memory; generated sample files are rebuilt from their seed
on each read, so 10,000 assets cost only their metadata.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20


@dataclass
class Blob:
    key: str
    size: int
    content_type: str
    mtime: float
    _md5: str | None = None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(f"{self.key}:{self.size}:{self.mtime}".encode()).hexdigest()[:32] + '"'

    @property
    def md5(self) -> str:
        if self._md5 is None:
            digest = hashlib.md5()
            for chunk in self.chunks(0, self.size):
                digest.update(chunk)
            self._md5 = digest.hexdigest()
        return self._md5

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        raise NotImplementedError


@dataclass
class GeneratedBlob(Blob):
    make: Callable[[], bytes] = field(default=lambda: b"", repr=False)

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        data = self.make()
        yield data[offset : offset + length]


@dataclass
class FileBlob(Blob):
    path: Path = field(default=Path("/dev/null"))

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(offset)
            while length > 0:
                chunk = f.read(min(CHUNK, length))
                if not chunk:
                    return
                length -= len(chunk)
                yield chunk


class BlobStore:
    """Blobs by key; uploaded and large files are written under `root`."""

    def __init__(self, root: Path | None = None):
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="assetfs-emulator-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._blobs: dict[str, Blob] = {}

    def get(self, key: str) -> Blob | None:
        return self._blobs.get(key)

    def add_generated(self, key: str, size: int, content_type: str, make: Callable[[], bytes], mtime: float) -> Blob:
        blob = GeneratedBlob(key=key, size=size, content_type=content_type, mtime=mtime, make=make)
        self._blobs[key] = blob
        return blob

    def add_bytes(self, key: str, data: bytes, content_type: str) -> Blob:
        path = self.root / _safe(key)
        path.write_bytes(data)
        return self._add_file(key, path, content_type, hashlib.md5(data).hexdigest())

    def add_stream(self, key: str, source, content_type: str) -> Blob:
        """Copy a file-like object to disk in chunks, hashing as it goes."""
        path = self.root / _safe(key)
        digest = hashlib.md5()
        with open(path, "wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        return self._add_file(key, path, content_type, digest.hexdigest())

    def on_disk(self, key: str) -> Blob | None:
        """The blob as a file (a generated one is written out the first time): a web server
        over `root` can then serve it (the benchmark's content on nginx)."""
        blob = self._blobs.get(key)
        if isinstance(blob, GeneratedBlob):
            data = blob.make()
            path = self.root / _safe(key)
            path.write_bytes(data)
            blob = FileBlob(
                key=key,
                size=len(data),
                content_type=blob.content_type,
                mtime=blob.mtime,
                _md5=hashlib.md5(data).hexdigest(),
                path=path,
            )
            self._blobs[key] = blob
        return blob

    def add_large(self, key: str, size: int, content_type: str = "application/octet-stream") -> Blob:
        """A deterministic pseudo-random file of `size` bytes, written once to disk."""
        path = self.root / _safe(key)
        digest = hashlib.md5()
        block = _pseudo_random_block(key)
        with open(path, "wb") as out:
            left, n = size, 0
            while left > 0:
                chunk = (n.to_bytes(8, "big") + block[8:])[: min(len(block), left)]
                digest.update(chunk)
                out.write(chunk)
                left -= len(chunk)
                n += 1
        return self._add_file(key, path, content_type, digest.hexdigest())

    def _add_file(self, key: str, path: Path, content_type: str, md5: str) -> Blob:
        blob = FileBlob(
            key=key, size=path.stat().st_size, content_type=content_type, mtime=time.time(), _md5=md5, path=path
        )
        self._blobs[key] = blob
        return blob

    def close(self) -> None:
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


def _safe(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _pseudo_random_block(seed: str) -> bytes:
    import random

    return random.Random(seed).randbytes(CHUNK)


def new_key(prefix: str) -> str:
    return f"{prefix}/{os.urandom(12).hex()}"
