"""Sizes learnt by any mount of an account, shared through Redis: where the provider
publishes no sizes (Spectrum), `ls -l` of a directory costs a HEAD per file, and every mount
of a fleet would ask them all again. A content version's size holds for good, so once one
mount has asked, the others read them here, a thousand per round trip.

One hash per account. Each field is an HMAC of the version under a key derived from the
account's credentials, so Redis holds no names or URLs, only numbers it cannot tie to a
file. Redis trouble of any kind: the mount asks the provider itself."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from ..providers.base import Content, Provider
from ..stats import Stats
from .link import RedisDown, RedisLink

KEPT = 30 * 24 * 3600  # seconds the account's sizes are kept after the last one learnt
AT_ONCE = 1000  # fields per HMGET or HSET


class SharedSizes:
    def __init__(self, link: RedisLink, namespace: str, key: bytes, stats: Stats):
        self.link = link
        self.where = f"{namespace}sizes"
        self.key = hmac.new(key, b"assetfs shared sizes v1", hashlib.sha256).digest()
        self.stats = stats  # status.json: sizes_from_fleet, sizes_shared

    def install(self, provider: Provider) -> None:
        """Share the sizes the provider learns: its batches of HEADs read the fleet's first
        (view/sizes.py), and so does its `resolve` of a single file, which tells the fleet
        what it found."""
        provider.shared_sizes = self
        resolve = provider.resolve

        async def shared_resolve(content: Content) -> Content:
            if content.url is not None and content.size is None:
                size = (await self.known([content.version])).get(content.version)
                if size is not None:
                    return dataclasses.replace(content, size=size)
            found = await resolve(content)
            if content.size is None and found.size is not None:
                await self.learnt({found.version: found.size})
            return found

        # wrapped on this one instance, as the shared listings are: mypy says method-assign
        provider.resolve = shared_resolve  # type: ignore[method-assign]

    def _field(self, version: str) -> bytes:
        return hmac.new(self.key, version.encode(), hashlib.sha256).digest()[:16]

    async def known(self, versions: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        if not self.link.up:
            return found
        try:
            for at in range(0, len(versions), AT_ONCE):
                chunk = versions[at : at + AT_ONCE]
                fields = [self._field(v) for v in chunk]
                values = await self.link.call(lambda client, fields=fields: client.hmget(self.where, fields))
                for version, value in zip(chunk, values):
                    if isinstance(value, bytes) and value.isdigit():
                        found[version] = int(value)
        except RedisDown:
            pass  # what was found so far holds; the rest is asked of the provider
        self.stats.add("sizes_from_fleet", len(found))
        return found

    async def learnt(self, sizes: dict[str, int]) -> None:
        if not self.link.up or not sizes:
            return
        items = list(sizes.items())
        try:
            for at in range(0, len(items), AT_ONCE):
                mapping = {self._field(v): str(n).encode() for v, n in items[at : at + AT_ONCE]}
                await self.link.call(lambda client, mapping=mapping: client.hset(self.where, mapping))
            await self.link.call(lambda client: client.expire(self.where, KEPT))
            self.stats.add("sizes_shared", len(items))
        except RedisDown:
            pass  # another mount asks the provider itself
