"""The fleet's parts in-process, against a real redis-server: the shared budget's script,
the pause, the fallback to local pacing when Redis is refused or hung, the sealed listings
and the listing lock. (tests/test_fleet.py runs them in real mounts.)"""

from __future__ import annotations

import logging

import pytest
import trio
from redisd import free_port, redis_server  # noqa: F401  (a fixture)
from trio.testing import MockClock

from assetfs.config import parse_config
from assetfs.errors import ConfigError, NotFound
from assetfs.fleet import codec, connect, namespace
from assetfs.fleet.budget import Share, SharedBudget
from assetfs.fleet.link import RedisLink
from assetfs.fleet.listings import SharedListings
from assetfs.providers.base import Content, Entry
from assetfs.providers.mudstack import MudstackContent
from assetfs.stats import Stats

pytestmark = pytest.mark.serial  # pacing measured against the clock

NS = namespace("spectrum", "https://api.example/", ["client-1"])


def grants_per_window(times: list[float], window: float) -> int:
    """The most grants inside any `window` seconds."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


def test_the_budget_is_shared_by_mounts_and_never_exceeded(redis_server):
    """Two mounts (two links, two budgets) of one account ask 30 slots at once of a
    10-per-0.5 s budget: no 0.5 s ever holds more than 10, so it takes at least 1 s."""

    async def main():
        budgets = [SharedBudget(RedisLink(redis_server.url), NS, 10, 0.5) for _ in range(2)]
        granted: list[float] = []

        async def one(budget):
            await budget.acquire()
            granted.append(trio.current_time())

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, budgets[i % 2])
        return started, granted, budgets

    started, granted, budgets = trio.run(main)
    assert len(granted) == 30 and max(granted) - started >= 1.0 - 0.02
    slots = [
        int(x) / 1000 for x in redis_server.command("zrange", NS + "budget", "0", "-1", "withscores").split()[1::2]
    ]
    assert len(slots) == 30
    assert grants_per_window(slots, 0.5) <= 10 and grants_per_window(slots, 0.05) <= 1  # and a tenth per tenth
    assert all(b.mounts == 2 for b in budgets)  # each has seen the other
    keys = redis_server.command("keys", "*").split()
    assert keys and all(k.startswith("assetfs:{") for k in keys)
    assert all(int(redis_server.command("pttl", k)) > 0 for k in keys)  # everything expires


def test_a_pause_told_by_one_mount_holds_every_mount(redis_server):
    async def main():
        a, b = (SharedBudget(RedisLink(redis_server.url), NS, 100, 1.0) for _ in range(2))
        await a.acquire()
        a.pause(0.6)  # a 429 with Retry-After: 0.6, seen by a
        await trio.sleep(0.05)
        started = trio.current_time()
        await b.acquire()
        return trio.current_time() - started

    assert 0.45 <= trio.run(main) < 1.0


@pytest.mark.parametrize("trouble", ["refused", "hung"])
def test_redis_trouble_falls_back_to_local_pacing_within_a_second_then_rejoins(redis_server, trouble, caplog):
    caplog.set_level(logging.WARNING, "assetfs.fleet")

    async def main():
        url = redis_server.url if trouble == "hung" else f"redis://127.0.0.1:{free_port()}/0"
        link = RedisLink(url)
        budgets = [SharedBudget(link, NS, 40, 1.0), SharedBudget(RedisLink(redis_server.url), NS, 40, 1.0)]
        if trouble == "hung":
            for b in (budgets[1], budgets[0]):
                await b.acquire()  # the first sees the other: the fallback takes half the budget
            redis_server.hang()
        slowest = 0.0
        for _ in range(10):
            started = trio.current_time()
            await budgets[0].acquire()
            slowest = max(slowest, trio.current_time() - started)
        down = not link.up
        share = budgets[0].local.limit
        if trouble == "hung":
            redis_server.resume()
            with trio.fail_after(3):
                while not link.up:
                    await trio.sleep(0.1)
        return slowest, down, share

    slowest, down, share = trio.run(main)
    assert down and slowest < 1.0
    warnings = [r.getMessage() for r in caplog.records]
    assert len([w for w in warnings if "does not answer" in w]) == 1, warnings
    if trouble == "hung":
        assert share == 20
        assert any("answers again" in w for w in warnings)


def test_without_redis_each_mount_takes_its_share_of_the_budget():
    assert (Share(90, 60, 6).limit, Share(90, 60, 6).window) == (15, 60)
    assert (Share(90, 60, 1000).limit, round(Share(90, 60, 1000).window)) == (1, 667)

    async def main():  # the slots it was given lately count: no burst at the switch
        now = trio.current_time()
        share = Share(4, 1.0, 1, [now - 0.9, now - 0.5, now, now + 0.2])
        await share.acquire()
        return trio.current_time() - now

    # the first slot frees 1 s after it was used (trio's clock, mocked: no wall-clock bound)
    assert trio.run(main, clock=MockClock(autojump_threshold=0)) == pytest.approx(1.0 - 0.9)


def test_shared_config_takes_a_url_and_a_password_from_any_credential_form(monkeypatch):
    account = {"provider": "spectrum", "base_url": "https://api.example", "client": "c", "token": "t"}
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-pw")
    config = parse_config(
        {
            "accounts": {"a": account},
            "shared": {"redis": "rediss://redis.example:6380/0", "password": {"env": "REDIS_PASSWORD"}},
        }
    )
    assert config.shared.redis == "rediss://redis.example:6380/0"
    assert parse_config({"accounts": {"a": account}}).shared is None
    with pytest.raises(ConfigError, match="shared.redis: .*redis://"):
        parse_config({"accounts": {"a": account}, "shared": {"redis": "http://x"}})
    monkeypatch.setenv("REDIS_URL", "http://x")
    with pytest.raises(ConfigError, match="shared.redis: .*redis://"):
        connect(parse_config({"accounts": {"a": account}, "shared": {"redis": {"env": "REDIS_URL"}}}))


def sample() -> list[Entry]:
    signed = "https://cdn.example/blob/1/logo.png?exp=99&sig=deadbeefcafe"
    return [
        Entry(
            "logo",
            "asset/1",
            True,
            5.0,
            xattrs={"user.assetfs.id": "1"},
            kind="asset",
            children=[
                Entry("logo.png", "asset/1/content", False, 5.0, content=Content("v1", signed, 10, "ab", "image/png")),
                Entry("asset.json", "asset/1/asset.json", False, inline=b'{"name": "Secret Project X"}\n'),
            ],
        ),
        Entry("model.fbx", "asset/2", False, content=MudstackContent("v2", None, 7, workspace_id="w", asset_id="2")),
    ]


def test_listings_are_sealed_in_redis_and_open_only_with_the_accounts_key():
    key, where = codec.listing_key(["token-1"], NS), NS + "list:x"
    blob = codec.seal(sample(), key, where)
    assert b"sig=" not in blob and b"Secret Project" not in blob and b"logo" not in blob
    assert codec.unseal(blob, key, where) == sample()
    assert codec.unseal(blob, codec.listing_key(["token-2"], NS), where) is None  # other credentials
    assert codec.unseal(blob, key, NS + "list:y") is None  # moved to another key


def test_one_of_many_mounts_lists_and_the_others_take_its_result(redis_server):
    """Six mounts list one cold directory at once: the provider is asked once. When the
    lister fails, the error is its own and the next mount lists in its place."""
    calls = []

    async def fetch(entry):
        calls.append(entry.key)
        await trio.sleep(0.3)
        if calls.count("org/gone") == 1 and entry.key == "org/gone":
            raise NotFound("org/gone")
        return sample()

    async def main():
        key = codec.listing_key(["token-1"], NS)
        mounts = [SharedListings(RedisLink(redis_server.url), NS, key, 30, Stats()) for _ in range(6)]
        got, errors = [], []

        async def one(shared, node):
            try:
                got.append(await shared.listing(node, fetch, Entry(node, node, True)))
            except NotFound as e:
                errors.append(e)

        for node in ("org/1", "org/gone"):
            async with trio.open_nursery() as nursery:
                for shared in mounts:
                    nursery.start_soon(one, shared, node)
        return got, errors, [m.stats.counters for m in mounts]

    got, errors, counters = trio.run(main)
    assert sum(c["listings_from_fleet"] for c in counters) == 5 + 4 and sum(c["listings_shared"] for c in counters) == 2
    assert calls == ["org/1", "org/gone", "org/gone"]
    assert len(errors) == 1 and len(got) == 11 and all(g == sample() for g in got)


def test_a_pause_holds_the_local_budget_too():
    """Without Redis the mount's own budget also waits out a Retry-After for every request."""
    from assetfs.providers.http import RequestBudget

    async def main():
        budget = RequestBudget(100, 1.0)
        budget.pause(0.3)
        started = trio.current_time()
        await budget.acquire()
        return trio.current_time() - started

    assert trio.run(main, clock=MockClock(autojump_threshold=0)) == pytest.approx(0.3)


