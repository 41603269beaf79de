"""Real programs save files on real mounts: shells (bash and dash), coreutils, dd, sed, perl,
Python's safe-save idioms, rsync, GIO, ImageMagick, tar, unzip, vim, nano and emacs (its
backup: the previous file renamed away, the new one put in its place, one new version of the
same asset). The saves of Blender, LibreOffice and Word, `sed -i`'s and emacs's in their syscall
order, plain renames and truncates are scenarios run both in process and on a mount
(tests/test_scenarios.py). Each save is
checked through the emulator's own API, never through the mount: the asset count before and
after, the final bytes under the final name, and that no temporary name ever reached the
provider (the emulator's log of names). Mudstack and Apple take the saves; iQmetrix takes new
files only and refuses replace, rename and delete (EPERM); Spectrum is read-only (EROFS); a
refusal sends nothing.

The programs and what each must leave are in tests/programs.py. One emulator and one mount
(write-back delay 1 s) serve the whole module; the assets a case edits are put on the provider
through its API before the mount starts, each Mudstack case in its own folder. Uploads are
waited for as a user would: `.assetfs/status.json` (tests/pending.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from emulator_log import names_used, writes_sent
from mounting import MountedFS
from pending import wait_for_uploads
from programs import (
    APPLE_BRAND,
    APPLE_ORG,
    AREA,
    CONVERT,
    IMAGE,
    PROGRAMS,
    SAFE_SAVE,
    SIDES,
    TEXT,
    WORKSPACE,
    Ctx,
    check_saved,
    output,
    run_program,
    seed_name,
    settle,
    told,
    world_of,
)
from test_mount_iqmetrix import api as iq_api
from truth import md5, spectrum_assets

pytestmark = pytest.mark.mount

SPECTRUM_ORG = "7000000000000300322"
IQ_COLLECTION, IQ_FILE = "logos", "iqmetrix.jpg"
APPLE_KEPT = "kept_s.png"  # an Apple asset no case changes
APPLE_GONE = "gone_s.png"  # one that rm deletes


CASES = [(side, pid) for side in SIDES for pid, prog in PROGRAMS.items() if side in prog.only]


# -- one emulator, one mount ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The emulator with every case's folder and seed in place, then one mount of it."""

    def seed(sides: dict) -> None:
        for side_name, pid in CASES:
            prog, side = PROGRAMS[pid], sides[side_name]
            name = seed_name(prog, pid, side.payload)
            side.prepare(pid, name, prog.seed(side.payload) if prog.seed else None)
        mudstack = sides["mudstack"]
        for folder in ("dirs/full/inside", "dirs/empty", "dirs/into", "checks"):
            mudstack.make_folder(f"{AREA}{folder}/")
        mudstack.prepare("dirs/full/inside", "x.txt", b"x\n")
        mudstack.prepare("dirs/moving", "y.txt", b"y\n")
        mudstack.prepare("checks", "kept.txt", TEXT.seed)
        mudstack.prepare("checks", "gone.txt", TEXT.seed)
        for name in SAVES_SEEDS:
            mudstack.prepare("saves", name, TEXT.seed)
        sides["apple"].prepare("", APPLE_KEPT, IMAGE.seed)
        sides["apple"].prepare("", APPLE_GONE, IMAGE.seed)

    with world_of(tmp_path_factory, "programs", seed) as world:
        yield world


@pytest.fixture(autouse=True)
def settled(world):
    """Each test starts with nothing of an earlier one on its way and an empty name log."""
    settle(world)


@pytest.fixture
def local(tmp_path) -> Path:
    path = tmp_path / "local"
    path.mkdir()
    return path


# -- Mudstack and Apple: each save is one asset under its final name ------------------------------


@pytest.mark.parametrize("side_name,pid", CASES, ids=[f"{s}:{p}" for s, p in CASES])
def test_a_program_saves_exactly_one_asset_under_its_final_name(world, local, side_name, pid):
    emu, m, sides = world
    side, prog = sides[side_name], PROGRAMS[pid]
    if pid == "convert" and CONVERT is None:
        pytest.fail("ImageMagick's convert is missing: scripts/setup installs it")
    if pid == "emacs" and shutil.which("emacs") is None:
        pytest.skip("emacs is not installed (scripts/setup installs Debian's emacs-nox)")
    c = Ctx(pid, side.folder(m.path, pid), local, side.payload, seed_name(prog, pid, side.payload))
    count, before = side.snapshot(pid)

    result, expect = run_program(prog, c)
    assert result.returncode == 0, output(result)
    wait_for_uploads(m.path)

    shown = set(os.listdir(c.folder))
    kept = {name: (c.folder / name).read_bytes() for name in expect.backups if name in shown}
    check_saved(emu, side, pid, before, count, expect, shown, kept, c.seed)


