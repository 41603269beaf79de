"""Changes made on the provider by someone else, seen by a mount without a remount: with
`poll_interval=2s` and listings trusted for an hour, a rename, an upload, a delete and a new
folder made through the emulator's API show in `ls` within poll_interval + 1 s; a reader that has a file
open while its bytes are replaced reads the version it opened to the end, and the next open
reads the new one. `assetfs refresh` does it at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from test_mount_mudstack import MudTruth
from truth import md5

pytestmark = [pytest.mark.mount, pytest.mark.serial]

POLL = 2.0
OPTIONS = f"poll_interval={POLL:g}s,metadata_ttl=1h,timeout=10s"


def shows_within(path, condition, limit: float) -> float:
    """Seconds until `ls path` satisfies condition (a fresh process each time, as a user's
    `ls` is); fails past `limit`."""
    started = time.monotonic()
    while True:
        names = subprocess.run(["ls", "-a", str(path)], capture_output=True, text=True, check=True).stdout.split()
        if condition(names):
            return time.monotonic() - started
        assert time.monotonic() - started < limit, f"not shown after {limit:g}s: {names}"
        time.sleep(0.1)


def upload(mud: MudTruth, ws: str, location: str, name: str, data: bytes) -> dict:
    """The API's three steps: a signed URL, the bytes to it, the asset."""
    signed = mud.call("POST", "/workspaces/assets/upload/", ws, json={"name": name})
    httpx.put(signed["signed_url"], content=data, timeout=30).raise_for_status()
    return mud.call(
        "POST",
        "/workspaces/assets/upload/assets",
        ws,
        json={"temp_file_key": signed["key"], "original_file_name": name, "file_location": location},
    )


def test_a_rename_an_upload_a_delete_and_a_new_folder_elsewhere_show_within_the_poll_interval(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, accounts=["studio"], options=OPTIONS)
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    location = "/characters/villains/"
    folder = m.path / "studio" / "Game Art" / "characters" / "villains"
    [dragon] = [a for a in mud.assets(ws, location) if a["file_name"].startswith("dragon")]
    names = os.listdir(folder)
    assert dragon["file_name"] in names
    time.sleep(POLL + 0.5)  # polled once unchanged: the next answer is compared with it
    took = {}

    mud.rename(ws, dragon["id"], "wyrm")
    took["rename"] = shows_within(
        folder, lambda n: dragon["file_name"] not in n and any(x.startswith("wyrm") for x in n), POLL + 1
    )
    made = upload(mud, ws, location, "imp.png", b"\x89PNG made elsewhere")
    took["upload"] = shows_within(folder, lambda n: "imp.png" in n, POLL + 1)
    mud.call("DELETE", f"/workspaces/assets/{made['id']}", ws)
    took["delete"] = shows_within(folder, lambda n: "imp.png" not in n, POLL + 1)
    assert (folder / "imp.png").exists() is False
    mud.call("POST", "/workspaces/folders", ws, params={"folder": location + "sketches/"})
    took["new folder"] = shows_within(folder, lambda n: "sketches" in n, POLL + 1)
    assert (folder / "sketches").is_dir()
    print("shown after: " + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()) + f" (poll_interval {POLL:g}s)")
    mud.close()


def test_a_rename_right_after_the_listing_shows_at_the_first_round(fresh_emulator, mount):
    """No blind first interval: the first mark comes with the listing, so a change made a
    moment after `ls` (before any round asked) shows within poll_interval + 1 s, though the
    listing is trusted for an hour."""
    emu = fresh_emulator()
    m = mount(emu.config, accounts=["studio"], options=OPTIONS)
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    folder = m.path / "studio" / "Game Art" / "characters" / "villains"
    [dragon] = [a for a in mud.assets(ws, "/characters/villains/") if a["file_name"].startswith("dragon")]
    assert dragon["file_name"] in os.listdir(folder)
    mud.rename(ws, dragon["id"], "wyrm")
    took = shows_within(
        folder, lambda n: dragon["file_name"] not in n and any(x.startswith("wyrm") for x in n), POLL + 1
    )
    print(f"shown after {took:.1f}s (poll_interval {POLL:g}s)")
    mud.close()


def test_an_open_reader_keeps_its_version_and_the_next_open_reads_the_new_one(fresh_emulator, mount):
    emu = fresh_emulator("--large-file", "12MiB")
    m = mount(emu.config, accounts=["studio"], options=OPTIONS + ",read_ahead=1MiB")
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    [large] = [a for ws_path in mud.folders(ws) for a in mud.assets(ws, ws_path) if a["file_name"] == "large.bin"]
    old = mud.download(ws, large["id"])
    path = m.path / "studio" / "Game Art" / large["file_location"].strip("/") / "large.bin"
    new = os.urandom(3 << 20)
    with open(path, "rb", buffering=0) as f:
        head = f.read(1 << 20)
        time.sleep(POLL + 0.5)  # polled once unchanged: the next answer is compared with it
        mud.call(
            "POST",
            f"/workspaces/assets/{large['id']}/versions",
            ws,
            files={"file": ("large.bin", new, "application/octet-stream")},
        )
        started = time.monotonic()
        while os.stat(path).st_size != len(new):  # the mount sees the new version
            assert time.monotonic() - started < POLL + 1, "the new version did not show in time"
            time.sleep(0.1)
        rest = b""
        while chunk := f.read(1 << 20):
            rest += chunk
    assert len(head + rest) == len(old) and md5(head + rest) == md5(old)  # the version it opened, whole
    assert md5(path.read_bytes()) == md5(new)
    mud.close()


def test_assetfs_refresh_shows_a_change_at_once(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, accounts=["studio"], options="poll_interval=off,metadata_ttl=1h")
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    folder = m.path / "studio" / "Game Art" / "characters" / "villains"
    assert "imp.png" not in os.listdir(folder)
    upload(mud, ws, "/characters/villains/", "imp.png", b"\x89PNG made elsewhere")
    time.sleep(0.5)
    assert "imp.png" not in os.listdir(folder)  # no polling, the listing trusted for an hour
    done = subprocess.run([sys.executable, "-m", "assetfs", "refresh", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0 and "refreshed" in done.stdout, done.stderr
    assert "imp.png" in os.listdir(folder)
    wrong = subprocess.run(
        [sys.executable, "-m", "assetfs", "refresh", str(folder / "imp.png")], capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "not a directory" in wrong.stderr
    mud.close()
