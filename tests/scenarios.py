"""Saves in the syscall order of the programs that make them, written once against a tiny
file-system interface (`Files`) and run twice, as rclone's vfstest does: against the
filesystem's operations in process (`InProcess`, through tests/fsapi.py) and on a real mount
through `os` (`OnMount`). tests/test_scenarios.py runs each under both and checks what the
provider holds after; the real programs (emacs, vim, rsync, tar …) stay in tests/programs.py,
on the mount only.

A scenario is given a `Ctx` (tests/programs.py: the case's names and payload) and a `Files`
rooted at the case's folder, does its syscalls and says what the provider must hold (`Expect`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyfuse3
from fsapi import CTX, FS, setattr_fields
from programs import Ctx, Expect, Payload


class Files(Protocol):
    """Names are relative to one folder; a handle is what `open` gives."""

    async def open(self, name: str) -> object: ...  # O_WRONLY | O_CREAT | O_TRUNC
    async def write(self, handle: object, data: bytes) -> None: ...  # at the handle's end
    async def flush(self, handle: object) -> None: ...  # the close of a dup: the file stays open
    async def close(self, handle: object) -> None: ...
    async def ftruncate(self, handle: object, size: int) -> None: ...
    async def truncate(self, name: str, size: int) -> None: ...  # by name: no descriptor
    async def rename(self, old: str, new: str) -> None: ...
    async def unlink(self, name: str) -> None: ...
    async def read(self, name: str) -> bytes: ...
    async def listdir(self) -> list[str]: ...


async def write_file(files: Files, name: str, data: bytes) -> None:
    handle = await files.open(name)
    await files.write(handle, data)
    await files.close(handle)


# -- the two drivers ------------------------------------------------------------------------------


class InProcess:
    """The operations called in process: `Mount.ops`, no kernel."""

    def __init__(self, fs: FS, folder: str):
        self.fs, self.folder = fs, folder.strip("/")

    def path(self, name: str) -> str:
        return f"{self.folder}/{name}"

    async def open(self, name: str) -> object:
        try:
            fh = await self.fs.open(self.path(name), os.O_WRONLY | os.O_TRUNC)
        except pyfuse3.FUSEError as e:
            if e.errno != errno.ENOENT:
                raise
            fh = await self.fs.create(self.path(name))
        return [fh, 0, await self.fs.ino(self.path(name))]  # the handle, its offset, the inode

    async def write(self, handle: object, data: bytes) -> None:
        assert isinstance(handle, list)
        handle[1] += await self.fs.ops.write(handle[0], handle[1], data)

    async def flush(self, handle: object) -> None:
        assert isinstance(handle, list)
        await self.fs.ops.flush(handle[0])

    async def close(self, handle: object) -> None:
        assert isinstance(handle, list)
        await self.fs.close(handle[0])

    async def ftruncate(self, handle: object, size: int) -> None:
        assert isinstance(handle, list)
        attr = pyfuse3.EntryAttributes()
        attr.st_size = size
        await self.fs.ops.setattr(handle[2], attr, setattr_fields(size=True), handle[0], CTX)
        handle[1] = min(handle[1], size)

    async def truncate(self, name: str, size: int) -> None:
        await self.fs.truncate(self.path(name), size)

    async def rename(self, old: str, new: str) -> None:
        await self.fs.rename(self.path(old), self.path(new))

    async def unlink(self, name: str) -> None:
        await self.fs.unlink(self.path(name))

    async def read(self, name: str) -> bytes:
        return await self.fs.read_file(self.path(name))

    async def listdir(self) -> list[str]:
        return await self.fs.listdir(self.folder)


class OnMount:
    """The same calls on a real mount, through `os` (the mount serves from its own process)."""

    def __init__(self, folder: Path):
        self.folder = folder

    async def open(self, name: str) -> object:
        return os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    async def write(self, handle: object, data: bytes) -> None:
        assert isinstance(handle, int)
        assert os.write(handle, data) == len(data)

    async def flush(self, handle: object) -> None:
        assert isinstance(handle, int)
        os.close(os.dup(handle))

    async def close(self, handle: object) -> None:
        assert isinstance(handle, int)
        os.close(handle)

    async def ftruncate(self, handle: object, size: int) -> None:
        assert isinstance(handle, int)
        os.ftruncate(handle, size)
        os.lseek(handle, min(os.lseek(handle, 0, os.SEEK_CUR), size), os.SEEK_SET)

    async def truncate(self, name: str, size: int) -> None:
        os.truncate(self.folder / name, size)

    async def rename(self, old: str, new: str) -> None:
        os.rename(self.folder / old, self.folder / new)

    async def unlink(self, name: str) -> None:
        os.unlink(self.folder / name)

    async def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    async def listdir(self) -> list[str]:
        return os.listdir(self.folder)


# -- the scenarios ---------------------------------------------------------------------------------

Run = Callable[[Files, Ctx], Awaitable[Expect]]


@dataclass
class Scenario:
    id: str
    run: Run
    seed: Callable[[Payload], bytes] | None = None  # the asset it edits, put on the provider first
    seed_ext: str | None = None
    only: tuple[str, ...] = ("mudstack", "apple")
    known_bug: str = ""  # run all the same, as a strict xfail: it must fail until fixed


SCENARIOS: dict[str, Scenario] = {}


def scenario(seed=None, seed_ext=None, only=("mudstack", "apple"), known_bug=""):
    def register(run: Run) -> Run:
        sid = run.__name__.replace("_", "-")
        SCENARIOS[sid] = Scenario(sid, run, seed, seed_ext, only, known_bug)
        return run

    return register


SEED = lambda p: p.seed  # noqa: E731


@scenario()
async def write_a_new_file(f: Files, c: Ctx) -> Expect:
    await write_file(f, c.new, c.p.new)
    return Expect({c.new: c.p.new})


@scenario()
async def write_through_a_dup(f: Files, c: Ctx) -> Expect:
    """Half written, a dup closed (a flush), the rest written through the file still open."""
    half = len(c.p.new) // 2
    handle = await f.open(c.new)
    await f.write(handle, c.p.new[:half])
    await f.flush(handle)
    await f.write(handle, c.p.new[half:])
    await f.close(handle)
    return Expect({c.new: c.p.new})


@scenario()
async def write_then_truncate(f: Files, c: Ctx) -> Expect:
    """More written than kept, ftruncate(2) to the length kept, then the close."""
    handle = await f.open(c.new)
    await f.write(handle, c.p.new + c.p.other)
    await f.ftruncate(handle, len(c.p.new))
    await f.close(handle)
    return Expect({c.new: c.p.new})


@scenario()
async def truncate_after_the_close(f: Files, c: Ctx) -> Expect:
    """More written than kept and closed, then truncate(2) by name within the write-back delay."""
    await write_file(f, c.new, c.p.new + c.p.other)
    await f.truncate(c.new, len(c.p.new))
    return Expect({c.new: c.p.new})


@scenario(seed=SEED)
async def overwrite_a_file(f: Files, c: Ctx) -> Expect:
    """`cp new x`: the asset opened with O_TRUNC and written."""
    await write_file(f, c.seed, c.p.new)
    return Expect({c.seed: c.p.new}, replaced={c.seed})


@scenario()
async def temp_then_rename(f: Files, c: Ctx) -> Expect:
    """Python's mkstemp + os.replace for a new file: only the final name reaches the provider."""
    tmp = f".{c.case}_tmpk3j9x1"
    await write_file(f, tmp, c.p.new)
    await f.rename(tmp, c.new)
    return Expect({c.new: c.p.new})


