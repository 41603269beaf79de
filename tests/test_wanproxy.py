"""The benchmark's WAN proxy (benchmarks/wanproxy.py): the bytes arrive whole, a round trip
later, no faster than the cap. Lower bounds only: a loaded machine is slower, never faster."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parent.parent / "benchmarks" / "wanproxy.py"
BODY = os.urandom(2_000_000)
DELAY = 0.03  # each way
RATE_MB = 4.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: two requests on one connection

    def do_GET(self):
        body = BODY if self.path == "/big" else b"small"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy():
    """The proxy's process, in front of a server of its own; `.address` is (host, port)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = subprocess.Popen(
        [
            sys.executable,
            str(PROXY),
            "--to",
            f"127.0.0.1:{server.server_address[1]}",
            "--delay-ms",
            str(DELAY * 1000),
            "--rate-mb",
            str(RATE_MB),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        host, port = proxy.stdout.readline().strip().split(":")
        proxy.address = (host, int(port))
        yield proxy
    finally:
        proxy.terminate()
        proxy.wait(10)
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxied(proxy):
    return proxy.address


def tally(proxy) -> dict[str, int]:
    """The bytes the proxy says it delivered each way (it prints them at SIGUSR1)."""
    proxy.send_signal(signal.SIGUSR1)
    words = proxy.stdout.readline().split()
    return {words[0]: int(words[1]), words[2]: int(words[3])}


def test_bytes_delivered_are_counted_each_way(proxy):
    assert tally(proxy) == {"down": 0, "up": 0}
    conn = http.client.HTTPConnection(*proxy.address, timeout=30)
    sent = os.urandom(300_000)
    conn.request("POST", "/echo", body=sent)
    assert conn.getresponse().read() == sent[::-1]
    conn.request("GET", "/big")
    assert conn.getresponse().read() == BODY
    conn.close()
    counted = tally(proxy)
    # the bodies plus the requests' and answers' headers (a few hundred bytes)
    assert len(sent) < counted["up"] < len(sent) + 1000
    assert len(sent) + len(BODY) < counted["down"] < len(sent) + len(BODY) + 1000


def test_bytes_arrive_whole_both_ways_on_one_connection(proxied):
    conn = http.client.HTTPConnection(*proxied, timeout=30)
    conn.request("GET", "/big")
    assert conn.getresponse().read() == BODY
    sent = os.urandom(300_000)
    conn.request("POST", "/echo", body=sent)
    assert conn.getresponse().read() == sent[::-1]
    conn.close()


def test_each_request_waits_a_round_trip_and_connecting_another(proxied):
    conn = http.client.HTTPConnection(*proxied, timeout=30)
    start = time.monotonic()
    conn.request("GET", "/small")
    assert conn.getresponse().read() == b"small"
    first = time.monotonic() - start
    start = time.monotonic()
    conn.request("GET", "/small")
    assert conn.getresponse().read() == b"small"
    again = time.monotonic() - start
    conn.close()
    assert first >= 4 * DELAY  # the handshake's round trip, then the request's
    assert again >= 2 * DELAY  # a kept-alive connection: the request's round trip only


def test_a_connection_is_no_faster_than_its_cap(proxied):
    conn = http.client.HTTPConnection(*proxied, timeout=30)
    start = time.monotonic()
    conn.request("GET", "/big")
    assert len(conn.getresponse().read()) == len(BODY)
    conn.close()
    assert time.monotonic() - start >= len(BODY) / (RATE_MB * 1e6)
