"""Batches of small GETs through libcurl on one long-lived thread (read/multi.py), against a
real HTTP server on 127.0.0.1; and the reader's side of a first block fetched that way."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trio

from assetfs.providers.base import Content
from assetfs.providers.http import ProviderHTTP
from assetfs.read.blockcache import BlockCache
from assetfs.read.multi import CurlWorker, Fetch
from assetfs.read.reader import Cursor, Reader
from assetfs.stats import Stats


def body_of(name: str, size: int) -> bytes:
    return hashlib.sha256(name.encode()).digest() * (size // 32 + 1)


class Server:
    """/f<n>: n bytes, ranges honoured; /whole<n>: n bytes, ranges ignored (200); /moved
    redirects; /missing is 404; /stall never answers. Records (method, path, Range,
    Authorization) of each request, and the connections."""

    def __init__(self):
        self.seen: list[tuple[str, str, str | None, str | None]] = []
        self.connections = 0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                server.connections += 1
                super().setup()

            def log_message(self, *args):
                pass

            def do_OPTIONS(self):  # as many servers answer it: refused, with a body, the connection kept
                server.seen.append(("OPTIONS", self.path, self.headers.get("Range"), None))
                refusal = b"Method Not Allowed"
                self.send_response(405)
                self.send_header("Content-Length", str(len(refusal)))
                self.end_headers()
                self.wfile.write(refusal)

            def do_GET(self):
                server.seen.append(("GET", self.path, self.headers.get("Range"), self.headers.get("Authorization")))
                if self.path == "/stall":
                    server.release.wait(10)
                    return
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/f7")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                for prefix in ("/f", "/whole"):
                    if self.path.startswith(prefix) and self.path[len(prefix) :].isdigit():
                        size = int(self.path[len(prefix) :])
                        data = body_of(self.path, size)[:size]
                        ranged = prefix == "/f" and (asked := self.headers.get("Range"))
                        if ranged:
                            first, last = (int(n) for n in asked.removeprefix("bytes=").split("-"))
                            last = min(last, size - 1)
                            self.send_response(206)
                            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
                            data = data[first : last + 1]
                        else:
                            self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        try:
                            self.wfile.write(data)
                        except OSError:  # the client stopped reading (more than it asked)
                            pass
                        return
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def worker():
    w = CurlWorker(timeout=5)
    yield w
    w.close()


def run(worker: CurlWorker, fetches: list[Fetch], within: float = 10) -> list[list[Fetch]]:
    """Submit one batch and wait until every fetch of it has ended: the rounds they ended in."""
    rounds: list[list[Fetch]] = []
    done = threading.Event()

    def ended(fetches_ended: list[Fetch]) -> None:
        rounds.append(fetches_ended)
        if sum(map(len, rounds)) == len(fetches):
            done.set()

    worker.submit(fetches, ended)
    assert done.wait(within), "not every fetch ended"
    return rounds


def test_a_batch_brings_the_first_bytes_of_each_file_with_its_own_headers(server, worker):
    sizes = [100, 5000, 70000, 3]
    fetches = [
        Fetch(f"{server.url}/f{size}", ["User-Agent: t", f"Authorization: Bearer {i}"], min(size, 4096))
        for i, size in enumerate(sizes)
    ]
    rounds = run(worker, fetches)
    assert sorted(id(f) for r in rounds for f in r) == sorted(map(id, fetches))  # each ended once
    for fetch, size in zip(fetches, sizes):
        assert fetch.error is None
        assert fetch.body == body_of(f"/f{size}", size)[: min(size, 4096)]
    asked = {path: (rng, auth) for method, path, rng, auth in server.seen}
    assert asked["/f70000"] == ("bytes=0-4095", "Bearer 2")  # only the first bytes, with its own credentials
    assert asked["/f3"] == ("bytes=0-2", "Bearer 3")


def test_a_whole_file_may_come_as_a_200_but_a_range_ignored_on_a_bigger_one_is_refused(server, worker):
    whole = Fetch(f"{server.url}/whole300", [], 300, whole=True)
    part = Fetch(f"{server.url}/whole2000000", [], 1000)  # the server sends all 2 MB
    run(worker, [whole, part])
    assert whole.error is None and whole.body == body_of("/whole300", 300)[:300]
    assert part.error is not None and part.body == b""  # stopped, not read to the end


def test_redirects_and_errors_are_not_followed_but_end_with_an_error(server, worker):
    moved, missing = Fetch(f"{server.url}/moved", [], 7), Fetch(f"{server.url}/missing", [], 10)
    run(worker, [moved, missing])
    assert "302" in (moved.error or "") and "404" in (missing.error or "")
    assert [p for _, p, _, _ in server.seen].count("/f7") == 0
    assert not moved.unreachable and not missing.unreachable


def test_a_host_that_does_not_answer_is_told_apart(worker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    fetch = Fetch(f"http://127.0.0.1:{port}/f10", [], 10)
    run(worker, [fetch])
    assert fetch.unreachable and fetch.error


def test_warming_opens_the_connection_the_next_batch_uses(server, worker):
    worker.warm(f"{server.url}/f10", ["User-Agent: t"])
    deadline = time.monotonic() + 5
    while not server.seen:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert server.seen[0][:2] == ("OPTIONS", "/f10")  # not a read of the file
    after = [Fetch(f"{server.url}/f10", [], 10)], [Fetch(f"{server.url}/f20", [], 20)]
    for batch in after:
        run(worker, batch)
    assert [f.body for (f,) in after] == [
        body_of("/f10", 10)[:10],
        body_of("/f20", 20)[:20],
    ]  # the refusal's body not taken for theirs
    assert server.connections == 1  # one kept connection for the warm-up and both batches
    assert server.seen[1][:3] == ("GET", "/f10", "bytes=0-9")  # a GET again after the OPTIONS


def test_closing_ends_every_fetch_waiting_or_in_flight(server):
    worker = CurlWorker(timeout=30)
    stalled = Fetch(f"{server.url}/stall", [], 10)
    rounds: list[Fetch] = []
    worker.submit([stalled], rounds.extend)
    deadline = time.monotonic() + 5
    while not server.seen:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    worker.close()
    assert time.monotonic() - started < 5
    assert rounds == [stalled] and stalled.error
    late = Fetch(f"{server.url}/f10", [], 10)
    worker.submit([late], rounds.extend)  # after close: ended at once
    assert late.error and rounds[-1] is late


def test_a_callers_error_does_not_stop_later_batches(server, worker):
    worker.submit([Fetch(f"{server.url}/f10", [], 10)], lambda ended: 1 / 0)
    fetch = Fetch(f"{server.url}/f30", [], 30)
    run(worker, [fetch])
    assert fetch.body == body_of("/f30", 30)[:30]


# -- the reader's side ------------------------------------------------------------------------


def reader_test(content: Content, cache: BlockCache, body):
    """Run body(reader) with a Reader of `content` in a nursery; its stats returned too."""
    stats = Stats()

    async def main():
        http = ProviderHTTP("http://127.0.0.1:1/", timeout=5, retries=1)
        try:
            async with trio.open_nursery() as nursery:
                result = await body(Reader(content, http, cache, nursery, stats))
                nursery.cancel_scope.cancel()
                return result
        finally:
            await http.aclose()

    return trio.run(main), stats


def firsts(server: Server) -> list[str]:
    """The ranges asked that start at the first byte."""
    return [rng for _, _, rng, _ in server.seen if rng and rng.startswith("bytes=0-")]


def test_a_first_block_claimed_and_dropped_is_fetched_by_the_waiting_read_at_once(server, tmp_path):
    url, size = f"{server.url}/f3000", 3000
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1024)

    async def body(reader: Reader):
        pending = reader.claim_first_block()
        assert pending is not None and reader.claim_first_block() is None  # coming already
        got = []

        async def read():
            got.append(bytes(await reader.read(Cursor(), 0, 100)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.sleep(0.2)
            assert not got and not firsts(server)  # waiting for the fetch ahead, not asking the block itself
            started = trio.current_time()
            reader.first_block_dropped(pending)
        assert trio.current_time() - started < 0.15  # no pause as after a failure
        return got[0]

    data, _ = reader_test(Content("v-dropped", url, size), cache, body)
    assert data == body_of("/f3000", size)[:100]
    assert firsts(server) == ["bytes=0-1023"]  # then the read's own GET, once


def test_a_first_block_that_came_is_served_and_cached(server, tmp_path):
    url, size = f"{server.url}/f3000", 3000
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1024)
    first = body_of("/f3000", size)[:1024]

    async def body(reader: Reader):
        pending = reader.claim_first_block()
        assert pending is not None
        assert reader.first_block_came(pending, first)
        return bytes(await reader.read(Cursor(), 0, 1024))

    data, stats = reader_test(Content("v-came", url, size), cache, body)
    assert data == first
    assert not firsts(server)  # not asked: the block came from elsewhere
    assert cache.get_memory("v-came", 0) == first
    assert stats.counters.get("bytes_downloaded") == 1024


def test_a_whole_file_that_came_unlike_its_md5_is_refused(server, tmp_path):
    url, size = f"{server.url}/f500", 500
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1024)
    right = body_of("/f500", size)[:size]
    content = Content("v-md5", url, size, md5=hashlib.md5(right).hexdigest())

    async def body(reader: Reader):
        pending = reader.claim_first_block()
        assert pending is not None
        assert not reader.first_block_came(pending, b"x" * size)  # not what the provider published
        assert cache.get_memory("v-md5", 0) is None
        return bytes(await reader.read(Cursor(), 0, size))  # the read fetches and checks it itself

    data, _ = reader_test(content, cache, body)
    assert data == right
