"""The read path under load and over time: big files, random offsets, concurrent readers,
10,000-asset listings, warm remounts and probe names (requests counted at the emulator)."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
from conftest import emulator_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from truth import asked, download, md5, spectrum_assets

pytestmark = pytest.mark.mount
LARGE = 48 << 20


big_emulator = emulator_fixture("big_emulator", "--assets", "10000", "--large-file", f"{LARGE}")


@pytest.fixture(scope="module")
def big_mount(big_emulator, tmp_path_factory):
    from mounting import MountedFS

    m = MountedFS(tmp_path_factory.mktemp("bigmount"), big_emulator.config, accounts=["carhartt"])
    yield m
    m.stop()


@pytest.fixture(scope="module")
def large_file(big_emulator, big_mount):
    account = big_emulator.account("spectrum")
    org = account["organizations"][1]
    [asset] = [a for a in spectrum_assets(account, org) if a["userFacingFileName"] == "large"]
    expected = download(asset["uploadedAssetUri"])
    return big_mount.path / "carhartt" / org / "large.bin", expected


def test_large_file_reads_whole_and_matches(large_file):
    path, expected = large_file
    assert path.stat().st_size == LARGE
    assert md5(path.read_bytes()) == md5(expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(min_value=0, max_value=LARGE + 4096), size=st.integers(min_value=0, max_value=3 << 20))
def test_reads_at_any_offset_and_size_return_the_providers_bytes(large_file, offset, size):
    path, expected = large_file
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, size, offset) == expected[offset : offset + size]
    finally:
        os.close(fd)


def test_two_concurrent_readers_of_a_large_file(large_file, big_mount):
    path, expected = large_file
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
    results: list[str] = []

    def reader(step: int):
        digest = __import__("hashlib").md5()
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(step):
                digest.update(chunk)
        results.append(digest.hexdigest())

    threads = [threading.Thread(target=reader, args=(n,)) for n in (128 << 10, 1 << 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [md5(expected)] * 2


def test_a_10000_asset_organization_lists_completely(big_emulator, big_mount):
    account = big_emulator.account("spectrum")
    org = account["organizations"][0]
    names = os.listdir(big_mount.path / "carhartt" / org)
    assert len(names) == len(spectrum_assets(account, org)) + 1 >= 10001  # the files and .assets/
    assert len(set(names)) == len(names)


def test_ls_l_of_10000_files_asks_the_mount_a_handful_of_xattr_questions(big_emulator, big_mount):
    """`ls -l` asks every file for security.selinux and its POSIX ACL; the mount answers
    EOPNOTSUPP (names outside user.), so ls stops asking after the first file instead of
    sending 20,000 questions; `getfattr` still shows user.assetfs.* (counted in status.json)."""
    import json

    org = big_mount.path / "carhartt" / big_emulator.account("spectrum")["organizations"][0]
    os.listdir(org)

    def getxattrs() -> int:
        return json.loads((big_mount.path / ".assetfs" / "status.json").read_text())["counters"].get("fuse_getxattr", 0)

    before = getxattrs()
    listing = subprocess.run(["ls", "-l", str(org)], check=True, capture_output=True, text=True).stdout
    assert len(listing.splitlines()) >= 10001
    asked = getxattrs() - before
    print(f"ls -l of {len(listing.splitlines()) - 1} entries: {asked} getxattr calls reached the mount")
    assert asked <= 4, asked
    first = next(n for n in os.listdir(org) if n != ".assets")
    shown = subprocess.run(["getfattr", "-d", str(org / first)], check=True, capture_output=True, text=True).stdout
    assert "user.assetfs.id=" in shown


def _listing_requests(emu) -> int:
    return sum(n for k, n in emu.requests().items() if "/organization/" in k)


def test_a_warm_remount_lists_without_network(emu, mount, tmp_path):
    cache = tmp_path / "shared-cache"
    account = emu.account("spectrum")
    first = mount(emu.config, accounts=["carhartt"], cache_dir=cache)
    for org in account["organizations"]:
        subprocess.run(["ls", "-lR", str(first.path / "carhartt" / org)], check=True, capture_output=True)
    first.stop()
    emu.reset_requests()
    second = mount(emu.config, accounts=["carhartt"], cache_dir=cache)
    listing = subprocess.run(
        ["ls", "-lR", str(second.path / "carhartt")], check=True, capture_output=True, text=True
    ).stdout
    assert "white mba used.png" in listing
    assert _listing_requests(emu) == 0
    assert emu.requests() == {}  # sizes came from the cache too (one HEAD per version, kept for good)


def test_probe_names_never_reach_the_network(emu, mount):
    m = mount(emu.config, accounts=["carhartt"])
    org = m.path / "carhartt" / emu.account("spectrum")["organizations"][0]
    os.listdir(org)
    emu.reset_requests()
    for directory in (m.path, m.path / "carhartt", org, org / ".assets", next((org / ".assets").iterdir())):
        for probe in (".Trash", ".Trash-0", ".hidden", "desktop.ini", ".directory", "autorun.inf", ".git", ".DS_Store"):
            assert not (directory / probe).exists()
    assert asked(emu) == {}


def test_a_missing_name_is_cached_negatively(emu, mount):
    m = mount(emu.config, accounts=["carhartt"])
    org = m.path / "carhartt" / emu.account("spectrum")["organizations"][0]
    os.listdir(org)
    emu.reset_requests()
    for _ in range(5):
        assert not (org / "no such asset").exists()
    assert asked(emu) == {}


def test_noxattr_answers_enosys_once_and_ls_l_asks_no_more(emu, mount):
    """With -o noxattr the kernel hears ENOSYS once per kind of xattr call and stops asking:
    `ls -l` then costs no round trip per file, and everything else works as before."""
    import errno
    import json

    m = mount(emu.config, accounts=["carhartt"], options="noxattr")
    org = m.path / "carhartt" / emu.account("spectrum")["organizations"][0]
    files = [p for p in org.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for _ in range(2):
        listing = subprocess.run(["ls", "-lR", str(org)], check=True, capture_output=True, text=True).stdout
        assert "white MBA.png" in listing
    with pytest.raises(OSError) as off:
        os.getxattr(files[0], "user.assetfs.id")
    assert off.value.errno == errno.EOPNOTSUPP  # the kernel's word for the ENOSYS it was given
    assert subprocess.run(["getfattr", "-d", str(files[0])], capture_output=True).returncode != 0
    counters = json.loads((m.path / ".assetfs" / "status.json").read_text())["counters"]
    assert counters.get("fuse_getxattr", 0) <= 1 and counters.get("fuse_listxattr", 0) <= 1, counters
    assert md5(files[0].read_bytes())  # reads are untouched
