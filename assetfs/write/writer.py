"""What writing means, node by node: create, open for writing, write, close, remove, make
folders, rename, set times and modes. The FUSE layer calls these; the uploader sends the
bytes; the view is told what the provider now holds.

Rules (the README's Writing table): a file created in a container becomes a new asset, and
a file written over an asset's file (or renamed onto it) becomes its new content, a short
while after its last close (the write-back delay) — so a temporary file renamed within that
while is uploaded once, under its final name. Without a write-back delay, a file written in
order from its first byte is uploaded while it is written, where the provider allows it
(`_follow`); anything else is uploaded from the spool at its close. Temporary and backup
names (dot-files, `*~`, `*.swp`, `*.blend1` …) are never uploaded, and a save that renames an
asset's file away and puts new bytes in its place is one new version of it (saves.py). Removing maps to the provider's delete, renaming to its rename/move,
where it has them; anything else is refused with the errno that says why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import weakref

import trio

from ..attributes import refusal
from ..errors import (
    AlreadyExists,
    CrossDevice,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotAnAttributeNamespace,
    NotFound,
    NotPermitted,
)
from ..kinds import HOLDERS
from ..options import MountOptions
from ..providers.base import ASSET, CONTAINER, CONTENT, TRASH, Entry, Provider
from ..stats import Stats
from ..view.node import ASSETS, Node
from ..view.queries import RESULTS
from ..view.view import View
from .journal import CREATE, DRAFT, PENDING, REPLACE, Journal, PendingUpload
from .overlay import LocalFile, is_temporary
from .pending import PendingDirectory
from .saves import BACKUP_WINDOW, RenamedAway, RenamedAways
from .spool import Spool
from .uploader import Uploader

log = logging.getLogger("assetfs.write")

NAME_MAX = 255  # bytes, as statfs tells the kernel (f_namemax)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def _check_name(name: str) -> None:
    """Refuse a name no file system could hold before anything is made of it: the kernel
    leaves NAME_MAX to the file system, and a provider would take it as an asset name."""
    if len(os.fsencode(name)) > NAME_MAX:
        raise NameTooLong(f"{name[:40]}…: longer than {NAME_MAX} bytes")


class Writer:
    def __init__(
        self,
        view: View,
        journal: Journal,
        spool: Spool,
        providers: dict[str, Provider],
        stats: Stats,
        options: MountOptions,
    ):
        self.view = view
        # Uploads tell this writer what the provider now holds; those waiting show under .assetfs/pending/.
        self.uploader = Uploader(journal, spool, providers, stats, self.uploaded)
        self.pending_directory = PendingDirectory(view, self.uploader.pending)
        self.spool = spool
        self.options = options
        self.held = view.held  # told of every name this writer holds, frees or moves
        self._by_record: dict[str, Node] = {}  # the node whose local file a journal record is
        self._deleted: set[str] = set()  # keys of assets deleted through this mount
        self._gone: set[tuple[int, str]] = set()  # names whose asset went with its other half (rm -r)
        self._settled: weakref.WeakSet[Node] = weakref.WeakSet()  # files uploaded through this mount
        self.aways = RenamedAways(self._end_window)  # assets' files renamed away, in their window

    # -- checks -----------------------------------------------------------------------------

    def _writable(self, node: Node, what: str) -> None:
        refused = refusal(node, self.options)
        if refused is not None:
            raise type(refused)(f"{node.path}: {what}: {refused}")

    def _supported(self, node: Node, operation: str, what: str) -> None:
        self._writable(node, what)
        if not node.owner.supports(operation):
            node.owner.refuse(f"{node.path}: {what}")

    @property
    def _write_back(self) -> float:
        """Seconds from a file's last close to its upload (the mount fills the option in)."""
        return self.options.write_back or 0.0

    # -- files ------------------------------------------------------------------------------

    def create(self, parent: Node, name: str, mode: int) -> Node:
        _check_name(name)
        self._writable(parent, f"creating {name}")
        if parent.kind != CONTAINER:
            raise NotPermitted(
                f"{parent.path}: new files go in an organization, brand, collection or folder directory, not here"
            )
        saved = self._save_of(parent, name)
        if not is_temporary(name) and saved is None:
            self._supported(parent, "create", f"creating {name}")
        local = LocalFile(self.spool.new(), mode=mode & 0o777, dirty=True)
        node = self.view.new_node(name, parent, parent.provider, Entry(name, f"local:{id(local)}", False, kind=CONTENT))
        self.held.hold(node, local)
        self._commit_to(node, parent, saved)
        local.writers = 1
        return node

    def _commit_to(self, node: Node, container: Node, replaces: Entry | None) -> None:
        """The journal record of what this local file is meant to become: a new asset in
        `container`, or the new content of `replaces`; none for a temporary name."""
        local = node.held
        self._unfollow(local, "renamed")
        if local.record is not None:
            self._by_record.pop(local.record.id, None)
            self.uploader.discard(local.record.id, keep_spool=True)
            local.record = None
        local.replaces = replaces
        if is_temporary(node.name):
            return
        action, target = (REPLACE, replaces) if replaces is not None else (CREATE, container.entry)
        local.record = PendingUpload(
            container.owner.account, action, target, container.cache_key(), node.name, str(local.spool.path)
        )
        self.uploader.draft(local.record)
        self._by_record[local.record.id] = node

    def open_for_write(self, node: Node, truncate: bool) -> None:
        """Open a file for writing: a local file as it is; an asset's file where the API can
        replace its content — emptied at once with O_TRUNC, else copied here at its first
        write (`materialize`), so an open that writes nothing changes nothing. A read-only
        place answers EROFS before anything else is said about it."""
        if node.local is not None:
            if node.local.read_only:
                raise NotPermitted(f"{node.path}: a pending upload is read-only; copy it elsewhere to change it")
            node.local.writers += 1
            mtime = node.local.mtime
            self._writing(node)
            node.local.mtime = mtime  # opened, not written: its time stays (emacs compares it after a save)
            return
        if node in self.aways.backups:
            if self.aways.of_backup(node) is not None and not is_temporary(node.name):
                raise NotPermitted(f"{node.path}: renamed a moment ago; writable once the rename is sent (write_back)")
            raise NotPermitted(f"{node.path}: the previous bytes of a saved file, kept on this machine: read-only")
        self._writable(node, "writing")
        if node.asset is None or node.is_dir or node.above.kind not in HOLDERS:
            raise NotPermitted(f"{node.path}: only an asset's file can be written, not its metadata or versions")
        self._supported(node, "replace", "replacing the file")
        if truncate:
            self._hold_locally(node, LocalFile(self.spool.new(), mtime=time.time(), dirty=True, writers=1))

    def _hold_locally(self, node: Node, local: LocalFile) -> None:
        """An asset's file whose new content is being written here."""
        self.held.hold(node, local)
        self._commit_to(node, node.above, node.asset)

    async def materialize(self, node: Node, read, size: int) -> LocalFile:
        """An asset's file opened without O_TRUNC gets its first write (or a truncate): its
        current bytes (the first `size` of them) are copied into the spool, and the file is
        new content for the asset from then on."""
        if node.local is None:
            spool = self.spool.new()
            offset = 0
            while offset < size and (chunk := await read(offset, min(1 << 20, size - offset))):
                await trio.to_thread.run_sync(spool.write, offset, chunk)
                offset += len(chunk)
            if node.local is None:
                self._hold_locally(node, LocalFile(spool, mtime=time.time(), dirty=True))
            else:  # another descriptor got there first
                spool.close()
                self.spool.discard(spool.path)
        node.held.writers += 1
        self._writing(node)
        return node.held

    def _writing(self, node: Node) -> None:
        """New bytes: the file is not to be uploaded until its last close."""
        local = node.held
        local.dirty = True
        local.mtime = time.time()
        if local.record is None and local.replaces is not None and not is_temporary(node.name):
            # Written again after its upload (a file kept open across fsync or close-to-open).
            self._supported(node.above, "replace", "writing again after the upload")
            self._commit_to(node, node.above, local.replaces)
        if local.record is not None:
            self.uploader.hold(local.record)

    def write(self, node: Node, local: LocalFile, offset: int, data: bytes) -> int:
        if node.local is not local or local.read_only:
            raise NotPermitted(f"{node.path}: not open for writing")
        written = local.write(offset, data)
        if not local.dirty or (local.record is not None and local.record.state != DRAFT):
            self._writing(node)
        else:
            local.mtime = time.time()
        self._follow(local, offset, data, written)
        return written

    def _follow(self, local: LocalFile, offset: int, data: bytes, written: int) -> None:
        """Without a write-back delay nothing can rename or remove a file between its close
        and its upload, so a file written from its first byte (new, or emptied by O_TRUNC)
        starts its upload at once, and the upload follows each write in order. A write
        anywhere else gives the stream up; the close uploads from the spool."""
        live = local.live
        if live is not None:
            if not live.grow(offset, data, written):
                self._unfollow(local, f"a write at {offset} after {live.written} bytes in order")
            return
        if (
            offset == 0
            and self._write_back <= 0
            and local.record is not None
            and local.record.state == DRAFT
            and local.size == written
        ):
            local.live = self.uploader.start_stream(local.record, local.spool)
            if local.live is not None:
                local.live.grow(0, data, written)

    @staticmethod
    def _unfollow(local: LocalFile, why: str) -> None:
        if local.live is not None:
            local.live.cancel(why)
            local.live = None

    async def truncate(self, node: Node, size: int) -> None:
        """Truncate a local file. A provider's file is never truncated in place (truncate(2)
        has no close() that would upload it: it would sit half-replaced), and a pending
        upload's bytes are not to be changed. A truncate by name of a file nobody has open
        is a whole change, as a close is: its upload falls due."""
        if node.local is None:
            self._writable(node, "truncating")
            raise NotPermitted(
                f"{node.path}: a file on the provider can only be replaced whole, by opening it "
                "with O_TRUNC (cp, >); truncate() is not supported"
            )
        if node.local.read_only:
            raise NotPermitted(f"{node.path}: a pending upload is read-only; copy it elsewhere to change it")
        if node.local.live is not None and size != node.local.live.written:
            self._unfollow(node.local, f"truncated to {size} bytes")
        node.local.truncate(size)
        self._writing(node)
        if node.local.writers == 0:
            await self._fall_due(node.local)

    async def flush(self, node: Node) -> None:
        """A close() of one descriptor. With a write-back delay nothing happens yet (the file
        may be written through another descriptor, renamed or removed); without one, new
        bytes are uploaded now and an upload error is what close() returns. Nothing new:
        nothing uploaded."""
        local = node.local
        if self._write_back <= 0 and local is not None and local.dirty:
            await self._upload_now(local)

    async def fsync(self, node: Node) -> None:
        """fsync(): the provider has the bytes when it returns."""
        local = node.local
        if local is None or local.read_only or local.record is None:
            return
        if local.dirty or (local.record.state == PENDING and not self.uploader.busy(local.record)):
            await self._upload_now(local)

    async def _upload_now(self, local: LocalFile) -> None:
        if local.record is None:
            return
        local.dirty = False
        self._stamp(local)
        local.uploading = True
        live, local.live = local.live, None
        try:
            await self.uploader.commit(local.record, local.spool, local.md5_if_known(), live)
        finally:
            local.uploading = False

    async def release(self, node: Node, local: LocalFile, writing: bool) -> None:
        """The last descriptor of an open file is closed: a file with new bytes falls due
        after the write-back delay. A spool no node holds any more is closed."""
        local.handles -= 1
        if writing:
            local.writers -= 1
        if local.writers == 0:
            self._unfollow(local, "closed without a flush")
        if node.local is not local:
            if local.handles <= 0 and not local.read_only:
                local.close()  # uploaded or removed meanwhile: its spool is done
            return
        if local.writers == 0 and local.dirty and local.record is not None:
            await self._fall_due(local)
        elif (
            local.writers == 0
            and local.record is None
            and local.replaces is not None
            and not local.dirty
            and not is_temporary(node.name)
        ):
            self._settle(node)  # uploaded while open, nothing new since: the asset's file again
            await self._show(node.above, local.replaces, node)  # (shown in place of what it replaced at its upload)
            self.view.give(node, local.mtime, local.mode)

    async def _fall_due(self, local: LocalFile) -> None:
        """New bytes, no writer left: the upload falls due after the write-back delay."""
        if local.dirty and local.record is not None:
            local.dirty = False
            self._stamp(local)
            await self.uploader.schedule(local.record, local.spool, local.md5_if_known(), self._write_back)

    @staticmethod
    def _stamp(local: LocalFile) -> None:
        if local.record is not None:
            local.record.mtime = local.mtime
            local.record.xattrs = dict(local.xattrs)

    async def uploaded(self, record: PendingUpload, asset: Entry) -> bool:
        """The provider confirmed an upload: the file is now the asset's file (keeping its
        inode). True when its spool is still needed (it was written again meanwhile)."""
        node = self._by_record.pop(record.id, None)
        container = self.view.directory(record.directory_key)
        if node is None or node.local is None or node.local.record is None or node.local.record.id != record.id:
            # Resumed from an earlier mount, or removed meanwhile: show what the provider has.
            if container is not None:
                await self._show(container, asset, was=record.target if record.action == REPLACE else None)
            else:
                self.view.metacache.forget_listing(record.directory_key)
            return False
        local = node.local
        replaced = local.replaces if record.action == REPLACE else None
        local.record, local.uploading = None, False
        local.replaces = asset
        if local.dirty or local.writers:
            # Still open, or written while the upload ran: later bytes are new content for it,
            # from the same spool file.
            if local.dirty:
                self._commit_to(node, node.above, asset)
                if not local.writers and local.record is not None:
                    await self.uploader.schedule(local.record, local.spool, None, self._write_back)
            await self._show(node.above, asset, was=replaced)  # its details at once; the file stays local till closed
            return True
        self._settle(node)
        await self._show(node.above, asset, node, was=replaced)
        self.view.give(node, local.mtime, local.mode)
        return False

    def _settle(self, node: Node) -> None:
        """A local file whose bytes the provider now has: the view shows the asset's file."""
        local = node.held
        self.held.let_go(node)
        self.spool.discard(local.spool.path)
        if local.handles <= 0:
            local.close()
        self._settled.add(node)

    async def _show(self, container: Node, asset: Entry, node: Node | None = None, was: Entry | None = None) -> None:
        try:
            shown = await self.view.show_asset(container, asset, node, was)
        except Exception as e:  # the upload is done; only showing it failed
            log.warning(
                "%s: %s is on the provider; listing it failed (%s), it shows at the next listing",
                container.path,
                asset.name,
                e,
            )
            self.view.forget_listing(container)
            return
        if shown is not None:
            self._settled.add(shown)

    def set_attributes(self, node: Node, mtime: float | None, mode: int | None, owner: bool) -> None:
        """Times, mode and owner. Kept on a local file; accepted without effect on a folder
        and on a file written through this mount (tar x, cp -a, rsync -a and unzip set them
        after writing, and fail if refused); refused on what the provider holds otherwise."""
        if node.local is not None and not node.local.read_only:
            if mtime is not None:
                node.local.mtime = mtime
            if mode is not None:
                node.local.mode = mode & 0o777
            return
        self._writable(node, "changing times, mode or owner")
        if node in self._settled and (mtime is not None or mode is not None):
            given = (
                self.view.given.get(node.entry.content.version, (node.entry.mtime, 0o644))
                if node.entry.content is not None
                else (node.entry.mtime, 0o644)
            )
            self.view.give(
                node, mtime if mtime is not None else given[0], mode & 0o777 if mode is not None else given[1]
            )
            return
        if node.is_dir or node in self._settled:
            return
        raise NotPermitted(f"{node.path}: times, mode and owner of what is on the provider cannot be changed")

    def set_xattr(self, node: Node, name: str, value: bytes) -> None:
        """Only `user.assetfs.*` of a file being written can be set. The provider's metadata
        cannot be changed (EPERM; EROFS where nothing can); on a file being written, other
        names do not exist here (ENOTSUP, which `cp -a` and `rsync -X` pass over quietly)."""
        if node.local is None or node.local.read_only:
            self._writable(node, f"setting {name}")
            if not name.startswith("user."):  # no such namespace here (cp -a sets ACLs on folders too)
                raise NotAnAttributeNamespace(f"{node.path}: {name}: only user.* attributes exist here")
            raise NotPermitted(f"{node.path}: {name}: only user.assetfs.* of a file being written can be set")
        if not name.startswith("user.assetfs."):
            raise NotAnAttributeNamespace(f"{node.path}: {name}: only user.assetfs.* attributes are kept")
        node.local.xattrs[name] = value.decode(errors="replace")  # read afresh: a local file's are never memoized

    # -- removing ---------------------------------------------------------------------------

    def _drop_local(self, node: Node) -> None:
        """A local file given up: its record and bytes go, nothing is uploaded."""
        local = node.held
        self._unfollow(local, "removed")
        if local.record is not None:
            self._by_record.pop(local.record.id, None)
            self.uploader.discard(local.record.id)
            local.record = None
        else:
            self.spool.discard(local.spool.path)
        self.held.let_go(node)
        if local.handles <= 0:
            local.close()

    async def unlink(self, parent: Node, name: str) -> None:
        if (parent.ino, name) in self._gone:  # `rm -r`: its asset went with its other half already
            self._gone.discard((parent.ino, name))
            return
        node = await self.view.lookup(parent, name)
        if node.is_dir:
            raise IsADirectory(f"{node.path}: is a directory")
        if node in self.aways.backups:
            await self._remove_backup(node)
            return
        if node.local is not None and node.local.read_only and node.local.record is not None:  # under .assetfs/pending/
            self.uploader.discard(node.local.record.id)
            holder = self._by_record.pop(node.local.record.id, None)
            if holder is not None and holder.local is not None:
                holder.local.record = None
                self._drop_local(holder)
            return
        if node.local is not None:
            was_new = node.local.replaces is None or node.asset is None
            self._drop_local(node)
            if was_new:
                return
        self._writable(parent, f"removing {name}")
        if node.asset is not None and parent.kind in HOLDERS:
            self._supported(parent, "delete", f"removing {name}")
            details = self._details_dir(parent)
            await self._delete(parent, node.asset)
            if details is not None:
                self._gone.add((details.ino, name))
            return
        asset = _enclosing_asset(parent)
        if asset is None:
            raise NotPermitted(f"{node.path}: cannot be removed")
        if asset.entry.key in self._deleted:
            return
        self._supported(parent, "delete", f"removing {name}")
        self.held.hide(parent, name)  # `rm -r .assets/x`: the asset goes with its directory

    def _details_dir(self, container: Node) -> Node | None:
        hidden = (container.children or {}).get(".assets")
        return hidden if hidden is not None and hidden.kind == ASSETS else None

    async def _delete(self, container: Node, asset: Entry) -> None:
        """Delete an asset once, whichever of its file and its directory `rm -r` removes first."""
        if asset.key in self._deleted:
            return
        await container.owner.delete_asset(asset)
        self._deleted.add(asset.key)
        await self.view.hide_asset(container, asset)

    async def rmdir(self, parent: Node, name: str) -> None:
        if (parent.ino, name) in self._gone:
            self._gone.discard((parent.ino, name))
            return
        node = await self.view.lookup(parent, name)
        if not node.is_dir:
            raise NotADirectory(f"{node.path}: not a directory")
        self._writable(parent, f"removing {name}")
        if node.kind == ASSET and parent.kind == ASSETS:
            container = parent.above
            self._supported(container, "delete", f"removing {name}")
            file = next(
                (
                    n
                    for n, c in (container.children or {}).items()
                    if c.asset is not None and c.asset.key == node.entry.key and not c.is_dir
                ),
                None,
            )
            await self._delete(container, node.asset or node.entry)
            if file is not None:
                self._gone.add((container.ino, file))
        elif node.kind == ASSETS:
            if await self.view.children(node):
                raise DirectoryNotEmpty(f"{node.path}: holds the details of assets still there")
        elif node.kind == CONTAINER and parent.kind == CONTAINER:
            self._supported(parent, "rmdir", f"removing folder {name}")
            if any(c.kind not in (ASSETS, RESULTS) for c in (await self.view.children(node)).values()):
                raise DirectoryNotEmpty(f"{node.path}: not empty")
            await parent.owner.delete_container(node.entry)
            await self.view.hide_entry(parent, node.entry.key)
        elif (enclosing := _enclosing_asset(parent)) is not None:
            # versions/, production/ … on the way out with `rm -r`
            if enclosing.entry.key not in self._deleted:
                self._supported(parent, "delete", f"removing {name}")
                self.held.hide(parent, name)
        else:
            raise NotPermitted(f"{node.path}: cannot be removed")

    async def mkdir(self, parent: Node, name: str) -> Node:
        _check_name(name)
        self._writable(parent, f"creating folder {name}")
        if parent.kind != CONTAINER:
            raise NotPermitted(f"{parent.path}: folders can only be made inside a workspace or folder")
        self._supported(parent, "mkdir", f"creating folder {name}")
        try:
            await self.view.lookup(parent, name)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"{parent.path}/{name}: exists")
        entry = await parent.owner.make_container(parent.entry, name)
        self.held.unhide(parent, name)
        return await self.view.show_entry(parent, entry)

    # -- renaming ---------------------------------------------------------------------------

    async def rename(self, old_parent: Node, old_name: str, new_parent: Node, new_name: str, flags: int = 0) -> None:
        if flags & RENAME_EXCHANGE:
            raise InvalidArgument(
                f"{old_parent.path}/{old_name}: exchanging two files (RENAME_EXCHANGE) is not supported"
            )
        _check_name(new_name)
        node = await self.view.lookup(old_parent, old_name)
        for parent in (old_parent, new_parent):
            if parent.provider is None:  # the mount's root, .assetfs/: nothing moves in or out (not EXDEV)
                self._writable(parent, f"moving {old_name}")
        if old_parent.provider is not new_parent.provider:
            raise CrossDevice(f"{node.path}: moving to another account is a copy and a delete")
        try:
            target = await self.view.lookup(new_parent, new_name)
        except NotFound:
            target = None
        if target is node:
            return
        if target is not None and flags & RENAME_NOREPLACE:
            raise AlreadyExists(f"{target.path}: exists")
        self._writable(old_parent, f"renaming {old_name}")
        if node.is_dir:
            await self._rename_dir(node, new_parent, target)
        elif target is not None and target.is_dir:
            raise IsADirectory(f"{target.path}: is a directory")
        elif node in self.aways.backups:
            await self._rename_backup(node, new_parent, new_name, target)
        elif self._renames_away(node, old_parent, new_parent, new_name, target):
            await self._rename_away(node, new_name, target)
        elif node.local is not None and not node.local.read_only and node.asset is None:
            await self._rename_local(node, new_parent, new_name, target)
        elif node.asset is not None and node.local is None and old_parent.kind in HOLDERS:
            await self._move_asset(node, old_parent, new_parent, new_name, target)
        elif node.local is not None and not node.local.read_only:
            raise NotPermitted(f"{node.path}: its new content is not uploaded yet; rename it after its upload")
        else:
            raise NotPermitted(f"{node.path}: cannot be renamed or moved here")

    async def _rename_dir(self, node: Node, new_parent: Node, target: Node | None) -> None:
        if target is not None:
            if not target.is_dir:
                raise NotADirectory(f"{target.path}: not a directory")
            if any(c.kind not in (ASSETS, RESULTS) for c in (await self.view.children(target)).values()):
                raise DirectoryNotEmpty(f"{target.path}: not empty")
        if node.kind == CONTAINER and node.owner.supports("mkdir"):
            raise NotPermitted(f"{node.path}: the {node.owner.name} API has no way to rename or move a folder")
        raise NotPermitted(f"{node.path}: cannot be renamed or moved")

    async def _rename_local(self, node: Node, new_parent: Node, new_name: str, target: Node | None) -> None:
        """A local file takes its new name. Onto an asset's file it becomes that asset's new
        content; onto another local file it takes its place; onto a free name it is a new
        asset. Its upload (if any) falls due after the write-back delay, under this name."""
        local = node.held
        # A save: the asset whose file was renamed away from this name a moment ago gets these bytes.
        replaces = self._save_of(new_parent, new_name) if target is None else None
        if replaces is None and not is_temporary(new_name):
            if new_parent.kind != CONTAINER:
                raise NotPermitted(
                    f"{new_parent.path}/{new_name}: new files go in an organization, brand, "
                    "collection or folder directory"
                )
            if target is not None and target.asset is not None and new_parent.kind in HOLDERS:
                self._supported(new_parent, "replace", f"replacing {new_name}")
                replaces = target.asset
            elif target is not None and target.local is not None and target.local.replaces is not None:
                self._supported(new_parent, "replace", f"replacing {new_name}")
                replaces = target.local.replaces
            else:
                self._supported(new_parent, "create", f"creating {new_name}")
        elif replaces is None and new_parent.kind not in HOLDERS:
            raise NotPermitted(f"{new_parent.path}: nothing can be written here")
        if target is not None and target.local is not None:
            self._drop_local(target)
        elif target is not None and target in self.aways.backups:
            await self._remove_backup(target)
        if (
            local.replaces is not None
            and new_parent is node.parent
            and is_temporary(new_name)
            and not is_temporary(node.name)
        ):
            # New content not uploaded yet, renamed away by the next save: its bytes stay
            # here under the backup name, and the asset waits for the next ones.
            self.held.hide(new_parent, node.name)
            self.aways.hold(RenamedAway(new_parent, node.name, local.replaces, None, node), self._window(new_name))
        self.held.move(node, new_parent, new_name)
        self._commit_to(node, new_parent, replaces)
        if local.record is None or local.writers:
            return
        local.dirty = False
        self._stamp(local)
        if self._write_back <= 0:
            await self.uploader.commit(local.record, local.spool, local.md5_if_known())
        else:
            await self.uploader.schedule(local.record, local.spool, local.md5_if_known(), self._write_back)

    # -- saves that rename the previous file away (saves.py) ------------------------------------

    def _save_of(self, container: Node, name: str) -> Entry | None:
        """A new file under a name an asset's file was renamed away from within the window
        is that asset's new content: the asset, then, and its window is over."""
        away = self.aways.held(container, name)
        if away is None:
            return None
        self._supported(container, "replace", f"saving {name}")
        self.aways.cancel(away)
        log.info(
            "%s/%s: saved in place of the file renamed to %s: new content for the same asset",
            container.path,
            name,
            away.backup.name,
        )
        return away.asset

    def _renames_away(self, node: Node, old_parent: Node, new_parent: Node, new_name: str, target: Node | None) -> bool:
        """An asset's file renamed within its folder waits out the write-back window (a
        backup name: always), in case a save puts new bytes in its place."""
        return (
            node.asset is not None
            and node.local is None
            and old_parent is new_parent
            and old_parent.kind == CONTAINER
            and (is_temporary(new_name) or self._write_back > 0)
            and (
                target is None
                or target in self.aways.backups
                or (target.local is not None and target.asset is None and is_temporary(target.name))
            )
        )

    async def _rename_away(self, node: Node, new_name: str, target: Node | None) -> None:
        """The file shows under its new name with its bytes (the same inode, as the kernel
        expects), its old name is free, and nothing reaches the provider yet."""
        container = node.above
        if is_temporary(new_name):
            self._supported(container, "replace", f"renaming {node.name} to a backup name")
        else:
            self._supported(container, "move", f"renaming {node.name}")
        if target is not None and target.local is not None:
            if target.local.read_only:
                raise NotPermitted(f"{target.path}: a pending upload is read-only")
            self._drop_local(target)
        elif target is not None:
            await self._remove_backup(target)
        old_name, asset, file = node.name, node.asset, node.entry
        if asset is None:  # `_renames_away` takes only an asset's file
            raise NotPermitted(f"{node.path}: not an asset's file")
        self.held.set_aside(node, new_name, dataclasses.replace(file, name=new_name, key=f"backup:{file.key}"))
        self.aways.backups.add(node)
        self.aways.hold(RenamedAway(container, old_name, asset, file, node), self._window(new_name))

    def _window(self, new_name: str) -> float:
        """How long a file renamed away waits for a save's new file in its place."""
        return max(self._write_back, BACKUP_WINDOW) if is_temporary(new_name) else self._write_back

    async def _end_window(self, away: RenamedAway) -> None:
        """Nothing took the old name: a rename to a normal name reaches the provider now; a
        backup name stays on this machine, and the asset shows under its own name again."""
        container, backup = away.container, away.backup
        self.held.unhide(container, away.old_name)
        if (
            self.held.held_in(container).get(backup.name) is not backup
            or backup.local is not None
            or is_temporary(backup.name)
        ):
            log.info(
                "%s/%s: renamed to %s, a backup name kept on this machine; the asset keeps its name",
                container.path,
                away.old_name,
                backup.name,
            )
            self.view.forget_listing(container)
            return
        self.aways.backups.discard(backup)
        try:
            # The file shows under its new name until the provider's listing has it there.
            moved = await container.owner.move_asset(away.asset, container.entry, backup.name)
        except Exception as e:
            log.warning(
                "%s/%s: renaming it to %s failed (%s); it keeps its name", container.path, away.old_name, backup.name, e
            )
            moved = None
        if moved is not None:
            await self.view.hide_asset(container, away.asset)
            await self._show(container, moved, backup)
        self.held.let_go(backup)
        if moved is None:
            self.view.forget_listing(container)

    async def _remove_backup(self, node: Node) -> None:
        """A backup removed (or replaced by a newer one). Within its window, with nothing in
        its old name's place, that is `mv a b; rm b`: the asset is deleted."""
        container = node.above
        away = self.aways.of_backup(node)
        if away is not None:
            self._supported(container, "delete", f"removing {node.name}")
        self.held.let_go(node)
        self.aways.backups.discard(node)
        if away is not None:
            self.aways.cancel(away)
            await self._delete(container, away.asset)
            self.held.unhide(container, away.old_name)

    async def _rename_backup(self, node: Node, new_parent: Node, new_name: str, target: Node | None) -> None:
        """A backup keeps to its folder and to backup names (Blender's `x.blend1` →
        `x.blend2`); renamed back to its old name within the window, nothing happened."""
        container = node.above
        away = self.aways.of_backup(node)
        if new_parent is not container:
            raise NotPermitted(f"{node.path}: the previous bytes of a saved file stay in its folder; copy them instead")
        if away is not None and new_name == away.old_name and target is None:
            self.aways.cancel(away)
            self.aways.backups.discard(node)
            self.held.put_back(node, away.old_name, away.asset, away.file)
            return
        if away is None and not is_temporary(new_name):
            raise NotPermitted(
                f"{node.path}: the previous bytes of a saved file, kept on this machine; copy them (cp) to "
                "make them a file on the provider"
            )
        if target is not None:
            if target.asset is not None or (target.local is not None and target.local.read_only):
                raise AlreadyExists(f"{target.path}: exists")
            if target.local is not None:
                self._drop_local(target)
            else:
                await self._remove_backup(target)
        self.held.move(node, container, new_name, dataclasses.replace(node.entry, name=new_name))

    async def _move_asset(
        self, node: Node, old_parent: Node, new_parent: Node, new_name: str, target: Node | None
    ) -> None:
        """Renaming an asset's file renames the asset; into another folder, moves it (out
        of the trash view: restores it) — where the provider's API can."""
        self._writable(new_parent, f"moving {node.name}")
        if new_parent.kind not in HOLDERS:
            raise NotPermitted(f"{new_parent.path}: assets live in organizations, brands, collections and folders")
        self._supported(new_parent, "move", f"renaming or moving {node.name}")
        if target is not None:
            raise AlreadyExists(f"{target.path}: exists; remove it first (an asset is not renamed over another)")
        asset = node.asset
        if asset is None:  # the caller moves assets' files only
            raise NotPermitted(f"{node.path}: cannot be renamed or moved here")
        name = None if new_name == node.name else new_name  # a move only keeps the name
        moved = await new_parent.owner.move_asset(asset, new_parent.entry, name)
        await self.view.hide_asset(old_parent, asset)
        await self._show(new_parent, moved, node)


def _enclosing_asset(node: Node | None) -> Node | None:
    """The asset directory (under `.assets/`) a node is in, itself included, if any."""
    while node is not None and node.kind not in (ASSET, ASSETS, CONTAINER, TRASH):
        node = node.parent
    return node if node is not None and node.kind == ASSET else None
