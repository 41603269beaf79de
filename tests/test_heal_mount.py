"""A stale listing heals at the first refusal, on a real mount: a Mudstack folder removed
through the provider's API while the mount trusts its listing for an hour (no polling).
`mkdir` inside it answers ENOENT (not EIO), and the folder is gone from `ls` of its parent
and from the kernel's cache of names at once; trying again asks the provider nothing."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest
from test_mount_mudstack import MudTruth

pytestmark = pytest.mark.mount


def test_mkdir_in_a_folder_removed_elsewhere_is_enoent_and_the_folder_leaves_ls(fresh_emulator, mount):
    emu = fresh_emulator()
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    made = mud.call("POST", "/workspaces/folders", ws, params={"folder": "/characters/sketches/"})
    m = mount(emu.config, accounts=["studio"], options="poll_interval=off,metadata_ttl=1h,timeout=10s")
    characters = m.path / "studio" / "Game Art" / "characters"
    sketches = characters / "sketches"
    assert "sketches" in os.listdir(characters) and sketches.is_dir()
    mud.call("DELETE", f"/workspaces/folders/{made['id']}", ws)
    assert sketches.is_dir()  # the mount still holds the listing

    with pytest.raises(OSError) as refused:
        os.mkdir(sketches / "new")
    assert refused.value.errno == errno.ENOENT

    shown = subprocess.run(["ls", "-a", str(characters)], capture_output=True, text=True, check=True).stdout.split()
    assert "sketches" not in shown
    deadline = time.monotonic() + 2  # the kernel is told in the background, once mkdir is answered
    while sketches.exists():
        assert time.monotonic() < deadline, "the kernel still has the folder's name"
        time.sleep(0.05)
    emu.reset_requests()
    with pytest.raises(FileNotFoundError):
        os.mkdir(sketches / "new")
    assert not any("folders" in route for route in emu.requests())  # answered from the healed listing
    assert "sketches" not in [f.rstrip("/").rsplit("/", 1)[-1] for f in mud.folders(ws)]  # nothing made
    log = m.log()
    assert "Parent folder /characters/sketches/ does not exist" in log and "listing it again" in log
    assert log.count("listing it again") == 1 and "EIO" not in log
    mud.close()
