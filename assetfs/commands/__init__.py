"""The commands a user runs next to a mount (status, umount, prefetch, cache, config check).

Each module has `run(args) -> int`. What they share lives here: finding out whether a path
is an assetfs mount (from the kernel's mount table, so nothing is asked of a hung mount
before we know it is ours), reading its status.json, and human units. Kept free of heavy
imports: the CLI imports this package for every command.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path

FSTYPE = "fuse.assetfs"


class CommandError(Exception):
    """A problem the user can act on: printed as one line `assetfs: …`, exit `code`
    (2 for bad input, 1 for an operation that did not succeed)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class NoAnswer(CommandError):
    """The mount did not answer a read of its own status file: its process is stopped,
    stuck, or overwhelmed. Anything more asked of it would hang too."""


STATUS_WAIT = 5.0  # seconds: status.json is answered from memory, so this is plenty


@dataclass(frozen=True)
class MountEntry:
    source: str
    mountpoint: str
    fstype: str


def _unescape(field: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_table() -> list[MountEntry]:
    try:
        with open("/proc/self/mounts") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            entries.append(MountEntry(_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return entries


def mount_of(path: str | Path) -> MountEntry | None:
    """The mount a path lives on (the longest mountpoint that contains it); the last one
    wins when several are stacked on the same directory, as the kernel does."""
    real = os.path.realpath(path)
    best: MountEntry | None = None
    for entry in mount_table():
        mp = entry.mountpoint
        inside = real == mp or real.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best.mountpoint)):
            best = entry
    return best


def is_mounted(path: str | Path) -> bool:
    real = os.path.realpath(path)
    return any(e.mountpoint == real for e in mount_table())


def assetfs_mountpoint(path: str | Path) -> Path:
    """`path` itself must be the mountpoint of an assetfs mount; otherwise a CommandError
    that says what it is instead."""
    real = os.path.realpath(path)
    entry = mount_of(real)
    if entry is not None and entry.mountpoint == real:
        if entry.fstype != FSTYPE:
            raise CommandError(f"{path}: not an assetfs mount (it is a {entry.fstype} mount)")
        return Path(real)
    if entry is not None and entry.fstype == FSTYPE:
        raise CommandError(f"{path}: is inside the assetfs mount {entry.mountpoint}; give the mountpoint itself")
    if not os.path.lexists(real):
        raise CommandError(f"{path}: no such directory")
    raise CommandError(f"{path}: not an assetfs mount (nothing is mounted there)")


def paths_and_jobs(args) -> list[str]:
    """The PATH… and --jobs of a command that walks mounts (prefetch, thumbnails), checked:
    each path inside a mount, made absolute."""
    if args.jobs < 1:
        raise CommandError(f"--jobs {args.jobs}: must be at least 1")
    paths = []
    for path in args.paths:
        assetfs_path(path)
        paths.append(os.path.abspath(path))
    return paths


def assetfs_path(path: str | Path) -> Path:
    """A path that exists inside (or is) an assetfs mount; returns its mountpoint."""
    if not os.path.lexists(path):
        raise CommandError(f"{path}: no such file or directory")
    entry = mount_of(path)
    if entry is None or entry.fstype != FSTYPE:
        raise CommandError(f"{path}: not inside an assetfs mount")
    return Path(entry.mountpoint)


def status_path(mountpoint: Path) -> Path:
    return mountpoint / ".assetfs" / "status.json"


def read_status(mountpoint: Path) -> tuple[str, dict]:
    """The raw text and the parsed content of a mount's status.json."""
    path = status_path(mountpoint)
    answers: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:  # in a thread: a hung mount would hold it in the read for good
        try:
            answers.put(path.read_text())
        except OSError as e:
            answers.put(e)

    threading.Thread(target=read, daemon=True).start()
    try:
        text = answers.get(timeout=STATUS_WAIT)
    except queue.Empty:
        raise NoAnswer(
            f"{path}: the mount did not answer within {STATUS_WAIT:g}s (its process is stopped or stuck)", code=1
        ) from None
    if isinstance(text, OSError):
        raise CommandError(f"{path}: cannot read it: {text.strerror or text}", code=1)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CommandError(f"{path}: not valid JSON ({e})", code=1) from None
    if not isinstance(data, dict) or not isinstance(data.get("counters"), dict):
        raise CommandError(f"{path}: not an assetfs status file", code=1)
    return text, data


def human_size(n: float | None) -> str:
    """Bytes in binary units, as the mount options and the README write them (MiB, GiB)."""
    if n is None:
        return "—"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # not reached


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"
