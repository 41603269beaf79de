"""A rename is the rename asked for, and a save that renames the file away keeps the asset:
a Mudstack rename to another extension driven on the provider against the emulator, and an
emacs-style save (`f` → `f~`, a new `f`) on a mount without a write-back delay
(`write_back=0`), where the rename to a backup name still waits for the new file. Checked
through the emulator's own API and its log of names; the same saves with a delay, by the
programs themselves, are in tests/test_programs.py."""

from __future__ import annotations

import os
import time

import pytest
from emulator_log import clear_names, names_used
from mounting import MountedFS
from pending import wait_for_uploads
from test_mount_mudstack import MudTruth
from test_write_mudstack import at, children, run

from assetfs.providers.base import CONTENT

VILLAINS = "/characters/villains/"


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
