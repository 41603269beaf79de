"""Secrets stay secret: a debug-level log of a mount that signs in to all four providers,
reads and writes shows no credential, no issued token and no URL signature."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.mount
CREDENTIAL_FIELDS = ("token", "password", "client_secret", "secret", "key")


def test_a_debug_log_holds_no_secret(fresh_emulator, mount, tmp_path):
    emu = fresh_emulator("--token-ttl", "3s")
    m = mount(emu.config, log_level="DEBUG")
    subprocess.run(["ls", "-lR", str(m.path)], capture_output=True, timeout=120)
    for path in (
        m.path / "carhartt" / "7000000000000300322" / "white MBA.png",
        m.path / "stores" / "logos" / "iqmetrix.jpg",
    ):
        path.read_bytes()
    (m.path / "studio" / "Game Art" / "characters" / "leak-check.png").write_bytes(b"\x89PNG not really")
    subprocess.run(["sleep", "4"])  # tokens expire and are fetched again
    os.listdir(m.path / "apple" / "9467895078742654934" / "9467895078742654921")
    argv = open(f"/proc/{m.process.pid}/cmdline").read().replace("\0", " ")
    m.wait_for_uploads()
    m.stop()
    log = m.log()
    assert "DEBUG" in log and "uploaded" in log  # the log did see the work
    secrets = [
        v
        for account in emu.config["accounts"].values()
        for k, v in account.items()
        if k in CREDENTIAL_FIELDS and isinstance(v, str)
    ]
    issued = emu.control.get("/_emulator/tokens").json()["issued"]
    assert secrets and issued
    for secret in secrets + issued:
        assert secret not in log, "a secret was logged"
    assert "sig=" not in log
    assert "assetfs" in argv and not any(s in argv for s in secrets)  # nothing secret in `ps` either
