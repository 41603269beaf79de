"""Open files. Each kind knows how to read, write, flush, sync and release itself; the FUSE
layer only finds the handle and calls it."""

from __future__ import annotations

import functools

import pyfuse3
import trio

from .errors import NotPermitted
from .read.firstblocks import AT_ONCE, FirstBlocksAhead
from .read.reader import Cursor
from .view.node import Node
from .view.view import View
from .write.overlay import LocalFile
from .write.writer import Writer


class Handle:
    def __init__(self, node: Node):
        self.node = node

    def info(self) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo()

    async def read(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    async def write(self, offset: int, data: bytes) -> int:
        raise NotPermitted(f"{self.node.path}: not open for writing")

    async def truncate(self, size: int) -> None:
        raise NotPermitted(f"{self.node.path}: not open for writing")

    def upload_size(self) -> int:
        """Bytes a flush or fsync of this handle may send (for its deadline)."""
        return 0

    async def flush(self) -> None:
        pass

    async def fsync(self) -> None:
        pass

    async def release(self) -> None:
        pass


class BytesHandle(Handle):
    """A small file made here: asset.json (kept by the kernel's page cache), status.json
    (made fresh on each open, never cached)."""

    def __init__(self, node: Node, data: bytes, fresh: bool):
        super().__init__(node)
        self.data = data
        self.fresh = fresh

    def info(self) -> pyfuse3.FileInfo:
        info = pyfuse3.FileInfo()
        info.direct_io = self.fresh
        info.keep_cache = not self.fresh
        return info

    async def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]


class RemoteHandle(Handle):
    """A provider's file, streamed through the block cache."""

    def __init__(self, node: Node, readers, reader):
        super().__init__(node)
        self.readers = readers
        self.reader = reader
        self.cursor = Cursor()

    def info(self) -> pyfuse3.FileInfo:
        info = pyfuse3.FileInfo()
        info.keep_cache = True
        return info

    async def read(self, offset: int, size: int) -> bytes:
        return await self.reader.read(self.cursor, offset, size)

    async def release(self) -> None:
        self.readers.close(self.reader)


class CopyOnWriteHandle(RemoteHandle):
    """An asset's file opened for writing without O_TRUNC: read from the provider until its
    first write or truncate, which copies it into the spool; a local file from then on."""

    def __init__(self, node: Node, readers, reader, writer: Writer, timeout: float):
        super().__init__(node, readers, reader)
        self.writer = writer
        self.timeout = timeout
        self.local: LocalHandle | None = None

    def info(self) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo()  # neither cached nor direct: the bytes may change under it

    async def _local(self, keep: int) -> LocalHandle:
        if self.local is None:
            size = self.node.entry.content.size if self.node.entry.content else None
            with trio.fail_after(self.timeout + (size or 0) / (1 << 20)):
                local = await self.writer.materialize(self.node, self.read, keep if size is None else min(keep, size))
            self.local = LocalHandle(self.node, local, self.writer, writing=True)
            self.readers.close(self.reader)
        return self.local

    async def read(self, offset: int, size: int) -> bytes:
        if self.local is not None:
            return await self.local.read(offset, size)
        return await super().read(offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        return await (await self._local(1 << 62)).write(offset, data)

    async def truncate(self, size: int) -> None:
        await (await self._local(size)).truncate(size)

    def upload_size(self) -> int:
        return self.local.upload_size() if self.local is not None else 0

    async def flush(self) -> None:
        if self.local is not None:
            await self.local.flush()

    async def fsync(self) -> None:
        if self.local is not None:
            await self.local.fsync()

    async def release(self) -> None:
        if self.local is not None:
            await self.local.release()
        else:
            await super().release()


class LocalHandle(Handle):
    """A file whose bytes are in the spool (being written, or waiting for its upload)."""

    def __init__(self, node: Node, local: LocalFile, writer: Writer, writing: bool):
        super().__init__(node)
        self.local = local
        self.writer = writer
        self.writing = writing  # (the writer counts writers when it opens, creates or materializes)
        local.handles += 1

    def info(self) -> pyfuse3.FileInfo:
        info = pyfuse3.FileInfo()
        info.direct_io = True  # the spool is the truth while a file is local
        return info

    async def read(self, offset: int, size: int) -> bytes:
        return await trio.to_thread.run_sync(self.local.spool.read, offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        if not self.writing:
            raise NotPermitted(f"{self.node.path}: not open for writing")
        return self.writer.write(self.node, self.local, offset, data)

    async def truncate(self, size: int) -> None:
        await self.writer.truncate(self.node, size)

    def upload_size(self) -> int:
        return self.local.size if self.local.spool.fd >= 0 else 0

    async def flush(self) -> None:
        if self.writing and self.node.local is self.local:
            await self.writer.flush(self.node)

    async def fsync(self) -> None:
        if self.node.local is self.local:
            await trio.to_thread.run_sync(self.local.spool.sync)
            await self.writer.fsync(self.node)

    async def release(self) -> None:
        await self.writer.release(self.node, self.local, self.writing)


class Opener:
    """Makes the right handle for a node."""

    def __init__(self, view: View, readers, writer: Writer, timeout: float, first_blocks_ahead: int = AT_ONCE):
        self.view = view
        self.readers = readers
        self.writer = writer
        self.timeout = timeout
        self.first_blocks = FirstBlocksAhead(readers, view, first_blocks_ahead)

    async def open(self, node: Node, writing: bool) -> Handle:
        if node.local is not None:
            return LocalHandle(node, node.local, self.writer, writing)
        if node.render is not None:
            return BytesHandle(node, node.render(), fresh=True)
        if node.entry.inline is not None:
            return BytesHandle(node, node.entry.inline, fresh=False)
        content = await self.view.content(node)
        reader = self.readers.open(content, node.owner.http, functools.partial(self.view.renew_url, node))
        if writing:
            return CopyOnWriteHandle(node, self.readers, reader, self.writer, self.timeout)
        self.first_blocks.opened(node)  # a second file of its directory: the others' first blocks ahead
        return RemoteHandle(node, self.readers, reader)
