"""A stale listing heals at the first refusal, in process (no kernel): a folder removed
elsewhere while the mount still holds its listing (trusted for an hour), then `mkdir` inside
it or `rmdir` of it; an asset deleted elsewhere, then read. The provider's "does not exist"
answers ENOENT (not EIO), the listings that showed the folder or file are dropped and listed
again, and it is gone from its parent; the next try is answered from the view, without
asking the provider again."""

from __future__ import annotations

import errno
import logging

import pyfuse3
import pytest
import trio
from fsapi import in_process
from test_mount_mudstack import MudTruth

CHARACTERS = "/studio/Game Art/characters"
OPTIONS = "poll_interval=off,metadata_ttl=1h"


def _made_and_removed_elsewhere(emu, name: str):
    """A folder made through the API (before the mount lists it), and a call that removes it."""
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    folder = mud.call("POST", "/workspaces/folders", ws, params={"folder": f"/characters/{name}/"})

    def remove():
        mud.call("DELETE", f"/workspaces/folders/{folder['id']}", ws)
        mud.close()

    return remove


async def _errno(call) -> int:
    with pytest.raises(pyfuse3.FUSEError) as refused:
        await call
    return refused.value.errno


@pytest.mark.trio
async def test_mkdir_in_a_folder_removed_elsewhere_is_enoent_and_the_folder_leaves_its_parent(
    fresh_emulator, tmp_path, caplog
):
    caplog.set_level(logging.INFO, "assetfs.refresh")
    emu = fresh_emulator()
    remove = await trio.to_thread.run_sync(_made_and_removed_elsewhere, emu, "sketches")
    async with in_process(emu, tmp_path, ["studio"], OPTIONS) as fs:
        assert "sketches" in await fs.listdir(CHARACTERS)
        assert await fs.listdir(f"{CHARACTERS}/sketches") == [".assets"]
        await trio.to_thread.run_sync(remove)
        assert "sketches" in await fs.listdir(CHARACTERS)  # the listing is trusted for an hour

        assert await _errno(fs.mkdir(f"{CHARACTERS}/sketches/new")) == errno.ENOENT

        assert "sketches" not in await fs.listdir(CHARACTERS)  # healed: listed again at once
        assert "does not exist" in caplog.text and "listing it again" in caplog.text
        await trio.to_thread.run_sync(emu.reset_requests)
        assert await _errno(fs.mkdir(f"{CHARACTERS}/sketches/new")) == errno.ENOENT
        asked = await trio.to_thread.run_sync(emu.requests)
        assert not any("folders" in route for route in asked), asked  # the view knows now
        with trio.fail_after(10):  # the healing in the background ends (the kernel told, here a no-op)
            while fs.mount.refresher._healing:
                await trio.sleep(0.02)
    # The disk cache holds the healed listing too: the next mount does not show the folder.
    async with in_process(emu, tmp_path, ["studio"], OPTIONS) as fs:
        assert "sketches" not in await fs.listdir(CHARACTERS)


@pytest.mark.trio
async def test_reading_an_asset_removed_elsewhere_is_enoent_and_it_leaves_the_listing(fresh_emulator, tmp_path):
    """iQmetrix: the collection's listing comes back from the disk cache on the next mount;
    the asset was deleted in between, so fetching its file answers 404."""
    emu = fresh_emulator()
    asset_id = emu.config["accounts"]["stores"]["collections"]["logos"][0]
    async with in_process(emu, tmp_path, ["stores"], OPTIONS) as fs:
        ids = {
            n: await fs.getxattr(f"/stores/logos/{n}", "user.assetfs.id")
            for n in await fs.listdir("/stores/logos")
            if n != ".assets"
        }
        [name] = [n for n, found in ids.items() if found == asset_id.encode()]
    response = await trio.to_thread.run_sync(lambda: emu.control.delete(f"/_emulator/iqmetrix/assets/{asset_id}"))
    response.raise_for_status()

    async with in_process(emu, tmp_path, ["stores"], OPTIONS) as fs:
        assert name in await fs.listdir("/stores/logos")  # from the disk cache, trusted for an hour

        assert await _errno(fs.read_file(f"/stores/logos/{name}")) == errno.ENOENT

        assert name not in await fs.listdir("/stores/logos")
        assert not await fs.exists(f"/stores/logos/{name}")


@pytest.mark.trio
async def test_rmdir_of_a_folder_removed_elsewhere_is_enoent_and_it_leaves_its_parent(fresh_emulator, tmp_path):
    emu = fresh_emulator()
    remove = await trio.to_thread.run_sync(_made_and_removed_elsewhere, emu, "drafts")
    async with in_process(emu, tmp_path, ["studio"], OPTIONS) as fs:
        assert "drafts" in await fs.listdir(CHARACTERS)
        await trio.to_thread.run_sync(remove)

        assert await _errno(fs.rmdir(f"{CHARACTERS}/drafts")) == errno.ENOENT

        assert "drafts" not in await fs.listdir(CHARACTERS)


@pytest.mark.trio
async def test_a_directory_is_listed_again_at_most_once_per_interval(fresh_emulator, tmp_path, monkeypatch):
    """A provider that lists a file and then refuses it (404) costs one listing per
    interval, however often the file is asked for."""
    villains = f"{CHARACTERS}/villains"
    emu = fresh_emulator()
    async with in_process(emu, tmp_path, ["studio"], OPTIONS) as fs:
        name = next(n for n in await fs.listdir(villains) if n != ".assets")
        file = fs.view.inodes.get(await fs.ino(f"{villains}/{name}"))
        refresher = fs.mount.refresher

        async def heal_and_count() -> int:
            await trio.to_thread.run_sync(emu.reset_requests)
            refresher.heal([file], "GET …: not found")
            with trio.fail_after(10):
                while refresher._healing:
                    await trio.sleep(0.02)
            counts = await trio.to_thread.run_sync(emu.requests)
            return sum(n for route, n in counts.items() if route.endswith("/assets/search"))

        assert [await heal_and_count() for _ in range(3)] == [1, 0, 0]
        monkeypatch.setattr("assetfs.view.refresh.HEAL_AGAIN_AFTER", 0.0)
        assert await heal_and_count() == 1
