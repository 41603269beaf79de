"""A fleet: six mounts of one account on one machine, sharing one real redis-server.

- The file manager's storm (the first 64 KiB of 300 files at once) in all six: with
  `[shared]` the emulator refuses nothing and every byte is right; without it, it refuses
  (the problem this solves).
- The six open the same cold 2,000-asset organization at once: one listing walk reaches
  the emulator, not six.
- Redis hung mid-storm: the mounts go on with local pacing, every read returns in time;
  Redis back: they share again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mounting import MountedFS
from redisd import redis_server  # noqa: F401  (a fixture)
from truth import spectrum_assets

from assetfs.providers.spectrum import PAGES_AHEAD

pytestmark = [pytest.mark.mount, pytest.mark.serial]

MOUNTS = 6
FILES = 300
LIMIT, WINDOW = 100, 2.0  # the emulator's Mudstack limit
BUDGET = "70/2s"  # the account's rate_limit: under it, with room for the hosts' jitter
TIMEOUT = 10.0
ORG = "7000000000000300322"
WORKSPACE = "Game Art"


def files_in(directory: Path) -> list[Path]:
    """Every asset's file under a directory, sorted, whatever the layout (a directory per
    asset, or a file per asset): regular files, leaving out the mount's own `.`-entries,
    asset.json and the older versions."""
    found = []
    for top, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "versions")
        found += [Path(top) / n for n in sorted(names) if not n.startswith(".") and n != "asset.json"]
    return found


@pytest.fixture
def fleet(tmp_path):
    """`fleet(emu, redis_url or None, provider, **settings)`: six mounts of one account, started
    (and stopped) at once; all are unmounted after the test, whatever happened in it."""
    started: list[MountedFS] = []

    def start(emu, redis_url: str | None, provider: str, **settings) -> list[MountedFS]:
        config = {"cache": {"metadata_ttl": "60s"}, "accounts": {"acct": {**emu.account(provider), **settings}}}
        if redis_url:
            config["shared"] = {"redis": redis_url}
        first = len(started)
        with ThreadPoolExecutor(MOUNTS) as pool:
            futures = [
                pool.submit(MountedFS, tmp_path / f"m{first + i}", config, options=f"timeout={TIMEOUT:g}s")
                for i in range(MOUNTS)
            ]
        started.extend(f.result() for f in futures if f.exception() is None)
        for f in futures:
            f.result()  # the first failure, if any
        return started[first:]

    yield start
    stop(started)


def stop(mounts) -> None:
    with ThreadPoolExecutor(MOUNTS) as pool:
        list(pool.map(MountedFS.stop, mounts))


def storm(mounts, truth: dict[str, str], during=None, files: int = FILES) -> tuple[float, int]:
    """Every mount reads the first 64 KiB of every bulk file at once (16 threads each);
    each read must return within the timeout, and what it read must be the provider's
    bytes. `during()` runs 3 s into it. (The slowest read in seconds, reads that failed.)"""
    slowest, failed = [0.0], [0]

    def first_64k(path: Path) -> None:
        started = time.monotonic()
        try:
            with open(path, "rb") as f:
                head = f.read(64 << 10)
        except OSError:
            failed[0] += 1
        else:
            assert hashlib.md5(head).hexdigest() == truth[path.name], path
        took = time.monotonic() - started
        slowest[0] = max(slowest[0], took)
        assert took < TIMEOUT + 3, f"{path} took {took:.1f}s"

    bulk = [files_in(m.path / "acct" / WORKSPACE / "bulk") for m in mounts]
    assert all(len(files) == FILES for files in bulk), [len(f) for f in bulk]
    timer = threading.Timer(3.0, during) if during else None
    if timer:
        timer.start()
    with ThreadPoolExecutor(16 * len(mounts)) as pool:
        list(pool.map(first_64k, [f for each in zip(*(b[:files] for b in bulk)) for f in each]))
    if timer:
        timer.join()
    return slowest[0], failed[0]


def elsewhere(*processes) -> None:
    """The provider and Redis run on other machines than the mounts: here, on the same two
    cores, they are given a higher priority than the six mounts and their readers, so that
    their clocks (the emulator's rate limit, Redis's slots) do not stall behind them."""
    for process in processes:
        os.setpriority(os.PRIO_PROCESS, process.pid, -10)


@pytest.fixture
def bulk(fresh_emulator):
    """An emulator with 300 small files in Mudstack's /bulk/, and their md5 by file name."""
    from test_mount_mudstack import MudTruth

    emu = fresh_emulator("--assets", str(FILES))
    elsewhere(emu.process)
    mud = MudTruth(emu.account("mudstack"))
    found = mud.call(
        "GET",
        "/workspaces/assets/search",
        mud.workspaces()[WORKSPACE],
        params={"file_location": "/bulk/", "limit": 1000},
    )["assets"]
    mud.close()
    assert all(a["currentVersion"]["size"] <= 64 << 10 for a in found)  # the first 64 KiB are the whole file
    return emu, {a["file_name"]: a["currentVersion"]["checksum"] for a in found}


