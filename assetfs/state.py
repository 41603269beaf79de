"""The state directory: what exists nowhere else (the upload journal, the spool of written
bytes, what providers remember across mounts), kept apart from the cache, which anyone may
delete at any time (`assetfs cache clear`, `rm -rf`, `systemctl clean`, tmpfiles aging).

One mount at a time uses a state directory: a lock (flock, so a `kill -9` releases it)
refuses a second one with the first one's pid and mountpoint, so two uploaders never work
through one journal. State that older versions kept in the cache directory is moved here
at the first mount.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

import diskcache

from .errors import AssetfsError

log = logging.getLogger("assetfs.state")

SPOOL, JOURNAL, MEMORY, GIVEN = "spool", "journal", "memory", "given"
PARTS = (SPOOL, JOURNAL, MEMORY)  # what older versions kept in the cache dir
LOCK = "lock"


class StateInUse(AssetfsError):
    """Another mount holds the state directory."""


def private_dir(path: Path) -> Path:
    """A directory only its owner may enter, whatever the umask or its old mode."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


class StateDir:
    def __init__(self, path: Path):
        self.path = private_dir(path)
        for part in PARTS:
            private_dir(path / part)
        self._lock_fd: int | None = None

    @property
    def spool(self) -> Path:
        return self.path / SPOOL

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL

    def memory(self, account: str) -> diskcache.Index:
        """The disk store a provider remembers things in (kept until the account is removed)."""
        return diskcache.Index.fromcache(
            diskcache.Cache(str(self.path / MEMORY / _slug(account)), eviction_policy="none")
        )

    def given(self) -> diskcache.Index:
        """Times and modes given to files written through the mount, by content version: no
        provider keeps them, and losing them would make the next `rsync -a` send every file again."""
        return diskcache.Index(str(private_dir(self.path / GIVEN)))

    # -- one mount at a time ------------------------------------------------------------------

    def lock(self, mountpoint: Path) -> None:
        """Hold the directory for this process, or raise StateInUse naming who holds it."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateInUse(
                f"state dir {self.path} is in use by the mount at {holder.get('mountpoint', '?')} "
                f"(pid {holder.get('pid', '?')}); two mounts must not share one upload journal: "
                f"unmount it first, or give this mount its own with -o state_dir=DIR or [state] dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "mountpoint": str(mountpoint)}).encode() + b"\n", 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- state left in a cache directory by older versions -----------------------------------

    def adopt_from(self, cache_dir: Path) -> None:
        """Move journal, spool and provider memory found in `cache_dir` here (merged with
        what is here already), rewriting the journal's spool paths; one log line."""
        found = [part for part in PARTS if (cache_dir / part).is_dir()]
        if not found or cache_dir.resolve() == self.path.resolve():
            return
        old_spool, new_spool = str(cache_dir / SPOOL), str(self.spool)
        if (cache_dir / SPOOL).is_dir():
            for item in os.listdir(cache_dir / SPOOL):
                shutil.move(cache_dir / SPOOL / item, self.spool / item)
        if (cache_dir / JOURNAL).is_dir():
            self._adopt_journal(cache_dir / JOURNAL, old_spool, new_spool)
        if (cache_dir / MEMORY).is_dir():
            for account in os.listdir(cache_dir / MEMORY):
                self._adopt_memory(cache_dir / MEMORY / account, self.path / MEMORY / account)
        for part in found:
            shutil.rmtree(cache_dir / part, ignore_errors=True)
        log.warning(
            "moved %s from the cache dir %s to the state dir %s (a cache may be deleted at any time; "
            "these exist nowhere else)",
            ", ".join(f"{p}/" for p in found),
            cache_dir,
            self.path,
        )

    def _adopt_journal(self, old: Path, old_spool: str, new_spool: str) -> None:
        from .write.journal import Journal  # the journal's own format, whatever it is

        source, target = Journal(old), Journal(self.journal)
        try:
            for record in source.all():
                if record.spool.startswith(old_spool + os.sep):
                    record.spool = new_spool + record.spool[len(old_spool) :]
                target.put(record)
        finally:
            source.close()
            target.close()

    @staticmethod
    def _adopt_memory(old: Path, new: Path) -> None:
        if not new.exists():
            shutil.move(old, new)
            return
        source = diskcache.Index.fromcache(diskcache.Cache(str(old), eviction_policy="none"))
        target = diskcache.Index.fromcache(diskcache.Cache(str(new), eviction_policy="none"))
        try:
            for key in list(source.keys()):
                mine, theirs = target.get(key), source[key]
                if isinstance(mine, list) and isinstance(theirs, list):  # e.g. a collection's asset ids
                    target[key] = [*mine, *(v for v in theirs if v not in mine)]
                elif key not in target:
                    target[key] = theirs
        finally:
            source.cache.close()
            target.cache.close()


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except ValueError:
        return {}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "account"
