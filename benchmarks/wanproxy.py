"""A TCP forwarder that makes 127.0.0.1 look like a server across the internet: every chunk
is delayed by a set time each way (half the round trip), and each connection's rate in each
direction is capped, as a single flow over a long path is. The benchmark puts one in front of
nginx and one in front of the emulator, so assetfs, rclone and curl pay the same round trips.

Bytes in flight per direction are bounded (the link's bandwidth-delay product plus a
window), as a TCP window is: a fast server cannot fill the proxy's memory with a whole file.

Run: `python benchmarks/wanproxy.py --to 127.0.0.1:8080 --delay-ms 20 --rate-mb 50`
prints `127.0.0.1:PORT` once it listens; at each SIGUSR1 it prints `down N up M`, the bytes it
has delivered to clients and to the server so far (what a benchmark counts as fetched).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import sys

CHUNK = 64 << 10  # bytes read at once from either side
WINDOW = 256 << 10  # bytes in flight beyond the bandwidth-delay product (a TCP window's slack)
Tally = collections.Counter  # bytes delivered, by way ("down", "up")


class Link:
    """One direction of one connection. A chunk read at t goes onto the link when the link is
    free (at `rate` bytes a second) and comes out `delay` seconds after that, in order. The
    source is paused while more than the link holds is queued (flow control, as TCP's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, rate: float | None, tally: Tally, way: str):
        self.loop = loop
        self.tally = tally
        self.way = way  # "down" (to the client) or "up" (to the server)
        self.delay = delay
        self.rate = rate
        self.limit = WINDOW + int((rate or 0) * delay)
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None  # None until the upstream connection is made
        self.chunks: collections.deque[tuple[float, bytes | None]] = collections.deque()  # None: the end
        self.queued = 0  # bytes read, not yet written
        self.free_at = 0.0  # when the link has sent what it holds
        self.dest_full = False  # the destination's own buffer is full
        self.timer: asyncio.TimerHandle | None = None
        self.ended = False  # the end was passed on

    def take(self, data: bytes | None) -> None:
        """Bytes read from the source (None: its end)."""
        start = max(self.loop.time(), self.free_at)
        if self.rate and data:
            self.free_at = start + len(data) / self.rate
        self.chunks.append((start + self.delay, data))
        if data:
            self.queued += len(data)
            if self.queued >= self.limit:
                self.source.pause_reading()
        self.arm()

    def arm(self) -> None:
        if self.timer is None and self.chunks and self.dest is not None:
            self.timer = self.loop.call_at(self.chunks[0][0], self.deliver)

    def deliver(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.chunks and self.chunks[0][0] <= now:
            data = self.chunks.popleft()[1]
            if data is None:
                self.ended = True
                with contextlib.suppress(OSError):  # the other side may be gone already
                    if self.dest.can_write_eof() and not self.dest.is_closing():
                        self.dest.write_eof()
                continue
            self.dest.write(data)
            self.queued -= len(data)
            self.tally[self.way] += len(data)
        self.flow()
        self.arm()

    def flow(self) -> None:
        if self.source is not None and not self.source.is_closing():
            if self.queued < self.limit and not self.dest_full:
                self.source.resume_reading()
            else:
                self.source.pause_reading()


class End(asyncio.Protocol):
    """One socket of a proxied connection: what it reads goes into `inbound`; `outbound` is
    the link that writes to it."""

    def __init__(self, connection: Connection, inbound: Link, outbound: Link):
        self.connection = connection
        self.inbound = inbound
        self.outbound = outbound

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.inbound.source = transport
        self.outbound.dest = transport
        self.connection.made(transport, client=self.inbound is self.connection.up)
        self.outbound.arm()

    def data_received(self, data: bytes) -> None:
        self.inbound.take(data)

    def eof_received(self) -> bool:
        self.inbound.take(None)
        return True  # half-open: the other direction may still be sending

    def pause_writing(self) -> None:
        self.outbound.dest_full = True
        self.outbound.flow()

    def resume_writing(self) -> None:
        self.outbound.dest_full = False
        self.outbound.flow()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.close()


class Connection:
    """A client's connection and the one made for it upstream, a link each way."""

    def __init__(self, proxy: WanProxy, loop: asyncio.AbstractEventLoop):
        self.proxy = proxy
        self.loop = loop
        self.up = Link(loop, proxy.delay, proxy.rate, proxy.tally, "up")
        self.down = Link(loop, proxy.delay, proxy.rate, proxy.tally, "down")
        self.up.free_at = loop.time() + 2 * proxy.delay  # nothing is sent before the handshake's round trip
        self.transports: list[asyncio.Transport] = []
        self.connecting: asyncio.Task | None = None
        self.closed = False

    def client(self) -> End:
        return End(self, self.up, self.down)

    def made(self, transport: asyncio.Transport, client: bool) -> None:
        self.transports.append(transport)
        if self.closed:
            transport.close()
        elif client:
            self.connecting = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        await asyncio.sleep(2 * self.proxy.delay)  # the handshake is a round trip too
        try:
            await self.loop.create_connection(lambda: End(self, self.down, self.up), *self.proxy.upstream)
        except OSError:
            self.close()

    def close(self) -> None:
        """Either side gone: both go (what the links still hold is dropped, as on a reset)."""
        self.closed = True
        for transport in self.transports:
            transport.close()
        for link in (self.up, self.down):
            if link.timer is not None:
                link.timer.cancel()
            link.chunks.clear()


class WanProxy:
    """Listens on 127.0.0.1 (a port of its own) and forwards each connection to `upstream`."""

    def __init__(self, upstream: str, delay: float, rate: float | None):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.delay = delay
        self.rate = rate
        self.tally: Tally = collections.Counter()

    def report(self) -> None:
        print(f"down {self.tally['down']} up {self.tally['up']}", flush=True)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.report)
        server = await loop.create_server(lambda: Connection(self, loop).client(), "127.0.0.1", 0, backlog=4096)
        print(f"127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True, help="host:port to forward to")
    parser.add_argument("--delay-ms", type=float, default=20, help="added each way (default 20: a 40 ms round trip)")
    parser.add_argument("--rate-mb", type=float, default=50, help="each connection's cap each way, MB/s (0: none)")
    args = parser.parse_args()
    asyncio.run(WanProxy(args.to, args.delay_ms / 1000, args.rate_mb * 1e6 or None).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
