"""Uploads: due a short while after a file's last close (the write-back delay), at once on
fsync; retried in the background until the provider confirms them; resumed by the next
mount after a crash."""

from __future__ import annotations

import functools
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from ..errors import AssetfsError, AuthFailed, InvalidArgument, NotPermitted, ProviderError, ReadOnly
from ..providers.base import Entry, Provider, Upload
from ..stats import Stats
from .journal import CREATE, DRAFT, FAILED, ORPHANED, PENDING, Journal, PendingUpload
from .spool import Spool, SpoolFile

log = logging.getLogger("assetfs.upload")

MAX_BACKOFF = 300.0
PERMANENT = (NotPermitted, ReadOnly, InvalidArgument)


class Uploader:
    def __init__(self, journal: Journal, spool: Spool, providers: dict[str, Provider], stats: Stats,
                 on_uploaded: Callable[[PendingUpload, Entry], Awaitable[bool]]):
        self.journal = journal
        self.spool = spool
        self.providers = providers
        self.stats = stats
        self.on_uploaded = on_uploaded
        self._wake = trio.Event()
        self._busy: set[str] = set()
        for account, provider in providers.items():
            http = getattr(provider, "http", None)
            if http is not None:
                http.subscribe_recovery(functools.partial(self._provider_back, account))

    def _provider_back(self, account: str) -> None:
        """The account's provider answers again after an outage: its pending uploads are
        due now rather than at the end of their backoff (up to MAX_BACKOFF)."""
        for record in self.journal.all():
            if record.account == account and record.state == PENDING and record.next_try > time.time():
                record.next_try = 0.0
                self.journal.put(record)
        self._wake.set()

    def draft(self, record: PendingUpload) -> None:
        """Journal a file as soon as it is created, so even an unclosed file survives a crash."""
        self.journal.put(record)

    async def schedule(self, record: PendingUpload, spool: SpoolFile, md5: str | None, delay: float) -> None:
        """Mark a closed file due in `delay` seconds, with its size and checksum; the
        background loop uploads it then (unless it is renamed, written or removed first)."""
        record.size = spool.size
        record.md5 = md5 or await trio.to_thread.run_sync(spool.md5)
        record.mime = mimetypes.guess_type(record.name)[0] or "application/octet-stream"
        record.state = PENDING
        record.next_try = time.time() + delay
        record.attempts = 0
        self.journal.put(record)
        self._wake.set()

    async def commit(self, record: PendingUpload, spool: SpoolFile, md5: str | None = None) -> Entry:
        """Mark the file due and upload it now. On failure its bytes are synced to disk and
        the record stays in the journal for the background retries, and the error is raised.
        (A kill cannot lose page-cache bytes; a power cut during the first try can, and the
        checksum catches that at resume.)"""
        await self.schedule(record, spool, md5, 0.0)
        return await self.attempt(record)

    def hold(self, record: PendingUpload) -> None:
        """The file is being written again: not to be uploaded until it is closed."""
        if record.state != DRAFT:
            record.state = DRAFT
            self.journal.put(record)

    def busy(self, record: PendingUpload) -> bool:
        return record.id in self._busy

    def hurry(self) -> None:
        """Uploads waiting out their write-back delay are due now (a stop, an unmount)."""
        for record in self.journal.all():
            if record.state == PENDING and record.attempts == 0 and record.next_try > time.time():
                record.next_try = 0.0
                self.journal.put(record)
        self._wake.set()

    async def attempt(self, record: PendingUpload) -> Entry:
        provider = self.providers[record.account]
        upload = Upload(Path(record.spool), record.name, record.size, record.md5, record.mime, dict(record.xattrs))
        self._busy.add(record.id)
        try:
            if record.action == CREATE:
                asset = await provider.create_asset(record.target, upload)
            else:
                asset = await provider.replace_content(record.target, upload)
        except BaseException as e:
            # Also when cut short (a close() past its deadline, an unmount): the record must
            # fall due again and the retry loop be woken, or the upload would wait for no one.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_sync_file, record.spool)
            self._failed(record, e if isinstance(e, Exception) else ProviderError("no answer in time"))
            raise
        finally:
            self._busy.discard(record.id)
        log.info("uploaded %s (%d bytes) to %s", record.name, record.size, record.account)
        self.stats.add("uploads")
        self.stats.add("bytes_uploaded", record.size)
        self.journal.remove(record.id)
        keep = False
        try:
            keep = await self.on_uploaded(record, asset)
        except Exception:
            log.exception("%s: uploaded, but showing it failed", record.name)
        if not keep:
            self.spool.discard(record.spool)
        return asset

    def _failed(self, record: PendingUpload, error: Exception) -> None:
        record.attempts += 1
        record.last_error = str(error) or type(error).__name__
        if isinstance(error, PERMANENT):
            record.state = FAILED
            log.error("%s: upload refused for good, kept under .assetfs/pending/: %s", record.name, error)
        else:
            delay = min(MAX_BACKOFF, 2.0 ** min(record.attempts, 10))
            record.next_try = time.time() + delay
            log.warning("%s: upload failed (%s); bytes kept, next try in %.0fs", record.name, record.last_error, delay)
        self.stats.add("upload_failures")
        self.journal.put(record)
        self._wake.set()

    def pending(self) -> list[PendingUpload]:
        return [r for r in self.journal.all() if r.state != DRAFT]

    def discard(self, record_id: str, keep_spool: bool = False) -> None:
        """The user removed a pending file (from .assetfs/pending/, or the file itself), or
        its record is replaced by another for the same bytes (`keep_spool`)."""
        record = self.journal.get(record_id)
        if record is not None:
            self.journal.remove(record_id)
            if not keep_spool:
                self.spool.discard(record.spool)

    async def run(self) -> None:
        """Resume what an earlier mount left, then retry failed uploads as they fall due."""
        for record in self.journal.all():
            if record.state == DRAFT:  # the mount died while the file was open
                record.state = ORPHANED
                self.journal.put(record)
                log.warning("%s: was still being written when the mount stopped; kept under .assetfs/pending/",
                            record.name)
            elif record.state == PENDING:
                if await trio.to_thread.run_sync(_md5_of, record.spool) != record.md5:
                    record.state = ORPHANED
                    record.last_error = "its bytes on disk no longer match what was written (a crash mid-write?)"
                    log.error("%s: %s; kept under .assetfs/pending/, not uploaded", record.name, record.last_error)
                else:
                    record.next_try = 0.0
                self.journal.put(record)
        while True:
            now = time.time()
            due = [r for r in self.journal.all() if r.state == PENDING and r.next_try <= now and r.id not in self._busy]
            for record in due:
                current = self.journal.get(record.id)  # renamed, written or removed since the list was read?
                if current is None or current.state != PENDING or current.next_try > time.time():
                    continue
                record = current
                try:
                    await self.attempt(record)
                except AuthFailed:
                    pass
                except AssetfsError:
                    pass
                except Exception:
                    log.exception("%s: upload failed unexpectedly", record.name)
            waits = [r.next_try - time.time() for r in self.journal.all() if r.state == PENDING and r.id not in self._busy]
            self._wake = trio.Event()
            with trio.move_on_after(max(0.05, min(waits)) if waits else 3600):
                await self._wake.wait()


def _sync_file(path: str) -> None:
    try:
        spool = SpoolFile(Path(path))
    except OSError:
        return
    try:
        spool.sync()
    finally:
        spool.close()


def _md5_of(path: str) -> str | None:
    try:
        spool = SpoolFile(Path(path))
    except OSError:
        return None
    try:
        return spool.md5()
    finally:
        spool.close()
