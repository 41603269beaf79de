"""Polling for changes made elsewhere: each provider's change question against the emulator
(data changed through the emulator's API, the answer moves; nothing changed, it stays), the
poller's machinery (only directories listed recently, within the rate budget), and the first
mark, which comes with the listing (kept with it on disk), so no change waits for metadata_ttl."""

from __future__ import annotations

import hashlib

import pytest
import trio
import trio.lowlevel
from conftest import emulator_fixture
from fsapi import in_process
from test_mount_mudstack import MudTruth
from test_mount_write import png
from trio.testing import MockClock

from assetfs.config import parse_config
from assetfs.metacache import STREAMED_LISTING, MetaCache
from assetfs.poller import Poller
from assetfs.providers.base import Entry, Provider, Upload, mark_of, with_mark
from assetfs.providers.registry import build_provider
from assetfs.stats import Stats

SEED_ORG = "7000000000000300322"
APPLE_ORG, APPLE_BRAND = "9467895078742654934", "9467895078742654922"


emu = emulator_fixture("emu")  # this module's own: these tests change its data


def run(emu, account: str, fn):
    """fn(provider) under trio, with a provider for one account of the emulator's config."""

    async def main():
        provider = build_provider(
            account, parse_config({"accounts": {account: emu.config["accounts"][account]}}), Stats(), 30
        )
        try:
            return await fn(provider)
        finally:
            await provider.close()

    return trio.run(main)


def marks(emu, account: str, directory: Entry, *changes):
    """The directory's change mark before, then after each change (a function run between
    two questions), each question asked twice: the second asks since the first."""

    async def main(provider):
        found, mark = [], await provider.change_mark(directory, None)
        for change in (None, *changes):
            if change is not None:
                await change(provider)
            mark = await provider.change_mark(directory, mark)
            again = await provider.change_mark(directory, mark)
            assert again == mark, "nothing changed between two questions, yet the answer moved"
            found.append(mark)
        return found

    return run(emu, account, main)


def spool(tmp_path, name: str, data: bytes) -> Upload:
    path = tmp_path / name
    path.write_bytes(data)
    return Upload(path, name, len(data), hashlib.md5(data).hexdigest(), "image/png")


def control(emu, method: str, path: str, **body):
    """A change made elsewhere, through the emulator's test-only routes (as a coroutine, to
    run between two questions)."""

    async def change(provider):
        response = await trio.to_thread.run_sync(
            lambda: emu.control.request(method, f"/_emulator{path}", json=body or None)
        )
        response.raise_for_status()

    return change


def test_spectrum_the_organizations_last_modification(emu):
    org = Entry(SEED_ORG, f"org/{SEED_ORG}", True)
    [before, renamed, removed] = marks(
        emu,
        "carhartt",
        org,
        control(emu, "PATCH", f"/spectrum/organization/{SEED_ORG}/assets/1234", userFacingFileName="renamed elsewhere"),
        control(emu, "DELETE", f"/spectrum/organization/{SEED_ORG}/assets/1234"),
    )
    assert len({before, renamed, removed}) == 3


def test_apple_assets_updated_or_deleted_since_the_last_mark(emu, tmp_path):
    brand = Entry(APPLE_BRAND, f"org/{APPLE_ORG}/brand/{APPLE_BRAND}", True)
    made: list[Entry] = []

    # Apple's dates count hundredths of a second (the seed's form): each change comes a few later.
    async def upload(p):
        await trio.sleep(0.03)  # the first mark is the time now: the upload comes after it
        made.append(await p.create_asset(brand, spool(tmp_path, "from-elsewhere.png", png((1, 2, 3)))))

    async def delete(p):
        await trio.sleep(0.03)
        await p.delete_asset(made[0])

    [before, uploaded, deleted] = marks(emu, "apple", brand, upload, delete)
    assert before < uploaded < deleted  # ISO instants: the newest updatedDate moved on each time


