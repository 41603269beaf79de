"""One suite of saves, run two ways (as rclone's vfstest does): each scenario of
tests/scenarios.py — Blender's, emacs's, LibreOffice's and Word's saves, `sed -i`'s temp and
rename, a plain `mv`, write then truncate … — against the filesystem's operations in process
(no kernel) and on a real mount through `os`, on Mudstack and Apple. What the provider holds
after is checked through the emulator's own API (`check_saved`, tests/programs.py): the asset
count, the final bytes under the final name, the same asset with one version more for a
replaced file, no temporary name ever sent, the backups on this machine only.

One emulator serves the module, every case's seed put on the provider before anything mounts,
each case (scenario × driver × provider) in its own folder (Mudstack) or under its own names
(Apple); one mount serves the mount's cases, a Mount in process each in-process case. Both
with a write-back delay of 1 s."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsapi import in_process
from pending import wait_for_uploads
from programs import SIDES, WRITE_BACK, Ctx, check_saved, seed_name, settle, world_of
from scenarios import SCENARIOS, Files, InProcess, OnMount

DRIVERS = ("inproc", "mount")
CASES = [
    pytest.param(
        side,
        driver,
        sid,
        id=f"{side}:{driver}:{sid}",
        marks=[pytest.mark.xfail(reason=s.known_bug, strict=True)] if s.known_bug else [],
    )
    for side in SIDES
    for driver in DRIVERS
    for sid, s in SCENARIOS.items()
    if side in s.only
]


def case_of(driver: str, sid: str) -> str:
    return f"{driver}-{sid}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The emulator with every case's folder and seed in place, then one mount of it."""

    def seed(sides: dict) -> None:
        for side_name, driver, sid in (p.values for p in CASES):
            s, side, case = SCENARIOS[sid], sides[side_name], case_of(driver, sid)
            side.prepare(case, seed_name(s, case, side.payload), s.seed(side.payload) if s.seed else None)

    with world_of(tmp_path_factory, "scenarios", seed) as world:
        yield world


@pytest.fixture(autouse=True)
def settled(world):
    """Each test starts with nothing of an earlier one on its way and an empty name log."""
    settle(world)


async def run_and_check(emu, side, sid: str, files: Files, c: Ctx, uploaded) -> None:
    """The scenario, its uploads waited for (`uploaded`), then what the provider holds."""
    count, before = side.snapshot(c.case)
    expect = await SCENARIOS[sid].run(files, c)
    await uploaded()
    shown = set(await files.listdir())
    kept = {name: await files.read(name) for name in expect.backups if name in shown}
    check_saved(emu, side, c.case, before, count, expect, shown, kept, c.seed)


@pytest.mark.trio
@pytest.mark.mount
@pytest.mark.parametrize("side_name,driver,sid", CASES)
async def test_a_save_leaves_exactly_its_final_names_on_the_provider(world, tmp_path, side_name, driver, sid):
    emu, m, sides = world
    side, case = sides[side_name], case_of(driver, sid)
    seed = seed_name(SCENARIOS[sid], case, side.payload)
    if driver == "mount":
        folder = side.folder(m.path, case)

        async def uploaded():
            wait_for_uploads(m.path)

        await run_and_check(emu, side, sid, OnMount(folder), Ctx(case, folder, tmp_path, side.payload, seed), uploaded)
        return
    # in process: a Mount of this provider's account alone, no kernel
    account = "studio" if side_name == "mudstack" else "apple"
    async with in_process(emu, tmp_path, accounts=[account], options=f"write_back={WRITE_BACK}") as fs:
        folder = side.folder(Path(""), case)
        c = Ctx(case, folder, tmp_path, side.payload, seed)
        await run_and_check(emu, side, sid, InProcess(fs, str(folder)), c, fs.drain)
