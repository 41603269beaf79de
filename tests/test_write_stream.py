"""Uploads that start at a new file's first write (write_back=0) and follow it as it is
written: in-process against the emulator over real HTTP (the stream's request is seen
before the close; its bytes arrive right), and every way the sequential pattern breaks
(a write elsewhere, a truncate, a rename, a removal, a refused or cut stream) falls back to
the spool's upload at close with every byte and exactly one asset."""

from __future__ import annotations

import os

import pytest
import trio
import trio.lowlevel
from conftest import emulator_fixture
from emulator_log import clear_names, names_used
from fsapi import in_process
from test_mount_mudstack import MudTruth
from test_write_iqmetrix import api_asset
from truth import md5

from assetfs.providers.base import Upload
from assetfs.write.spool import Spool
from assetfs.write.stream import LiveUpload, StreamCancelled

pytestmark = pytest.mark.trio
LOGOS = "stores/logos"
UI = "studio/Game Art/ui"
POST = "POST /iqmetrix/assets"
MIB = 1 << 20


emulator_s = emulator_fixture("emulator_s")  # this module's own: its tests make assets and switch faults


@pytest.fixture
def emu(emulator_s):
    emulator_s.clear_faults()
    emulator_s.reset_requests()
    clear_names(emulator_s)
    yield emulator_s
    emulator_s.clear_faults()


def posts(emu, route: str = POST) -> int:
    return sum(n for k, n in emu.requests().items() if k.startswith("POST ") and k.endswith(route.split()[-1]))


async def stream_started(emu, route: str = POST) -> None:
    """Until the emulator has seen the upload's request begin (its log is written at the
    start of a request, before its body)."""
    with trio.fail_after(10):
        while not await trio.to_thread.run_sync(posts, emu, route):
            await trio.sleep(0.02)


def one_asset(emu, name: str, data: bytes) -> None:
    """Exactly one asset was made, under `name`, with these bytes (md5 from the API)."""
    made = names_used(emu, "iqmetrix")
    assert [n["name"] for n in made] == [name], made
    assert api_asset(emu, made[0]["where"])["md5Checksum"] == md5(data)


def live_of(fs, fh: int):
    return fs.ops._handles[fh].local.live


# -- the stream itself ----------------------------------------------------------------------------


