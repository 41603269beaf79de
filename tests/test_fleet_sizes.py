"""Sizes learnt by HEAD shared through the fleet's Redis (fleet/sizes.py), against a real
redis-server: what one mount asked, another reads instead of asking the provider; Redis holds
no names; Redis away, each mount asks for itself."""

from __future__ import annotations

import pytest
import trio
from fsapi import in_process
from redisd import free_port, redis_server  # noqa: F401  (a fixture)

from assetfs.fleet import codec, namespace
from assetfs.fleet.link import RedisLink
from assetfs.fleet.sizes import SharedSizes
from assetfs.stats import Stats

NS = namespace("spectrum", "https://api.example/", ["client-1"])
KEY = codec.listing_key(["token-1"], NS)
SECRET_URL = "https://cdn.example/uploads/7/b887.png?Signature=abc123"


def test_one_mount_tells_the_sizes_it_learnt_and_another_reads_them_but_not_with_another_key(redis_server):
    async def main():
        teller, reader = (SharedSizes(RedisLink(redis_server.url), NS, KEY, Stats()) for _ in range(2))
        versions = [f"v{i}" for i in range(2500)] + [SECRET_URL]  # more than one round trip's worth
        await teller.learnt({v: i * 7 for i, v in enumerate(versions)})
        found = await reader.known(versions + ["never-learnt"])
        other = SharedSizes(RedisLink(redis_server.url), NS, codec.listing_key(["token-2"], NS), Stats())
        fields = await reader.link.call(lambda client: client.hkeys(NS + "sizes"))
        return versions, found, await other.known(versions), fields, teller.stats.counters, reader.stats.counters

    versions, found, other, fields, told, read = trio.run(main)
    assert found == {v: i * 7 for i, v in enumerate(versions)}  # and nothing for the one never learnt
    assert other == {}  # another account's key finds nothing
    assert told["sizes_shared"] == len(versions) and read["sizes_from_fleet"] == len(versions)
    assert len(fields) == len(versions) and all(len(f) == 16 for f in fields)  # HMACs: no names, no URLs
    assert not {v.encode() for v in versions} & set(fields)
    assert 0 < int(redis_server.command("ttl", NS + "sizes")) <= 30 * 24 * 3600


def test_redis_away_costs_nothing_but_the_asking():
    async def main():
        shared = SharedSizes(RedisLink(f"redis://127.0.0.1:{free_port()}"), NS, KEY, Stats())
        with trio.fail_after(5):
            await shared.learnt({"v1": 1})  # no error: the next mount asks the provider itself
            return await shared.known(["v1"])

    assert trio.run(main) == {}


@pytest.mark.trio
async def test_a_second_mount_of_the_fleet_lists_sizes_without_a_head(emu, redis_server, tmp_path):
    """Two mounts (caches of their own) of one Spectrum account: `ls -l` of an organization
    on the first sends its HEADs (a batch, and the single one of the stat that started it);
    on the second, none, and the sizes are the same."""
    shared = {"redis": redis_server.url}
    org = emu.account("spectrum")["organizations"][0]

    def heads() -> int:
        return sum(n for k, n in emu.requests().items() if k.startswith("HEAD "))

    async def ls_l(where) -> tuple[dict[str, int], dict]:
        async with in_process(emu, where, accounts=["carhartt"], shared=shared) as fs:
            path = f"carhartt/{org}"
            names = [n for n in await fs.listdir(path) if n != ".assets"]
            sizes = {n: (await fs.stat(f"{path}/{n}")).st_size for n in names}
        return sizes, dict(fs.mount.stats.counters)  # once stopped: the sizes learnt are told by then

    emu.reset_requests()
    first, told = await ls_l(tmp_path / "a")
    asked_first = heads()
    assert asked_first >= len(first) > 2 and told["sizes_shared"] == len(first)
    emu.reset_requests()
    second, read = await ls_l(tmp_path / "b")
    assert second == first
    assert heads() == 0  # the batch's sizes and the single stat's that started it came from the fleet
    assert read["sizes_from_fleet"] == len(first)
