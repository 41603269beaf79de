"""A TCP forwarder that makes 127.0.0.1 look like a server across the internet: every chunk
is delayed by a set time each way (half the round trip), and each connection's rate in each
direction is capped, as a single flow over a long path is. The benchmark puts one in front of
nginx and one in front of the emulator, so assetfs, rclone and curl pay the same round trips.

Bytes in flight per direction are bounded (the link's bandwidth-delay product plus a
window), as a TCP window is: a fast server cannot fill the proxy's memory with a whole file.

Run: `python benchmarks/wanproxy.py --to 127.0.0.1:8080 --delay-ms 20 --rate-mb 50`
prints `127.0.0.1:PORT` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time

CHUNK = 64 << 10  # bytes read at once from either side
WINDOW = 256 << 10  # bytes in flight beyond the bandwidth-delay product (a TCP window's slack)


class Link:
    """One direction of one connection. A chunk read at t goes onto the link when the link is
    free (at `rate` bytes a second) and comes out `delay` seconds after that."""

    def __init__(self, delay: float, rate: float | None):
        self.delay = delay
        self.rate = rate
        self.limit = WINDOW + int((rate or 0) * delay)
        self.chunks: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0  # bytes read, not yet written
        self.free_at = 0.0  # when the link has sent what it holds
        self.changed = asyncio.Event()

    async def pump_in(self, reader: asyncio.StreamReader) -> None:
        while True:
            while self.queued >= self.limit:
                await self._changed()
            data = await reader.read(CHUNK)
            start = max(time.monotonic(), self.free_at)
            if self.rate:
                self.free_at = start + len(data) / self.rate
            self.chunks.append((start + self.delay, data))
            self.queued += len(data)
            self.changed.set()
            if not data:
                return

    async def pump_out(self, writer: asyncio.StreamWriter) -> None:
        while True:
            while not self.chunks:
                await self._changed()
            due, data = self.chunks.popleft()
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            self.queued -= len(data)
            self.changed.set()

    async def _changed(self) -> None:
        self.changed.clear()
        await self.changed.wait()


class WanProxy:
    """Listens on 127.0.0.1 (a port of its own) and forwards each connection to `upstream`."""

    def __init__(self, upstream: str, delay: float, rate: float | None):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.delay = delay
        self.rate = rate

    async def serve(self) -> None:
        server = await asyncio.start_server(self._forward, "127.0.0.1", 0, backlog=4096)
        print(f"127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(2 * self.delay)  # the handshake is a round trip too
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        up, down = Link(self.delay, self.rate), Link(self.delay, self.rate)
        pumps = [up.pump_in(client_r), up.pump_out(server_w), down.pump_in(server_r), down.pump_out(client_w)]
        tasks = [asyncio.ensure_future(p) for p in pumps]
        try:
            await asyncio.gather(*tasks)  # both directions delivered their end, or a side broke
        except OSError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            for w in (client_w, server_w):
                w.close()


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
