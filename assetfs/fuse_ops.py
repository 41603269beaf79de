"""pyfuse3.Operations, kept thin: resolve the inode, ask the core, shape the reply.

Every operation runs under `_guard` (bounded by the mount's timeout) or `_local` (answered
from memory); both send exceptions through `_translate`, the one place where errors become
errno: our own errors carry theirs, a syscall that outlives the timeout answers EIO, and
anything unexpected is logged with its traceback and answered EIO (the mount carries on).
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
from dataclasses import dataclass

import pyfuse3
import trio

from .errors import AssetfsError, InvalidArgument, NameTooLong, NoAttribute, NotPermitted, XattrsOff
from .options import MountOptions
from .read.reader import Cursor, Reader
from .tree import Node, Tree
from .write.overlay import LocalFile
from .write.writer import Writer

log = logging.getLogger("assetfs.fuse")


def _translate(self: Operations, op: str, exc: BaseException) -> pyfuse3.FUSEError:
    """The one place where an exception becomes an errno (and a log line where it helps)."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _translate(self, op, exc.exceptions[0])  # one failed task of a nursery
    if isinstance(exc, pyfuse3.FUSEError):
        return exc
    if isinstance(exc, trio.TooSlowError):
        self.stats.add("timeouts")
        log.warning("%s: no answer within %.0fs, answering EIO", op, self.options.timeout)
        return pyfuse3.FUSEError(errno.EIO)
    if isinstance(exc, AssetfsError):
        if exc.errno not in (errno.ENOENT, errno.ENODATA, errno.ENOSYS):
            log.warning("%s: %s", op, exc)
        return pyfuse3.FUSEError(exc.errno)
    self.stats.add("internal_errors")
    log.error("%s failed unexpectedly; answering EIO", op, exc_info=exc)
    return pyfuse3.FUSEError(errno.EIO)


UPLOAD_RATE_FLOOR = 1 << 20  # bytes/s: a close() may take the timeout plus size at this rate


def _operation(deadline):
    """Wrap a FUSE operation: count it, bound it by `deadline(self, args)` seconds (None:
    answered from memory, no bound), and send any exception through `_translate`."""

    def decorate(op):
        counter = f"fuse_{op.__name__}"

        @functools.wraps(op)
        async def wrapper(self: Operations, *args):
            self.stats.add(counter)
            try:
                seconds = deadline(self, args)
                if seconds is None:
                    return await op(self, *args)
                with trio.fail_after(seconds):
                    return await op(self, *args)
            except Exception as e:
                raise _translate(self, op.__name__, e) from None
        return wrapper
    return decorate


# May wait on a provider: bounded by the mount's timeout.
_guard = _operation(lambda self, args: self.options.timeout)
# Answered from memory.
_local = _operation(lambda self, args: None)
# Uploads (close, fsync): the timeout plus the bytes at a slow link's pace, so a big `cp` is not cut short.
_upload_guard = _operation(lambda self, args: self.options.timeout + self._handle_size(args[0]) / UPLOAD_RATE_FLOOR)
# A rename that commits a local file uploads it too.
_rename_guard = _operation(lambda self, args: self.options.timeout + self._renamed_size(*args[:2]) / UPLOAD_RATE_FLOOR)


@dataclass
class _FileHandle:
    node: Node
    reader: Reader | None = None
    cursor: Cursor | None = None
    data: bytes | None = None  # an inline or rendered file
    local: LocalFile | None = None  # a file in the spool (being written, or not yet uploaded)


