"""Real programs save files on real mounts: shells (bash and dash), coreutils, dd, sed, perl,
Python's safe-save idioms, rsync, GIO, ImageMagick, tar, unzip, vim, nano and emacs, and the
saves of Blender, LibreOffice and Word in their syscall order (the previous file renamed away,
the new one put in its place: one new version of the same asset). Each save is
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
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import RunningEmulator
from emulator_log import clear_names, names_used, writes_sent
from mounting import MountedFS
from pending import wait_for_uploads
from PIL import Image
from programs import CONVERT, IMAGE, PROGRAMS, SAFE_SAVE, TEXT, Ctx, Payload, Program, output, run_program, told
from test_mount_apple import AppleTruth
from test_mount_iqmetrix import api as iq_api
from test_mount_mudstack import MudTruth
from truth import download, md5, spectrum_assets

pytestmark = pytest.mark.mount

WRITE_BACK = "1s"
WORKSPACE, AREA = "Game Art", "/programs/"
APPLE_ORG, APPLE_BRAND = "9467895078742654934", "9467895078742654921"
SPECTRUM_ORG = "7000000000000300322"
IQ_COLLECTION, IQ_FILE = "logos", "iqmetrix.jpg"
APPLE_KEPT = "kept_s.png"  # an Apple asset no case changes
APPLE_GONE = "gone_s.png"  # one that rm deletes


# -- the providers, seen through their own APIs ------------------------------------------------


class Mudstack:
    """Each case in its own folder under /programs/ of one workspace."""

    name, payload = "mudstack", TEXT

    def __init__(self, emu: RunningEmulator):
        self.truth = MudTruth(emu.account("mudstack"))
        self.ws = self.truth.workspaces()[WORKSPACE]

    def location(self, case: str) -> str:
        return f"{AREA}{case}/"

    def folder(self, root: Path, case: str) -> Path:
        return root / "studio" / WORKSPACE / AREA.strip("/") / case

    def make_folder(self, location: str) -> None:
        """The folder and its missing parents (the API makes one level per call)."""
        path = "/"
        for part in location.strip("/").split("/"):
            path += part + "/"
            if path not in self.truth.folders(self.ws):
                self.truth.call("POST", "/workspaces/folders", self.ws, params={"folder": path})

    def prepare(self, case: str, name: str, data: bytes | None) -> None:
        self.make_folder(self.location(case))
        if data is None:
            return
        up = self.truth.call("POST", "/workspaces/assets/upload/", self.ws, json={"name": name})
        httpx.put(up["signed_url"], content=data, timeout=30).raise_for_status()
        self.truth.call(
            "POST",
            "/workspaces/assets/upload/assets",
            self.ws,
            json={"temp_file_key": up["key"], "original_file_name": name, "file_location": self.location(case)},
        )

    def snapshot(self, case: str) -> tuple[int, dict[str, dict]]:
        """(assets in the case's folder, those assets by path)."""
        assets = self.assets(case)
        return len(assets), assets

    def assets(self, case: str) -> dict[str, dict]:
        """path below the case's folder → asset, subfolders included."""
        loc = self.location(case)
        found = self.truth.call(
            "GET",
            "/workspaces/assets/search",
            self.ws,
            params={"file_location": loc, "includeSubfolders": "true", "limit": 1000},
        )["assets"]
        return {a["file_location"][len(loc) :] + a["file_name"]: a for a in found}

    def folders(self, case: str) -> set[str]:
        loc = self.location(case)
        return {f[len(loc) :].rstrip("/") for f in self.truth.folders(self.ws) if f.startswith(loc) and f != loc}

    def content(self, asset: dict) -> bytes:
        return self.truth.download(self.ws, asset["id"])

    def version(self, asset: dict):
        return asset["currentVersion"]["version_number"]

    def next_version(self, before, after) -> bool:
        return after == before + 1  # exactly one new version, not one per write or close


class Apple:
    """All cases in one brand, their names prefixed by the case."""

    name, payload = "apple", IMAGE

    def __init__(self, emu: RunningEmulator):
        self.truth = AppleTruth(emu.account("apple"))

    def folder(self, root: Path, case: str) -> Path:
        return root / "apple" / APPLE_ORG / APPLE_BRAND

    def prepare(self, case: str, name: str, data: bytes | None) -> None:
        if data is not None:
            image = self.truth.upload(APPLE_ORG, name, data)
            self.truth.create(APPLE_ORG, APPLE_BRAND, image["id"], Path(name).stem)

    def listed(self) -> list[dict]:
        return self.truth.assets(APPLE_ORG, APPLE_BRAND, limit=100)

    def snapshot(self, case: str) -> tuple[int, dict[str, dict]]:
        """(assets in the whole brand: a stray asset of any name counts, this case's assets by
        file name: partnersAssetId + the image's extension)."""
        listed = self.listed()
        out = {}
        for a in listed:
            stem = a["brandAssetDetails"].get("partnersAssetId") or ""
            if stem.startswith(f"{case}_"):
                image = self.truth.image(APPLE_ORG, a["brandAssetDetails"]["imageId"])
                out[stem + Path(image["filename"]).suffix] = {**a, "image": image}
        return len(listed), out

    def folders(self, case: str) -> set[str]:
        return set()

    def content(self, asset: dict) -> bytes:
        return download(asset["image"]["cdnUrl"])

    def version(self, asset: dict):
        return asset["brandAssetDetails"]["imageId"]

    def next_version(self, before, after) -> bool:
        return after != before


SIDES = {"mudstack": Mudstack, "apple": Apple}
CASES = [(side, pid) for side in SIDES for pid, prog in PROGRAMS.items() if side in prog.only]


def seed_name(prog: Program, case: str, payload: Payload) -> str:
    return f"{case}_s{prog.seed_ext or payload.ext}" if prog.seed else ""


# -- one emulator, one mount ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The emulator with every case's folder and seed in place, then one mount of it."""
    emu = RunningEmulator(tmp_path_factory.mktemp("programs-emulator"))
    sides = {name: cls(emu) for name, cls in SIDES.items()}
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
    m = MountedFS(tmp_path_factory.mktemp("programs-mount"), emu.config, options=f"write_back={WRITE_BACK}")
    try:
        yield emu, m, sides
    finally:
        m.stop()
        emu.stop()


@pytest.fixture(autouse=True)
def settled(world):
    """Each test starts with nothing of an earlier one on its way and an empty name log."""
    emu, m, _ = world
    wait_for_uploads(m.path, grace=0)
    clear_names(emu)


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

    count_after, after = side.snapshot(pid)
    assert count_after == count + expect.new_assets, (sorted(before), sorted(after))
    for rel, data in expect.files.items():
        assert rel in after, f"{rel} is not on the provider: {sorted(after)}"
        got = side.content(after[rel])
        if rel in expect.pixels:
            assert pixels(got) == pixels(data)
        else:
            assert got == data, f"{rel}: the provider holds {got[:80]!r}…, not {data[:80]!r}…"
    for rel in expect.replaced:  # the same asset, one version more
        assert after[rel]["id"] == before[rel]["id"]
        assert side.next_version(side.version(before[rel]), side.version(after[rel]))
    for old, new in expect.renamed.items():  # the same asset under its new name
        assert old not in after and after[new]["id"] == before[old]["id"]
    assert side.folders(pid) == expect.dirs

    allowed = {n for rel in [*expect.files, *expect.dirs] for n in (Path(rel).name, Path(rel).stem)}
    stray = [n for n in names_used(emu, side.name) if n["name"] not in allowed]
    assert not stray, f"names that are not the program's final names reached the provider: {stray}"
    writes = [n for n in names_used(emu, side.name) if n["event"] in ("create", "version", "update")]
    assert len(writes) == len(expect.files) - len(expect.renamed), f"one upload per saved file: {writes}"

    shown = {n for n in os.listdir(c.folder) if n != ".assets"}
    if side_name == "apple":  # a brand shared by every case: this case's names and hidden leftovers
        shown = {n for n in shown if n.startswith(f"{pid}_") or n.startswith(".")}
    top = {Path(rel).parts[0] for rel in [*expect.files, *expect.dirs]}
    untouched = {c.seed} if c.seed and c.seed not in expect.renamed else set()
    assert shown == top | untouched | set(expect.backups)
    for name, data in expect.backups.items():  # the previous bytes, on this machine only
        assert (c.folder / name).read_bytes() == data


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").tobytes()


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
