"""A directory listed again once its listing is older than metadata_ttl, in process (no
kernel): the entries that did not change are the objects already in memory (a re-list of a
big directory never holds two listings), every node keeps its inode, a changed asset shows
its change, and a failing re-list falls back to the cached listing."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import pytest
import trio
from fsapi import in_process

from assetfs.metacache import STREAMED_LISTING, MetaCache
from assetfs.providers.base import Entry

ASSETS = 3000
TTL = 1.0


@pytest.mark.trio
async def test_relist_keeps_unchanged_entries_and_inodes_and_shows_changes(fresh_emulator, tmp_path):
    async with _listed(fresh_emulator, tmp_path) as (emu, fs, path, first):
        org, directory = path.rsplit("/", 1)[1], _directory(fs, path)
        files = _files(directory)
        assert directory.children[".assets"].children is None  # laid out once somebody looks into it
        assert len(await fs.listdir(f"{path}/.assets")) == len(files)
        details = {c.entry.key: c.ino for c in directory.children[".assets"].children.values()}
        assert len(files) >= ASSETS
        renamed, deleted, *unchanged = files  # the first assets are the seeded ones, which can change
        emu.control.patch(
            f"/_emulator/spectrum/organization/{org}/assets/{_id(renamed)}",
            json={"userFacingFileName": "renamed on the provider"},
        ).raise_for_status()
        emu.control.delete(f"/_emulator/spectrum/organization/{org}/assets/{_id(deleted)}").raise_for_status()
        read_back = []
        listing = fs.view.metacache.listing
        fs.view.metacache.listing = lambda key: read_back.append(key) or listing(key)
        await trio.sleep(TTL + 0.1)

        again = await fs.listdir(path)

        assert read_back == []  # the cached copy was not read while the fresh listing came
        assert len(again) == len(first) - 1
        now = _files(directory)
        assert deleted not in now
        for key in unchanged:
            ino, asset, file = files[key]
            assert now[key] == (ino, asset, file)  # the same node, the same entry objects
        assert sum(asset is files[key][1] for key, (_, asset, _) in now.items()) == len(now) - 1
        ino, asset, _ = now[renamed]
        assert ino == files[renamed][0] and asset is not files[renamed][1]
        shown = next(c for c in directory.children.values() if c.asset is asset and not c.is_dir)
        assert shown.name.startswith("renamed on the provider")
        meta = json.loads(await fs.read_file(f"{path}/.assets/{shown.name}/asset.json"))
        assert meta["userFacingFileName"] == "renamed on the provider"
        kept = {c.entry.key: c.ino for c in directory.children[".assets"].children.values()}
        assert all(kept[key] == details[key] for key in kept)  # each asset's directory too
        assert set(details) - set(kept) == {files[deleted][1].key}


@pytest.mark.trio
async def test_failing_relist_shows_the_cached_listing(fresh_emulator, tmp_path, caplog):
    async with _listed(fresh_emulator, tmp_path) as (emu, fs, path, first):
        directory = _directory(fs, path)
        inos = {c.entry.key: c.ino for c in directory.children.values()}
        emu.set_faults(fail_status=400, fail_count=-1)
        await trio.sleep(TTL + 0.1)

        assert await fs.listdir(path) == first
        assert {c.entry.key: c.ino for c in directory.children.values()} == inos
        assert "showing the listing cached" in caplog.text


@pytest.mark.trio
async def test_a_cold_listing_asks_sqlite_for_no_fact_file_by_file(fresh_emulator, tmp_path):
    """The sizes a listing lacks are looked up on disk together, not once per file as
    readdir and the sizes asked ahead meet them."""
    emu = fresh_emulator("--assets", str(ASSETS))
    org = emu.account("spectrum")["organizations"][0]
    async with in_process(emu, tmp_path, accounts=["carhartt"]) as fs:
        asked = []
        get = fs.view.metacache._cache.get
        fs.view.metacache._cache.get = lambda key, *a, **k: asked.append(key) or get(key, *a, **k)
        names = await fs.listdir(f"carhartt/{org}")
        assert len(names) > ASSETS and not [key for key in asked if str(key).startswith("fact:")]


def test_facts_are_looked_up_together(tmp_path):
    from assetfs.providers.base import Content

    cache = MetaCache(tmp_path, ttl=60)
    cache.persist_facts({"v1": Content("v1", "http://h/1", 5), "v1100": Content("v1100", "http://h/2", 7)})
    cache.close()  # written by then
    cache = MetaCache(tmp_path, ttl=60)
    asked = []
    get = cache._cache.get
    cache._cache.get = lambda key, *a, **k: asked.append(key) or get(key, *a, **k)
    cache.look_up_facts(f"v{i}" for i in range(1200))
    assert cache.fact("v2") is None and cache.fact("v1199") is None and asked == []
    assert cache.fact("v1").size == 5 and cache.fact("v1100").size == 7 and len(asked) == 2
    cache.close()


@asynccontextmanager
async def _listed(fresh_emulator, tmp_path):
    """An emulator with a Spectrum organization of ASSETS assets, mounted in process with a
    short metadata_ttl, the organization listed once: (emulator, fs, its path, its names)."""
    emu = fresh_emulator("--assets", str(ASSETS))
    org = emu.account("spectrum")["organizations"][0]
    async with in_process(emu, tmp_path, accounts=["carhartt"], options=f"metadata_ttl={TTL:g}s") as fs:
        path = f"carhartt/{org}"
        yield emu, fs, path, await fs.listdir(path)


def _directory(fs, path: str):
    node = fs.view.root
    for part in path.split("/"):
        node = node.children[part]
    return node


def _files(directory) -> dict[str, tuple[int, object, object]]:
    """The directory's asset files by asset key: (inode, asset entry, file entry)."""
    return {
        c.asset.key: (c.ino, c.asset, c.entry)
        for c in directory.children.values()
        if c.asset is not None and not c.is_dir
    }


