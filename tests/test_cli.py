"""The commands a user types: demo, mount in the background, errors they can read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mounting import is_mounted, unmount

pytestmark = pytest.mark.mount


def test_demo_mounts_the_sample_assets_and_stops_cleanly_on_sigterm(tmp_path):
    target = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "assetfs", "demo", str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not is_mounted(target):
            assert demo.poll() is None, demo.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert {"carhartt", "stores", "apple", "studio", ".assetfs"} <= set(os.listdir(target))
        assert "white mba used.png" in os.listdir(target / "carhartt" / "7000000000000300322")
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=30)
        assert demo.returncode == 0, err
        assert "getfattr" in out and "unmounted" in out
        assert not is_mounted(target)
    finally:
        if demo.poll() is None:
            demo.kill()
        unmount(target)


def test_mount_returns_once_ready_and_runs_in_the_background(emu, tmp_path):
    import tomli_w

    config = tmp_path / "c.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "cache": {"dir": str(tmp_path / "cache")},
                "state": {"dir": str(tmp_path / "state")},
                "accounts": {"carhartt": emu.account("spectrum")},
            }
        )
    )
    target = tmp_path / "mnt"
    target.mkdir()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "assetfs", "mount", "--config", str(config), str(target)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert is_mounted(target)
        assert os.listdir(target / "carhartt")
    finally:
        unmount(target)


def test_mount_with_a_bad_config_says_which_key(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        '[accounts.x]\nprovider = "spectrum"\nbase_url = "http://127.0.0.1:1"\nclient = "c"\ntokn = "x"\n'
    )
    (tmp_path / "mnt").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "assetfs", "mount", "--config", str(config), str(tmp_path / "mnt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "accounts.x.tokn: unknown key" in done.stderr
    assert "accounts.x.token: missing" in done.stderr
