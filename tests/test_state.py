"""The state dir: pending uploads and what providers remember survive `assetfs cache clear`,
an `rm -rf` of the cache dir and a `kill -9`; state an older version kept in the cache dir
is moved over; one mount per state dir. Real mounts of a real emulator."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from test_commands import fail_an_upload, uploaded_to_mudstack
from test_mount_write import png
from truth import wait_for

pytestmark = pytest.mark.mount


def assetfs(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assetfs", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def write_into_a_collection(m, name: str) -> bytes:
    """An upload into an iQmetrix collection: the collection lists it only because the
    mount remembers it (iQmetrix collections are the ids in the config)."""
    data = png((11, 22, 33), (40, 40))
    (m.path / "stores" / "logos" / name).write_bytes(data)
    assert name in os.listdir(m.path / "stores" / "logos")
    return data


def test_cache_clear_and_rm_rf_of_the_cache_after_kill_9_lose_no_upload_and_no_collection_member(
    fresh_emulator, mount, tmp_path
):
    emu = fresh_emulator()
    cache, state = tmp_path / "cache", tmp_path / "state"
    m = mount(
        emu.config, accounts=["stores", "studio"], cache_dir=cache, state_dir=state, options="timeout=5s,write_back=0"
    )
    write_into_a_collection(m, "member.png")
    data = os.urandom(100_000)
    fail_an_upload(emu, m, "pending.bin", data)

    # A clean unmount with the upload still failing, then `cache clear`.
    m.stop()
    cleared = assetfs("cache", "clear", "--config", m.config_path)
    assert cleared.returncode == 0 and "kept the state dir" in cleared.stdout, cleared.stderr
    m = mount(
        emu.config, accounts=["stores", "studio"], cache_dir=cache, state_dir=state, options="timeout=5s,write_back=0"
    )
    assert "member.png" in os.listdir(m.path / "stores" / "logos")
    assert [p["name"] for p in assetfs_status(m)["pending_uploads"]] == ["pending.bin"]

    # kill -9 with the upload pending, and the whole cache dir removed.
    m.process.send_signal(signal.SIGKILL)
    m.process.wait(10)
    m.stop()
    shutil.rmtree(cache)
    emu.clear_faults()
    m = mount(
        emu.config, accounts=["stores", "studio"], cache_dir=cache, state_dir=state, options="timeout=5s,write_back=0"
    )
    assert "member.png" in os.listdir(m.path / "stores" / "logos")
    assert wait_for(lambda: uploaded_to_mudstack(emu, "pending.bin"), 40) == [data]
    assert not list((state / "spool").iterdir())  # uploaded: its spool file is gone


def assetfs_status(m) -> dict:
    import json

    return json.loads((m.path / ".assetfs" / "status.json").read_text())


def test_state_an_old_version_kept_in_the_cache_dir_is_moved_over(fresh_emulator, mount, tmp_path):
    """An older version kept journal, spool and memory in the cache dir: the first mount with
    a state dir moves them there (one log line), and the upload and the member survive."""
    emu = fresh_emulator()
    cache = tmp_path / "cache"
    old = mount(
        emu.config, accounts=["stores", "studio"], cache_dir=cache, state_dir=cache, options="timeout=5s,write_back=0"
    )
    write_into_a_collection(old, "old-member.png")
    data = os.urandom(50_000)
    fail_an_upload(emu, old, "old-pending.bin", data)
    old.stop()
    assert {"spool", "journal", "memory"} <= set(os.listdir(cache))

    state = tmp_path / "state"
    m = mount(
        emu.config, accounts=["stores", "studio"], cache_dir=cache, state_dir=state, options="timeout=5s,write_back=0"
    )
    assert "moved spool/, journal/, memory/ from the cache dir" in m.log(), m.log()
    assert not {"spool", "journal", "memory"} & set(os.listdir(cache))
    assert "old-member.png" in os.listdir(m.path / "stores" / "logos")
    emu.clear_faults()
    assert wait_for(lambda: uploaded_to_mudstack(emu, "old-pending.bin"), 40) == [data]


def test_a_second_mount_on_one_state_dir_is_refused_naming_the_first(emu, mount, tmp_path):
    state = tmp_path / "state"
    first = mount(emu.config, accounts=["carhartt"], state_dir=state)
    with pytest.raises(RuntimeError) as refused:
        mount(emu.config, accounts=["carhartt"], state_dir=state)
    message = str(refused.value)
    assert f"state dir {state} is in use by the mount at {first.path} (pid {first.process.pid})" in message, message
    assert "Traceback" not in message
    # The lock dies with its process (kill -9 included): the next mount gets it.
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    first.stop()
    again = mount(emu.config, accounts=["carhartt"], state_dir=state)
    assert "carhartt" in os.listdir(again.path)
