"""The programs people save files with, as a catalogue for tests/test_programs.py: each entry
makes the command to run in a folder of the mount (or a function that drives the program, for
nano) and says what the provider must hold afterwards. The same entries serve Mudstack (text),
Apple (images only: PNGs that text tools can edit) and the refusals of iQmetrix and Spectrum."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

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


@program(seed=lambda p: p.seed)
def mkstemp_replace_a_file(c: Ctx):
    return [sys.executable, "-c", SAFE_SAVE, c.seed, c.src], Expect({c.seed: c.p.new}, replaced={c.seed})


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


@program(seed=lambda p: p.seed, only=("mudstack",))
def mv_an_asset(c: Ctx):
    final = c.name("renamed")
    return ["mv", c.seed, final], Expect({final: c.p.seed}, renamed={c.seed: final})


@program(seed=lambda p: p.seed, seed_ext=".txt", only=("mudstack",))
def mv_to_another_extension(c: Ctx):
    final = c.name("renamed", ".md")
    return ["mv", c.seed, final], Expect({final: c.p.seed}, renamed={c.seed: final})


# -- saves that rename the previous file away, from the programs' own syscall order --------------

BLENDER = """
import os, sys
blend, data = sys.argv[1], open(sys.argv[2], "rb").read()
for save in (data[::-1], data):    # two saves in a row: the second renames over the first's backup
    with open(blend + "@", "wb") as f:
        f.write(save)
    os.rename(blend, blend + "1")
    os.rename(blend + "@", blend)
"""


@program(seed=lambda p: p.seed, seed_ext=".blend", only=("mudstack",))
def blender(c: Ctx):
    """Blender's save: `x.blend@` written, `x.blend` → `x.blend1`, `x.blend@` → `x.blend`."""
    return [sys.executable, "-c", BLENDER, c.seed, c.src], Expect(
        {c.seed: c.p.new}, replaced={c.seed}, backups={c.seed + "1": c.p.new[::-1]}
    )


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


LIBREOFFICE = """
import os, sys
doc, data = sys.argv[1], open(sys.argv[2], "rb").read()
lock = f".~lock.{doc}#"
open(lock, "w").write("user,host,now;")
tmp = f"lu{os.getpid()}g4k.tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.rename(doc, doc + ".osl-tmp")   # osl_replaceFile: the old file aside,
os.rename(tmp, doc)                # the new one in its place,
os.unlink(doc + ".osl-tmp")        # the old one removed
os.unlink(lock)
"""


@program(seed=lambda p: p.seed)
def libreoffice(c: Ctx):
    """LibreOffice's save, in its syscall order: temp file, old aside as `.osl-tmp`, temp in place."""
    return [sys.executable, "-c", LIBREOFFICE, c.seed, c.src], Expect({c.seed: c.p.new}, replaced={c.seed})


WORD = """
import os, sys
doc, data, case = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3]
owner = "~$" + doc[2:]
open(owner, "wb").write(b"\x05user")
new, old = f"~WRD{case}.tmp", f"~WRL{case}.tmp"
with open(new, "wb") as f:
    f.write(data)
os.rename(doc, old)                # Word: the old file to ~WRL….tmp,
os.rename(new, doc)                # ~WRD….tmp to the document's name,
os.unlink(old)                     # the old one removed
os.unlink(owner)
"""


@program(seed=lambda p: p.seed)
def word(c: Ctx):
    """Word's save (as seen over SMB): `~WRD….tmp` written, the document → `~WRL….tmp`, the new one in place."""
    return [sys.executable, "-c", WORD, c.seed, c.src, str(os.getpid())], Expect({c.seed: c.p.new}, replaced={c.seed})


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
