"""The streaming reader without a kernel: real HTTP to the emulator, a real disk cache."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest
import trio
from truth import download, spectrum_assets

from assetfs.errors import ChecksumMismatch, ProviderError
from assetfs.providers.base import Content
from assetfs.providers.http import ProviderHTTP
from assetfs.read import reader as reader_module
from assetfs.read.blockcache import BlockCache
from assetfs.read.reader import Cursor, Reader
from assetfs.stats import Stats


@pytest.fixture
def sample(emu):
    account = emu.account("spectrum")
    asset = spectrum_assets(account, account["organizations"][0])[0]
    url = asset["uploadedAssetUri"]
    return url, download(url)


def read_all(content: Content, cache: BlockCache, step: int = 4096) -> bytes:
    async def main():
        http = ProviderHTTP("http://127.0.0.1:1/", timeout=5, retries=1)
        async with trio.open_nursery() as nursery:
            reader = Reader(content, http, cache, nursery, Stats())
            cursor, out, offset = Cursor(), [], 0
            while chunk := await reader.read(cursor, offset, step):
                out.append(chunk)
                offset += len(chunk)
            await http.aclose()
            return b"".join(out)

    try:
        return trio.run(main)
    except ExceptionGroup as group:  # the nursery wraps what the read raised
        raise group.exceptions[0] from None


def test_a_checksum_mismatch_is_an_error_and_nothing_is_cached(sample, tmp_path):
    url, data = sample
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1024)
    content = Content("v-wrong", url, len(data), md5="0" * 32)
    with pytest.raises(ChecksumMismatch):
        read_all(content, cache)
    assert not any(cache.contains("v-wrong", i) for i in range(len(data) // 1024 + 1))


def test_verified_bytes_are_cached_and_served_when_the_provider_is_down(sample, tmp_path, emu):
    url, data = sample
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1024)
    content = Content("v-right", url, len(data), md5=hashlib.md5(data).hexdigest())
    assert read_all(content, cache) == data
    emu.set_faults(fail_status=500, fail_count=-1)
    fresh = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1024)  # memory empty: disk only
    assert read_all(content, fresh, step=777) == data


def test_a_truncated_body_is_retried_then_reported(sample, tmp_path, emu):
    url, data = sample
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1 << 20)
    emu.set_faults(truncate_body=1)
    assert read_all(Content("v-trunc", url, len(data)), cache) == data  # one short body, then a good one
    emu.set_faults(truncate_body=100)
    with pytest.raises(ProviderError):
        read_all(Content("v-trunc2", url, len(data)), BlockCache(tmp_path / "b2", 1 << 30))


class StallingServer(http.server.ThreadingHTTPServer):
    """Answers ranged GETs of `data`, sending the first `head` bytes of a body at once and
    the rest only once `go` is set: a body that comes slowly."""

    def __init__(self, data: bytes, head: int):
        self.data, self.head, self.go = data, head, threading.Event()
        super().__init__(("127.0.0.1", 0), _Stalling)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/blob"


class _Stalling(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        data = self.server.data
        first, last = (int(n) for n in self.headers["Range"].removeprefix("bytes=").split("-"))
        body = data[first : last + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: self.server.head])
        self.wfile.flush()
        self.server.go.wait(30)
        self.wfile.write(body[self.server.head :])

    def log_message(self, *args):
        pass


def test_the_first_bytes_of_a_block_are_answered_before_the_rest_of_it_has_come(tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB: one block
    server = StallingServer(data, head=100_000)
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1 << 20)

    async def main():
        http = ProviderHTTP("http://127.0.0.1:1/", timeout=5, retries=1)
        async with trio.open_nursery() as nursery:
            reader = Reader(Content("v-slow", server.url, len(data)), http, cache, nursery, Stats())
            cursor = Cursor()
            with trio.fail_after(10):  # without delivery in pieces it would wait for `go`: 30 s
                first = bytes(await reader.read(cursor, 0, 4096))
            assert not server.go.is_set() and not cache.contains("v-slow", 0)
            server.go.set()
            rest = bytes(await reader.read(cursor, 4096, len(data)))
            await http.aclose()
            return first + rest

    try:
        assert trio.run(main) == data
        cache.flush()
        assert cache.get_disk("v-slow", 0) == data  # the whole block was kept once it had come
    finally:
        server.go.set()
        server.shutdown()


def read_blocks(server, cache: BlockCache, order, max_ahead: int) -> tuple[bytes, Stats]:
    """Read `server.data` one block at a time in the block `order` given (as the kernel's
    read-ahead does: near-sequential, sometimes swapped); every block's bytes and the stats."""
    stats, bs = Stats(), cache.block_size

    async def main():
        http = ProviderHTTP("http://127.0.0.1:1/", timeout=5, retries=1)
        async with trio.open_nursery() as nursery:
            reader = Reader(Content("v-order", server.url, len(server.data)), http, cache, nursery, stats, max_ahead)
            cursor, out = Cursor(), {}
            for index in order:
                out[index] = bytes(await reader.read(cursor, index * bs, bs))
            await http.aclose()
            return b"".join(out[i] for i in sorted(out))

    return trio.run(main), stats


