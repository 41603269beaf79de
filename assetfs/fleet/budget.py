"""One request budget for every mount of an account, kept in Redis: a drop-in for the
mount's own `RequestBudget` (same `acquire`, same `pause`).

The budget is a sliding log, as the local one: at most `limit` requests in any `window`
seconds, counted on Redis's clock; and, so that a fleet's requests arrive evenly (a burst
granted at once reaches the provider spread out by the hosts' delays, and can then meet
the next window's), at most a tenth of the limit in a tenth of the window. One Lua script, one round trip per request, hands each
request its slot: now if the window has room, else the moment the oldest request in the
window leaves it — the request sleeps until then (no polling, first come first served
across the fleet). A sliding log, not GCRA or a token bucket: those let `limit` through at
once and then refill, so some window of `window` seconds sees up to twice the limit, and
providers count exactly that window (Spectrum: under 100 per 60 s). Its memory is one
sorted-set member per request of the last window. No library does this with a wait time
in the same round trip (`limits` answers yes/no, then needs a second call for when).

A 429 (or Spectrum's 403) with Retry-After seen by any mount pauses the whole account:
the script hands out no slot before the pause ends.

When Redis does not answer the mount paces itself with its local budget, cut to its share
of the account (the limit divided by the mounts seen in the last minute), so that a fleet
without its Redis still stays near the provider's limit."""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Sequence

import trio
from coredis.commands.script import Script

from ..providers.http import RequestBudget
from .link import RedisDown, RedisLink

FLEET_SEEN = 60.0  # seconds a mount counts as a member of the fleet after its last request

# KEYS: the request log (sorted set: member → slot, ms), the pause (ms), the mounts (sorted set)
# ARGV: limit, window ms, horizon ms, this request's id, this mount's id, fleet-seen ms
# → {wait ms (>= 0: slot taken, go then; < 0: none taken, ask again in -wait ms), mounts}
ACQUIRE = Script(
    script="""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[3], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]))
redis.call('PEXPIRE', KEYS[3], ARGV[6])
local mounts = redis.call('ZCARD', KEYS[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local slot = now
local taken = redis.call('ZCARD', KEYS[1])
-- at most `limit` per window, and at most a tenth of it per tenth of the window
for _, rule in ipairs({{limit, window}, {math.max(1, math.floor(limit / 10)), window / 10}}) do
  if taken >= rule[1] then
    local freed = redis.call('ZRANGE', KEYS[1], taken - rule[1], taken - rule[1], 'WITHSCORES')
    slot = math.max(slot, tonumber(freed[2]) + rule[2])
  end
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
slot = math.max(slot, paused)
if slot - now > horizon then
  return {now - slot + horizon, mounts}
end
redis.call('ZADD', KEYS[1], slot, ARGV[4])
redis.call('PEXPIRE', KEYS[1], slot - now + window)
return {slot - now, mounts}
"""
)

# KEYS: the request log; ARGV: window ms, this mount's id, then the ages (ms) of requests it
# sent alone → they count in the log as if Redis had given their slots
RECORD = Script(
    script="""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now - tonumber(ARGV[i]), ARGV[2] .. ':alone:' .. i .. ':' .. now)
end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[1]), redis.call('PTTL', KEYS[1])))
return #ARGV - 2
"""
)

# KEYS: the pause; ARGV: seconds (ms) → sets the pause's end unless a later one is set
PAUSE = Script(
    script="""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ = now + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], until_, 'PX', ARGV[1])
end
return until_
"""
)


class Share(RequestBudget):
    """One mount's share of the account's budget, for when Redis does not answer: limit /
    mounts per window, or, with more mounts than the limit, one request per a longer window
    (1,000 mounts of 90/60 s: one request per 667 s each). It starts from the slots this
    mount was given lately (some still ahead), so that the switch brings no burst."""

    def __init__(
        self, limit: int, window: float, mounts: int, given: Sequence[float] = (), before: RequestBudget | None = None
    ):
        if mounts <= limit:
            super().__init__(limit // mounts, window)
        else:
            super().__init__(1, window * mounts / limit)
        now = trio.current_time() if given else 0.0
        self._sent.extend(sorted(t for t in given if t > now - self.window)[-self.limit :])
        if before is not None:  # a Retry-After told meanwhile still holds
            self._paused_until = before._paused_until

    def sent(self) -> list[float]:
        """When its requests went (or go: slots given ahead count too)."""
        return list(self._sent)


class SharedBudget:
    """At most `limit` requests per `window` seconds for all mounts of one account together."""

    def __init__(self, link: RedisLink, namespace: str, limit: int, window: float, horizon: float = 30.0):
        self.link = link
        self.limit = max(1, limit)
        self.window = window
        # How far ahead a slot is given: first come first served up to there; a request
        # that would wait longer asks again later (it would time out before its slot).
        self.horizon = max(window, horizon)
        self.keys = [f"{namespace}budget", f"{namespace}pause", f"{namespace}mounts"]
        self.mount_id = os.urandom(8).hex()
        self._ids = itertools.count()
        self.mounts = 1  # mounts of the account seen lately (for the fallback's share)
        self.local = Share(self.limit, window, 1)
        self._given: deque[float] = deque(maxlen=self.limit)  # this mount's slots lately (trio time)
        link.on_change.append(self._redis_changed)

    def _redis_changed(self, up: bool) -> None:
        if not up:  # from now on the mount paces itself, with its share of the account
            self.local = Share(self.limit, self.window, self.mounts, list(self._given), self.local)
        else:  # what it sent alone in the last window counts in the shared log (the rest is there)
            now, given = trio.current_time(), set(self._given)
            ages = [int((now - t) * 1000) for t in self.local.sent() if now - self.window < t <= now and t not in given]
            if ages:
                trio.lowlevel.spawn_system_task(self._record, ages, name="fleet record")

    async def _record(self, ages: list[int]) -> None:
        try:
            await self.link.call(
                lambda client: RECORD([self.keys[0]], [int(self.window * 1000), self.mount_id, *ages], client=client)
            )
        except RedisDown:
            pass

    async def acquire(self) -> None:
        while self.link.up:
            args = [
                self.limit,
                int(self.window * 1000),
                int(self.horizon * 1000),
                f"{self.mount_id}:{next(self._ids)}",
                self.mount_id,
                int(FLEET_SEEN * 1000),
            ]
            try:
                wait, mounts = await self.link.call(lambda client, args=args: ACQUIRE(self.keys, args, client=client))
            except RedisDown:
                break
            self.mounts = max(1, int(mounts))
            if wait >= 0:
                self._given.append(trio.current_time() + wait / 1000)
                await trio.sleep(wait / 1000)
                return
            await trio.sleep(-wait / 1000)
        await self.local.acquire()

    def pause(self, seconds: float) -> None:
        """No request of the account before `seconds` from now (the provider said so)."""
        self.local.pause(seconds)
        if self.link.up:
            trio.lowlevel.spawn_system_task(self._pause, seconds, name="fleet pause")

    async def _pause(self, seconds: float) -> None:
        try:
            await self.link.call(lambda client: PAUSE([self.keys[1]], [max(1, int(seconds * 1000))], client=client))
        except RedisDown:
            pass
