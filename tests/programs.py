"""The programs people save files with, as a catalogue for tests/test_programs.py: each entry
makes the command to run in a folder of the mount (or a function that drives the program, for
nano) and says what the provider must hold afterwards. The same entries serve Mudstack (text),
Apple (images only: PNGs that text tools can edit) and the refusals of iQmetrix and Spectrum.
Also the providers seen through their own APIs (`Mudstack`, `Apple`) and the check of what a
save left there (`check_saved`), shared with the scenarios of tests/scenarios.py."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import RunningEmulator
from emulator_log import clear_names, names_used
from mounting import MountedFS
from pending import wait_for_uploads
from PIL import Image
from test_mount_apple import AppleTruth
from test_mount_mudstack import MudTruth
from truth import download

CONVERT = shutil.which("convert", path="/usr/bin:/bin")  # ImageMagick's own, not a wrapper earlier on PATH


# -- what the programs write -------------------------------------------------------------------


def png(seed: int, size=(8, 8)) -> bytes:
    img = Image.new("RGB", size)
    img.putdata([((seed * 53 + i * 7) % 256, (seed * 31 + i) % 256, (i * 13) % 256) for i in range(size[0] * size[1])])
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Payload:
    """The bytes of one provider's cases: `seed` holds `one` exactly once, for sed, perl and vim."""

    ext: str
    new: bytes
    other: bytes
    seed: bytes
    binary: bool

    @property
    def edited(self) -> bytes:
        return self.seed.replace(b"one", b"uno")


TEXT = Payload(".txt", b"hello\n", b"second file\n", b"one two three\n", binary=False)
# Apple takes images only: text after a PNG's IEND chunk keeps it a valid PNG that text tools can edit.
IMAGE = Payload(".png", png(1), png(4), png(2) + b"one two three\n", binary=True)
PICTURE = png(3, (64, 64))  # what ImageMagick converts
assert all(p.seed.count(b"one") == 1 and b"one" not in p.new + p.other for p in (TEXT, IMAGE))


# -- the programs ------------------------------------------------------------------------------


@dataclass
class Expect:
    """What the provider must hold after the program, by path relative to the folder."""

    files: dict[str, bytes]  # final bytes of every file the program saved
    replaced: set[str] = field(default_factory=set)  # of those, the seeded asset: a new version of it
    renamed: dict[str, str] = field(default_factory=dict)  # seeded file → its new name: the same asset
    dirs: set[str] = field(default_factory=set)  # folders made
    pixels: set[str] = field(default_factory=set)  # compared as decoded pixels (ImageMagick's own PNG)
    backups: dict[str, bytes] = field(default_factory=dict)  # shown on the mount only: the previous bytes

    @property
    def new_assets(self) -> int:
        return len(self.files) - len(self.replaced) - len(self.renamed)


@dataclass
class Ctx:
    case: str
    folder: Path  # on the mount
    local: Path  # a local directory with the inputs
    p: Payload
    seed: str = ""  # the name of the asset the program edits, if any

    def name(self, stem: str, ext: str | None = None) -> str:
        """Names carry the case, so that cases sharing one Apple brand never meet (`_`: no case id has one)."""
        return f"{self.case}_{stem}{self.p.ext if ext is None else ext}"

    @property
    def new(self) -> str:
        return self.name("new")

    def put(self, name: str, data: bytes) -> str:
        path = self.local / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    @property
    def src(self) -> str:
        return self.put("src" + self.p.ext, self.p.new)

    def tree(self) -> dict[str, bytes]:
        """Files for tar, unzip and cp -a: nested folders on Mudstack, flat in an Apple brand."""
        if self.p.binary:
            return {self.name("t1"): self.p.new, self.name("t2"): self.p.other}
        return {f"pack/{self.name('top')}": self.p.new, f"pack/d/{self.name('a')}": self.p.other}

    def tree_dirs(self) -> set[str]:
        return set() if self.p.binary else {"pack", "pack/d"}

    def local_tree(self) -> list[Path]:
        """The tree written locally; its top-level entries (folders with their modes and times)."""
        for rel, data in self.tree().items():
            self.put(f"tree/{rel}", data)
        return sorted((self.local / "tree").iterdir())


Run = Callable[[Ctx], subprocess.CompletedProcess]