@pytest.fixture
def forty_blocks():
    server = StallingServer(bytes(range(256)) * 160, head=0)  # 40 blocks of 1 KiB
    server.go.set()
    yield server
    server.shutdown()


@pytest.mark.parametrize("order", ["in order", "pairs swapped"])
def test_a_sequential_reader_fetches_each_block_once_in_runs_of_half_its_window(forty_blocks, tmp_path, order):
    # A cache that keeps nothing on disk: a block pushed out of memory before it was read
    # would be fetched again. Read-ahead of 8 blocks, 16 in memory.
    cache = BlockCache(tmp_path / "blocks", 0, block_size=1024, memory_blocks=16)
    blocks = list(range(40))
    if order == "pairs swapped":
        blocks = [b ^ 1 for b in blocks]  # 1, 0, 3, 2, …: still sequential enough
    data, stats = read_blocks(forty_blocks, cache, blocks, max_ahead=8)
    assert data == forty_blocks.data
    assert stats.counters["block_misses"] == 40  # no block fetched twice
    assert stats.counters["requests"] <= 40 // 4 + 4  # one per half window, after the window has grown


def test_a_far_seek_fetches_only_the_block_read_and_the_next(forty_blocks, tmp_path):
    cache = BlockCache(tmp_path / "blocks", 0, block_size=1024, memory_blocks=16)
    data, stats = read_blocks(forty_blocks, cache, [0, 1, 2, 30], max_ahead=8)
    assert data == forty_blocks.data[: 3 * 1024] + forty_blocks.data[30 * 1024 : 31 * 1024]
    fetched_before_the_seek = stats.counters["block_misses"] - 2
    assert fetched_before_the_seek <= 3 + 8  # the blocks read and at most a window ahead


def test_reading_the_same_block_again_fetches_nothing_ahead(forty_blocks, tmp_path):
    cache = BlockCache(tmp_path / "blocks", 0, block_size=1024, memory_blocks=16)
    data, stats = read_blocks(forty_blocks, cache, [0, 0, 0, 0, 0, 0], max_ahead=8)
    assert data == forty_blocks.data[:1024]
    assert stats.counters["block_misses"] <= 3  # the block and the first window's two after it


class _Together(_Stalling):
    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.server.ranges.append(self.headers["Range"])
        if len(self.server.ranges) <= 3:  # the first run's parts: answered only once all are asked at once
            try:
                self.server.together.wait()
            except threading.BrokenBarrierError:
                self.send_error(500)
                return
        super().do_GET()


def test_a_long_run_of_blocks_comes_in_several_requests_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_module, "FLOW_MIN", 1024)  # split down to a block
    server = StallingServer(bytes(range(256)) * 20, head=0)  # 5 blocks of 1 KiB
    server.RequestHandlerClass = _Together
    server.go.set()
    server.ranges, server.together = [], threading.Barrier(3, timeout=5)
    cache = BlockCache(tmp_path / "blocks", 0, block_size=1024, memory_blocks=16)
    try:
        data, stats = read_blocks(server, cache, [0, 1, 2, 3, 4], max_ahead=4)
    finally:
        server.shutdown()
    assert data == server.data
    # The first read asks for its block and the window's two after it: three GETs at once.
    assert sorted(server.ranges[:3]) == ["bytes=0-1023", "bytes=1024-2047", "bytes=2048-3071"]
    assert stats.counters["block_misses"] == 5  # no block twice
