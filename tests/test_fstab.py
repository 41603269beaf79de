"""`mount.assetfs`, as mount(8) runs it for an fstab line or a systemd .mount unit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from mounting import is_mounted, unmount

pytestmark = pytest.mark.mount
HELPER = str(Path(sys.executable).parent / "mount.assetfs")


@pytest.fixture
def fstab(emu, tmp_path):
    config = tmp_path / "assets.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "cache": {"dir": str(tmp_path / "cache")},
                "state": {"dir": str(tmp_path / "state")},
                "accounts": {"carhartt": emu.account("spectrum")},
            }
        )
    )
    target = tmp_path / "assets"
    target.mkdir()
    yield config, target
    unmount(target)


def helper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELPER, *args], capture_output=True, text=True, timeout=60)


def test_fstab_options_are_understood_or_ignored_and_it_returns_once_mounted(fstab):
    config, target = fstab
    done = helper(
        str(config),
        str(target),
        "-o",
        "_netdev,nofail,noauto,user,x-systemd.automount,x-systemd.idle-timeout=60,ro,uid=1234,gid=4321,allow_other",
    )
    assert done.returncode == 0, done.stderr
    assert is_mounted(target)
    org = target / "carhartt" / "7000000000000300322"
    st = os.stat(org)
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    with pytest.raises(OSError) as e:
        (org / "x.png").write_bytes(b"x")
    assert e.value.errno == errno.EROFS
    line = next(line for line in open("/proc/self/mounts") if f" {target} " in line)
    assert line.startswith("assetfs ") and " fuse.assetfs " in line and "allow_other" in line


def test_fake_mount_checks_without_mounting(fstab):
    config, target = fstab
    done = helper(str(config), str(target), "-f", "-o", "ro")
    assert done.returncode == 0, done.stderr
    assert not is_mounted(target)


def test_an_unknown_option_is_named_unless_sloppy(fstab):
    config, target = fstab
    done = helper(str(config), str(target), "-o", "ro,colour=blue")
    assert done.returncode != 0 and "colour" in done.stderr
    assert not is_mounted(target)
    done = helper(str(config), str(target), "-s", "-o", "ro,colour=blue")
    assert done.returncode == 0, done.stderr
    assert "ignoring unknown option 'colour'" in done.stderr
    assert is_mounted(target)


def test_a_broken_config_fails_with_the_reason(tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text('[accounts.x]\nprovider = "dropbox"\nbase_url = "http://127.0.0.1:1"\n')
    target = tmp_path / "mnt"
    target.mkdir()
    done = helper(str(config), str(target))
    assert done.returncode != 0
    assert "accounts.x.provider" in done.stderr
    assert not is_mounted(target)
