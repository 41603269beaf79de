"""The journal of pending uploads: on disk (diskcache, i.e. SQLite) before an upload is
tried, removed only once the provider has confirmed it — so a failed upload, a crash or a
kill -9 loses nothing, and the next mount resumes where this one stopped."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import diskcache

from ..providers.base import Entry

CREATE, REPLACE = "create", "replace"
DRAFT = "draft"  # being written: not to be uploaded yet
PENDING = "pending"  # closed, due for upload at `next_try` (the write-back delay, or a retry's backoff)
FAILED = "failed"  # refused for good (the provider cannot do it): kept, not retried
ORPHANED = "orphaned"  # still being written when the mount died: kept for the user, not uploaded


@dataclass
class PendingUpload:
    account: str
    action: str  # CREATE (a new asset in `target`) or REPLACE (new content for `target`)
    target: Entry  # the container, or the asset whose content is replaced
    directory_key: str  # the directory the file was written in (to show the result there)
    name: str  # the file name as written
    spool: str  # the spool file's path
    state: str = DRAFT  # DRAFT, PENDING, FAILED or ORPHANED
    size: int = 0
    md5: str = ""
    mime: str = "application/octet-stream"
    mtime: float = field(default_factory=time.time)
    xattrs: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    attempts: int = 0
    last_error: str = ""
    next_try: float = 0.0


class Journal:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = diskcache.Cache(str(directory), size_limit=1 << 40, eviction_policy="none")

    def put(self, record: PendingUpload) -> None:
        self._db.set(record.id, record)

    def get(self, record_id: str) -> PendingUpload | None:
        return self._db.get(record_id)

    def remove(self, record_id: str) -> None:
        self._db.delete(record_id)

    def all(self) -> list[PendingUpload]:
        records = [self._db.get(k) for k in list(self._db.iterkeys())]
        return sorted((r for r in records if r is not None), key=lambda r: r.mtime)

    def close(self) -> None:
        self._db.close()