# -- iQmetrix: new files only, each once under its final name -------------------------------------

IQ_NEW = ["bash-echo", "dash-append", "python-dup", "dd", "cp", "mkstemp-replace", "rsync", "gio-save", "mv-a-new-file"]


def iq_context(m: MountedFS, pid: str, local: Path) -> Ctx:
    return Ctx(f"iq-{pid}", m.path / "stores" / IQ_COLLECTION, local, IMAGE)


@pytest.mark.parametrize("pid", IQ_NEW)
def test_a_new_file_in_an_iqmetrix_collection_is_one_asset_and_no_temporary_name(world, local, pid):
    emu, m, _ = world
    result, expect = run_program(PROGRAMS[pid], iq_context(m, pid, local))
    assert result.returncode == 0, output(result)
    wait_for_uploads(m.path)
    created = names_used(emu, "iqmetrix")
    assert [n["name"] for n in created] == list(expect.files), "exactly one asset, under the final name"
    [(name, data)] = expect.files.items()
    with iq_api(emu.account("iqmetrix")) as client:
        assert client.get(f"/assets/{created[0]['where']}").raise_for_status().json()["md5Checksum"] == md5(data)


# -- refusals: nothing reaches iQmetrix (no replace, rename, delete) or Spectrum (read-only) --------

IQ_REFUSED = {  # programs that replace, rename or delete the collection's existing file
    "echo-onto": ["bash", "-c", f"echo -n x > {IQ_FILE}"],
    "cp-onto": ["sh", "-c", f"cp /etc/hostname {IQ_FILE}"],
    "dd-onto": ["dd", "if=/etc/hostname", f"of={IQ_FILE}", "status=none"],
    "sed-i": ["sed", "-i", "s/JFIF/JFIG/", IQ_FILE],
    "perl-pi": ["perl", "-pi", "-e", "s/JFIF/JFIG/", IQ_FILE],
    "mkstemp-replace": [sys.executable, "-c", SAFE_SAVE, IQ_FILE, "/etc/hostname"],
    "rsync-onto": ["rsync", "-I", "/etc/hostname", f"./{IQ_FILE}"],
    "gio-save-onto": ["sh", "-c", f"gio save {IQ_FILE} < /etc/hostname"],
    "vim": ["vim", "-b", "-Nu", "NONE", "-es", "-c", "%s/JFIF/JFIG/", "-c", "wq", IQ_FILE],
    "mv": ["mv", IQ_FILE, "renamed.jpg"],
    "rm": ["rm", IQ_FILE],
}


@pytest.mark.parametrize("what", IQ_REFUSED)
def test_iqmetrix_refuses_replace_rename_and_delete_and_sends_nothing(world, what):
    emu, m, _ = world
    collection = m.path / "stores" / IQ_COLLECTION
    asset_id = os.getxattr(collection / IQ_FILE, "user.assetfs.id").decode()
    with iq_api(emu.account("iqmetrix")) as client:
        before = client.get(f"/assets/{asset_id}").raise_for_status().json()
    emu.reset_requests()

    result = subprocess.run(IQ_REFUSED[what], cwd=collection, capture_output=True, timeout=60)
    assert told(result, "Operation not permitted"), output(result)
    wait_for_uploads(m.path)

    assert names_used(emu, "iqmetrix") == [], "nothing was uploaded"
    assert writes_sent(emu) == []
    with iq_api(emu.account("iqmetrix")) as client:
        assert client.get(f"/assets/{asset_id}").raise_for_status().json() == before
    assert IQ_FILE in os.listdir(collection)
    assert {n for n in os.listdir(collection) if n.startswith(".") and n != ".assets"} == set(), "no leftovers"


SPECTRUM_REFUSED = [
    "bash-echo",
    "dash-append",
    "python-dup",
    "dd",
    "cp",
    "cp-onto-a-file",
    "install",
    "sed-i",
    "perl-pi",
    "mkstemp-replace",
    "rsync",
    "gio-save",
    "tar-x",
    "unzip",
    "cp-a",
    "vim",
    "mv-a-new-file",
]


