"""Streamed uploads on a real mount (write_back=0): the upload's request reaches the
emulator while the file is still being written, its bytes arrive right (md5 from the API),
and a write elsewhere, a connection cut mid-stream or a kill -9 loses nothing and makes at
most one asset."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess

import pytest
from conftest import RunningEmulator
from emulator_log import clear_names, names_used
from mounting import MountedFS
from test_write_iqmetrix import api_asset
from truth import wait_for

pytestmark = pytest.mark.mount
POST = "POST /iqmetrix/assets"
MIB = 1 << 20


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    emu = RunningEmulator(tmp_path_factory.mktemp("stream-emulator"))
    m = MountedFS(tmp_path_factory.mktemp("stream-mount"), emu.config, options="write_back=0", accounts=["stores"])
    try:
        yield emu, m
    finally:
        m.stop()
        emu.stop()


@pytest.fixture
def emu_m(world):
    emu, m = world
    emu.clear_faults()
    emu.reset_requests()
    clear_names(emu)
    os.listdir(m.path / "stores" / "logos")
    yield emu, m
    emu.clear_faults()


def posts(emu) -> int:
    return emu.requests().get(POST, 0)


def one_asset(emu, name: str, data: bytes) -> None:
    made = names_used(emu, "iqmetrix")
    assert [n["name"] for n in made] == [name], made
    assert api_asset(emu, made[0]["where"])["md5Checksum"] == hashlib.md5(data).hexdigest()


def test_a_file_is_uploaded_while_it_is_written_and_arrives_right(emu_m, tmp_path):
    emu, m = emu_m
    data = os.urandom(6 * MIB + 7)
    with open(m.path / "stores" / "logos" / "slow.bin", "wb", buffering=0) as f:
        f.write(data[:MIB])
        wait_for(lambda: posts(emu), 10)  # the upload began before the close…
        assert names_used(emu, "iqmetrix") == []  # …and made nothing yet
        for offset in range(MIB, len(data), MIB):
            f.write(data[offset : offset + MIB])
    one_asset(emu, "slow.bin", data)
    assert posts(emu) == 1

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(32 * MIB))
    clear_names(emu)
    subprocess.run(["cp", str(source), str(m.path / "stores" / "logos")], check=True)
    one_asset(emu, "big.bin", source.read_bytes())
    assert posts(emu) == 2
    assert (m.path / "stores" / "logos" / "big.bin").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("breaks", ["a write elsewhere", "a connection cut mid-stream"])
def test_a_broken_stream_falls_back_with_every_byte_and_one_asset(emu_m, breaks):
    emu, m = emu_m
    data = bytearray(os.urandom(4 * MIB))
    name = f"fallback-{breaks.split()[1]}.bin"  # a new asset each (iQmetrix cannot replace one)
    with open(m.path / "stores" / "logos" / name, "wb", buffering=0) as f:
        f.write(data[:MIB])
        wait_for(lambda: posts(emu), 10)
        if breaks == "a write elsewhere":
            os.pwrite(f.fileno(), b"header", 0)
            data[:6] = b"header"
        else:
            emu.set_faults(reset_mid_upload=1, only_prefix="/iqmetrix/assets")
        for offset in range(MIB, len(data), MIB // 4):
            f.write(data[offset : offset + MIB // 4])
    one_asset(emu, name, bytes(data))
    assert posts(emu) == 2  # the stream cut before its end, then the spool's upload
    assert emu.set_faults()["reset_mid_upload"] == 0


def test_kill_9_mid_stream_keeps_the_bytes_and_makes_no_asset(world, tmp_path):
    emu, _ = world
    emu.reset_requests()
    clear_names(emu)
    cache = tmp_path / "cache"
    m = MountedFS(tmp_path / "m1", emu.config, options="write_back=0", accounts=["stores"], cache_dir=cache)
    data = os.urandom(2 * MIB)
    try:
        f = open(m.path / "stores" / "logos" / "killed.bin", "wb", buffering=0)
        f.write(data)
        wait_for(lambda: posts(emu), 10)
        m.process.send_signal(signal.SIGKILL)
        m.process.wait(10)
        with pytest.raises(OSError):
            f.close()
    finally:
        m.stop()
    again = MountedFS(tmp_path / "m2", emu.config, options="write_back=0", accounts=["stores"], cache_dir=cache)
    try:
        pending = again.path / ".assetfs" / "pending"
        [kept] = wait_for(lambda: [p for p in pending.iterdir() if p.name.endswith("killed.bin")], 10)
        assert kept.read_bytes() == data  # nothing lost: kept for the user, as any file cut mid-write
        assert names_used(emu, "iqmetrix") == []  # the cut stream made nothing
    finally:
        again.stop()