@dataclass
class Program:
    id: str
    make: Callable[[Ctx], tuple[list[str] | Run, Expect]]
    seed: Callable[[Payload], bytes] | None = None  # the asset it edits, put on the provider first
    seed_ext: str | None = None
    only: tuple[str, ...] = ("mudstack", "apple")


PROGRAMS: dict[str, Program] = {}


def program(*ids: str, seed=None, seed_ext=None, only=("mudstack", "apple")):
    def register(make):
        for pid in ids or (make.__name__.replace("_", "-"),):
            PROGRAMS[pid] = Program(
                pid, (lambda c, pid=pid: make(c, pid)) if ids else (lambda c: make(c)), seed, seed_ext, only
            )
        return make

    return register


def escaped(data: bytes) -> str:
    """`\\0ooo` for every byte: what `echo -e`, dash's echo and `printf %b` turn back into bytes."""
    return "".join(f"\\0{b:03o}" for b in data)


def shell_of(pid: str) -> str:
    return pid.split("-")[0]


@program("bash-echo", "dash-echo")
def _echo(c: Ctx, pid: str):
    line = f"echo -ne '{escaped(c.p.new)}'" if shell_of(pid) == "bash" else f"echo '{escaped(c.p.new)}\\c'"
    return [shell_of(pid), "-c", f"{line} > {c.new}"], Expect({c.new: c.p.new})


@program("bash-printf")
def _printf(c: Ctx, pid: str):
    return [shell_of(pid), "-c", f"printf '%b' '{escaped(c.p.new)}' > {c.new}"], Expect({c.new: c.p.new})


@program("dash-cat")
def _cat(c: Ctx, pid: str):
    return [shell_of(pid), "-c", f"cat {c.src} > {c.new}"], Expect({c.new: c.p.new})


@program("bash-append", "dash-append")
def _append(c: Ctx, pid: str):
    half = len(c.p.new) // 2
    first, second = c.put("p1", c.p.new[:half]), c.put("p2", c.p.new[half:])
    return [shell_of(pid), "-c", f"cat {first} >> {c.new} && cat {second} >> {c.new}"], Expect({c.new: c.p.new})


DUP = """
import os, sys
data = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data[:len(data) // 2])
copy = os.dup(fd)
os.close(fd)                       # a flush: the copy stays open and writes on
os.write(copy, data[len(data) // 2:])
os.close(copy)
"""


@program()
def python_dup(c: Ctx):
    return [sys.executable, "-c", DUP, c.new, c.src], Expect({c.new: c.p.new})


@program()
def tee(c: Ctx):
    return ["sh", "-c", f"tee {c.new} < {c.src} > /dev/null"], Expect({c.new: c.p.new})


@program()
def dd(c: Ctx):
    return ["dd", f"if={c.src}", f"of={c.new}", "bs=16", "status=none"], Expect({c.new: c.p.new})


@program()
def cp(c: Ctx):
    return ["cp", c.src, c.new], Expect({c.new: c.p.new})


@program(seed=lambda p: p.seed)
def cp_onto_a_file(c: Ctx):
    return ["cp", c.src, c.seed], Expect({c.seed: c.p.new}, replaced={c.seed})


@program()
def install(c: Ctx):
    return ["install", "-m", "0644", c.src, c.new], Expect({c.new: c.p.new})


@program(seed=lambda p: p.seed)
def sed_i(c: Ctx):
    return ["sed", "-i", "s/one/uno/", c.seed], Expect({c.seed: c.p.edited}, replaced={c.seed})


@program(seed=lambda p: p.seed)
def perl_pi(c: Ctx):
    return ["perl", "-pi", "-e", "s/one/uno/", c.seed], Expect({c.seed: c.p.edited}, replaced={c.seed})


OPEN_W = """
import sys
data = open(sys.argv[2], "rb").read()
with open(sys.argv[1], "w", encoding="latin-1", newline="") as f:
    f.write(data.decode("latin-1"))
"""


@program()
def python_open_w(c: Ctx):
    return [sys.executable, "-c", OPEN_W, c.new, c.src], Expect({c.new: c.p.new})


SAFE_SAVE = """
import os, sys, tempfile
target, data = sys.argv[1], open(sys.argv[2], "rb").read()
fd, tmp = tempfile.mkstemp(dir=".")
try:
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
except BaseException:
    os.unlink(tmp)                 # as safe-save libraries do when the rename fails
    raise
"""


@program()
def mkstemp_replace(c: Ctx):
    return [sys.executable, "-c", SAFE_SAVE, c.new, c.src], Expect({c.new: c.p.new})