async def test_chunks_follow_the_spool_and_end_at_the_close(tmp_path):
    spool = Spool(tmp_path).new()
    live = LiveUpload(spool, Upload(spool.path, "a.bin", 0, "", "application/octet-stream"))
    got: list[bytes] = []

    async def read_all():
        async for chunk in live.chunks():
            got.append(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        for offset in range(0, 3 * MIB, MIB // 2):
            data = bytes([offset // MIB]) * (MIB // 2)
            spool.write(offset, data)
            assert live.grow(offset, data, len(data))
            await trio.lowlevel.checkpoint()
        assert not live.grow(5 * MIB, b"x", 1)  # not where the last write ended
        assert live.finish(3 * MIB, "the md5", {})
    assert b"".join(got) == spool.read(0, 3 * MIB) and live.ended
    assert (live.upload.size, live.upload.md5) == (3 * MIB, "the md5")


async def test_a_stream_that_did_not_carry_the_files_bytes_is_given_up(tmp_path):
    spool = Spool(tmp_path).new()
    live = LiveUpload(spool, Upload(spool.path, "a.bin", 0, "", "application/octet-stream"))
    spool.write(0, b"abc")
    live.grow(0, b"abc", 3)
    assert not live.finish(4, "x", {})  # four bytes in the file, three streamed
    assert not live.live and "streamed" in live.reason and not live.ended
    with pytest.raises(StreamCancelled):
        async for _ in live.chunks():
            pass


# -- in-process, against the emulator ----------------------------------------------------------------


async def test_a_new_file_is_uploaded_while_it_is_written(emu, tmp_path):
    data = os.urandom(5 * MIB + 123)
    async with in_process(emu, tmp_path, accounts=["stores"], options="write_back=0") as fs:
        fh = await fs.create(f"{LOGOS}/streamed.bin")
        await fs.ops.write(fh, 0, data[:MIB])
        await stream_started(emu)  # the request began before the close
        assert names_used(emu, "iqmetrix") == []  # …and made nothing yet
        for offset in range(MIB, len(data), MIB):
            await fs.ops.write(fh, offset, data[offset : offset + MIB])
        await fs.close(fh)
        assert not fs.mount.uploader.pending()  # close() returned once the provider had it
        assert await fs.read_file(f"{LOGOS}/streamed.bin") == data
    one_asset(emu, "streamed.bin", data)
    assert posts(emu) == 1


@pytest.mark.parametrize("breaks", ["write elsewhere", "truncate", "rename"])
async def test_breaking_the_pattern_gives_the_stream_up_and_the_close_uploads_once(emu, tmp_path, breaks):
    data = bytearray(os.urandom(3 * MIB))
    name = "after.bin" if breaks == "rename" else "broken.bin"
    async with in_process(emu, tmp_path, accounts=["stores"], options="write_back=0") as fs:
        fh = await fs.create(f"{LOGOS}/broken.bin")
        await fs.ops.write(fh, 0, bytes(data[: 2 * MIB]))
        await stream_started(emu)
        live = live_of(fs, fh)
        if breaks == "write elsewhere":
            await fs.ops.write(fh, MIB, b"x" * 10)  # over bytes already sent
            data[MIB : MIB + 10] = b"x" * 10
        elif breaks == "truncate":
            ino = await fs.ino(f"{LOGOS}/broken.bin")
            attr = await fs.ops.getattr(ino, None)
            attr.st_size = MIB
            await fs.ops.setattr(ino, attr, _Fields(update_size=True), fh, None)
            del data[MIB : 2 * MIB]
        else:
            await fs.rename(f"{LOGOS}/broken.bin", f"{LOGOS}/after.bin")
        assert not live.live
        await fs.ops.write(fh, len(data) - MIB, bytes(data[-MIB:]))
        await fs.close(fh)
        assert not fs.mount.uploader.pending()
    one_asset(emu, name, bytes(data))
    assert posts(emu) == 2  # the stream, cut before its end, and the upload from the spool


async def test_a_file_removed_while_streaming_makes_no_asset(emu, tmp_path):
    async with in_process(emu, tmp_path, accounts=["stores"], options="write_back=0") as fs:
        fh = await fs.create(f"{LOGOS}/gone.bin")
        await fs.ops.write(fh, 0, os.urandom(2 * MIB))
        await stream_started(emu)
        await fs.unlink(f"{LOGOS}/gone.bin")
        await fs.close(fh)
        await trio.sleep(0.3)
        assert not fs.mount.uploader.pending()
    assert names_used(emu, "iqmetrix") == []


@pytest.mark.parametrize("fault", ["refused at its start", "cut mid-body"])
async def test_a_failed_stream_falls_back_with_every_byte_and_one_asset(emu, tmp_path, fault):
    data = os.urandom(4 * MIB)
    if fault == "refused at its start":
        emu.set_faults(fail_status=503, fail_count=1, only_prefix="/iqmetrix/assets")
    async with in_process(emu, tmp_path, accounts=["stores"], options="write_back=0") as fs:
        fh = await fs.create(f"{LOGOS}/fault.bin")
        await fs.ops.write(fh, 0, data[:MIB])
        await stream_started(emu)
        if fault == "cut mid-body":
            emu.set_faults(reset_mid_upload=1, only_prefix="/iqmetrix/assets")
        for offset in range(MIB, len(data), MIB):
            await fs.ops.write(fh, offset, data[offset : offset + MIB])
            await trio.sleep(0.05)  # a slow writer: the stream is cut while it writes
        await fs.close(fh)
        assert not fs.mount.uploader.pending()
    assert emu.set_faults()["reset_mid_upload"] == 0 and emu.set_faults()["fail_count"] == 0  # the fault was met
    one_asset(emu, "fault.bin", data)
    assert posts(emu) == 2


async def test_an_o_trunc_rewrite_of_a_mudstack_file_streams_its_new_version(emu, tmp_path):
    truth = MudTruth(emu.account("mudstack"))
    ws = truth.workspaces()["Game Art"]
    data = os.urandom(3 * MIB)
    async with in_process(emu, tmp_path, accounts=["studio"], options="write_back=0") as fs:
        await fs.write_file(f"{UI}/rewritten.bin", b"first")  # a new asset: a signed PUT, not streamed
        fh = await fs.open(f"{UI}/rewritten.bin", os.O_WRONLY | os.O_TRUNC)
        await fs.ops.write(fh, 0, data[:MIB])
        await stream_started(emu, "POST /versions")
        for offset in range(MIB, len(data), MIB):
            await fs.ops.write(fh, offset, data[offset : offset + MIB])
        await fs.close(fh)
    [asset] = [a for a in truth.assets(ws, "/ui/") if a["file_name"] == "rewritten.bin"]
    assert len(asset["versions"]) == 2
    assert truth.download(ws, asset["id"]) == data
    assert posts(emu, "POST /versions") == 1
    truth.close()


async def test_no_stream_with_a_write_back_delay_or_for_a_temporary_name(emu, tmp_path):
    async with in_process(emu, tmp_path, accounts=["stores"], options="write_back=0.2") as fs:
        fh = await fs.create(f"{LOGOS}/later.bin")
        await fs.ops.write(fh, 0, b"x" * 100)
        assert live_of(fs, fh) is None  # a temp name may still be renamed or removed
        await fs.close(fh)
    async with in_process(emu, tmp_path / "b", accounts=["stores"], options="write_back=0") as fs:
        fh = await fs.create(f"{LOGOS}/.partial.bin")
        await fs.ops.write(fh, 0, b"x" * 100)
        assert live_of(fs, fh) is None
        await fs.close(fh)


class _Fields:
    """pyfuse3.SetattrFields as setattr reads it."""

    def __init__(self, **given):
        for name in ("update_size", "update_mtime", "update_mode", "update_atime", "update_uid", "update_gid"):
            setattr(self, name, given.get(name, False))
