"""Security: the cache (listings, blocks, spool, journal) is the mounting user's alone, even
under umask 000; without allow_other no other user can even look at the mount, with it they
read but cannot write; no credential or issued token is ever written into the cache."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mounting import MountedFS, is_mounted

pytestmark = pytest.mark.mount
CREDENTIAL_FIELDS = ("token", "username", "password", "client_id", "client_secret", "account_id", "key", "secret")
CACHE_DIRS = ("metadata", "blocks")
STATE_DIRS = ("spool", "journal", "memory")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SPECTRUM_FILE = Path("carhartt/7000000000000300322/white MBA.png")
MUDSTACK_FOLDER = Path("studio/Game Art/characters")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")


def exercise(m: MountedFS) -> None:
    """Touch every part of the cache: listings of all four accounts, blocks, a written file."""
    subprocess.run(["ls", "-lR", str(m.path)], capture_output=True, check=False, timeout=120)
    for path in (SPECTRUM_FILE, Path("stores/logos/iqmetrix.jpg")):
        (m.path / path).read_bytes()
    (m.path / MUDSTACK_FOLDER / "secure.png").write_bytes(b"\x89PNG private bytes")
    (m.path / "stores" / "logos" / "secure.png").write_bytes(b"\x89PNG private bytes")


@pytest.fixture(scope="module")
def cache_modes(tmp_path_factory) -> dict[str, int]:
    """The modes of the cache and state dirs and their directories after a mount started
    under umask 000 into directories that were already there, too open (0755), did some work."""
    from conftest import RunningEmulator

    tmp = tmp_path_factory.mktemp("umask0")
    emu = RunningEmulator(tmp / "emu")
    cache, state = tmp / "cache", tmp / "state"
    for directory in (cache, state):
        directory.mkdir(mode=0o755)
        os.chmod(directory, 0o755)
    old = os.umask(0)
    try:
        m = MountedFS(tmp / "m", emu.config, cache_dir=cache, state_dir=state)
    finally:
        os.umask(old)
    try:
        exercise(m)
    finally:
        m.stop()
        emu.stop()
    return {
        str(path.relative_to(tmp)): stat.S_IMODE(path.stat().st_mode)
        for path in (cache, *(cache / d for d in CACHE_DIRS), state, *(state / d for d in STATE_DIRS))
        if path.is_dir()
    }


def test_the_cache_spool_and_journal_are_0700_even_under_umask_000(cache_modes):
    assert set(cache_modes) == {
        "cache",
        *(f"cache/{d}" for d in CACHE_DIRS),
        "state",
        *(f"state/{d}" for d in STATE_DIRS),
    }
    assert {d: oct(mode) for d, mode in cache_modes.items() if mode != 0o700 and d != "state/memory"} == {}


def test_the_providers_memory_is_0700_too(cache_modes):
    assert oct(cache_modes["state/memory"]) == oct(0o700)


@needs_root
def test_nothing_in_the_cache_is_readable_by_another_user(fresh_emulator, mount, tmp_path):
    emu = fresh_emulator()
    world = Path(tempfile.mkdtemp(prefix="assetfs-cache-"))
    try:
        os.chmod(world, 0o755)  # a parent everyone may traverse: only the cache's own modes protect it
        m = mount(emu.config, cache_dir=world / "cache")
        exercise(m)
        m.stop()
        files = [p for top in ("cache", "cache.state") for p in (world / top).rglob("*") if p.is_file()]
        assert {"metadata", "blocks", "journal", "memory"} <= {p.relative_to(world).parts[1] for p in files}
        for path in files[:50]:
            denied = subprocess.run(
                [*NOBODY, "cat", str(path)], capture_output=True, text=True, check=False, timeout=10
            )
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, path
    finally:
        shutil.rmtree(world)


def _world_mount(config: dict, options: str) -> tuple[MountedFS, Path]:
    """A mount whose mountpoint another user can reach (pytest's tmp_path is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="assetfs-shared-"))
    cache = Path(tempfile.mkdtemp(prefix="assetfs-cache-"))
    m = MountedFS(top, config, options=options, cache_dir=cache / "cache")
    m.config_path.chmod(0o600)  # the test's config holds the emulator's credentials
    os.chmod(top, 0o711)
    return m, cache


def _remove(m: MountedFS, cache: Path) -> None:
    m.stop()
    if not is_mounted(m.path):
        shutil.rmtree(m.path.parent)
        shutil.rmtree(cache)


@needs_root
@pytest.mark.parametrize("allow_other", [False, True], ids=["without allow_other", "with allow_other"])
def test_another_user_sees_the_mount_only_with_allow_other(fresh_emulator, allow_other):
    emu = fresh_emulator()
    m, cache = _world_mount(emu.config, "allow_other,timeout=5s" if allow_other else "timeout=5s")
    try:
        own = subprocess.run(["ls", str(m.path)], capture_output=True, text=True, check=False, timeout=10)
        assert own.returncode == 0 and "carhartt" in own.stdout
        emu.reset_requests()
        listing = subprocess.run([*NOBODY, "ls", str(m.path)], capture_output=True, text=True, check=False, timeout=10)
        reading = subprocess.run(
            [*NOBODY, "cat", str(m.path / SPECTRUM_FILE)], capture_output=True, check=False, timeout=10
        )
        su = subprocess.run(
            ["su", "nobody", "-s", "/bin/sh", "-c", f"ls '{m.path}/carhartt'"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        writing = subprocess.run(
            [*NOBODY, "sh", "-c", f"echo x > '{m.path / MUDSTACK_FOLDER}/by-nobody.png'"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if allow_other:
            assert listing.returncode == 0 and "carhartt" in listing.stdout.split()
            assert reading.returncode == 0 and reading.stdout == (m.path / SPECTRUM_FILE).read_bytes()
            assert su.returncode == 0 and "7000000000000300322" in su.stdout
        else:
            assert listing.returncode != 0 and "Permission denied" in listing.stderr
            assert reading.returncode != 0 and b"Permission denied" in reading.stderr
            assert su.returncode != 0 and "Permission denied" in su.stderr
        # either way another user cannot write: default_permissions and the owner's modes
        assert writing.returncode != 0 and "Permission denied" in writing.stderr
        assert not any(k.split()[0] in ("POST", "PUT", "PATCH", "DELETE") and "token" not in k for k in emu.requests())
    finally:
        _remove(m, cache)


def test_no_credential_or_token_is_ever_written_to_the_cache(fresh_emulator, mount, tmp_path):
    """A mount that signs in to all four providers (tokens expiring every 3 s, so they are
    fetched again), lists, reads and uploads: not one byte of a secret in any cache file."""
    emu = fresh_emulator("--token-ttl", "3s")
    cache = tmp_path / "cache"
    m = mount(emu.config, cache_dir=cache)
    exercise(m)
    m.wait_for_uploads()
    time.sleep(3.5)
    subprocess.run(
        ["ls", "-lR", str(m.path / "apple"), str(m.path / "studio")], capture_output=True, check=False, timeout=60
    )
    (m.path / MUDSTACK_FOLDER / "after-refresh.png").write_bytes(b"\x89PNG more private bytes")
    m.wait_for_uploads()
    m.stop()
    secrets = [
        v
        for account in emu.config["accounts"].values()
        for k, v in account.items()
        if k in CREDENTIAL_FIELDS and isinstance(v, str)
    ]
    issued = emu.control.get("/_emulator/tokens").json()["issued"]
    assert len(secrets) == 10 and len(issued) >= 5  # three token providers (+ a refresh token), and again after expiry
    files = [p for p in (*cache.rglob("*"), *m.state_dir.rglob("*")) if p.is_file()]
    assert sum(p.stat().st_size for p in files) > 0 and any(p.name.endswith(".db") for p in files)
    found = []
    for path in files:
        data = path.read_bytes()
        for secret in secrets + issued:
            if secret.encode() in data:
                found.append((str(path.relative_to(tmp_path)), secret[:6] + "…"))
    assert found == [], "secrets in the cache"