@program()
def rsync(c: Ctx):
    return ["rsync", c.src, f"./{c.new}"], Expect({c.new: c.p.new})


@program()
def rsync_inplace(c: Ctx):
    return ["rsync", "--inplace", c.src, f"./{c.new}"], Expect({c.new: c.p.new})


@program(seed=lambda p: p.seed)
def rsync_onto_a_file(c: Ctx):
    return ["rsync", "-I", c.src, f"./{c.seed}"], Expect({c.seed: c.p.new}, replaced={c.seed})


@program()
def gio_copy(c: Ctx):
    return ["gio", "copy", c.src, str(c.folder / c.new)], Expect({c.new: c.p.new})


@program()
def gio_save(c: Ctx):
    return ["sh", "-c", f"gio save {c.new} < {c.src}"], Expect({c.new: c.p.new})


@program(seed=lambda p: PICTURE, seed_ext=".png")
def convert(c: Ctx):
    out = c.name("out", ".png")
    return [CONVERT or "convert", c.seed, out], Expect({out: PICTURE}, pixels={out})


@program()
def tar_x(c: Ctx):
    archive = c.local / "in.tar"
    with tarfile.open(archive, "w") as tar:
        for top in c.local_tree():
            tar.add(top, arcname=top.name)
    return ["tar", "xf", str(archive)], Expect(c.tree(), dirs=c.tree_dirs())


@program()
def unzip(c: Ctx):
    archive = c.local / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for top in c.local_tree():
            for path in [top, *sorted(top.rglob("*"))]:
                z.write(path, arcname=str(path.relative_to(c.local / "tree")))
    return ["unzip", "-q", str(archive)], Expect(c.tree(), dirs=c.tree_dirs())


@program()
def cp_a(c: Ctx):
    return ["cp", "-a", *map(str, c.local_tree()), "."], Expect(c.tree(), dirs=c.tree_dirs())


@program(seed=lambda p: p.seed)
def vim(c: Ctx):
    return [
        "vim",
        *(["-b"] if c.p.binary else []),
        "-Nu",
        "NONE",
        "-es",
        "-c",
        "%s/one/uno/",
        "-c",
        "wq",
        c.seed,
    ], Expect({c.seed: c.p.edited}, replaced={c.seed})


@program(seed=lambda p: p.seed)
def nano(c: Ctx):
    """nano in a detached tmux: to the end of the file, type a line, ^O Enter to save, ^X."""

    def run(c: Ctx) -> subprocess.CompletedProcess:
        server = ["tmux", "-L", f"assetfs-nano-{os.getpid()}"]
        env = {**os.environ, "TERM": "xterm"}
        subprocess.run(
            [
                *server,
                "new-session",
                "-d",
                "-x",
                "100",
                "-y",
                "30",
                "-s",
                "nano",
                "-c",
                str(c.folder),
                f"nano -N {c.seed}",
            ],
            check=True,
            env=env,
        )
        try:
            for keys in (["M-/"], ["four"], ["C-o"], ["Enter"], ["C-x"]):
                time.sleep(0.3)
                subprocess.run([*server, "send-keys", "-t", "nano", *keys], check=True)
            for _ in range(100):
                if subprocess.run([*server, "has-session", "-t", "nano"], capture_output=True).returncode:
                    return subprocess.CompletedProcess(["nano"], 0, "", "")
                time.sleep(0.1)
            screen = subprocess.run(
                [*server, "capture-pane", "-p", "-t", "nano"], capture_output=True, text=True
            ).stdout
            return subprocess.CompletedProcess(["nano"], 1, screen, "nano did not exit")
        finally:
            subprocess.run([*server, "kill-server"], capture_output=True)

    return run, Expect({c.seed: c.p.seed + b"four\n"}, replaced={c.seed})


@program()
def mv_a_new_file(c: Ctx):
    first, final = c.name("f1"), c.name("f2")
    return ["sh", "-c", f"cat {c.src} > {first} && mv {first} {final}"], Expect({final: c.p.new})


# -- a save that renames the previous file away (the same in its syscall order: tests/scenarios.py)


