"""What writing means, node by node: create, overwrite, truncate, flush, remove, make
folders, rename. The FUSE layer calls these; providers do the uploads.

Rules (the README's semantics table): a file created in a container becomes a new asset
when closed; an existing asset's file can be replaced whole (O_TRUNC); temporary names stay
local, and renaming one onto a normal name commits it; removing maps to the provider's
delete where it has one; everything else is refused with the errno that says why.
"""

from __future__ import annotations

import logging
import os
import time

from ..errors import (
    AlreadyExists,
    CrossDevice,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotFound,
    NotPermitted,
    NotSupported,
    ReadOnly,
)
from ..options import MountOptions
from ..providers.base import ASSET, CONTAINER, CONTENT, TRASH, Entry
from ..tree import Node, Tree
from .journal import CREATE, REPLACE, PendingUpload
from .overlay import LocalFile, is_temporary
from .spool import Spool
from .uploader import Uploader

log = logging.getLogger("assetfs.write")

NAME_MAX = 255  # bytes, as statfs tells the kernel (f_namemax)


def _check_name(name: str) -> None:
    """Refuse a name no file system could hold before anything is made of it: the kernel
    leaves NAME_MAX to the file system, and a provider would take it as an asset name."""
    if len(os.fsencode(name)) > NAME_MAX:
        raise NameTooLong(f"{name[:40]}…: longer than {NAME_MAX} bytes")


