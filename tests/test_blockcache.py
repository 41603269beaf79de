"""The block store without a kernel: sparse files and bitmaps on a real disk."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from assetfs.read.blockcache import BlockCache

BS = 4096


def block(n: int, size: int = BS) -> bytes:
    return bytes([n % 251]) * size


def test_blocks_written_are_read_back_in_one_piece_across_blocks_and_after_a_restart(tmp_path):
    cache = BlockCache(tmp_path, 1 << 30, block_size=BS)
    for i in (0, 1, 2):
        cache.store("v1", i, block(i))
    cache.store("v1", 3, block(3, 100))  # the short last block
    assert cache.on_disk("v1", 0, 3)
    assert cache.read("v1", BS - 10, 20) == block(0, 10) + block(1, 10)
    cache.close()
    again = BlockCache(tmp_path, 1 << 30, block_size=BS)
    assert again.on_disk("v1", 0, 3) and not again.on_disk("v1", 0, 4)
    assert again.get_disk("v1", 3) == block(3, 100)
    assert again.volume() >= 3 * BS


def test_a_gap_is_not_on_disk_and_a_sparse_file_takes_only_what_it_holds(tmp_path):
    cache = BlockCache(tmp_path, 1 << 30, block_size=BS)
    cache.store("v", 0, block(0))
    cache.store("v", 1000, block(1))
    assert not cache.on_disk("v", 0, 1)
    assert cache.first_missing("v", 0, 5, coming={}) == 1
    assert cache.first_missing("v", 0, 5, coming={1: None, 2: None, 3: None, 4: None}) is None
    assert cache.first_present("v", 1, 2000, coming={}) == 1000
    assert cache.get_disk("v", 500) is None
    data = next(tmp_path.glob("*.data"))
    assert data.stat().st_size > 1000 * BS and data.stat().st_blocks * 512 < 100 * BS


def test_the_least_recently_used_version_is_evicted_to_stay_under_the_limit(tmp_path):
    cache = BlockCache(tmp_path, 4 * BS, block_size=BS)
    for version in ("old", "recent"):
        for i in range(2):
            cache.store(version, i, block(i))
    assert cache.on_disk("old", 0, 0)  # a read of "old" makes "recent" the least recently used
    cache.read("old", 0, 1)
    cache.store("new", 0, block(9))
    assert cache.on_disk("old", 0, 1) and cache.on_disk("new", 0, 0)
    assert not cache.on_disk("recent", 0, 0)
    assert cache.volume() <= 4 * BS
    assert len(list(tmp_path.glob("*.data"))) == 2


def test_a_file_larger_than_the_cache_is_served_without_being_kept_beyond_the_limit(tmp_path):
    cache = BlockCache(tmp_path, 3 * BS, block_size=BS)
    for i in range(10):
        cache.store("huge", i, block(i))
    assert cache.volume() <= 3 * BS
    assert cache.on_disk("huge", 0, 2) and not cache.on_disk("huge", 3, 3)


def test_dropped_blocks_are_gone_and_not_written_again(tmp_path):
    cache = BlockCache(tmp_path, 1 << 30, block_size=BS)
    cache.store("bad", 0, block(0))
    cache.remember("bad", 0, block(0))
    cache.drop("bad", 1)
    cache.offer("bad", 1, block(1))
    cache.flush()
    assert not cache.contains("bad", 0) and not cache.contains("bad", 1)
    assert cache.volume() == 0


def test_another_block_size_does_not_read_a_bitmap_of_the_first(tmp_path):
    BlockCache(tmp_path, 1 << 30, block_size=BS).store("v", 0, block(0))
    assert not BlockCache(tmp_path, 1 << 30, block_size=2 * BS).on_disk("v", 0, 0)


def test_a_cache_of_the_older_layout_is_cleared(tmp_path):
    (tmp_path / "cache.db").write_bytes(b"SQLite format 3\0")
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "0123.val").write_bytes(b"x" * 100)
    cache = BlockCache(tmp_path, 1 << 30, block_size=BS)
    assert os.listdir(tmp_path) == []
    cache.store("v", 0, block(0))
    assert cache.on_disk("v", 0, 0)


def test_files_cleared_by_another_process_read_as_absent_and_are_not_made_again(tmp_path):
    cache = BlockCache(tmp_path, 1 << 30, block_size=BS)
    cache.store("kept", 0, block(0))
    cache.store("gone", 0, block(1))
    cache.close()
    mount = BlockCache(tmp_path, 1 << 30, block_size=BS)  # knows both versions from the directory
    assert mount.on_disk("kept", 0, 0)
    other = BlockCache(tmp_path, 0, block_size=BS)  # `assetfs cache clear` while the mount runs
    other.clear()
    other.close()
    assert not mount.on_disk("gone", 0, 0) and mount.first_missing("gone", 0, 1, coming={}) == 0
    assert not mount.on_disk("kept", 0, 0)  # open, but unlinked meanwhile
    assert os.listdir(tmp_path) == []
    mount.store("gone", 0, block(2))
    assert mount.get_disk("gone", 0) == block(2)


def test_a_data_file_shorter_than_its_bitmap_says_is_read_not_mapped(tmp_path):
    cache = BlockCache(tmp_path, 1 << 30, block_size=BS)
    for i in (0, 1):
        cache.store("v", i, block(i))
    assert bytes(cache.read("v", BS - 5, 10)) == block(0, 5) + block(1, 5)
    os.truncate(next(tmp_path.glob("*.data")), BS + 3)  # as a crash can leave it: the bit, not the bytes
    assert cache.read("v", BS - 5, 10) == block(0, 5) + block(1, 3)  # short, where a mapping would fault


def resident_bytes(path) -> int:
    """How much of a file the page cache holds (util-linux's fincore)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip() or 0)


def test_blocks_asked_ahead_are_read_into_the_page_cache_and_a_gap_is_not(tmp_path):
    bs = 256 << 10
    cache = BlockCache(tmp_path, 1 << 30, block_size=bs)
    for i in (0, 1, 2, 3, 5, 6, 7):  # block 4 is a gap
        cache.store("v1", i, block(i, bs))
    [data] = tmp_path.glob("*.data")
    fd = os.open(data, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if resident_bytes(data):
        pytest.skip("this file system keeps its files in memory")
    cache.will_need("v1", 1, 8)
    deadline = time.monotonic() + 10
    while resident_bytes(data) < 6 * bs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 6 * bs <= resident_bytes(data) < 7 * bs  # blocks 1-3 and 5-7; neither block 0 nor the gap