@pytest.mark.parametrize("pid", SPECTRUM_REFUSED)
def test_spectrum_is_read_only_for_every_program_and_sends_nothing(world, local, pid):
    emu, m, _ = world
    account = emu.account("spectrum")
    org = m.path / "carhartt" / SPECTRUM_ORG
    existing = next(e.name for e in os.scandir(org) if e.is_file())
    listed = spectrum_assets(account, SPECTRUM_ORG)
    emu.reset_requests()

    c = Ctx(f"sp-{pid}", org, local, IMAGE, existing)
    result, _ = run_program(PROGRAMS[pid], c)
    assert told(result, "Read-only file system"), output(result)
    wait_for_uploads(m.path)

    assert names_used(emu) == []
    assert writes_sent(emu) == []
    assert spectrum_assets(account, SPECTRUM_ORG) == listed


def test_apple_cannot_rename_an_asset_and_sends_nothing(world):
    emu, m, sides = world
    brand = m.path / "apple" / APPLE_ORG / APPLE_BRAND
    existing = APPLE_KEPT
    before = sides["apple"].listed()
    emu.reset_requests()
    result = subprocess.run(["mv", existing, "elsewhere.png"], cwd=brand, capture_output=True)
    assert result.returncode != 0 and "Operation not permitted" in output(result), output(result)
    wait_for_uploads(m.path)
    assert names_used(emu) == [] and writes_sent(emu) == []
    assert sides["apple"].listed() == before


# -- rename rules, flushes, fsync, modes and times --------------------------------------------------

RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old: Path, new: Path, flags: int) -> None:
    at_fdcwd = -100
    if _libc.renameat2(at_fdcwd, os.fsencode(old), at_fdcwd, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(new))


def mud_checks(m: MountedFS) -> Path:
    return m.path / "studio" / WORKSPACE / AREA.strip("/") / "checks"


def test_rename_noreplace_answers_eexist_and_renames_otherwise_without_a_warning(world, local):
    emu, m, sides = world
    folder, mud = mud_checks(m), sides["mudstack"]
    kept_before = mud.assets("checks")["kept.txt"]
    log_before = len(m.log().splitlines())
    (folder / "draft.txt").write_bytes(b"draft\n")
    with pytest.raises(FileExistsError):
        renameat2(folder / "draft.txt", folder / "kept.txt", RENAME_NOREPLACE)
    renameat2(folder / "draft.txt", folder / "final.txt", RENAME_NOREPLACE)
    subprocess.run(["mv", "-n", "final.txt", "kept.txt"], cwd=folder, check=True)  # -n: keeps both
    wait_for_uploads(m.path)

    after = mud.assets("checks")
    assert after["kept.txt"]["currentVersion"] == kept_before["currentVersion"]
    assert mud.content(after["final.txt"]) == b"draft\n" and "draft.txt" not in after
    assert [n["name"] for n in names_used(emu, "mudstack")] in (["final.txt", "final.txt"], ["final.txt"])
    new_lines = m.log().splitlines()[log_before:]
    assert not [line for line in new_lines if "WARNING" in line or "ERROR" in line], new_lines


def test_a_directory_onto_a_non_empty_directory_is_enotempty(world):
    _, m, _ = world
    dirs = m.path / "studio" / WORKSPACE / AREA.strip("/") / "dirs"
    with pytest.raises(OSError) as caught:
        os.rename(dirs / "empty", dirs / "full")
    assert caught.value.errno == errno.ENOTEMPTY
    assert sorted(set(os.listdir(dirs / "full")) - {".assets"}) == ["inside"]


def test_a_mudstack_folder_moves_into_another_or_is_refused_clearly(world):
    """The API has no folder move: moving the folder's assets is allowed, else a clear errno
    (not EINVAL or EIO) and a log line."""
    _, m, sides = world
    dirs, mud = m.path / "studio" / WORKSPACE / AREA.strip("/") / "dirs", sides["mudstack"]
    log_before = len(m.log().splitlines())
    try:
        os.rename(dirs / "moving", dirs / "into" / "moving")
    except OSError as e:
        assert e.errno in (errno.EPERM, errno.EXDEV, errno.ENOTSUP), e
        assert any("moving" in line for line in m.log().splitlines()[log_before:]), "a log line says why"
        assert "y.txt" in mud.assets("dirs/moving")
    else:
        wait_for_uploads(m.path)
        moved = mud.assets("dirs/into/moving")
        assert mud.content(moved["y.txt"]) == b"y\n" and mud.assets("dirs/moving") == {}


