"""Uploads: due a short while after a file's last close (the write-back delay), at once on
fsync; retried in the background until the provider confirms them; resumed by the next
mount after a crash. Without a write-back delay, a new file's upload may start at its
first write and follow the file as it is written (stream.py); the close ends it."""

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
from .stream import LiveUpload

log = logging.getLogger("assetfs.upload")

MAX_BACKOFF = 300.0
PERMANENT = (NotPermitted, ReadOnly, InvalidArgument)


class Uploader:
    def __init__(
        self,
        journal: Journal,
        spool: Spool,
        providers: dict[str, Provider],
        stats: Stats,
        on_uploaded: Callable[[PendingUpload, Entry], Awaitable[bool]],
    ):
        self.journal = journal
        self.spool = spool
        self.providers = providers
        self.stats = stats
        self.on_uploaded = on_uploaded
        self._wake = trio.Event()
        self._busy: set[str] = set()
        self._streams: trio.Nursery | None = None  # where live uploads run (open while `run` does)
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
        record.md5 = md5 if md5 else await trio.to_thread.run_sync(spool.md5)
        record.mime = mimetypes.guess_type(record.name)[0] or "application/octet-stream"
        record.state = PENDING
        record.next_try = time.time() + delay
        record.attempts = 0
        self.journal.put(record)
        self._wake.set()

    async def commit(
        self, record: PendingUpload, spool: SpoolFile, md5: str | None = None, live: LiveUpload | None = None
    ) -> Entry:
        """Mark the file due and upload it now: by ending its live upload when it has one
        that carried exactly these bytes, else from the spool. On failure its bytes are
        synced to disk and the record stays in the journal for the background retries, and
        the error is raised. (A kill cannot lose page-cache bytes; a power cut during the
        first try can, and the checksum catches that at resume.)"""
        self._busy.add(record.id)  # the retry loop must not send it too while a stream ends
        try:
            await self.schedule(record, spool, md5, 0.0)
            if live is not None and live.finish(record.size, record.md5, dict(record.xattrs)):
                asset = await self._ended(record, live)
                if asset is not None:
                    return asset
        finally:
            self._busy.discard(record.id)
            if live is not None:
                live.cancel("the close uploads from the spool")
        if live is not None:
            log.info("%s: sent from the spool (its streamed upload stopped: %s)", record.name, live.reason)
        return await self.attempt(record)

    async def _ended(self, record: PendingUpload, live: LiveUpload) -> Entry | None:
        """The answer to a finished stream. None: it failed before its last byte went out,
        or the provider answered no (an HTTP error status), so it made nothing of it: the
        caller uploads from the spool. One whose answer was lost after its last byte may
        have made the asset: that counts as a failed upload (kept and retried, as any
        upload whose answer was lost)."""
        try:
            asset = await live.outcome()
        except Exception as e:
            if live.ended and not (isinstance(e, AssetfsError) and e.http_status is not None):
                await self._keep(record, e)
                raise
            live.reason = live.reason or f"{type(e).__name__}: {e}"
            return None
        except BaseException as e:  # the close's deadline, an unmount
            live.cancel("no answer in time")
            await self._keep(record, e)
            raise
        return await self._confirmed(record, asset)

    def start_stream(self, record: PendingUpload, spool: SpoolFile) -> LiveUpload | None:
        """Start the upload of a file being written from its first byte, where its provider
        takes a body of unknown length for this kind of upload; None where not."""
        provider = self.providers[record.account]
        if self._streams is None or record.action not in provider.streams or record.state != DRAFT:
            return None
        mime = mimetypes.guess_type(record.name)[0] or "application/octet-stream"
        upload = Upload(Path(record.spool), record.name, 0, "", mime, dict(record.xattrs))
        live = LiveUpload(spool, upload)
        upload.growing = live
        self._streams.start_soon(self._stream, provider, record.action, record.target, live)
        return live

    @staticmethod
    async def _stream(provider: Provider, action: str, target: Entry, live: LiveUpload) -> None:
        try:
            with live.scope:
                if action == CREATE:
                    live.asset = await provider.create_asset(target, live.upload)
                else:
                    live.asset = await provider.replace_content(target, live.upload)
        except Exception as e:
            live.error = e
            if not live.reason:
                log.info("%s: streamed upload stopped (%s); the close uploads from the spool", live.upload.name, e)
        finally:
            live.done.set()

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
            await self._keep(record, e)
            raise
        finally:
            self._busy.discard(record.id)
        return await self._confirmed(record, asset)

    async def _keep(self, record: PendingUpload, e: BaseException) -> None:
        """A failed try: the bytes synced, the record due again, the retry loop woken.
        Also when cut short (a close() past its deadline, an unmount), or the upload would
        wait for no one."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_sync_file, record.spool)
        self._failed(record, e if isinstance(e, Exception) else ProviderError("no answer in time"))

    async def _confirmed(self, record: PendingUpload, asset: Entry) -> Entry:
        """The provider has the bytes: the record goes, the view is told, the spool goes
        unless the file was written again meanwhile."""
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

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Resume what an earlier mount left, then retry failed uploads as they fall due;
        live uploads run alongside meanwhile. Started (`nursery.start`) once what was left
        is sorted out, so that no file written from then on is taken for a leftover."""
        async with trio.open_nursery() as self._streams:
            try:
                await self._retry_loop(task_status)
            finally:
                self._streams = None

    async def _retry_loop(self, task_status) -> None:
        for record in self.journal.all():
            if record.state == DRAFT:  # the mount died while the file was open
                record.state = ORPHANED
                self.journal.put(record)
                log.warning(
                    "%s: was still being written when the mount stopped; kept under .assetfs/pending/", record.name
                )
            elif record.state == PENDING:
                if await trio.to_thread.run_sync(_md5_of, record.spool) != record.md5:
                    record.state = ORPHANED
                    record.last_error = "its bytes on disk no longer match what was written (a crash mid-write?)"
                    log.error("%s: %s; kept under .assetfs/pending/, not uploaded", record.name, record.last_error)
                else:
                    record.next_try = 0.0
                self.journal.put(record)
        task_status.started()
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
            waits = [
                r.next_try - time.time() for r in self.journal.all() if r.state == PENDING and r.id not in self._busy
            ]
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