@scenario(seed=SEED)
async def sed_i_style(f: Files, c: Ctx) -> Expect:
    """`sed -i`: the edited copy written to `./sedXXXXXX`, renamed over the file."""
    tmp = "sedAb12Cd"
    await write_file(f, tmp, c.p.edited)
    await f.rename(tmp, c.seed)
    return Expect({c.seed: c.p.edited}, replaced={c.seed})


@scenario()
async def rename_a_new_file(f: Files, c: Ctx) -> Expect:
    """`cat > f1 && mv f1 f2`: one asset, under f2."""
    first, final = c.name("f1"), c.name("f2")
    await write_file(f, first, c.p.new)
    await f.rename(first, final)
    return Expect({final: c.p.new})


@scenario(seed=SEED, seed_ext=".png", only=("mudstack",))
async def mv_an_asset(f: Files, c: Ctx) -> Expect:
    """`mv a.png b.png`: the same asset under its new name."""
    final = c.name("renamed", ".png")
    await f.rename(c.seed, final)
    return Expect({final: c.p.seed}, renamed={c.seed: final})


@scenario(seed=SEED, seed_ext=".txt", only=("mudstack",))
async def mv_to_another_extension(f: Files, c: Ctx) -> Expect:
    final = c.name("renamed", ".md")
    await f.rename(c.seed, final)
    return Expect({final: c.p.seed}, renamed={c.seed: final})


@scenario(seed=SEED, seed_ext=".blend", only=("mudstack",))
async def blender(f: Files, c: Ctx) -> Expect:
    """Blender's save: `x.blend@` written, `x.blend` → `x.blend1`, `x.blend@` → `x.blend`;
    twice in a row, so the second renames over the first's backup."""
    for save in (c.p.new[::-1], c.p.new):
        await write_file(f, c.seed + "@", save)
        await f.rename(c.seed, c.seed + "1")
        await f.rename(c.seed + "@", c.seed)
    return Expect({c.seed: c.p.new}, replaced={c.seed}, backups={c.seed + "1": c.p.new[::-1]})


@scenario(seed=SEED, only=("mudstack",))
async def emacs_style(f: Files, c: Ctx) -> Expect:
    """Emacs with backups on: `x` → `x~`, then a new `x`."""
    await f.rename(c.seed, c.seed + "~")
    await write_file(f, c.seed, c.p.seed + b"four\n")
    return Expect({c.seed: c.p.seed + b"four\n"}, replaced={c.seed}, backups={c.seed + "~": c.p.seed})


@scenario(seed=SEED)
async def libreoffice(f: Files, c: Ctx) -> Expect:
    """LibreOffice (osl_replaceFile): a lock file, the temp file written, the old file aside
    as `.osl-tmp`, the temp in its place, the old one and the lock removed."""
    lock, tmp = f".~lock.{c.seed}#", "lu4242g4k.tmp"
    await write_file(f, lock, b"user,host,now;")
    await write_file(f, tmp, c.p.new)
    await f.rename(c.seed, c.seed + ".osl-tmp")
    await f.rename(tmp, c.seed)
    await f.unlink(c.seed + ".osl-tmp")
    await f.unlink(lock)
    return Expect({c.seed: c.p.new}, replaced={c.seed})


@scenario(seed=SEED)
async def word(f: Files, c: Ctx) -> Expect:
    """Word (as seen over SMB): an owner file, `~WRD….tmp` written, the document → `~WRL….tmp`,
    the new one in place, the old one and the owner file removed."""
    owner, new, old = "~$" + c.seed[2:], f"~WRD{c.case}.tmp", f"~WRL{c.case}.tmp"
    await write_file(f, owner, b"\x05user")
    await write_file(f, new, c.p.new)
    await f.rename(c.seed, old)
    await f.rename(new, c.seed)
    await f.unlink(old)
    await f.unlink(owner)
    return Expect({c.seed: c.p.new}, replaced={c.seed})