class Writer:
    def __init__(self, tree: Tree, uploader: Uploader, spool: Spool, options: MountOptions):
        self.tree = tree
        self.uploader = uploader
        self.spool = spool
        self.options = options
        self._gone: set[tuple[int, str]] = set()  # asset directories deleted, awaiting their rmdir

    # -- checks ---------------------------------------------------------------------------

    def _writable(self, node: Node, what: str) -> None:
        if self.options.ro:
            raise ReadOnly(f"{node.path}: {what}: mounted read-only (-o ro)")
        if node.provider is None:
            raise NotPermitted(f"{node.path}: {what}: nothing can be written here")
        if node.provider.read_only_reason:
            raise ReadOnly(f"{node.path}: {what}: {node.provider.read_only_reason}")

    def _supported(self, node: Node, operation: str, what: str) -> None:
        self._writable(node, what)
        if not node.provider.supports(operation):
            node.provider.refuse(f"{node.path}: {what}")

    @staticmethod
    def _asset_of(node: Node) -> Entry:
        """The asset whose content a file is: a written file's asset, or the asset directory above."""
        if node.written is not None:
            return node.written.asset
        if node.local is not None and node.local.replaces is not None:
            return node.local.replaces
        return node.parent.entry

    # -- files --------------------------------------------------------------------------------

    def create(self, parent: Node, name: str, mode: int) -> Node:
        _check_name(name)
        self._writable(parent, f"creating {name}")
        temporary = is_temporary(name)
        if not temporary:
            if parent.kind != CONTAINER:
                raise NotPermitted(f"{parent.path}: new files go in an organization, brand, collection or "
                                   f"folder directory, not here")
            self._supported(parent, "create", f"creating {name}")
        elif parent.kind not in (CONTAINER, ASSET):
            raise NotPermitted(f"{parent.path}: nothing can be written here")
        local = LocalFile(self.spool.new(), mode=mode & 0o777, dirty=not temporary)
        if not temporary:
            local.record = self._record(parent, name, local, CREATE, parent.entry)
        return self.tree.local_node(parent, name, local)

    def _record(self, parent: Node, name: str, local: LocalFile, action: str, target: Entry) -> PendingUpload:
        record = PendingUpload(parent.provider.account, action, target, parent.cache_key(), name, str(local.spool.path))
        self.uploader.draft(record)
        return record

    def open_for_write(self, node: Node, truncate: bool, append: bool = False) -> None:
        """Open a file for writing: a local file as it is; a provider's file only to be
        replaced whole (O_TRUNC, no O_APPEND), and only where the API can replace it. A
        read-only place answers EROFS before anything else is said about it."""
        if node.local is not None:
            if node.local.read_only:
                raise NotPermitted(f"{node.path}: a pending upload is read-only; copy it elsewhere to change it")
            return
        self._writable(node, "writing")
        if node.kind != CONTENT:
            raise NotPermitted(f"{node.path}: only an asset's file can be written, not its metadata")
        self._supported(node, "replace", "replacing the file")
        if append or not truncate:
            raise NotPermitted(f"{node.path}: an existing file can only be replaced whole (open it with O_TRUNC); "
                               "appending and writing in place are not supported")
        local = LocalFile(self.spool.new(), mtime=time.time(), dirty=True, replaces=self._asset_of(node))
        local.record = self._record(node.parent, node.name, local, REPLACE, local.replaces)
        node.local = local

    def write(self, node: Node, offset: int, data: bytes) -> int:
        local = node.local
        written = local.write(offset, data)
        local.dirty = not is_temporary(node.name)
        local.mtime = time.time()
        return written

    def truncate(self, node: Node, size: int) -> None:
        """Truncate a file open for writing. A provider's file is never truncated in place
        (truncate(2) has no close() that would upload it: it would sit half-replaced), and a
        pending upload's bytes are not to be changed."""
        if node.local is None:
            self._writable(node, "truncating")
            raise NotPermitted(f"{node.path}: a file on the provider can only be replaced whole, by opening it "
                               "with O_TRUNC (cp, >); truncate() is not supported")
        if node.local.read_only:
            raise NotPermitted(f"{node.path}: a pending upload is read-only; copy it elsewhere to change it")
        node.local.truncate(size)
        node.local.dirty = not is_temporary(node.name)

    async def flush(self, node: Node) -> None:
        """Upload a closed file now: `cp` returns once the provider has it, and an upload
        error is what close() returns. The bytes stay pending until an upload succeeds."""
        local = node.local
        if local is None or not local.dirty or local.record is None or is_temporary(node.name):
            return
        local.dirty = False
        record = local.record
        record.mtime = local.mtime
        record.xattrs = dict(local.xattrs)
        await self.uploader.commit(record, local.spool, local.md5_if_known())

    def set_times_and_mode(self, node: Node, mtime: float | None, mode: int | None) -> None:
        if node.local is not None:
            if mtime is not None:
                node.local.mtime = mtime
            if mode is not None:
                node.local.mode = mode & 0o777
            return
        if node.written is not None and self.tree.written_names is not None:
            if mtime is not None:
                node.written.mtime = mtime
                node.entry.mtime = mtime
            if mode is not None:
                node.written.mode = mode & 0o777
            self.tree.written_names.put(node.parent.cache_key(), node.name, node.written)
            return
        if node.is_dir and mode is None:
            if node.provider is not None:
                self._writable(node, "changing times or owner")  # a read-only provider says so (EROFS)
            return  # a directory's times and owner are the provider's; setting them (rsync, touch) does no harm
        self._writable(node, "changing times or mode")
        raise NotPermitted(f"{node.path}: times, mode and owner of what is on the provider cannot be changed")

    def set_xattr(self, node: Node, name: str, value: bytes) -> None:
        """Only `user.assetfs.*` of a file being written can be set. The provider's metadata
        cannot be changed (EPERM; EROFS where nothing can); on a file being written, other
        names do not exist here (ENOTSUP, which `cp -a` and `rsync -X` pass over quietly)."""
        if node.local is None or node.local.read_only:
            self._writable(node, f"setting {name}")
            raise NotPermitted(f"{node.path}: {name}: only user.assetfs.* of a file being written can be set")
        if not name.startswith("user.assetfs."):
            raise NotSupported(f"{node.path}: {name}: only user.assetfs.* attributes are kept")
        node.local.xattrs[name] = value.decode(errors="replace")

    # -- removing -----------------------------------------------------------------------------

    async def unlink(self, parent: Node, name: str) -> None:
        node = await self.tree.lookup(parent, name)
        if node.is_dir:
            raise IsADirectory(f"{node.path}: is a directory")
        overlay = self.tree.overlay(parent)
        if node.local is not None:
            if node.local.record is not None:
                self.uploader.discard(node.local.record.id)
            self.spool.discard(node.local.spool.path)
            if node.local.read_only:
                overlay.pop(name, None)
            elif node.local.replaces is not None and node.written is None and overlay.get(name) is not node:
                node.local = None  # an overwrite given up: the provider's file is still there
            else:
                overlay.pop(name, None)
            return
        self._writable(parent, f"removing {name}")
        if node.written is not None:
            self._supported(parent, "delete", f"removing {name}")
            await parent.provider.delete_asset(node.written.asset)
            overlay.pop(name, None)
            self.tree.written_names.remove(parent.cache_key(), name)
            self.tree.forget_listing(parent)
            return
        asset = _enclosing_asset(parent)
        if asset is None:
            raise NotPermitted(f"{node.path}: cannot be removed")
        self._supported(parent, "delete", f"removing {name}")
        if node.kind == CONTENT and asset is parent:
            await self._delete_asset(asset)
        overlay[name] = None  # `rm -r` of an asset: its other files go with it (hidden here only)

    async def _delete_asset(self, asset: Node) -> None:
        """Delete an asset once, however many of its files `rm -r` removes first."""
        if asset.entry.key in self.tree.deleted:
            return
        await asset.provider.delete_asset(asset.entry)
        self.tree.deleted.add(asset.entry.key)
        container = asset.parent
        self._gone.add((container.ino, asset.name))
        self.tree.overlay(container)[asset.name] = None
        self.tree.forget_listing(container)

    async def rmdir(self, parent: Node, name: str) -> None:
        if (parent.ino, name) in self._gone:  # `rm -r`: removing its file deleted the asset already
            self._gone.discard((parent.ino, name))
            return
        node = await self.tree.lookup(parent, name)
        if not node.is_dir:
            raise NotADirectory(f"{node.path}: not a directory")
        self._writable(parent, f"removing {name}")
        if node.kind == ASSET:
            self._supported(parent, "delete", f"removing {name}")
            await self._delete_asset(node)
        elif node.kind == CONTAINER and parent.kind == CONTAINER:
            self._supported(parent, "rmdir", f"removing folder {name}")
            await parent.provider.delete_container(node.entry)
            self.tree.overlay(parent)[name] = None
            self.tree.forget_listing(parent)
        elif _enclosing_asset(parent) is not None:  # versions/, production/ … on the way out with `rm -r`
            self._supported(parent, "delete", f"removing {name}")
            self.tree.overlay(parent)[name] = None
        else:
            raise NotPermitted(f"{node.path}: cannot be removed")

    async def mkdir(self, parent: Node, name: str) -> Node:
        _check_name(name)
        self._writable(parent, f"creating folder {name}")
        if parent.kind != CONTAINER:
            raise NotPermitted(f"{parent.path}: folders can only be made inside a workspace or folder")
        self._supported(parent, "mkdir", f"creating folder {name}")
        entry = await parent.provider.make_container(parent.entry, name)
        children = await self.tree.remote_children(parent)
        node = self.tree.adopt_one(parent, name, entry)
        children[name] = node
        self.tree.overlay(parent).pop(name, None)
        self.tree.forget_listing(parent)
        return node

    # -- renaming -----------------------------------------------------------------------------

    async def rename(self, old_parent: Node, old_name: str, new_parent: Node, new_name: str) -> None:
        _check_name(new_name)
        node = await self.tree.lookup(old_parent, old_name)
        for parent in (old_parent, new_parent):
            if parent.provider is None:  # the mount's root, .assetfs/: nothing moves in or out (not EXDEV)
                self._writable(parent, f"moving {old_name}")
        if old_parent.provider is not new_parent.provider:
            raise CrossDevice(f"{node.path}: moving to another account is a copy and a delete")
        try:
            target = await self.tree.lookup(new_parent, new_name)
        except NotFound:
            target = None
        if node.local is not None and not node.local.read_only:
            await self._rename_local(node, old_parent, new_parent, new_name, target)
        elif node.written is not None:
            if target is not None or new_parent is not old_parent:
                raise NotPermitted(f"{node.path}: a written file can only be renamed within its directory, "
                                   "onto a free name")
            overlay = self.tree.overlay(old_parent)
            overlay.pop(old_name, None)
            node.name = node.entry.name = new_name
            overlay[new_name] = node
            self.tree.written_names.remove(old_parent.cache_key(), old_name)
            self.tree.written_names.put(new_parent.cache_key(), new_name, node.written)
        elif node.kind == ASSET and new_parent.kind == CONTAINER and old_parent.kind in (CONTAINER, TRASH):
            self._writable(new_parent, f"moving {old_name}")
            if target is not None:
                raise AlreadyExists(f"{new_parent.path}/{new_name}: exists")
            self._supported(new_parent, "move", f"renaming or moving {old_name}")
            entry = await new_parent.provider.move_asset(node.entry, new_parent.entry, new_name)
            self.tree.overlay(old_parent)[old_name] = None
            children = await self.tree.remote_children(new_parent)
            children[new_name] = self.tree.adopt_one(new_parent, new_name, entry)
            self.tree.overlay(new_parent).pop(new_name, None)
            self.tree.forget_listing(old_parent)
            self.tree.forget_listing(new_parent)
        else:
            self._writable(old_parent, f"renaming {old_name}")
            raise NotPermitted(f"{node.path}: cannot be renamed or moved here")

    async def _rename_local(self, node: Node, old_parent: Node, new_parent: Node, new_name: str,
                            target: Node | None) -> None:
        """A local file takes its new name; onto a normal name, that commits it: a new asset,
        or new content for the asset whose file it replaces."""
        local = node.local
        if not is_temporary(new_name):
            if target is not None and target.is_dir:
                raise IsADirectory(f"{target.path}: is a directory")
            if target is not None and target.kind == CONTENT and target.local is None:
                self._supported(new_parent, "replace", f"replacing {new_name}")
                action, goal = REPLACE, self._asset_of(target)
            elif new_parent.kind == CONTAINER:
                self._supported(new_parent, "create", f"creating {new_name}")
                action, goal = CREATE, new_parent.entry
            else:
                raise NotPermitted(f"{new_parent.path}/{new_name}: new files go in an organization, brand, "
                                   "collection or folder directory")
        old_overlay = self.tree.overlay(old_parent)
        if old_overlay.get(node.name) is node:
            old_overlay.pop(node.name)
        if target is not None and target.local is not None and target.local.record is not None:
            self.uploader.discard(target.local.record.id)
        node.name = node.entry.name = new_name
        node.parent = new_parent
        self.tree.overlay(new_parent)[new_name] = node
        if is_temporary(new_name):
            return
        if local.record is not None:
            self.uploader.discard(local.record.id)
        local.replaces = goal if action == REPLACE else None
        local.record = self._record(new_parent, new_name, local, action, goal)
        local.dirty = True
        await self.flush(node)


def _enclosing_asset(node: Node | None) -> Node | None:
    """The asset directory a node is in (itself included), if any."""
    while node is not None and node.kind not in (ASSET, CONTAINER, TRASH):
        node = node.parent
    return node if node is not None and node.kind == ASSET else None
