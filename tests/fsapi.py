"""The filesystem's operations called in-process, without a kernel (as S3QL's
tests/t3_fs_api.py does): a real Mount against the emulator over HTTP, its Operations
called directly, readdir answers caught from `pyfuse3.readdir_reply`."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pyfuse3
import trio

from assetfs.config import parse_config
from assetfs.mount import Mount
from assetfs.options import parse_mount_options


class Ctx:
    uid = os.getuid()
    gid = os.getgid()
    pid = os.getpid()
    umask = 0o022


CTX = Ctx()


class FS:
    """One in-process mount: path-based helpers over `Mount.ops`."""

    def __init__(self, mount: Mount):
        self.mount = mount
        self.ops = mount.ops
        self.view = mount.view

    # -- paths ----------------------------------------------------------------------------

    async def ino(self, path: str) -> int:
        ino = pyfuse3.ROOT_INODE
        for part in filter(None, path.split("/")):
            ino = (await self.ops.lookup(ino, os.fsencode(part), CTX)).st_ino
        return ino

    async def parent_and_name(self, path: str) -> tuple[int, bytes]:
        head, _, name = path.rstrip("/").rpartition("/")
        return await self.ino(head), os.fsencode(name)

    async def stat(self, path: str) -> pyfuse3.EntryAttributes:
        return await self.ops.getattr(await self.ino(path), CTX)

    async def exists(self, path: str) -> bool:
        try:
            await self.ino(path)
        except pyfuse3.FUSEError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    async def listdir(self, path: str) -> list[str]:
        """The names readdir gives, in order (the kernel's '.' and '..' aside), asking on
        from the last offset until an answer brings nothing, as the kernel does."""
        fh = await self.ops.opendir(await self.ino(path), CTX)
        names: list[str] = []
        offset = [0]
        original = pyfuse3.readdir_reply

        def catch(token, name, attrs, next_id):
            names.append(os.fsdecode(name))
            offset[0] = next_id
            return True

        pyfuse3.readdir_reply = catch
        try:
            while True:
                before = len(names)
                await self.ops.readdir(fh, offset[0], None)
                if len(names) == before:
                    break
        finally:
            pyfuse3.readdir_reply = original
            await self.ops.releasedir(fh)
        return names

    # -- files ----------------------------------------------------------------------------

    async def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        return (await self.ops.open(await self.ino(path), flags, CTX)).fh

    async def create(self, path: str, mode: int = 0o644) -> int:
        parent, name = await self.parent_and_name(path)
        info, _ = await self.ops.create(parent, name, mode, os.O_WRONLY | os.O_CREAT, CTX)
        return info.fh

    async def close(self, fh: int) -> None:
        await self.ops.flush(fh)
        await self.ops.release(fh)

    async def write_file(self, path: str, data: bytes) -> None:
        """Like `cp`: create (or open with O_TRUNC), write, close."""
        try:
            fh = await self.open(path, os.O_WRONLY | os.O_TRUNC)
        except pyfuse3.FUSEError as e:
            if e.errno != errno.ENOENT:
                raise
            fh = await self.create(path)
        await self.ops.write(fh, 0, data)
        await self.close(fh)

    async def read_file(self, path: str) -> bytes:
        fh = await self.open(path)
        try:
            chunks, offset = [], 0
            while chunk := await self.ops.read(fh, offset, 1 << 20):
                chunks.append(chunk)
                offset += len(chunk)
            return b"".join(chunks)
        finally:
            await self.ops.release(fh)

    async def rename(self, old: str, new: str, flags: int = 0) -> None:
        old_parent, old_name = await self.parent_and_name(old)
        new_parent, new_name = await self.parent_and_name(new)
        await self.ops.rename(old_parent, old_name, new_parent, new_name, flags, CTX)

    async def truncate(self, path: str, size: int) -> None:
        """truncate(2) by path, as the kernel asks it: setattr with a size and no handle."""
        attr = pyfuse3.EntryAttributes()
        attr.st_size = size
        await self.ops.setattr(await self.ino(path), attr, setattr_fields(size=True), None, CTX)

    async def unlink(self, path: str) -> None:
        parent, name = await self.parent_and_name(path)
        await self.ops.unlink(parent, name, CTX)

    async def rmdir(self, path: str) -> None:
        parent, name = await self.parent_and_name(path)
        await self.ops.rmdir(parent, name, CTX)

    async def mkdir(self, path: str) -> None:
        parent, name = await self.parent_and_name(path)
        await self.ops.mkdir(parent, name, 0o755, CTX)

    async def getxattr(self, path: str, name: str) -> bytes:
        return await self.ops.getxattr(await self.ino(path), name.encode(), CTX)

    async def drain(self) -> None:
        """Wait until no upload is pending (the write-back delay included) and no file renamed
        away is still in its window: what `.assetfs/status.json` lists as pending."""
        with trio.fail_after(30):
            while self.mount.uploader.pending() or self.mount.writer.aways.pending():
                await trio.sleep(0.02)


def setattr_fields(**wanted):
    """What the kernel asks setattr to change (pyfuse3.SetattrFields cannot be made in Python)."""
    return SimpleNamespace(
        **{
            f"update_{name}": wanted.get(name, False)
            for name in ("atime", "mtime", "ctime", "mode", "uid", "gid", "size")
        }
    )


def errno_of(exc: pyfuse3.FUSEError) -> int:
    return exc.errno


@contextlib.asynccontextmanager
async def in_process(
    emulator, tmp: Path, accounts: list[str] | None = None, options: str = "", shared: dict | None = None
):
    """A Mount of the emulator's accounts, its uploader running, no kernel involved; with
    `shared` (the `[shared]` section), a member of a fleet."""
    doc = {
        "cache": {"dir": str(tmp / "cache")},
        "state": {"dir": str(tmp / "state")},
        "accounts": dict(emulator.config["accounts"]),
        **({"shared": shared} if shared else {}),
    }
    if accounts is not None:
        doc["accounts"] = {k: v for k, v in doc["accounts"].items() if k in accounts}
    mount = Mount(parse_config(doc), tmp / "mnt", parse_mount_options([options] if options else []))
    try:
        async with trio.open_nursery() as nursery:
            mount.attach(nursery)
            await nursery.start(mount.uploader.run)
            yield FS(mount)
            nursery.cancel_scope.cancel()
    finally:
        await mount.close()