@program(seed=lambda p: p.seed, only=("mudstack",))
def emacs(c: Ctx):
    """GNU Emacs (`emacs -Q --batch`) with its backups on: `x` → `x~`, then a new `x`."""
    lisp = (  # (backups on under /tmp too, where emacs makes none by default and the tests mount)
        "(progn (setq make-backup-files t backup-enable-predicate (lambda (_) t))"
        " (find-file (car command-line-args-left))"
        ' (goto-char (point-max)) (insert "four\n") (save-buffer)'
        # the file as emacs saved it, not "changed on disk", now and after the upload
        " (unless (verify-visited-file-modtime) (kill-emacs 3)) (sleep-for 2.5)"
        " (unless (verify-visited-file-modtime) (kill-emacs 4)) (kill-emacs 0))"
    )
    return ["emacs", "-Q", "--batch", "--eval", lisp, c.seed], Expect(
        {c.seed: c.p.seed + b"four\n"}, replaced={c.seed}, backups={c.seed + "~": c.p.seed}
    )


# -- the providers, seen through their own APIs, and what a save must leave there ------------

WORKSPACE, AREA = "Game Art", "/programs/"
APPLE_ORG, APPLE_BRAND = "9467895078742654934", "9467895078742654921"


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


WRITE_BACK = "1s"


@contextlib.contextmanager
def world_of(tmp_path_factory, name: str, seed: Callable[[dict], None]) -> Iterator[tuple]:
    """(emulator, mount, sides): an emulator, what the cases need put on its providers through
    their APIs (`seed`, given the sides by name), then one mount of it with a write-back delay."""
    emu = RunningEmulator(tmp_path_factory.mktemp(f"{name}-emulator"))
    m = None
    try:
        sides = {n: cls(emu) for n, cls in SIDES.items()}
        seed(sides)
        m = MountedFS(tmp_path_factory.mktemp(f"{name}-mount"), emu.config, options=f"write_back={WRITE_BACK}")
        yield emu, m, sides
    finally:
        if m is not None:
            m.stop()
        emu.stop()


def settle(world: tuple) -> None:
    """Nothing of an earlier test on its way and an empty name log."""
    emu, m, _ = world
    wait_for_uploads(m.path, grace=0)
    clear_names(emu)


def seed_name(prog: Program | Any, case: str, payload: Payload) -> str:
    """The name of the asset a program (or a scenario: tests/scenarios.py) edits, if it edits one."""
    return f"{case}_s{prog.seed_ext or payload.ext}" if prog.seed else ""


def check_saved(
    emu: RunningEmulator,
    side: Mudstack | Apple,
    case: str,
    before: dict[str, dict],
    count: int,
    expect: Expect,
    shown: set[str],
    kept: dict[str, bytes],
    seed: str,
) -> None:
    """What the provider holds after a save, through its own API, against what the save
    expected; `shown` is the folder's listing after, `kept` the bytes read of its backups."""
    count_after, after = side.snapshot(case)
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
    assert side.folders(case) == expect.dirs

    allowed = {n for rel in [*expect.files, *expect.dirs] for n in (Path(rel).name, Path(rel).stem)}
    stray = [n for n in names_used(emu, side.name) if n["name"] not in allowed]
    assert not stray, f"names that are not the program's final names reached the provider: {stray}"
    writes = [n for n in names_used(emu, side.name) if n["event"] in ("create", "version", "update")]
    assert len(writes) == len(expect.files) - len(expect.renamed), f"one upload per saved file: {writes}"

    shown = shown - {".assets"}
    if side.name == "apple":  # a brand shared by every case: this case's names and hidden leftovers
        shown = {n for n in shown if n.startswith(f"{case}_") or n.startswith(".")}
    top = {Path(rel).parts[0] for rel in [*expect.files, *expect.dirs]}
    untouched = {seed} if seed and seed not in expect.renamed else set()
    assert shown == top | untouched | set(expect.backups)
    assert kept == expect.backups  # the previous bytes, on this machine only


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").tobytes()


def run_program(prog: Program, c: Ctx) -> tuple[subprocess.CompletedProcess, Expect]:
    command, expect = prog.make(c)
    if callable(command):
        return command(c), expect
    return subprocess.run(command, cwd=c.folder, capture_output=True, timeout=120), expect


def told(result: subprocess.CompletedProcess, message: str) -> bool:
    """The program reported the refusal: the errno's text (perl -i warns and exits 0), or for
    vim -es, which prints nothing, its exit status."""
    return message in output(result) or (result.args[0] == "vim" and result.returncode != 0)


def output(result: subprocess.CompletedProcess) -> str:
    text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
    return f"exit {result.returncode}\n{text(result.stdout)}{text(result.stderr)}"
