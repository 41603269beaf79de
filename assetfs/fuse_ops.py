"""pyfuse3.Operations, kept thin: resolve the inode, ask the core, shape the reply.

Every operation runs under `_guard` (bounded by the mount's timeout) or `_local` (answered
from memory); both send exceptions through `_translate`, the one place where errors become
errno: our own errors carry theirs, a syscall that outlives the timeout answers EIO, and
anything unexpected is logged with its traceback and answered EIO (the mount carries on).
"""

from __future__ import annotations

import errno
import functools
import inspect
import itertools
import logging
import os
import time
from collections.abc import Callable

import pyfuse3
import trio

from .attributes import Attributes
from .errors import AssetfsError, Gone, NameTooLong, NotPermitted
from .handles import Handle, Opener
from .options import MountOptions
from .thumbnails.filler import Filler
from .view.sizes import LISTED_PATIENCE
from .view.view import View
from .write.writer import Writer

log = logging.getLogger("assetfs.fuse")


def _translate(self: Operations, op: str, exc: BaseException, arguments: dict | None = None) -> pyfuse3.FUSEError:
    """The one place where an exception becomes an errno (and a log line where it helps).
    The provider's "does not exist" (Gone) for what the operation's `arguments` name also
    heals the listings that still showed it (ENOENT, and the next look shows it gone)."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _translate(self, op, exc.exceptions[0], arguments)  # one failed task of a nursery
    if isinstance(exc, pyfuse3.FUSEError):
        return exc
    if isinstance(exc, trio.TooSlowError):
        self.stats.add("timeouts")
        log.warning("%s: no answer within %.0fs, answering EIO", op, self.options.timeout)
        return pyfuse3.FUSEError(errno.EIO)
    if isinstance(exc, Gone) and arguments:
        try:
            self.on_gone(self._touched(arguments), f"{op}: {exc}")
        except Exception:  # the answer is still ENOENT; the listing lives out metadata_ttl
            log.exception("%s: the listings that showed what the provider no longer has were not dropped", op)
    if isinstance(exc, AssetfsError):
        if not exc.quiet:
            log.warning("%s: %s", op, exc)
        return pyfuse3.FUSEError(exc.errno)
    self.stats.add("internal_errors")
    log.error("%s failed unexpectedly; answering EIO", op, exc_info=exc)
    return pyfuse3.FUSEError(errno.EIO)


# A readdir's answer holds at most this many files of unknown size: the kernel asks for up to
# 1 MiB of entries at once, and a first answer of thousands without sizes would cost `ls -l` a
# getattr for each, where the next answers carry the sizes asked ahead (view/sizes.py).
UNSIZED_PER_READDIR = 128
UPLOAD_RATE_FLOOR = 1 << 20  # bytes/s: a close() may take the timeout plus size at this rate


def _operation(deadline):
    """Wrap a FUSE operation: count it, bound it by `deadline(self, args)` seconds (None:
    answered from memory, no bound), and send any exception through `_translate`."""

    def decorate(op):
        counter = f"fuse_{op.__name__}"
        parameters = list(inspect.signature(op).parameters)[1:]  # after self

        @functools.wraps(op)
        async def wrapper(self: Operations, *args):
            self.stats.add(counter)
            self.last_request = time.monotonic()
            try:
                seconds = deadline(self, args)
                if seconds is None:
                    return await op(self, *args)
                with trio.fail_after(seconds):
                    return await op(self, *args)
            except Exception as e:
                raise _translate(self, op.__name__, e, dict(zip(parameters, args))) from None

        return wrapper

    return decorate


# May wait on a provider: bounded by the mount's timeout.
_guard = _operation(lambda self, args: self.options.timeout)
# Answered from memory.
_local = _operation(lambda self, args: None)
# Uploads (close, fsync): the timeout plus the bytes at a slow link's pace, so a big `cp` is not cut short.
_upload_guard = _operation(
    lambda self, args: (
        self.options.timeout + self._handles[args[0]].upload_size() / UPLOAD_RATE_FLOOR
        if args[0] in self._handles
        else self.options.timeout
    )
)
# A rename that commits a local file may upload it too (without a write-back delay).
_rename_guard = _operation(lambda self, args: self.options.timeout + self._renamed_size(*args[:2]) / UPLOAD_RATE_FLOOR)


class Operations(pyfuse3.Operations):
    # enable_acl stays off: with it the kernel asks every inode for its POSIX ACLs (a getxattr
    # each) for its own checks; without it `ls -l` asks, gets EOPNOTSUPP once, and stops.

    def __init__(
        self,
        view: View,
        readers,
        options: MountOptions,
        stats,
        writer: Writer,
        thumbnails: Filler | None = None,
        on_gone: Callable[[list, str], None] = lambda nodes, why: None,
    ):
        super().__init__()
        self.view = view
        self.writer = writer
        self.options = options
        self.stats = stats
        self.attributes = Attributes(options, view.metacache.ttl, stats.started, view.given)
        self.opener = Opener(view, readers, writer, options.timeout, options.first_blocks_ahead)
        self._handles: dict[int, Handle] = {}
        self._dirs: dict[int, list] = {}
        self._ids = itertools.count(1)
        self.last_request = 0.0  # time.monotonic() of the last request: background writes wait for a quiet moment
        self.thumbnails = thumbnails  # when the mount fills the thumbnail cache
        # Told of the nodes an operation touched when the provider said its target does not
        # exist (the mount lists them again: view/refresh.py).
        self.on_gone = on_gone

    def _touched(self, arguments: dict) -> list:
        """The nodes an operation was about: those of its inode arguments, the file of its handle."""
        nodes = []
        for name, value in arguments.items():
            if "inode" in name and isinstance(value, int):
                try:
                    nodes.append(self.view.inodes.get(value))
                except AssetfsError:
                    pass
            elif name == "fh" and value in self._handles:
                nodes.append(self._handles[value].node)
        return nodes

    def _renamed_size(self, parent_inode: int, name: bytes) -> int:
        try:
            parent = self.view.inodes.get(parent_inode)
        except AssetfsError:
            return 0
        node = self.view.held.held_in(parent).get(os.fsdecode(name))
        return node.local.size if node is not None and node.local is not None and node.local.spool.fd >= 0 else 0

    # -- attributes -----------------------------------------------------------------------

    async def _attrs(self, node) -> pyfuse3.EntryAttributes:
        size = self.view.known_size(node)
        if size is None:
            size = (await self.view.content(node)).size
        return self.attributes.stat(node, size)

    @_guard
    async def lookup(self, parent_inode, name, ctx=None):
        if len(name) > 255:
            raise NameTooLong(f"{os.fsdecode(name)[:40]}…: longer than 255 bytes")
        parent = self.view.inodes.get(parent_inode)
        node = await self.view.lookup(parent, os.fsdecode(name))
        attrs = await self._attrs(node)
        self.view.inodes.remember(node)
        return attrs

    @_guard
    async def getattr(self, inode, ctx=None):
        return await self._attrs(self.view.inodes.get(inode))

    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.view.inodes.forget(inode, count)

    # -- directories ----------------------------------------------------------------------

    @_guard
    async def opendir(self, inode, ctx):
        node = self.view.inodes.get(inode)
        children = await self.view.children(node)
        self.view.sizes.directory_read(node)  # stats of its files that follow are likely `ls -l`
        if node.provider is not None:  # the content host its files name: connections opened ahead
            urls = (c.entry.content.url for c in children.values() if c.entry.content is not None)
            self.opener.readers.listed(urls, node.provider.http.held_down, self.view.fetched_now(node))
        if self.thumbnails is not None:
            await self.thumbnails.listed(node, children)
        fh = next(self._ids)
        self._dirs[fh] = list(children.values())  # a snapshot: offsets stay stable while open
        return fh

    @_guard
    async def readdir(self, fh, start_id, token):
        snapshot = self._dirs[fh]
        unsized = 0
        patience = trio.current_time() + LISTED_PATIENCE
        for index in range(start_id, len(snapshot)):
            node = snapshot[index]
            size = self.view.known_size(node)
            if size is None and (fact := await self.view.sizes.listed(node, patience)) is not None:
                size = fact.size  # asked ahead: the listing carries it, `ls -l` needs no getattr for it
            attrs = self.attributes.stat(node, size)
            if size is None:  # readdirplus: the name holds, the kernel asks for the size (getattr) when it wants it
                attrs.attr_timeout = 0
                unsized += 1
                if unsized > UNSIZED_PER_READDIR:
                    return  # the rest in the next readdir, by when their sizes may be asked ahead
            if not pyfuse3.readdir_reply(token, os.fsencode(node.name), attrs, index + 1):
                return
            self.view.inodes.remember(node)

    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    # -- files ------------------------------------------------------------------------------

    @_guard
    async def open(self, inode, flags, ctx):
        node = self.view.inodes.get(inode)
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND))
        if writing:
            self.writer.open_for_write(node, truncate=bool(flags & os.O_TRUNC))
            if flags & os.O_TRUNC:
                await self.writer.truncate(node, 0)
        handle = await self.opener.open(node, writing)
        info = handle.info()
        info.fh = next(self._ids)
        self._handles[info.fh] = handle
        self.stats.add("opens")
        return info

    @_guard
    async def read(self, fh, off, size):
        return await self._handles[fh].read(off, size)

    @_local
    async def write(self, fh, off, buf):
        return await self._handles[fh].write(off, buf)

    @_upload_guard
    async def flush(self, fh):
        await self._handles[fh].flush()

    @_upload_guard
    async def fsync(self, fh, datasync):
        await self._handles[fh].fsync()

    @_guard
    async def create(self, parent_inode, name, mode, flags, ctx):
        if len(name) > 255:
            raise NameTooLong(f"{os.fsdecode(name)[:40]}…: longer than 255 bytes")
        parent = self.view.inodes.get(parent_inode)
        node = self.writer.create(parent, os.fsdecode(name), mode)
        handle = await self.opener.open(node, writing=True)
        info = handle.info()
        info.fh = next(self._ids)
        self._handles[info.fh] = handle
        attrs = self.attributes.stat(node, 0)
        self.view.inodes.remember(node)
        return info, attrs

    @_local
    async def release(self, fh):
        handle = self._handles.pop(fh, None)
        if handle is not None:
            await handle.release()

    # -- extended attributes: answered from memory (attributes.py) ---------------------------

    @_local
    async def getxattr(self, inode, name, ctx):
        return self.attributes.xattr(self.view.inodes.get(inode), name)

    @_local
    async def listxattr(self, inode, ctx):
        return self.attributes.xattr_names(self.view.inodes.get(inode))

    @_local
    async def statfs(self, ctx):
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = self.options.block_size
        st.f_blocks = st.f_bfree = st.f_bavail = 1 << 30
        st.f_files = st.f_ffree = st.f_favail = 1 << 30
        st.f_namemax = 255
        return st

    # -- writes: the rules live in write/writer.py ----------------------------------------

    @_guard
    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self.view.inodes.get(inode)
        if fields.update_size:
            handle = self._handles.get(fh) if fh is not None else None
            if handle is not None:
                await handle.truncate(attr.st_size)  # ftruncate(): through the open file
            else:
                await self.writer.truncate(node, attr.st_size)
        owner = fields.update_uid or fields.update_gid
        if fields.update_mtime or fields.update_mode or fields.update_atime or owner:
            self.writer.set_attributes(
                node,
                attr.st_mtime_ns / 1e9 if fields.update_mtime else None,
                attr.st_mode if fields.update_mode else None,
                owner,
            )
        return await self._attrs(node)

    @_guard
    async def unlink(self, parent_inode, name, ctx):
        await self.writer.unlink(self.view.inodes.get(parent_inode), os.fsdecode(name))

    @_guard
    async def rmdir(self, parent_inode, name, ctx):
        await self.writer.rmdir(self.view.inodes.get(parent_inode), os.fsdecode(name))

    @_guard
    async def mkdir(self, parent_inode, name, mode, ctx):
        node = await self.writer.mkdir(self.view.inodes.get(parent_inode), os.fsdecode(name))
        attrs = await self._attrs(node)
        self.view.inodes.remember(node)
        return attrs

    @_rename_guard
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        await self.writer.rename(
            self.view.inodes.get(parent_inode_old),
            os.fsdecode(name_old),
            self.view.inodes.get(parent_inode_new),
            os.fsdecode(name_new),
            flags,
        )

    @_local
    async def setxattr(self, inode, name, value, ctx):
        self.attributes.xattrs_on()
        self.writer.set_xattr(self.view.inodes.get(inode), os.fsdecode(name), value)

    @_local
    async def removexattr(self, inode, name, ctx):
        self.attributes.xattrs_on()
        raise NotPermitted("extended attributes show the provider's metadata; they cannot be removed")

    @_local
    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise NotPermitted("hard links are not supported")

    @_local
    async def symlink(self, parent_inode, name, target, ctx):
        raise NotPermitted("symbolic links are not supported")

    @_local
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise NotPermitted("only regular files and directories can be made")