def test_rm_of_an_assets_file_deletes_the_asset(world):
    emu, m, sides = world
    mud, apple = sides["mudstack"], sides["apple"]
    trashed = mud.assets("checks")["gone.txt"]
    [doomed] = [a for a in apple.listed() if a["brandAssetDetails"].get("partnersAssetId") == Path(APPLE_GONE).stem]
    subprocess.run(
        ["rm", str(mud_checks(m) / "gone.txt"), str(m.path / "apple" / APPLE_ORG / APPLE_BRAND / APPLE_GONE)],
        check=True,
    )
    assert "gone.txt" not in mud.assets("checks")
    in_trash = mud.truth.call("GET", "/workspaces/assets/search", mud.ws, params={"trashed": "true", "limit": 1000})[
        "assets"
    ]
    assert trashed["id"] in {a["id"] for a in in_trash}
    assert apple.truth.asset(APPLE_ORG, doomed["id"])["state"] == "DELETED"
    assert names_used(emu) == []


def test_a_flush_with_nothing_new_uploads_nothing(world):
    emu, m, sides = world
    folder, mud = mud_checks(m), sides["mudstack"]
    before = mud.assets("checks")["kept.txt"]
    emu.reset_requests()
    with open(folder / "kept.txt", "r+b") as f:
        assert f.read() == TEXT.seed
    os.close(os.open(folder / "kept.txt", os.O_WRONLY))
    with open(folder / "kept.txt", "rb") as f:
        g = os.dup(f.fileno())
        os.close(g)
    wait_for_uploads(m.path)
    assert names_used(emu) == [] and writes_sent(emu) == []
    assert mud.assets("checks")["kept.txt"]["currentVersion"] == before["currentVersion"]


def test_fsync_returns_once_the_provider_has_the_bytes(world):
    emu, m, sides = world
    folder, mud = mud_checks(m), sides["mudstack"]
    with open(folder / "synced.txt", "wb") as f:
        f.write(b"synced\n")
        f.flush()
        os.fsync(f.fileno())
        assert mud.content(mud.assets("checks")["synced.txt"]) == b"synced\n"  # no waiting: fsync did
    wait_for_uploads(m.path)
    assert [n["event"] for n in names_used(emu, "mudstack") if n["event"] != "upload"] == ["create"]


def test_modes_and_times_on_folders_and_new_files_are_accepted_and_ignored(world):
    emu, m, sides = world
    folder, mud = mud_checks(m), sides["mudstack"]
    os.chmod(folder, 0o700)
    os.utime(folder, (1_600_000_000, 1_600_000_000))
    with open(folder / "moded.txt", "wb") as f:
        f.write(b"moded\n")
        os.fchmod(f.fileno(), 0o600)  # a file being written
        os.utime(f.fileno(), (1_600_000_000, 1_600_000_000))
    os.chmod(folder / "moded.txt", 0o640)  # a file waiting for its upload
    wait_for_uploads(m.path)
    os.utime(folder / "moded.txt", (1_600_000_000, 1_600_000_000))  # a file just uploaded
    os.chmod(folder / "moded.txt", 0o644)
    wait_for_uploads(m.path)
    assert mud.content(mud.assets("checks")["moded.txt"]) == b"moded\n"
    assert [n["event"] for n in names_used(emu, "mudstack") if n["event"] != "upload"] == ["create"]


def test_assetfs_umount_waits_for_a_file_in_its_write_back_delay(world, tmp_path):
    emu, _, sides = world
    m = MountedFS(tmp_path / "slow", emu.config, options="write_back=3s", accounts=["studio"])
    try:
        (mud_checks(m) / "late.txt").write_bytes(b"late\n")
        done = subprocess.run([sys.executable, "-m", "assetfs", "umount", str(m.path)], capture_output=True, timeout=60)
        assert done.returncode == 0, output(done)
    finally:
        m.stop()
    mud = sides["mudstack"]
    assert mud.content(mud.assets("checks")["late.txt"]) == b"late\n"


def test_a_stop_waits_for_a_file_in_its_write_back_delay(world, tmp_path):
    """SIGTERM, as systemd stops the service."""
    emu, _, sides = world
    m = MountedFS(tmp_path / "stopped", emu.config, options="write_back=3s", accounts=["studio"])
    try:
        (mud_checks(m) / "stopped.txt").write_bytes(b"stopped\n")
        m.process.terminate()
        assert m.process.wait(30) == 0
    finally:
        m.stop()
    mud = sides["mudstack"]
    assert mud.content(mud.assets("checks")["stopped.txt"]) == b"stopped\n"


# -- a file renamed away: what the mount and the provider show meanwhile and after ---------------

SAVES_SEEDS = ("held.txt", "alone.txt", "back.txt", "doomed.txt", "notes.txt")


