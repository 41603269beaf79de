"""Wait for a mount's uploads the way a user would: by reading `.assetfs/status.json`, the
file `assetfs status` and `assetfs umount` read, until no upload is still on its way (new
files waiting out the write-back delay included)."""

from __future__ import annotations

import json
import time
from pathlib import Path

KEPT = {"failed", "orphaned"}  # uploads kept for the user: nothing more will happen to them by itself


def status(mountpoint: Path) -> dict:
    return json.loads((mountpoint / ".assetfs" / "status.json").read_text())


def in_flight(current: dict) -> list[dict]:
    """The uploads of a status that are still on their way."""
    return [p for p in current.get("pending_uploads") or [] if p.get("state") not in KEPT]


def wait_for_uploads(mountpoint: Path, timeout: float = 60.0, grace: float = 0.2) -> dict:
    """The mount's status once nothing is on its way. A short pause first (`grace`): the
    kernel sends the release of a closed file after close() has returned to the program."""
    time.sleep(grace)
    deadline = time.monotonic() + timeout
    while True:
        current = status(mountpoint)
        left = in_flight(current)
        if not left:
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"uploads still pending after {timeout:g}s: {left}")
        time.sleep(0.1)
