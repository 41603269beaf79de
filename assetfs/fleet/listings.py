"""Listings shared by every mount of an account: when many mounts list the same cold
directory at once, one of them asks the provider and the others take its answer.

At the provider boundary: `list_root` and `list_dir` of the provider are wrapped. The first
mount to miss takes a short lock in Redis (kept alive while it lists), lists, and stores
the sealed result (see codec.py) for `metadata_ttl`; the others poll for it, and take over
the listing themselves if the lock goes away without a result (the lister failed or died).
Redis trouble of any kind: the mount lists by itself. Content bytes never go through Redis.

A mount that has just written through the provider lists by itself for a `metadata_ttl`
(and stores what it found): it must see its own change, not a listing from before it."""

from __future__ import annotations

import hashlib
import logging
import os

import trio
from coredis import PureToken
from coredis.commands.script import Script

from ..providers.base import Entry, Provider
from ..stats import Stats
from . import codec
from .link import RedisDown, RedisLink

log = logging.getLogger("assetfs.fleet")

LOCK_TTL = 6.0  # seconds a lock lives without being renewed by its lister
POLL_FIRST, POLL_MOST = 0.05, 0.5  # seconds between two looks for another mount's result
WRITES = ("create_asset", "replace_content", "delete_asset", "make_container", "delete_container", "move_asset")

# KEYS: the lock; ARGV: the token → deleted only if still ours
RELEASE = Script(
    script="""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)


class SharedListings:
    def __init__(self, link: RedisLink, namespace: str, key: bytes, ttl: float, stats: Stats):
        self.link = link
        self.namespace = namespace
        self.key = key
        self.ttl = max(1.0, ttl)
        self.stats = stats  # status.json: listings_from_fleet, listings_shared
        self._own_until = 0.0  # until then this mount lists by itself (it has just written)

    def install(self, provider: Provider) -> None:
        """Wrap the provider's listings (and mark its writes) on the instance."""
        list_root, list_dir = provider.list_root, provider.list_dir
        # wrapped on this one instance, on purpose (the class stays as it is): mypy says method-assign
        provider.list_root = lambda: self.listing("", list_root)  # type: ignore[method-assign]
        provider.list_dir = lambda entry: self.listing(entry.key, list_dir, entry)  # type: ignore[method-assign]
        for name in WRITES:
            setattr(provider, name, self._marking(getattr(provider, name)))

    def _marking(self, write):
        async def marked(*args, **kwargs):
            done = await write(*args, **kwargs)
            self._own_until = trio.current_time() + self.ttl
            return done

        return marked

    async def listing(self, node: str, fetch, *args) -> list[Entry]:
        where = f"{self.namespace}list:{hashlib.sha256(node.encode()).hexdigest()[:32]}"
        if trio.current_time() < self._own_until or not self.link.up:
            return await self._fetch_and_store(where, fetch, args)
        try:
            return await self._shared(where, fetch, args)
        except RedisDown:
            return await fetch(*args)

    async def _shared(self, where: str, fetch, args) -> list[Entry]:
        lock, token = f"{where}:lock", os.urandom(12).hex()
        poll = POLL_FIRST
        while True:
            blob, holder = await self.link.call(lambda client: client.mget([where, lock]))
            if blob is not None:
                entries = await trio.to_thread.run_sync(codec.unseal, blob, self.key, where)
                if entries is not None:
                    self.stats.add("listings_from_fleet")
                    return entries
            if holder is None and await self.link.call(
                lambda client: client.set(lock, token, px=int(LOCK_TTL * 1000), condition=PureToken.NX)
            ):
                return await self._fetch_locked(where, lock, token, fetch, args)
            await trio.sleep(poll)
            poll = min(POLL_MOST, poll * 2)

    async def _fetch_locked(self, where: str, lock: str, token: str, fetch, args) -> list[Entry]:
        keeping = trio.CancelScope()
        trio.lowlevel.spawn_system_task(self._keep, lock, keeping, name="fleet listing lock")
        try:
            return await self._fetch_and_store(where, fetch, args)
        finally:
            keeping.cancel()
            with trio.CancelScope(shield=True):
                try:
                    await self.link.call(lambda client: RELEASE([lock], [token], client=client))
                except RedisDown:
                    pass  # it expires by itself

    async def _keep(self, lock: str, scope: trio.CancelScope) -> None:
        """Renew the lock while the listing goes on (a big one takes many requests)."""
        with scope:
            while True:
                await trio.sleep(LOCK_TTL / 3)
                try:
                    await self.link.call(lambda client: client.pexpire(lock, int(LOCK_TTL * 1000)))
                except RedisDown:
                    return

    async def _fetch_and_store(self, where: str, fetch, args) -> list[Entry]:
        entries = await fetch(*args)
        if self.link.up:
            blob = await trio.to_thread.run_sync(codec.seal, entries, self.key, where)
            if blob is not None:
                try:
                    await self.link.call(lambda client: client.set(where, blob, px=int(self.ttl * 1000)))
                    self.stats.add("listings_shared")
                except RedisDown:
                    pass
        return entries