def test_mudstack_the_folders_search_newest_update_first(emu, tmp_path):
    async def folder(p, *names):
        entries = {e.name: e for e in await p.list_root()}
        entry = None
        for name in names:
            entry = entries[name]
            entries = {e.name: e for e in (entry.children or await p.list_dir(entry))}
        return entry, entries

    async def setup(p):
        return await folder(p, "Game Art", "characters", "villains")

    villains, inside = run(emu, "studio", setup)
    dragon = next(e for e in inside.values() if e.name.startswith("dragon"))
    made: list[Entry] = []

    async def rename(p):
        made.append(await p.move_asset(dragon, villains, "wyrm.jpg"))

    async def upload(p):
        await p.create_asset(villains, spool(tmp_path, "imp.png", png((9, 9, 9))))

    async def delete(p):
        await p.delete_asset(made[0])

    found = marks(emu, "studio", villains, rename, upload, delete)
    assert len(set(found)) == 4, found


def test_mudstack_a_subfolder_made_or_removed_elsewhere_moves_the_mark(emu):
    async def villains(p):
        entries = {e.name: e for e in await p.list_root()}
        for name in ("Game Art", "characters", "villains"):
            entry = entries[name]
            entries = {e.name: e for e in (entry.children or await p.list_dir(entry))}
        return entry

    folder = run(emu, "studio", villains)
    made: list[Entry] = []

    async def make(p):
        made.append(await p.make_container(folder, "sketches"))

    async def remove(p):
        await p.delete_container(made[0])

    before, with_it, after = marks(emu, "studio", folder, make, remove)
    assert before != with_it and with_it != after, (before, with_it, after)
    assert after == before  # as it was: nothing else changed


def test_mudstack_one_round_asks_a_workspaces_hierarchy_once(emu):
    """Three watched folders of one workspace: a search each, and one hierarchy between them."""

    async def main(p):
        entries = {e.name: e for e in await p.list_root()}
        folders = []
        for name in ("Game Art", "characters", "villains"):
            folders.append(entries[name])
            entries = {e.name: e for e in (folders[-1].children or await p.list_dir(folders[-1]))}
        poller = Poller({"studio": p}, 60, lambda account, key: trio.lowlevel.checkpoint())  # noqa: ASYNC105 (awaited by the poller)
        for folder in folders:
            poller.listed("studio", folder)
        await trio.to_thread.run_sync(emu.reset_requests)
        await poller.poll_once()
        return folders, await trio.to_thread.run_sync(emu.requests)

    folders, counts = run(emu, "studio", main)
    assert sum(n for k, n in counts.items() if k.endswith("/folders/hierarchy")) == 1, counts
    assert sum(n for k, n in counts.items() if k.endswith("/assets/search")) == len(folders), counts


def test_iqmetrix_a_get_of_each_known_asset(emu):
    account = emu.config["accounts"]["stores"]
    logos = Entry("logos", "collection/logos", True)
    first, second = account["collections"]["logos"][:2]
    [before, renamed, removed] = marks(
        emu,
        "stores",
        logos,
        control(emu, "PATCH", f"/iqmetrix/assets/{first}", name="renamed.jpg"),
        control(emu, "DELETE", f"/iqmetrix/assets/{second}"),
    )
    assert len({before, renamed, removed}) == 3


def test_directories_no_provider_question_fits_are_not_polled(emu):
    asset_dir = Entry("x", "asset/1234", True)
    assert run(emu, "carhartt", lambda p: p.change_mark(asset_dir, None)) is None


# -- the poller ---------------------------------------------------------------------------


class Scripted(Provider):
    """A provider whose directories change when the test says so (the machinery alone)."""

    name = "scripted"

    def __init__(self, rate_limit=None):
        from assetfs.providers.http import ProviderHTTP

        super().__init__("acct", None, ProviderHTTP("http://127.0.0.1:9/", rate_limit=rate_limit))
        self.version: dict[str, int] = {}
        self.asked: list[str] = []

    async def change_mark(self, directory, previous, this_round=None):
        self.asked.append(directory.key)
        return None if directory.key == "unpollable" else str(self.version.get(directory.key, 0))


