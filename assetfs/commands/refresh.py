"""`assetfs refresh PATH…`: make a mount list directories afresh now and forget what the
kernel kept of them, for changes made on the provider by someone else (like rclone's
`vfs/refresh`); polling (`poll_interval`) does the same by itself, later."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import CommandError, assetfs_path, read_status

ANSWER_WAIT = 60.0  # seconds: a listing of a huge directory on a slow provider


def run(args: argparse.Namespace) -> int:
    from ..control import ask

    for path in args.paths:
        mountpoint = assetfs_path(path)
        if not os.path.isdir(path):
            raise CommandError(f"{path}: not a directory (refresh the directory that holds it)")
        _, status = read_status(mountpoint)
        socket = status.get("control")
        if not isinstance(socket, str):
            raise CommandError(f"{mountpoint}: this mount takes no refresh requests (an older version?)", code=1)
        relative = os.path.relpath(os.path.realpath(path), mountpoint)
        inside = "/" if relative == "." else "/" + relative
        try:
            answer = ask(Path(socket), {"refresh": inside}, ANSWER_WAIT)
        except (OSError, ValueError) as e:
            raise CommandError(f"{mountpoint}: the mount did not answer the refresh request ({e})", code=1) from None
        if "error" in answer:
            raise CommandError(f"{path}: {answer['error']}", code=1)
        print(f"refreshed {path}")
    return 0
