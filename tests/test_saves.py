"""A rename is the rename asked for, and a save that renames the file away keeps the asset:
a Mudstack rename to another extension driven on the provider against the emulator, one to
no extension (`mv notes.txt notes`) through the filesystem in process, and an
emacs-style save (`f` → `f~`, a new `f`) on a mount without a write-back delay
(`write_back=0`), where the rename to a backup name still waits for the new file. Checked
through the emulator's own API and its log of names; the same saves with a delay are in
tests/test_scenarios.py (in their syscall order, in process and on a mount) and
tests/test_programs.py (by the programs themselves)."""

from __future__ import annotations

import errno
import os
import time

import pyfuse3
import pytest
import trio
from conftest import emulator_fixture
from emulator_log import clear_names, names_used
from fsapi import in_process
from mounting import MountedFS
from pending import wait_for_uploads
from test_mount_mudstack import MudTruth
from test_write_mudstack import at, children, run

from assetfs.providers.base import CONTENT

VILLAINS = "/characters/villains/"
UI = "studio/Game Art/ui"

emulator_saves = emulator_fixture("emulator_saves")  # this module's own: its in-process tests write


def by_id(truth: MudTruth, ws: str, asset_id: str) -> dict:
    return next(a for a in truth.assets(ws, VILLAINS) if a["id"] == asset_id)


def test_a_mudstack_rename_gives_exactly_the_file_name_asked_for(fresh_emulator):
    e = fresh_emulator()
    truth = MudTruth(e.account("mudstack"))
    ws = truth.workspaces()["Game Art"]

    async def main(p):
        villains = await at(p, "Game Art", "characters", "villains")
        dragon = (await children(p, villains))["dragon"]
        backup = await p.move_asset(dragon, villains, "dragon.jpg1")  # not `dragon.jpg1.jpg`
        plain = await p.move_asset(backup, villains, "wyrm.jpeg")
        return dragon, backup, plain

    try:
        dragon, backup, plain = run(e, main)
        assert next(c for c in backup.children if c.kind == CONTENT).name == "dragon.jpg1"
        assert next(c for c in plain.children if c.kind == CONTENT).name == "wyrm.jpeg"
        asset = by_id(truth, ws, dragon.xattrs["user.assetfs.id"])
        assert asset["file_name"] == "wyrm.jpeg"
        assert {n["name"] for n in names_used(e, "mudstack")} <= {"dragon.jpg1", "dragon", "wyrm.jpeg", "wyrm"}
    finally:
        truth.close()


@pytest.mark.trio
async def test_a_rename_to_a_name_without_extension_is_exactly_that_name(emulator_saves, tmp_path):
    """`mv notes.txt notes` shows `notes` and makes the asset's file `notes` (the rename
    route would keep `.txt`); a move without a rename then sends no rename."""
    truth = MudTruth(emulator_saves.account("mudstack"))
    ws = truth.workspaces()["Game Art"]
    try:
        async with in_process(emulator_saves, tmp_path, accounts=["studio"], options="write_back=0") as fs:
            await fs.write_file(f"{UI}/notes.txt", b"notes\n")
            await fs.drain()
            [made] = [a for a in truth.assets(ws, "/ui/") if a["file_name"] == "notes.txt"]
            clear_names(emulator_saves)
            await fs.rename(f"{UI}/notes.txt", f"{UI}/notes")
            listing = await fs.listdir(UI)
            assert "notes" in listing and "notes.txt" not in listing
            [asset] = [a for a in truth.assets(ws, "/ui/") if a["id"] == made["id"]]
            assert asset["file_name"] == "notes" and asset["currentVersion"] == made["currentVersion"]
            assert await fs.read_file(f"{UI}/notes") == b"notes\n"

            await fs.rename(f"{UI}/notes", f"studio/Game Art{VILLAINS}notes")  # a move only
            assert "notes" in await fs.listdir(f"studio/Game Art{VILLAINS}")
            assert by_id(truth, ws, made["id"])["file_name"] == "notes"
            assert [(n["event"], n["name"]) for n in names_used(emulator_saves, "mudstack")] == [
                ("rename", "notes"),
                ("rename", "notes"),
                ("move", "notes"),
            ]
    finally:
        truth.close()


@pytest.mark.trio
async def test_a_renamed_file_shows_under_its_new_name_while_the_provider_renames_it(emulator_saves, tmp_path):
    """At the window's end the rename goes to the provider: meanwhile the folder shows the
    new name (never neither name), and the rename counts as pending in the status."""
    truth = MudTruth(emulator_saves.account("mudstack"))
    ws = truth.workspaces()["Game Art"]
    try:
        async with in_process(emulator_saves, tmp_path, accounts=["studio"], options="write_back=0.2") as fs:
            await fs.write_file(f"{UI}/todo.txt", b"todo\n")
            await fs.drain()
            await fs.rename(f"{UI}/todo.txt", f"{UI}/todo")
            seen = []
            with trio.fail_after(30):
                while fs.mount.writer.aways.pending():
                    listing = await fs.listdir(UI)
                    seen.append(("todo" in listing, "todo.txt" in listing))
                    await trio.sleep(0.002)
            assert seen and set(seen) == {(True, False)}
            assert "todo" in await fs.listdir(UI)
            [asset] = [a for a in truth.assets(ws, "/ui/") if a["file_name"].startswith("todo")]
            assert asset["file_name"] == "todo"
    finally:
        truth.close()