class Operations(pyfuse3.Operations):
    # The kernel then answers POSIX ACL queries itself and remembers that there are none:
    # `ls -l` asks for them on every file, and each question would be a round trip here.
    enable_acl = True

    def __init__(self, tree: Tree, readers, options: MountOptions, stats, writer: Writer):
        super().__init__()
        self.tree = tree
        self.writer = writer
        self.readers = readers
        self.options = options
        self.stats = stats
        self._handles: dict[int, object] = {}
        self._ids = itertools.count(1)

    def _handle_size(self, fh: int) -> int:
        local = getattr(self._handles.get(fh), "local", None)
        return local.spool.size if local is not None and local.spool.fd >= 0 else 0

    def _renamed_size(self, parent_inode: int, name: bytes) -> int:
        try:
            parent = self.tree.inodes.get(parent_inode)
        except AssetfsError:
            return 0
        node = (parent.overlay or {}).get(os.fsdecode(name))
        return node.local.spool.size if node is not None and node.local is not None and node.local.spool.fd >= 0 else 0

    # -- attributes -----------------------------------------------------------------------

    def _attributes(self, node: Node, size: int | None) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        writable = not self.options.ro and node.provider is not None and not node.provider.read_only_reason \
            and node.entry.inline is None and node.render is None
        if node.local is not None or node.written is not None:
            attr.st_mode = stat.S_IFREG | ((node.local or node.written).mode & ~self.options.umask)
            if node.local is not None and node.local.read_only:
                attr.st_mode &= ~0o222
            attr.st_nlink = 1
        elif node.is_dir:
            attr.st_mode = stat.S_IFDIR | ((0o777 if writable else 0o555) & ~self.options.umask)
            attr.st_nlink = 2
        else:
            attr.st_mode = stat.S_IFREG | ((0o666 if writable else 0o444) & ~self.options.umask)
            attr.st_nlink = 1
        attr.st_size = size or 0
        attr.st_blksize = self.options.block_size
        attr.st_blocks = (attr.st_size + 511) // 512
        attr.st_uid = self.options.uid
        attr.st_gid = self.options.gid
        mtime = node.local.mtime if node.local is not None else node.entry.mtime
        mtime_ns = int((mtime or self.stats.started) * 1e9)
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = mtime_ns
        ttl = 1.0 if (node.render is not None or node.local is not None) else self.tree.metacache.ttl
        attr.entry_timeout = ttl
        attr.attr_timeout = ttl
        return attr

    async def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        size = self.tree.known_size(node)
        if size is None:
            size = (await self.tree.content(node)).size
        return self._attributes(node, size)

    @_guard
    async def lookup(self, parent_inode, name, ctx=None):
        if len(name) > 255:
            raise NameTooLong(f"{os.fsdecode(name)[:40]}…: longer than 255 bytes")
        parent = self.tree.inodes.get(parent_inode)
        node = await self.tree.lookup(parent, os.fsdecode(name))
        attrs = await self._attrs(node)
        self.tree.inodes.remember(node)
        return attrs

    @_guard
    async def getattr(self, inode, ctx=None):
        return await self._attrs(self.tree.inodes.get(inode))

    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.tree.inodes.forget(inode, count)

    # -- directories ----------------------------------------------------------------------

    @_guard
    async def opendir(self, inode, ctx):
        node = self.tree.inodes.get(inode)
        children = await self.tree.children(node)
        fh = next(self._ids)
        self._handles[fh] = list(children.values())  # a snapshot: offsets stay stable while open
        return fh

    @_local
    async def readdir(self, fh, start_id, token):
        snapshot = self._handles[fh]
        for index in range(start_id, len(snapshot)):
            node = snapshot[index]
            size = self.tree.known_size(node)
            attrs = self._attributes(node, size)
            if size is None:  # readdirplus: let the kernel ask again (lookup) once it wants the size
                attrs.entry_timeout = attrs.attr_timeout = 0
            if not pyfuse3.readdir_reply(token, os.fsencode(node.name), attrs, index + 1):
                return
            self.tree.inodes.remember(node)

    async def releasedir(self, fh):
        self._handles.pop(fh, None)

    # -- files ------------------------------------------------------------------------------

    @_guard
    async def open(self, inode, flags, ctx):
        node = self.tree.inodes.get(inode)
        info = pyfuse3.FileInfo()
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            self.writer.open_for_write(node, truncate=bool(flags & os.O_TRUNC), append=bool(flags & os.O_APPEND))
            if flags & os.O_TRUNC:
                self.writer.truncate(node, 0)
        handle = _FileHandle(node)
        if node.local is not None:
            handle.local = node.local
            info.direct_io = True  # the spool is the truth while a file is local
        elif node.render is not None:
            handle.data = node.render()
            info.direct_io = True
        elif node.entry.inline is not None:
            handle.data = node.entry.inline
            info.keep_cache = True
        else:
            content = await self.tree.content(node)
            handle.reader = self.readers.open(content, node.provider.http,
                                              functools.partial(self.tree.renew_url, node))
            handle.cursor = Cursor()
            info.keep_cache = True
        info.fh = next(self._ids)
        self._handles[info.fh] = handle
        self.stats.add("opens")
        return info

    @_guard
    async def read(self, fh, off, size):
        handle = self._handles[fh]
        if handle.local is not None:
            return await trio.to_thread.run_sync(handle.local.spool.read, off, size)
        if handle.data is not None:
            return handle.data[off:off + size]
        return await handle.reader.read(handle.cursor, off, size)

    @_local
    async def write(self, fh, off, buf):
        handle = self._handles[fh]
        if handle.local is None or handle.local is not handle.node.local:
            raise NotPermitted(f"{handle.node.path}: not open for writing")
        return self.writer.write(handle.node, off, buf)

    @_upload_guard
    async def flush(self, fh):
        handle = self._handles[fh]
        if handle.local is not None and handle.local is handle.node.local:
            await self.writer.flush(handle.node)

    @_upload_guard
    async def fsync(self, fh, datasync):
        handle = self._handles[fh]
        if handle.local is not None and handle.local is handle.node.local:
            await trio.to_thread.run_sync(handle.local.spool.sync)
            await self.writer.flush(handle.node)

    @_guard
    async def create(self, parent_inode, name, mode, flags, ctx):
        parent = self.tree.inodes.get(parent_inode)
        node = self.writer.create(parent, os.fsdecode(name), mode)
        info = pyfuse3.FileInfo()
        info.fh = next(self._ids)
        info.direct_io = True
        self._handles[info.fh] = _FileHandle(node, local=node.local)
        attrs = self._attributes(node, 0)
        self.tree.inodes.remember(node)
        return info, attrs

    async def release(self, fh):
        handle = self._handles.pop(fh, None)
        if handle is None:
            return
        if handle.reader is not None:
            self.readers.close(handle.reader)
        if handle.local is not None and handle.local is not handle.node.local and not handle.local.read_only:
            handle.local.spool.close()  # uploaded (or removed) meanwhile: its spool is done

    # -- extended attributes --------------------------------------------------------------

    def _xattrs(self, node: Node) -> dict[str, str]:
        values = dict(node.entry.xattrs)
        if node.local is not None:
            values.update(node.local.xattrs)
        if node.written is not None:
            values.update({k: v for k, v in node.written.asset.xattrs.items() if k not in values})
        content = node.entry.content
        if content is not None:
            if content.md5:
                values.setdefault("user.assetfs.md5", content.md5)
            if content.mime:
                values.setdefault("user.assetfs.mime", content.mime)
            if content.url:
                values.setdefault("user.assetfs.source_url", content.url.split("?", 1)[0])
            values.setdefault("user.assetfs.version", content.version)
        return values

    def _xattrs_on(self) -> None:
        if self.options.noxattr:
            raise XattrsOff("extended attributes are off (-o noxattr)")

    @_local
    async def getxattr(self, inode, name, ctx):
        self._xattrs_on()
        values = self._xattrs(self.tree.inodes.get(inode))
        try:
            return values[os.fsdecode(name)].encode("utf-8", errors="backslashreplace")
        except KeyError:
            raise NoAttribute(os.fsdecode(name)) from None

    @_local
    async def listxattr(self, inode, ctx):
        self._xattrs_on()
        return [k.encode() for k in self._xattrs(self.tree.inodes.get(inode))]

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
        node = self.tree.inodes.get(inode)
        if fields.update_size:
            self.writer.truncate(node, attr.st_size)
        if fields.update_mtime or fields.update_mode:
            self.writer.set_times_and_mode(node, attr.st_mtime_ns / 1e9 if fields.update_mtime else None,
                                           attr.st_mode if fields.update_mode else None)
        if (fields.update_uid or fields.update_gid) and node.local is None:
            self.writer.set_times_and_mode(node, None, None)  # refused for files on the provider
        return await self._attrs(node)

    @_guard
    async def unlink(self, parent_inode, name, ctx):
        await self.writer.unlink(self.tree.inodes.get(parent_inode), os.fsdecode(name))

    @_guard
    async def rmdir(self, parent_inode, name, ctx):
        await self.writer.rmdir(self.tree.inodes.get(parent_inode), os.fsdecode(name))

    @_guard
    async def mkdir(self, parent_inode, name, mode, ctx):
        node = await self.writer.mkdir(self.tree.inodes.get(parent_inode), os.fsdecode(name))
        attrs = await self._attrs(node)
        self.tree.inodes.remember(node)
        return attrs

    @_rename_guard
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags:
            raise InvalidArgument("rename flags (exchange, no-replace) are not supported")
        await self.writer.rename(self.tree.inodes.get(parent_inode_old), os.fsdecode(name_old),
                                 self.tree.inodes.get(parent_inode_new), os.fsdecode(name_new))

    @_local
    async def setxattr(self, inode, name, value, ctx):
        self._xattrs_on()
        self.writer.set_xattr(self.tree.inodes.get(inode), os.fsdecode(name), value)

    @_local
    async def removexattr(self, inode, name, ctx):
        self._xattrs_on()
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
