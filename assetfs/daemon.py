"""`assetfs mount` without -f: start the mount in its own session and return once it is
ready (or print why it failed), as mount(8) and fstab expect."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

READY_FD_ENV = "ASSETFS_READY_FD"
STARTUP_LIMIT = 60.0


def run_in_background(argv: list[str], mountpoint: Path, cache_dir: Path) -> int:
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = cache_dir / "mount.log"
    read_fd, write_fd = os.pipe()
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "assetfs", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(write_fd,),
            env={**os.environ, READY_FD_ENV: str(write_fd)},
            start_new_session=True,
        )
    os.close(write_fd)
    answer = b""
    deadline = time.monotonic() + STARTUP_LIMIT
    with os.fdopen(read_fd, "rb", buffering=0) as ready:
        while b"\n" not in answer and (left := deadline - time.monotonic()) > 0:
            if not select.select([ready], [], [], left)[0]:
                break
            chunk = ready.read(64)
            if not chunk:  # the child exited without saying it was ready
                break
            answer += chunk
    if answer.startswith(b"ready"):
        print(f"assetfs: mounted {mountpoint} (pid {child.pid}, log {log_path})")
        return 0
    code = child.poll()
    tail = log_path.read_text(errors="replace").splitlines()[-5:]
    print(f"assetfs: mounting {mountpoint} failed" + (f" (exit {code})" if code is not None else ""), file=sys.stderr)
    for line in tail:
        print(f"  {line}", file=sys.stderr)
    if code is None:
        child.terminate()
    return 1


def notify_ready() -> None:
    """Tell whoever started us that the mount is up: the parent `assetfs mount`, and
    systemd when it runs us as a Type=notify service."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd:
        try:
            os.write(int(fd), b"ready\n")
            os.close(int(fd))
        except OSError:
            pass