def test_the_poller_reports_changed_directories_and_asks_only_recent_ones():
    provider = Scripted()
    changed: list[tuple[str, str]] = []

    async def on_change(account, key):
        changed.append((account, key))

    async def main():
        poller = Poller({"acct": provider}, 0.2, on_change)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poller.run)
            for key in ("a", "b", "unpollable"):
                poller.listed("acct", Entry(key, key, True))
            await trio.sleep(0.1)
            assert provider.asked == []  # no question before the first round
            await trio.sleep(0.2)
            assert sorted(provider.asked) == ["a", "b", "unpollable"] and not changed
            provider.version["a"] = 1  # changed elsewhere
            await trio.sleep(0.3)
            assert changed == [("acct", "a")]
            assert sorted(poller.watching("acct")) == ["a", "b"]  # no question fits: dropped
            poller.watch_for = 0.0  # nobody listed them again: no longer polled
            await trio.sleep(0.3)
            asked = len(provider.asked)
            await trio.sleep(0.3)
            assert len(provider.asked) == asked and poller.watching("acct") == []
            nursery.cancel_scope.cancel()

    trio.run(main, clock=MockClock(autojump_threshold=0))  # the rounds on trio's clock, mocked


def test_one_round_asks_at_most_a_quarter_of_the_rate_budget():
    provider = Scripted(rate_limit=(40, 1.0))  # 40/s: a 0.5 s round may ask 5

    async def on_change(account, key):
        pass

    async def main():
        poller = Poller({"acct": provider}, 0.5, on_change)
        for n in range(12):
            poller.listed("acct", Entry(str(n), str(n), True))
        await poller.poll_once()
        assert len(provider.asked) == 5
        await poller.poll_once()
        await poller.poll_once()
        assert sorted(set(provider.asked), key=int) == [str(n) for n in range(12)]  # the least recently asked first
        await provider.close()

    trio.run(main)


# -- the first mark comes with the listing ------------------------------------------------


def test_a_listing_carries_the_mark_the_question_would_answer(fresh_emulator):
    """Nothing changed since the listing: the first question answers the listing's own mark
    (so the first round reports nothing); each provider's listing carries one. (On Apple, an
    asset deleted after the newest listed one was updated moves the first answer once: the
    listing shows no deleted assets.)"""
    emu = fresh_emulator()

    async def studio(p):
        entries = {e.name: e for e in await p.list_root()}
        for name in ("Game Art", "characters"):
            entries = {e.name: e for e in (entries[name].children or await p.list_dir(entries[name]))}
        return entries["villains"]

    def given(entry: Entry):
        async def find(p):
            return entry

        return find

    directories = {
        "carhartt": given(Entry(SEED_ORG, f"org/{SEED_ORG}", True)),
        "apple": given(Entry(APPLE_BRAND, f"org/{APPLE_ORG}/brand/{APPLE_BRAND}", True)),
        "stores": given(Entry("logos", "collection/logos", True)),
        "studio": studio,
    }
    for account, find in directories.items():

        async def main(p, find=find):
            directory = await find(p)
            mark = mark_of(await p.list_dir(directory))
            return mark, await p.change_mark(directory, mark)

        listed, asked = run(emu, account, main)
        assert listed is not None and listed == asked, (account, listed, asked)


