"""The commands next to a mount (status, umount, prefetch, cache, config check), run as a
user runs them — `python -m assetfs …` in a subprocess — on real mounts of the emulator."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
from mounting import is_mounted
from test_mount_mudstack import MudTruth
from truth import wait_for

from assetfs.read.blockcache import MEMORY_BLOCKS

pytestmark = pytest.mark.mount
SPECTRUM_ORG = ("carhartt", "7000000000000300322")
ENV = {**os.environ, "COLUMNS": "200"}  # rich tables wrap at 80 columns when not on a terminal


def assetfs(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assetfs", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def status(m) -> dict:
    return json.loads((m.path / ".assetfs" / "status.json").read_text())


def counters(m) -> dict:
    return status(m)["counters"]


def files_under(path: Path) -> dict[Path, int]:
    """Every file below `path` (hidden entries skipped, as prefetch does) and its size."""
    found = {}
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                found[Path(root) / name] = os.stat(Path(root) / name).st_size
    return found


def streamed_bytes(files: dict[Path, int]) -> int:
    """The bytes that come through the block cache (asset.json is made locally)."""
    return sum(size for path, size in files.items() if path.name != "asset.json")


def disk_usage(path: Path) -> int:
    return sum(os.lstat(Path(r) / f).st_blocks * 512 for r, _, fs in os.walk(path) for f in fs)


def fail_an_upload(emu, m, name: str, data: bytes) -> Path:
    """Write a file into a Mudstack folder while Mudstack answers 500: close() fails (the
    mount uploads at close: write_back=0) and the upload stays pending (bytes in the spool,
    a record in the journal)."""
    folder = m.path / "studio" / "Game Art" / "characters"
    os.listdir(folder)  # the tree is known before the provider fails
    emu.set_faults(fail_status=500, fail_count=-1, only_prefix="/mudstack")
    with pytest.raises(OSError) as failure, open(folder / name, "wb") as f:
        f.write(data)
    assert failure.value.errno == errno.EIO
    [pending] = [p for p in status(m)["pending_uploads"] if p["name"] == name]
    assert pending["state"] == "pending" and pending["size"] == len(data)
    return folder / name


def uploaded_to_mudstack(emu, name: str) -> list[bytes]:
    """The content of every asset of that file name in the folder, as Mudstack has it."""
    mud = MudTruth(emu.account("mudstack"))
    try:
        ws = mud.workspaces()["Game Art"]
        return [mud.download(ws, a["id"]) for a in mud.assets(ws, "/characters/") if a["file_name"] == name]
    finally:
        mud.close()


# -- status ----------------------------------------------------------------------------------


def test_status_shows_counters_that_move_and_json_is_the_raw_file(emu, mount):
    m = mount(emu.config)
    before = counters(m)
    org = m.path.joinpath(*SPECTRUM_ORG)
    [png] = [p for p in files_under(org) if p.name == "white mba used.png"]
    data = png.read_bytes()
    after = counters(m)
    assert after["bytes_read"] - before.get("bytes_read", 0) == len(data) > 0

    done = assetfs("status", m.path)
    assert done.returncode == 0, done.stderr
    table = done.stdout
    for label in (
        "uptime",
        "requests",
        "errors",
        "timeouts",
        "metadata hits / misses",
        "metadata hit ratio",
        "block hits / misses",
        "block hit ratio",
        "block cache size",
        "bytes read",
        "bytes downloaded",
        "bytes uploaded",
        "pending uploads: none",
        "carhartt (spectrum)",
        "cache dir",
        "state dir",
    ):
        assert label in table, label
    now = counters(m)  # reading status.json makes no request and reads no content
    assert re.search(rf"requests\s+│ {now['requests']:,}\s", table)
    assert f"{now['bytes_read']:,} bytes" in table
    assert f"{now.get('block_hits', 0):,} / {now['block_misses']:,}" in table
    assert now["block_misses"] > before.get("block_misses", 0)

    raw = assetfs("status", m.path, "--json")
    assert raw.returncode == 0, raw.stderr
    parsed = json.loads(raw.stdout)
    assert parsed["mountpoint"] == str(m.path.resolve()) and parsed["pending_uploads"] == []
    assert parsed["counters"]["bytes_read"] == now["bytes_read"]
    assert parsed["state"]["dir"] == str(m.state_dir) and parsed["cache"]["dir"] != parsed["state"]["dir"]


def test_status_and_umount_refuse_what_is_not_an_assetfs_mount(emu, mount, tmp_path):
    m = mount(emu.config, accounts=["carhartt"])
    for args, message in [
        (("status", tmp_path), "not an assetfs mount (nothing is mounted there)"),
        (("status", "/proc"), "not an assetfs mount (it is a proc mount)"),
        (("status", tmp_path / "nope"), "no such directory"),
        (("status", m.path / "carhartt"), "is inside the assetfs mount"),
        (("umount", tmp_path), "not an assetfs mount"),
        (("prefetch", tmp_path), "not inside an assetfs mount"),
        (("prefetch", m.path / "carhartt" / "nope"), "no such file or directory"),
        (("prefetch", m.path, "--jobs", "0"), "--jobs 0: must be at least 1"),
    ]:
        done = assetfs(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("assetfs: ") and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert is_mounted(m.path)


# -- prefetch --------------------------------------------------------------------------------


def test_prefetch_reads_every_byte_and_a_second_run_is_served_from_the_cache(emu, mount, tmp_path):
    cache = tmp_path / "cache"
    m = mount(emu.config, cache_dir=cache)
    org = m.path.joinpath(*SPECTRUM_ORG)
    files = files_under(org) | files_under(org / ".assets")  # the asset files, and their details (named)
    assert len(files) >= 10
    before = counters(m)
    done = assetfs("prefetch", org, org / ".assets", "--jobs", 3)
    assert done.returncode == 0, done.stderr
    total = sum(files.values())
    assert f"prefetched {len(files)} files" in done.stdout and f"({total:,} bytes)" in done.stdout, done.stdout
    after = counters(m)
    assert after["bytes_read"] - before.get("bytes_read", 0) == streamed_bytes(files)
    assert after["block_misses"] > before.get("block_misses", 0)
    assert after["bytes_downloaded"] - before.get("bytes_downloaded", 0) == streamed_bytes(files)

    # A new mount on the same cache: the kernel's page cache is gone, the block cache is not.
    m.stop()
    again = mount(emu.config, cache_dir=cache)
    emu.reset_requests()
    done = assetfs("prefetch", again.path.joinpath(*SPECTRUM_ORG), again.path.joinpath(*SPECTRUM_ORG, ".assets"))
    assert done.returncode == 0, done.stderr
    assert f"prefetched {len(files)} files" in done.stdout
    second = counters(again)
    assert second.get("block_misses", 0) == 0
    assert second["block_hits"] > 0 and second["bytes_read"] == streamed_bytes(files)
    assert second.get("bytes_downloaded", 0) == 0
    assert not any("/cdn/" in path for path in emu.requests())


def test_prefetch_reports_each_unreadable_file_and_reads_the_rest(emu, mount):
    m = mount(emu.config, options="timeout=2s", accounts=["carhartt", "studio"])
    org, workspace = m.path.joinpath(*SPECTRUM_ORG), m.path / "studio" / "Game Art"
    spectrum_files, studio_files = files_under(org), files_under(workspace)  # sizes known before the fault
    emu.set_faults(fail_status=500, fail_count=-1, only_prefix="/cdn/spectrum")
    done = assetfs("prefetch", org, workspace, "--jobs", 4)
    assert done.returncode == 1, done.stdout
    failed = [line for line in done.stderr.splitlines() if line.startswith("✗ ")]
    assert len(failed) == sum(1 for p in spectrum_files if p.name != "asset.json"), done.stderr
    assert all(line.endswith(": Input/output error") for line in failed), failed
    ok = len(studio_files) + sum(1 for p in spectrum_files if p.name == "asset.json")
    assert f"prefetched {ok} files" in done.stdout, done.stdout
    assert "could not be read" in done.stderr


# -- umount ----------------------------------------------------------------------------------


def test_umount_waits_for_a_pending_upload_then_unmounts(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, options="timeout=5s,write_back=0")
    data = os.urandom(300_000)
    fail_an_upload(emu, m, "waiting.bin", data)

    # While the provider fails, a short timeout gives up without unmounting.
    done = assetfs("umount", m.path, "--timeout", 1)
    assert done.returncode == 1
    assert "1 upload still pending" in done.stderr and "resume at the next mount" in done.stderr, done.stderr
    assert is_mounted(m.path)

    umount = subprocess.Popen(
        [sys.executable, "-m", "assetfs", "umount", str(m.path), "--timeout", "90"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        time.sleep(1)
        assert umount.poll() is None, "umount did not wait for the upload"
        assert [p["name"] for p in status(m)["pending_uploads"]] == ["waiting.bin"]
        emu.clear_faults()
        out, err = umount.communicate(timeout=120)
    finally:
        if umount.poll() is None:
            umount.kill()
            umount.wait()
    assert umount.returncode == 0, err
    assert "1 upload done" in err and f"unmounted {m.path.resolve()}" in out
    assert not is_mounted(m.path)
    assert uploaded_to_mudstack(emu, "waiting.bin") == [data]
    m.process.wait(15)  # the mount's process ends by itself (umount waited for it)
    log = m.log()
    assert "uploaded waiting.bin" in log
    assert log.index("uploaded waiting.bin") < log.index("unmounted ")


def test_status_and_umount_of_a_stopped_mount_do_not_hang(emu, mount):
    """A mount whose process is stopped answers nothing: `status` says so within its wait,
    and `umount` unmounts lazily instead of hanging on its own read of status.json."""
    import signal

    m = mount(emu.config, accounts=["carhartt"])
    os.kill(m.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        done = assetfs("status", m.path, timeout=30)
        assert done.returncode == 1 and "did not answer within 5s" in done.stderr, done.stderr
        done = assetfs("umount", m.path, timeout=30)
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert "unmounting lazily" in done.stderr and "(lazily" in done.stdout, (done.stdout, done.stderr)
        assert not is_mounted(m.path)
        assert took < 20, f"status and umount took {took:.1f}s"
    finally:
        os.kill(m.process.pid, signal.SIGCONT)
    m.process.wait(15)  # once going again it sees the unmount and exits


def test_umount_reports_a_refused_upload_but_does_not_wait_for_it(emu, mount):
    """An upload refused for good (state failed) is kept for the user: reported, not waited for."""
    m = mount(emu.config, accounts=["apple"], options="write_back=0")
    brand = m.path / "apple" / "9467895078742654934" / "9467895078742654921"
    with pytest.raises(OSError) as refused, open(brand / "refused.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")
        os.setxattr(brand / "refused.png", "user.assetfs.intent", b"NO_SUCH_INTENT")
    assert refused.value.errno == errno.EINVAL
    [kept] = status(m)["pending_uploads"]
    assert kept["state"] == "failed"
    started = time.monotonic()
    done = assetfs("umount", m.path, "--timeout", 60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20
    assert "1 upload kept for you, not waited for" in done.stderr
    assert "refused.png (apple): failed — " in done.stderr and "NO_SUCH_INTENT" in done.stderr
    assert not is_mounted(m.path)


def test_umount_lazy_detaches_at_once_and_the_mount_ends_when_its_files_close(emu, mount):
    m = mount(emu.config, accounts=["carhartt"])
    png = next(p for p in files_under(m.path.joinpath(*SPECTRUM_ORG)) if p.suffix == ".png")
    with open(png, "rb") as held:
        started = time.monotonic()
        done = assetfs("umount", m.path, "--lazy")
        assert done.returncode == 0, done.stderr
        assert "unmounted" in done.stdout and "lazily" in done.stdout
        assert time.monotonic() - started < 10
        assert not is_mounted(m.path)
        assert held.read(8) == b"\x89PNG\r\n\x1a\n"  # the open file still works
    m.process.wait(30)
    assert m.process.returncode == 0


# -- cache -----------------------------------------------------------------------------------


def test_cache_info_shows_every_part_and_clear_empties_only_the_copies(fresh_emulator, mount, tmp_path):
    # One large asset per provider: more blocks than the mount keeps in memory (MEMORY_BLOCKS),
    # so a read after the clear has to fetch again.
    emu = fresh_emulator("--large-file", f"{MEMORY_BLOCKS + 16}MiB")
    cache = tmp_path / "cache"
    m = mount(emu.config, cache_dir=cache, options="timeout=5s,write_back=0")
    assert assetfs("prefetch", m.path).returncode == 0
    data = os.urandom(200_000)
    fail_an_upload(emu, m, "kept.bin", data)
    spool_files = {p: p.read_bytes() for p in (m.state_dir / "spool").iterdir()}
    assert data in spool_files.values()
    assert not (cache / "spool").exists() and not (cache / "journal").exists()

    info = assetfs("cache", "info", "--config", m.config_path)
    assert info.returncode == 0, info.stderr
    for part in ("metadata/", "blocks/", "spool/", "journal/", "memory/", "total", "state dir"):
        assert part in info.stdout, part
    assert "pending uploads in the journal: 1 (1 pending)" in info.stdout

    blocks_before = disk_usage(cache / "blocks")
    cleared = assetfs("cache", "clear", "--config", m.config_path)
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared metadata/" in cleared.stdout and "cleared blocks/" in cleared.stdout
    assert "kept the state dir" in cleared.stdout
    assert disk_usage(cache / "blocks") < blocks_before / 2
    assert {p: p.read_bytes() for p in (m.state_dir / "spool").iterdir()} == spool_files
    again = assetfs("cache", "info", "--cache-dir", cache, "--state-dir", m.state_dir)
    assert "pending uploads in the journal: 1 (1 pending)" in again.stdout

    # The mount carries on: fetches again what was cleared, and the upload still lands.
    sizes = files_under(m.path)
    large = max(sizes, key=sizes.__getitem__)
    assert sizes[large] == (MEMORY_BLOCKS + 16) << 20
    misses = counters(m)["block_misses"]
    with open(large, "rb") as f:  # past the kernel's page cache, as a fresh open after a remount would be
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert len(f.read()) == sizes[large]
    # fetched again: the block cache really was emptied (at most MEMORY_BLOCKS were still in memory)
    assert counters(m)["block_misses"] >= misses + 16
    emu.clear_faults()
    assert wait_for(lambda: uploaded_to_mudstack(emu, "kept.bin"), 60) == [data]


def test_cache_commands_say_what_is_wrong(tmp_path):
    missing = assetfs("cache", "info", "--config", tmp_path / "none.toml")
    assert missing.returncode == 2 and "no such config file" in missing.stderr
    nothing = assetfs("cache", "info", "--cache-dir", tmp_path / "never")
    assert nothing.returncode == 1 and "no cache dir there yet" in nothing.stderr


# -- config check ----------------------------------------------------------------------------


def write_config(tmp_path: Path, accounts: dict) -> Path:
    path = tmp_path / "check.toml"
    path.write_text(tomli_w.dumps({"accounts": accounts}))
    return path


def test_config_check_passes_every_account_of_the_emulator(emu):
    done = assetfs("config", "check", "--config", emu.config_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(emu.config["accounts"])
    for (name, account), line in zip(emu.config["accounts"].items(), lines, strict=True):
        pattern = rf"✓ {name} \({account['provider']}\): \d+ organizations?, first lists \d+ entries"
        assert re.fullmatch(pattern, line), line


def test_config_check_names_the_accounts_whose_credentials_are_refused(emu, tmp_path):
    accounts = {name: dict(a) for name, a in emu.config["accounts"].items()}
    spectrum = next(n for n, a in accounts.items() if a["provider"] == "spectrum")
    apple = next(n for n, a in accounts.items() if a["provider"] == "apple")
    accounts[spectrum]["token"] = "not-the-token"
    accounts[apple]["client_secret"] = "not-the-secret"
    done = assetfs("config", "check", "--config", write_config(tmp_path, accounts))
    assert done.returncode == 1
    lines = {line.split(" ")[1]: line for line in done.stdout.strip().splitlines()}
    assert lines[spectrum].startswith(f"✗ {spectrum} (spectrum): ") and "401" in lines[spectrum]
    assert lines[apple].startswith(f"✗ {apple} (apple): ") and "refused" in lines[apple]
    assert "not-the-secret" not in done.stdout
    assert all(line.startswith("✓ ") for name, line in lines.items() if name not in (spectrum, apple))


def test_config_check_with_a_bad_key_names_it(emu, tmp_path):
    accounts = {name: dict(a) for name, a in emu.config["accounts"].items()}
    spectrum = next(n for n, a in accounts.items() if a["provider"] == "spectrum")
    accounts[spectrum]["tokn"] = accounts[spectrum].pop("token")
    done = assetfs("config", "check", "--config", write_config(tmp_path, accounts))
    assert done.returncode == 2
    assert f"accounts.{spectrum}.tokn: unknown key" in done.stderr
    assert f"accounts.{spectrum}.token: missing" in done.stderr
    assert done.stdout == ""