@pytest.mark.mount
def test_without_a_write_back_delay_an_emacs_save_is_one_new_version(fresh_emulator, tmp_path):
    e = fresh_emulator()
    truth = MudTruth(e.account("mudstack"))
    ws = truth.workspaces()["Game Art"]
    [before] = [a for a in truth.assets(ws, VILLAINS) if a["file_name"] == "dragon.jpg"]
    m = MountedFS(tmp_path / "m", e.config, options="write_back=0")
    try:
        folder = m.path / "studio" / "Game Art" / "characters" / "villains"
        old = (folder / "dragon.jpg").read_bytes()
        clear_names(e)
        os.rename(folder / "dragon.jpg", folder / "dragon.jpg~")
        (folder / "dragon.jpg").write_bytes(b"saved by emacs\n")  # uploaded at its close
        after = by_id(truth, ws, before["id"])
        assert after["file_name"] == "dragon.jpg"
        assert after["currentVersion"]["version_number"] == before["currentVersion"]["version_number"] + 1
        assert truth.download(ws, before["id"]) == b"saved by emacs\n"
        assert (folder / "dragon.jpg~").read_bytes() == old
        with pytest.raises(PermissionError):
            open(folder / "dragon.jpg~", "wb").close()

        time.sleep(2.5)  # the backup's window over: nothing more is sent, both names stay
        wait_for_uploads(m.path)
        assert [n["name"] for n in names_used(e, "mudstack")] == ["dragon.jpg"]
        assert by_id(truth, ws, before["id"])["currentVersion"] == after["currentVersion"]
        assert {"dragon.jpg", "dragon.jpg~"} <= set(os.listdir(folder))
        assert (folder / "dragon.jpg").read_bytes() == b"saved by emacs\n"
        assert (folder / "dragon.jpg~").read_bytes() == old
    finally:
        m.stop()
        truth.close()


# -- in process: the rules, without a kernel ---------------------------------------------------


async def save_like_blender(fs, blend: str, data: bytes, versions: int = 1) -> None:
    """`x.blend@` written; the backups moved up (`x.blend1` → `x.blend2` …); `x.blend` →
    `x.blend1`; `x.blend@` → `x.blend`: the order of Blender's own save."""
    await fs.write_file(f"{blend}@", data)
    for n in range(versions - 1, 0, -1):
        if await fs.exists(f"{blend}{n}"):
            await fs.rename(f"{blend}{n}", f"{blend}{n + 1}")
    await fs.rename(blend, f"{blend}1")
    await fs.rename(f"{blend}@", blend)


@pytest.mark.trio
async def test_blender_saves_with_two_backups_are_versions_of_one_asset(emulator_saves, tmp_path):
    truth = MudTruth(emulator_saves.account("mudstack"))
    ws = truth.workspaces()["Game Art"]
    try:
        async with in_process(emulator_saves, tmp_path, accounts=["studio"], options="write_back=0.3") as fs:
            blend = f"{UI}/scene.blend"
            await fs.write_file(blend, b"v1")
            await fs.drain()
            [first] = [a for a in truth.assets(ws, "/ui/") if a["file_name"] == "scene.blend"]
            for data in (b"v2", b"v3", b"v4"):
                await save_like_blender(fs, blend, data, versions=2)
                await fs.drain()
            [asset] = [a for a in truth.assets(ws, "/ui/") if a["file_name"].startswith("scene")]
            assert asset["id"] == first["id"] and len(asset["versions"]) == 4
            assert truth.download(ws, asset["id"]) == b"v4"
            assert await fs.read_file(blend) == b"v4"
            assert await fs.read_file(f"{blend}1") == b"v3" and await fs.read_file(f"{blend}2") == b"v2"
            listing = await fs.listdir(UI)
            assert {"scene.blend", "scene.blend1", "scene.blend2"} <= set(listing)
            assert not [n for n in listing if n.startswith("scene.blend@")]

            await fails(errno.EPERM, fs.open(f"{blend}1", os.O_WRONLY))  # the previous bytes: read-only
            await fails(errno.EPERM, fs.rename(f"{blend}1", f"{UI}/kept.blend"))  # a backup name only
            await fs.unlink(f"{blend}2")  # removing a backup removes nothing on the provider
            await fs.drain()
            assert [a["id"] for a in truth.assets(ws, "/ui/") if a["file_name"].startswith("scene")] == [asset["id"]]
            assert "scene.blend2" not in await fs.listdir(UI)
    finally:
        truth.close()


async def fails(errno_: int, call) -> None:
    with pytest.raises(pyfuse3.FUSEError) as caught:
        await call
    assert caught.value.errno == errno_, errno.errorcode[caught.value.errno]