def test_the_mark_is_kept_with_the_listing_on_disk_small_or_big(tmp_path):
    """A big listing is pickled through a file, without a memo: its mark comes back too."""
    cache = MetaCache(tmp_path, ttl=60)
    for key, count in (("small", 3), ("big", STREAMED_LISTING + 1)):
        cache.store_listing(key, with_mark([Entry(f"f{i}", f"k{i}", False) for i in range(count)], f"mark of {key}"))
    cache.store_listing("made here", [Entry("f", "k", False)])
    cache.close()
    reopened = MetaCache(tmp_path, ttl=60)
    for key, count in (("small", 3), ("big", STREAMED_LISTING + 1)):
        entries, _ = reopened.listing(key)
        assert len(entries) == count and mark_of(entries) == f"mark of {key}"
    assert mark_of(reopened.listing("made here")[0]) is None
    reopened.close()


VILLAINS = "/studio/Game Art/characters/villains"
FRESH_FOR_AN_HOUR = "poll_interval=60s,metadata_ttl=1h"


def _dragon(emu) -> tuple[MudTruth, str, dict]:
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    [dragon] = [a for a in mud.assets(ws, "/characters/villains/") if a["file_name"].startswith("dragon")]
    return mud, ws, dragon


def _noting_changes(fs) -> list[str]:
    """The keys the poller reports changed, from now on (each still refreshed)."""
    changed: list[str] = []
    refresh = fs.mount.poller.on_change

    async def noting(account: str, key: str) -> None:
        changed.append(key)
        await refresh(account, key)

    fs.mount.poller.on_change = noting
    return changed


@pytest.mark.trio
async def test_a_rename_right_after_the_listing_shows_at_the_first_round(fresh_emulator, tmp_path):
    emu = fresh_emulator()
    mud, ws, dragon = await trio.to_thread.run_sync(_dragon, emu)
    async with in_process(emu, tmp_path, ["studio"], FRESH_FOR_AN_HOUR) as fs:
        changed = _noting_changes(fs)
        assert dragon["file_name"] in await fs.listdir(VILLAINS)
        await trio.to_thread.run_sync(mud.rename, ws, dragon["id"], "wyrm")  # before any round asked

        await fs.mount.poller.poll_once()

        names = await fs.listdir(VILLAINS)
        assert dragon["file_name"] not in names and any(n.startswith("wyrm") for n in names), names
        assert changed == [f"ws/{ws}/folder/characters/villains"]
        await fs.mount.poller.poll_once()  # nothing changed since: nothing reported, nothing listed again
        assert len(changed) == 1
    mud.close()


@pytest.mark.trio
@pytest.mark.parametrize("written", [False, True], ids=["listed", "written into"])
async def test_a_listing_from_the_disk_cache_is_checked_at_the_first_round(fresh_emulator, tmp_path, written):
    """A remount shows the cached listing at once (no request), and the first round sees that
    the provider moved on since that listing was made; also when the listing on disk is one
    the mount's own upload changed (it vouches for no state of the provider)."""
    emu = fresh_emulator()
    mud, ws, dragon = await trio.to_thread.run_sync(_dragon, emu)
    async with in_process(emu, tmp_path, ["studio"], FRESH_FOR_AN_HOUR + ",write_back=0") as fs:
        assert dragon["file_name"] in await fs.listdir(VILLAINS)
        if written:
            await fs.write_file(f"{VILLAINS}/imp.png", png((9, 9, 9)))
            await fs.drain()
            assert "imp.png" in await fs.listdir(VILLAINS)
    await trio.to_thread.run_sync(mud.rename, ws, dragon["id"], "wyrm")  # while nothing is mounted

    async with in_process(emu, tmp_path, ["studio"], FRESH_FOR_AN_HOUR) as fs:
        changed = _noting_changes(fs)
        await trio.to_thread.run_sync(emu.reset_requests)
        assert dragon["file_name"] in await fs.listdir(VILLAINS)  # the cached listing, trusted for an hour
        assert not any(k.endswith("/assets/search") for k in await trio.to_thread.run_sync(emu.requests))

        await fs.mount.poller.poll_once()

        names = await fs.listdir(VILLAINS)
        assert dragon["file_name"] not in names and any(n.startswith("wyrm") for n in names), names
        assert changed == [f"ws/{ws}/folder/characters/villains"]
    mud.close()