def test_a_rename_reaches_the_provider_at_the_end_of_the_window_keeping_the_inode(world):
    emu, m, sides = world
    folder, mud = m.path / "studio" / WORKSPACE / AREA.strip("/") / "saves", sides["mudstack"]
    before = mud.assets("saves")["held.txt"]
    inode = os.stat(folder / "held.txt").st_ino
    os.rename(folder / "held.txt", folder / "moved.txt")
    assert "held.txt" in mud.assets("saves"), "sent at the window's end, not at once"
    assert {"moved.txt"} <= set(os.listdir(folder)) and "held.txt" not in os.listdir(folder)
    assert (folder / "moved.txt").read_bytes() == TEXT.seed
    wait_for_uploads(m.path)

    after = mud.assets("saves")
    assert "held.txt" not in after and after["moved.txt"]["id"] == before["id"]
    assert after["moved.txt"]["currentVersion"] == before["currentVersion"]
    assert os.stat(folder / "moved.txt").st_ino == inode
    assert [n["name"] for n in names_used(emu, "mudstack") if n["event"] == "rename"] == ["moved.txt"]


def test_mv_to_a_name_without_extension_gives_exactly_that_name(world):
    """The rename Mudstack offers keeps the file's extension; `mv notes.txt notes` is `notes`."""
    emu, m, sides = world
    folder, mud = m.path / "studio" / WORKSPACE / AREA.strip("/") / "saves", sides["mudstack"]
    before = mud.assets("saves")["notes.txt"]
    subprocess.run(["mv", "notes.txt", "notes"], cwd=folder, check=True)
    wait_for_uploads(m.path)

    shown = subprocess.run(["ls"], cwd=folder, capture_output=True, text=True, check=True).stdout.split()
    assert "notes" in shown and "notes.txt" not in shown
    after = mud.assets("saves")
    assert "notes.txt" not in after and after["notes"]["id"] == before["id"]
    assert after["notes"]["file_name"] == "notes" and after["notes"]["currentVersion"] == before["currentVersion"]
    assert {n["name"] for n in names_used(emu, "mudstack")} == {"notes"}
    assert (folder / "notes").read_bytes() == TEXT.seed


def test_a_backup_name_alone_stays_on_this_machine_read_only(world):
    emu, m, sides = world
    folder, mud = m.path / "studio" / WORKSPACE / AREA.strip("/") / "saves", sides["mudstack"]
    before = mud.assets("saves")["alone.txt"]
    emu.reset_requests()
    os.rename(folder / "alone.txt", folder / "alone.txt~")
    with pytest.raises(PermissionError):
        open(folder / "alone.txt~", "ab").close()
    wait_for_uploads(m.path)

    assert mud.assets("saves")["alone.txt"] == before
    assert names_used(emu) == [] and writes_sent(emu) == []
    shown = set(os.listdir(folder))
    assert {"alone.txt", "alone.txt~"} <= shown, "the asset under its name again, the backup beside it"
    assert (folder / "alone.txt~").read_bytes() == (folder / "alone.txt").read_bytes() == TEXT.seed


def test_renamed_back_within_the_window_sends_nothing(world):
    emu, m, sides = world
    folder, mud = m.path / "studio" / WORKSPACE / AREA.strip("/") / "saves", sides["mudstack"]
    before = mud.assets("saves")["back.txt"]
    emu.reset_requests()
    os.rename(folder / "back.txt", folder / "back2.txt")
    os.rename(folder / "back2.txt", folder / "back.txt")
    wait_for_uploads(m.path)
    assert names_used(emu) == [] and writes_sent(emu) == []
    assert mud.assets("saves")["back.txt"] == before
    assert "back2.txt" not in os.listdir(folder) and (folder / "back.txt").read_bytes() == TEXT.seed


def test_renamed_away_then_removed_within_the_window_deletes_the_asset(world):
    emu, m, sides = world
    folder, mud = m.path / "studio" / WORKSPACE / AREA.strip("/") / "saves", sides["mudstack"]
    doomed = mud.assets("saves")["doomed.txt"]
    os.rename(folder / "doomed.txt", folder / "doomed.txt.bak")
    os.unlink(folder / "doomed.txt.bak")
    wait_for_uploads(m.path)
    assert "doomed.txt" not in mud.assets("saves")
    trash = mud.truth.call("GET", "/workspaces/assets/search", mud.ws, params={"trashed": "true", "limit": 1000})
    assert doomed["id"] in {a["id"] for a in trash["assets"]}
    assert names_used(emu) == []
    assert not {"doomed.txt", "doomed.txt.bak"} & set(os.listdir(folder))