def refused(emu) -> int:
    return emu.control.get("/_emulator/requests").json()["refused"].get("mudstack", 0)


def test_six_mounts_sharing_redis_stay_under_the_limit_alone_they_do_not(bulk, fleet, redis_server):
    emu, truth = bulk
    elsewhere(redis_server.process)
    emu.set_rate_limit("mudstack", LIMIT, WINDOW)
    emu.reset_requests()
    started = time.monotonic()
    shared = fleet(emu, redis_server.url, "mudstack", rate_limit=BUDGET, workspaces=[WORKSPACE])
    slowest, failed = storm(shared, truth)
    took = time.monotonic() - started
    requests, refused_shared = sum(emu.requests().values()), refused(emu)
    stop(shared)
    emu.reset_requests()
    alone = fleet(emu, None, "mudstack", rate_limit=BUDGET, workspaces=[WORKSPACE])
    started = time.monotonic()
    _, failed_alone = storm(alone, truth, files=FILES // 5)  # enough to show the refusals
    print(
        f"\nsix mounts x {FILES} files, limit {LIMIT}/{WINDOW:g}s, budget {BUDGET}: shared {requests} requests "
        f"in {took:.1f}s, slowest read {slowest:.1f}s, refused {refused_shared}, failed reads {failed}; "
        f"alone refused {refused(emu)} of {sum(emu.requests().values())}, failed reads {failed_alone} "
        f"in {time.monotonic() - started:.1f}s"
    )
    assert refused_shared == 0 and failed == 0
    assert refused(emu) > 0


def test_six_mounts_opening_one_cold_organization_list_it_once(fresh_emulator, fleet, redis_server):
    emu = fresh_emulator("--assets", "2000")
    account = emu.account("spectrum")
    assets = len(spectrum_assets(account, ORG))
    mounts = fleet(emu, redis_server.url, "spectrum", organizations=[ORG])
    emu.reset_requests()
    with ThreadPoolExecutor(MOUNTS) as pool:
        listings = list(pool.map(lambda m: sorted(set(os.listdir(m.path / "acct" / ORG)) - {".assets"}), mounts))
    pages = {k: n for k, n in emu.requests().items() if k.endswith(f"/organization/{ORG}")}
    # One walk of 500-asset pages, not six: the pages up to the first short one, and at most
    # PAGES_AHEAD asked past the last full one (two walks would be twice the pages needed).
    needed, walk = assets // 500 + 1, assets // 500 + PAGES_AHEAD
    print(
        f"\nsix mounts list a cold {assets}-asset organization at once: {sum(pages.values())} page requests "
        f"(one walk: {needed} needed, up to {walk} with the pages asked ahead)"
    )
    assert all(len(listing) == assets for listing in listings) and all(x == listings[0] for x in listings)
    assert needed <= sum(pages.values()) <= walk < 2 * needed
    status = [json.loads((m.path / ".assetfs" / "status.json").read_text())["counters"] for m in mounts]
    # two listings (the account's top level, the organization), each fetched by one mount, taken by five
    assert sum(s.get("listings_shared", 0) for s in status) == 2
    assert sum(s.get("listings_from_fleet", 0) for s in status) == 2 * (MOUNTS - 1)


def test_redis_hung_mid_storm_mounts_go_on_alone_then_rejoin(bulk, fleet, redis_server):
    emu, truth = bulk
    elsewhere(redis_server.process)
    emu.set_rate_limit("mudstack", LIMIT, WINDOW)
    mounts = fleet(emu, redis_server.url, "mudstack", rate_limit=BUDGET, workspaces=[WORKSPACE])
    emu.reset_requests()
    hung = {}

    def hang_for_a_while():
        redis_server.hang()
        hung["at"] = time.monotonic()
        time.sleep(4)
        redis_server.resume()

    slowest, failed = storm(mounts, truth, during=hang_for_a_while, files=FILES // 5)
    assert failed == 0 and slowest < TIMEOUT
    time.sleep(2)  # the probes' next ping
    for m in mounts:  # one line per outage (a loaded machine may add a short one), each one ended
        lines = [line for line in m.log().splitlines() if "does not answer" in line or "answers again" in line]
        assert (
            lines
            and all(
                ("does not answer" in a, "answers again" in b) == (True, True) for a, b in zip(lines[::2], lines[1::2])
            )
            and len(lines) % 2 == 0
        ), lines
    print(f"\nRedis hung for 4s mid-storm: slowest read {slowest:.1f}s, failed reads {failed}, refused {refused(emu)}")
