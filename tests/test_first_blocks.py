"""First blocks asked ahead (read/firstblocks.py): once a second file of a directory is
opened for reading, the first block of its other files comes into the block cache before
they are opened; a single open, or the option off, asks nothing ahead. In process, against
the emulator over real HTTP on 127.0.0.1, its request log counting the content GETs."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import trio
from conftest import emulator_fixture
from fsapi import in_process
from truth import download

from assetfs.errors import ConfigError
from assetfs.options import parse_mount_options
from assetfs.read.firstblocks import AT_ONCE

emulator_fb = emulator_fixture("emulator_fb", "--assets", "48")
HEAD = 64 << 10  # a thumbnailer's read


def content_gets(emu) -> dict[str, int]:
    return {k: n for k, n in emu.requests().items() if k.startswith("GET /cdn/")}


async def sized_directory(fs) -> tuple[str, list[str]]:
    """A Spectrum organization's files, their sizes known (`ls -l`), so opens need no HEAD."""
    org = "carhartt/" + (await fs.listdir("carhartt"))[0]
    files = [n for n in await fs.listdir(org) if n != ".assets"]
    for name in files:
        await fs.stat(f"{org}/{name}")
    return org, files


async def first_bytes(fs, path: str) -> bytes:
    fh = await fs.open(path)
    try:
        return bytes(await fs.ops.read(fh, 0, HEAD))
    finally:
        await fs.ops.release(fh)


async def counters(fs) -> dict[str, int]:
    return json.loads(await fs.read_file(".assetfs/status.json"))["counters"]


@pytest.mark.trio
async def test_a_second_open_fetches_the_directorys_other_first_blocks_ahead(emulator_fb, tmp_path):
    async with in_process(emulator_fb, tmp_path, accounts=["carhartt"]) as fs:
        org, files = await sized_directory(fs)
        assert len(files) > 2 + AT_ONCE + 4
        emulator_fb.reset_requests()
        opened = [await fs.open(f"{org}/{name}") for name in files[:2]]  # together, however slow the machine
        for fh in opened:
            assert bytes(await fs.ops.read(fh, 0, HEAD))
            await fs.ops.release(fh)
        await ahead(fs, AT_ONCE)  # the window past the second
        gets = content_gets(emulator_fb)
        assert len(gets) == 2 + AT_ONCE  # the others' first blocks, without being opened
        assert set(gets.values()) == {1}  # each once
        assert urlsplit(await fs_url(fs, f"{org}/{files[AT_ONCE + 2]}")).path not in {k[4:] for k in gets}
        before = await counters(fs)
        third = f"{org}/{files[2]}"
        data = await first_bytes(fs, third)
        after = await counters(fs)
        assert content_gets(emulator_fb)[f"GET {urlsplit(await fs_url(fs, third)).path}"] == 1  # no second GET
        assert after.get("block_misses", 0) <= before.get("block_misses", 0) + 1  # the window's one more, not its
        assert after.get("block_hits", 0) > before.get("block_hits", 0)  # served from the block cache
        for name in files[3:6]:  # each further open moves the window on by one file
            await first_bytes(fs, f"{org}/{name}")
        await ahead(fs, AT_ONCE + 4)
        gets = content_gets(emulator_fb)
        assert len(gets) == 2 + AT_ONCE + 4 and set(gets.values()) == {1}  # none asked twice
        assert data == download(await fs_url(fs, third))[:HEAD]  # the right bytes


async def ahead(fs, count: int) -> None:
    """Until `count` first blocks have come ahead, then a moment for any more to be asked."""
    with trio.move_on_after(20):
        while (await counters(fs)).get("first_blocks_ahead", 0) < count:
            await trio.sleep(0.05)
    await trio.sleep(0.3)
    seen = await counters(fs)
    assert seen.get("first_blocks_ahead") == count, seen  # the counters tell what happened instead


async def fs_url(fs, path: str) -> str:
    node = fs.view.inodes.get(await fs.ino(path))
    return node.entry.content.url


@pytest.mark.trio
@pytest.mark.parametrize("options", ["", "first_blocks_ahead=0"])
async def test_a_single_open_or_the_option_off_asks_nothing_ahead(emulator_fb, tmp_path, options):
    async with in_process(emulator_fb, tmp_path, accounts=["carhartt"], options=options) as fs:
        org, files = await sized_directory(fs)
        emulator_fb.reset_requests()
        opened = files[:1] if not options else files[:3]
        for name in opened:
            assert await first_bytes(fs, f"{org}/{name}")
        await trio.sleep(0.5)  # time enough for fetches ahead to have started
        gets = content_gets(emulator_fb)
        assert len(gets) == len(opened)  # only the files opened
        assert (await counters(fs)).get("first_blocks_ahead", 0) == 0


def test_the_option_takes_a_count_or_zero():
    assert parse_mount_options(None).first_blocks_ahead == 32
    assert parse_mount_options(["first_blocks_ahead=0"]).first_blocks_ahead == 0
    for bad in ("first_blocks_ahead=-1", "first_blocks_ahead=many", "first_blocks_ahead"):
        with pytest.raises(ConfigError, match="first_blocks_ahead"):
            parse_mount_options([bad])