def test_what_a_mount_sent_alone_counts_when_it_rejoins(redis_server):
    async def main():
        link = RedisLink(redis_server.url)
        budget = SharedBudget(link, NS, 4, 2.0)
        redis_server.hang()
        for _ in range(4):  # the first falls back (0.5 s), then alone: its whole share
            await budget.acquire()
        alone = trio.current_time()
        redis_server.resume()
        with trio.fail_after(3):
            while not link.up:
                await trio.sleep(0.05)
        await trio.sleep(0.1)  # its record reaches Redis
        await budget.acquire()  # through Redis: the window is full of what it sent alone
        return trio.current_time() - alone

    assert trio.run(main) >= 1.9


def test_rediss_with_a_password_from_a_file_and_the_password_never_logged(tmp_path, caplog):
    """TLS (`rediss://`, the CA in the URL), the password from `{ file }`: the budget is
    shared; a wrong password is an outage like any other, and never shows in the log."""
    from redisd import RedisServer

    caplog.set_level(logging.WARNING, "assetfs.fleet")
    server = RedisServer(tmp_path, tls_password="pw-Zq81-secret")
    try:
        account = {"provider": "spectrum", "base_url": "https://api.example", "client": "c", "token": "t"}

        def budget_with(password: str) -> SharedBudget:
            (tmp_path / "pw").write_text(password + "\n")
            (tmp_path / "pw").chmod(0o600)
            config = parse_config(
                {
                    "accounts": {"a": account},
                    "shared": {"redis": server.url, "password": {"file": str(tmp_path / "pw")}},
                }
            )
            return SharedBudget(connect(config), NS, 10, 1.0)

        async def main():
            good, bad = budget_with("pw-Zq81-secret"), budget_with("pw-wrong-guess")
            await good.acquire()
            await bad.acquire()
            return good.link.up, bad.link.up

        assert trio.run(main) == (True, False)
        assert server.command("zcard", NS + "budget").strip() == "1"  # the good one's slot
    finally:
        server.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "does not answer" in text and "pw-" not in text
