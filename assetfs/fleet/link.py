"""A mount's connection to the fleet's Redis. Redis trouble must never hold up a syscall:
every call has a short deadline; the first one that fails marks Redis down (one log line),
after which nothing waits on it (callers go on alone at once) while a background probe
pings it every second; the first answer brings the mount back (one more log line)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import coredis
import trio
from coredis.retry import NoRetryPolicy

log = logging.getLogger("assetfs.fleet")
logging.getLogger("coredis").setLevel(logging.WARNING)  # not a line per script first loaded into Redis

CALL_TIMEOUT = 0.75  # seconds one Redis round trip may take before the mount goes on alone
PROBE_EVERY = 1.0  # seconds between two pings of a Redis that is down


class RedisDown(Exception):
    """Redis did not answer in time (or at all): go on without it."""


def where(url: str) -> str:
    """host:port (or the socket path) of a Redis URL, for log lines: never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class RedisLink:
    """One Redis client for the mount's life, opened on first use inside the event loop."""

    def __init__(self, url: str, password: str | None = None):
        self.url = url
        self.where = where(url)
        self._password = password
        self._client: coredis.Redis | None = None
        self._ready = trio.Event()
        self.up = True
        self._since = 0.0
        self.on_change: list[Callable[[bool], object]] = []  # told when Redis goes down or comes back

    def _opened(self) -> coredis.Redis:
        """The client, opened on first use."""
        if self._client is not None:
            return self._client
        kwargs: dict[str, Any] = {"password": self._password} if self._password else {}
        client = self._client = coredis.Redis.from_url(
            self.url,
            decode_responses=False,
            connect_timeout=CALL_TIMEOUT,
            stream_timeout=CALL_TIMEOUT,
            retry_policy=NoRetryPolicy(),
            **kwargs,
        )
        trio.lowlevel.spawn_system_task(self._hold, client, name=f"redis {self.where}")
        return client

    async def _hold(self, client: coredis.Redis) -> None:
        """Keep the client's connection pool open until the event loop ends."""
        try:
            async with client:
                self._ready.set()
                await trio.sleep_forever()
        except Exception as e:  # the pool failed for good: every call falls back from now on
            log.warning("Redis at %s: the client stopped (%s: %s)", self.where, type(e).__name__, e)
            self._ready.set()

    async def call(self, command):
        """Run `command(client)` (an awaitable Redis call) within CALL_TIMEOUT, or raise
        RedisDown; while Redis is down, raise at once."""
        if not self.up:
            raise RedisDown(self.where)
        client = self._opened()
        try:
            with trio.fail_after(CALL_TIMEOUT):
                await self._ready.wait()
                return await command(client)
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as e:
            self._went_down(e)
            raise RedisDown(self.where) from None

    def _went_down(self, e: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self._since = trio.current_time()
        why = f"no answer within {CALL_TIMEOUT:g}s" if isinstance(e, trio.TooSlowError) else f"{type(e).__name__}: {e}"
        log.warning(
            "Redis at %s does not answer (%s): going on alone with local pacing and listings until it does",
            self.where,
            why,
        )
        self._tell(False)
        trio.lowlevel.spawn_system_task(self._probe, name=f"probe redis {self.where}")

    async def _probe(self) -> None:
        while not self.up:
            await trio.sleep(PROBE_EVERY)
            try:
                with trio.fail_after(CALL_TIMEOUT):
                    await self._opened().ping()
            except (trio.TooSlowError, coredis.exceptions.RedisError, OSError):
                continue
            self.up = True
            log.warning(
                "Redis at %s answers again after %.1fs: sharing again", self.where, trio.current_time() - self._since
            )
            self._tell(True)

    def _tell(self, up: bool) -> None:
        for listener in self.on_change:
            listener(up)
