"""The read path's connections (read/transfer.py, read/pool.py): opened ahead when a listing
names a content host, and an idle one the server has closed never handed to a request.
Against real HTTP(S) servers on 127.0.0.1 that count the connections they accept."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from urllib.parse import urlsplit

import psutil
import pytest
import trio
from redisd import self_signed
from truth import spectrum_assets

from assetfs.providers.base import Content
from assetfs.providers.http import ProviderHTTP
from assetfs.read import transfer
from assetfs.read.blockcache import BlockCache
from assetfs.read.pool import WARM, ReaderPool
from assetfs.read.reader import Cursor
from assetfs.read.transfer import ConnectionPool, fetch_range
from assetfs.stats import Stats

DATA = bytes(range(256)) * 1024  # 256 KiB


class CountingServer(http.server.ThreadingHTTPServer):
    """Answers ranged GETs of DATA at /blob over keep-alive connections and counts the
    connections it accepts; the first `drop` it closes at once (as a server closes an idle
    connection), setting `dropped` when it has."""

    def __init__(self, tls: ssl.SSLContext | None = None, drop: int = 0):
        self.tls, self.drop = tls, drop
        self.connections = 0
        self.dropped = threading.Event()
        super().__init__(("127.0.0.1", 0), _Ranges)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_address[1]}/blob"

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, address

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        if self.drop:
            self.drop -= 1
            return False  # closed (shutdown_request) without a word
        return True

    def shutdown_request(self, request) -> None:
        super().shutdown_request(request)
        self.dropped.set()


class _Ranges(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        first, last = (int(n) for n in self.headers["Range"].removeprefix("bytes=").split("-"))
        body = DATA[first : last + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(DATA)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Blocks:
    """A BlockSink keeping what it is given."""

    def __init__(self):
        self.blocks: dict[int, bytes] = {}

    def watched(self, index: int) -> int:
        return 0

    def progress(self, index: int, buffer: bytearray, filled: int) -> None:
        pass

    def block(self, index: int, data: bytes | bytearray) -> None:
        self.blocks[index] = bytes(data)


def get_all(pool: ConnectionPool, url: str) -> bytes:
    sink = Blocks()
    fetch_range(pool, url, 0, len(DATA), len(DATA), lambda url: False, {}, "test", sink, 0)
    return sink.blocks[0]


@pytest.fixture
def tls(tmp_path, monkeypatch):
    """A server-side TLS context for 127.0.0.1, its certificate trusted by the read path."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed(cert, key)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    monkeypatch.setattr(transfer, "_ssl_context", ssl.create_default_context(cafile=str(cert)))
    return server


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_cold_read_after_a_listing_named_its_host_opens_no_connection(scheme, tmp_path, request):
    server = CountingServer(request.getfixturevalue("tls") if scheme == "https" else None)
    cache = BlockCache(tmp_path / "blocks", 1 << 30, block_size=1 << 20)
    pool = ReaderPool(cache, Stats(), read_ahead=4 << 20, timeout=5)
    origin = (scheme, "127.0.0.1", server.server_address[1])

    async def main() -> bytes:
        http = ProviderHTTP("http://127.0.0.1:1/", timeout=5, retries=1)
        async with trio.open_nursery() as nursery:
            pool.nursery = nursery
            pool.listed([None, server.url, "https://elsewhere.invalid/x"])  # the first URL's host
            with trio.fail_after(10):
                while pool.connections.idle(*origin) < WARM:
                    await trio.sleep(0.01)
            await trio.sleep(0.2)  # a TLS 1.3 server's session tickets are on the way by now
            pool.listed([server.url])  # already warm: nothing more
            reader = pool.open(Content("v-warm", server.url, len(DATA)), http)
            data = bytes(await reader.read(Cursor(), 0, len(DATA)))
            pool.close(reader)
            await http.aclose()
            return data

    try:
        assert trio.run(main) == DATA
        assert server.connections == WARM  # the GET went over one opened ahead
    finally:
        pool.connections.close()
        server.shutdown()


def test_an_idle_connection_the_server_closed_is_not_sent_a_request(tmp_path):
    server = CountingServer(drop=1)
    pool = ConnectionPool(timeout=5)
    port = server.server_address[1]
    try:
        pool.open_ahead("http", "127.0.0.1", port)
        assert server.dropped.wait(5)
        assert get_all(pool, server.url) == DATA  # no Retryable: a new connection, not the closed one
        assert server.connections == 2
        assert get_all(pool, server.url) == DATA
        assert server.connections == 2  # that one is kept alive and used again
    finally:
        pool.close()
        server.shutdown()


def test_a_host_that_refuses_connections_is_not_connected_ahead(tmp_path):
    cache = BlockCache(tmp_path / "blocks", 1 << 30)
    pool = ReaderPool(cache, Stats(), read_ahead=4 << 20, timeout=5)
    server = CountingServer()
    port = server.server_address[1]
    server.shutdown()
    server.server_close()  # nothing listens on the port now

    async def main() -> None:
        with trio.fail_after(10):  # the nursery waits for the attempts, which fail quietly
            async with trio.open_nursery() as nursery:
                pool.nursery = nursery
                pool.listed([f"http://127.0.0.1:{port}/blob"])

    trio.run(main)
    assert pool.connections.idle("http", "127.0.0.1", port) == 0


@pytest.mark.mount
def test_on_a_mount_a_listed_directorys_cold_file_is_read_over_a_connection_opened_ahead(emu, mount):
    """Counted on the mount's side: the TCP connections it holds to the content host."""
    m = mount(emu.config, accounts=["carhartt"])
    account = emu.account("spectrum")
    org = account["organizations"][0]
    port = urlsplit(spectrum_assets(account, org)[0]["uploadedAssetUri"]).port
    mounted = psutil.Process(m.process.pid)

    def to_content_host() -> set[int]:
        """The local ports of the mount's open connections to the content host's port."""
        return {
            c.laddr.port
            for c in mounted.net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        }

    files = [p for p in (m.path / "carhartt" / org).iterdir() if p.is_file()]  # opendir names the host
    deadline = time.monotonic() + 10
    while len(to_content_host()) < WARM + 1:  # and libcurl's, for the batches of first blocks ahead
        assert time.monotonic() < deadline, "no connections opened ahead"
        time.sleep(0.05)
    before = to_content_host()
    data = files[0].read_bytes()  # cold: nothing of it is cached
    assert len(data) == files[0].stat().st_size > 0
    assert to_content_host() <= before  # its GET went over one of them: no new connection


def test_a_host_the_request_policy_holds_down_is_not_connected_ahead(tmp_path):
    server = CountingServer()
    pool = ReaderPool(BlockCache(tmp_path / "blocks", 1 << 30), Stats(), read_ahead=4 << 20, timeout=5)

    async def main() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                pool.nursery = nursery
                pool.listed([server.url], held_down=lambda url: url == server.url)

    try:
        trio.run(main)
        assert server.connections == 0
    finally:
        server.shutdown()
