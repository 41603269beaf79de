"""`assetfs umount MOUNTPOINT`: wait for the uploads still on their way, then unmount.

A plain `fusermount3 -u` is safe too (the journal keeps what was not uploaded and the next
mount resumes it), but a user who unmounts usually means "I am done": they want the bytes
at the provider now, and to hear about the uploads that will not get there by themselves
(states failed and orphaned wait for the user, so they are reported, never waited for).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from ..units import parse_duration
from . import CommandError, NoAnswer, assetfs_mountpoint, human_size, is_mounted, read_status

POLL = 0.5  # seconds between two looks at status.json
EXIT_WAIT = 10.0  # seconds to let the mount's process finish after the unmount


def run(args: argparse.Namespace) -> int:
    try:
        timeout = parse_duration(args.timeout)
    except ValueError:
        raise CommandError(f"--timeout {args.timeout}: not a duration (e.g. 300, 90s, 5m)") from None
    if timeout < 0:
        raise CommandError("--timeout: must not be negative")
    mountpoint = assetfs_mountpoint(args.mountpoint)
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    pid = None
    lazy = args.lazy
    if not lazy:
        try:
            _, status = read_status(mountpoint)
        except NoAnswer as e:
            # A plain unmount would find the mount busy with our own unanswered read.
            err.print(
                f"assetfs: {escape(str(e))}; unmounting lazily (uploads not done are kept in the "
                "journal and resume at the next mount)",
                highlight=False,
            )
            status, lazy = None, True
        except CommandError as e:
            # A mount whose process died answers ENOTCONN: nothing to wait for, but it still needs unmounting.
            err.print(f"assetfs: {escape(str(e))}; unmounting without waiting", highlight=False)
            status = None
        if status is not None:
            pid = status.get("pid")
            _report_kept(err, status)
            left = _wait_for_uploads(mountpoint, status, timeout, err)
            if left:
                count = len(left)
                raise CommandError(
                    f"{mountpoint}: {count} upload{'s' if count != 1 else ''} still pending after {timeout:g}s; "
                    "not unmounted (they are kept and resume at the next mount; unmount anyway with --lazy "
                    "or fusermount3 -u)",
                    code=1,
                )
    _unmount(mountpoint, lazy)
    if pid and not lazy:
        _wait_for_exit(int(pid))
    out.print(
        f"unmounted {escape(str(mountpoint))}" + (" (lazily: it goes once nothing uses it)" if lazy else ""),
        highlight=False,
    )
    return 0


def _due(status: dict) -> list[dict]:
    return [p for p in status.get("pending_uploads") or [] if p.get("state") == "pending"]


def _report_kept(console: Console, status: dict) -> None:
    kept = [p for p in status.get("pending_uploads") or [] if p.get("state") != "pending"]
    if not kept:
        return
    console.print(
        f"{len(kept)} upload{'s' if len(kept) != 1 else ''} kept for you, not waited for "
        "(see .assetfs/pending/ at the next mount):",
        highlight=False,
    )
    for p in kept:
        console.print(
            f"  {escape(str(p.get('name')))} ({escape(str(p.get('account')))}): {escape(str(p.get('state')))}"
            + (f" — {escape(str(p['error']))}" if p.get("error") else ""),
            highlight=False,
        )


def _wait_for_uploads(mountpoint, status: dict, timeout: float, console: Console) -> list[dict]:
    """Poll status.json until no upload is due; the pending ones left at the timeout."""
    due = _due(status)
    if not due:
        return []
    deadline = time.monotonic() + timeout
    total_count, total_bytes = len(due), sum(int(p.get("size") or 0) for p in due)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[uploads]}"),
        DownloadColumn(binary_units=True),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("waiting for uploads", total=total_bytes or 1, uploads="")
        while due:
            left_bytes = sum(int(p.get("size") or 0) for p in due)
            total_count, total_bytes = max(total_count, len(due)), max(total_bytes, left_bytes)
            last_error = next((p.get("error") for p in due if p.get("error")), "")
            description = "waiting for uploads" + (f" (last error: {last_error[:60]})" if last_error else "")
            progress.update(
                task,
                total=total_bytes or 1,
                completed=total_bytes - left_bytes,
                description=description,
                uploads=f"{total_count - len(due)}/{total_count} uploads",
            )
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL)
            try:
                _, status = read_status(mountpoint)
            except CommandError:
                if not is_mounted(mountpoint):
                    raise CommandError(
                        f"{mountpoint}: unmounted by someone else while waiting; "
                        f"{len(due)} upload(s) kept for the next mount",
                        code=1,
                    ) from None
                raise
            due = _due(status)
        else:
            progress.update(task, completed=total_bytes or 1, uploads=f"{total_count}/{total_count} uploads")
    if due:
        for p in due:
            console.print(
                f"  still pending: {escape(str(p.get('name')))} ({escape(str(p.get('account')))}, "
                f"{human_size(p.get('size'))}, {p.get('attempts', 0)} tries)"
                + (f" — {escape(str(p['error']))}" if p.get("error") else ""),
                highlight=False,
            )
    else:
        console.print(
            f"{total_count} upload{'s' if total_count != 1 else ''} done ({human_size(total_bytes)})", highlight=False
        )
    return due


def _unmount(mountpoint, lazy: bool) -> None:
    """fusermount3 (works without root for the user who mounted), else umount(8)."""
    commands = [["fusermount3", "-uz" if lazy else "-u"], ["umount", "-l"] if lazy else ["umount"]]
    problems = []
    for command in commands:
        if shutil.which(command[0]) is None:
            problems.append(f"{command[0]}: not installed")
            continue
        done = subprocess.run([*command, str(mountpoint)], check=False, capture_output=True, text=True)
        if done.returncode == 0 or not is_mounted(mountpoint):
            return
        message = (done.stderr or done.stdout).strip().splitlines()
        problems.append(message[-1] if message else f"{command[0]} exited with {done.returncode}")
    raise CommandError(f"{mountpoint}: cannot unmount: {problems[0]}", code=1)


def _wait_for_exit(pid: int) -> None:
    """Give the mount's process a moment to close its caches and journal, so that a
    remount or `assetfs cache` right after this command sees them settled."""
    deadline = time.monotonic() + EXIT_WAIT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return  # not ours to watch
        if _is_zombie(pid):
            return  # finished; its parent has not collected it yet
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