def _id(key: str) -> str:
    return key.removeprefix("asset/")


def test_metacache_tells_when_a_listing_was_fetched_without_reading_it(tmp_path):
    cache = MetaCache(tmp_path, ttl=60)
    big = [Entry(f"f{i}", f"k{i}", False) for i in range(STREAMED_LISTING)]
    for key, entries in (("small", big[:3]), ("big", big)):
        at = cache.store_listing(key, entries)
        assert cache.listed_at(key) == at and cache.listing(key) == (entries, at)
        cache.forget_listing(key)
        assert cache.listed_at(key) is None and cache.listing(key) is None
    cache._cache.set(("listing", "older"), (big[:3], 12.5))  # as a version before listed_at stored it
    assert cache.listed_at("older") == 12.5
    cache.close()


def test_big_listing_is_written_behind_and_never_after_it_was_forgotten(tmp_path):
    """A big listing is answered from memory until it is on disk; one forgotten while it
    is being written (the poller saw a change) is gone from disk once the write ends."""
    import threading

    cache = MetaCache(tmp_path, ttl=60)
    big = [Entry(f"f{i}", f"k{i}", False) for i in range(STREAMED_LISTING + 1)]
    started, release = threading.Event(), threading.Event()
    write = cache._write

    def slow_write(key, entries, at):
        if key == "slow":
            started.set()
            release.wait(10)
        write(key, entries, at)

    cache._write = slow_write
    at = cache.store_listing("slow", big)
    assert started.wait(10)
    assert cache.listed_at("slow") == at and cache.listing("slow") == (big, at)  # from memory meanwhile
    cache.forget_listing("slow")
    assert cache.listed_at("slow") is None
    kept = cache.store_listing("kept", big[1:])
    release.set()
    cache.close()
    reopened = MetaCache(tmp_path, ttl=60)
    assert reopened.listing("slow") is None and reopened.listed_at("slow") is None
    assert reopened.listing("kept") == (big[1:], kept)
    reopened.close()


def test_a_big_listing_is_written_once_the_mount_is_quiet(tmp_path, monkeypatch):
    """Its pickle takes the GIL for a while: not while the mount is serving requests."""
    import time

    monkeypatch.setattr("assetfs.metacache.WRITE_AFTER", 0.0)
    monkeypatch.setattr("assetfs.metacache.QUIET", 0.2)
    cache = MetaCache(tmp_path, ttl=60)
    quiet_since: list[float] = []
    cache.last_request = lambda: quiet_since[0] if quiet_since else time.monotonic()  # busy until told
    at = cache.store_listing("big", [Entry(f"f{i}", f"k{i}", False) for i in range(STREAMED_LISTING)])
    time.sleep(0.5)
    assert cache._cache.get(("listed_at", "big")) is None and cache.listed_at("big") == at  # in memory only
    quiet_since.append(time.monotonic())
    deadline = time.monotonic() + 5
    while cache._cache.get(("listed_at", "big")) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache._cache.get(("listed_at", "big")) == at
    cache.close()
