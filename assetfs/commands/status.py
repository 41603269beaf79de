"""`assetfs status MOUNTPOINT`: the mount's status.json as a table a person can read, so
nobody has to work out hit ratios and byte counts from raw counters."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import assetfs_mountpoint, human_duration, human_size, read_status


def run(args: argparse.Namespace) -> int:
    mountpoint = assetfs_mountpoint(args.mountpoint)
    raw, status = read_status(mountpoint)
    if args.json:
        sys.stdout.write(raw)
        return 0
    console = Console()
    console.print(overview(status))
    console.print(pending_table(status.get("pending_uploads") or []))
    return 0


def _count(counters: dict, name: str) -> str:
    return f"{int(counters.get(name, 0)):,}"


def _bytes(counters: dict, name: str) -> str:
    n = int(counters.get(name, 0))
    return f"{human_size(n)} ({n:,} bytes)" if n >= 1024 else f"{n:,} bytes"


def _ratio(hits: int, misses: int) -> str:
    total = hits + misses
    return f"{100 * hits / total:.1f} %" if total else "—"


def overview(status: dict) -> Table:
    c = status.get("counters", {})
    cache = status.get("cache", {})
    accounts = status.get("accounts", {})
    table = Table(title="assetfs status", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")

    def row(label: str, value: str) -> None:
        table.add_row(label, Text(value))  # Text: names from providers are data, not markup

    row("mountpoint", str(status.get("mountpoint", "")))
    row("process", str(status.get("pid", "—")))
    row("accounts", ", ".join(f"{n} ({p})" for n, p in accounts.items()) or "—")
    row("uptime", human_duration(c.get("uptime")))
    row("inodes", f"{int(status.get('inodes', 0)):,}")
    table.add_section()
    row("requests", _count(c, "requests"))
    row("errors", _count(c, "errors"))
    row("timeouts", _count(c, "timeouts"))
    if c.get("internal_errors"):
        row("internal errors", _count(c, "internal_errors"))
    if c.get("checksum_mismatches"):
        row("checksum mismatches", _count(c, "checksum_mismatches"))
    table.add_section()
    mh, mm = int(c.get("metadata_hits", 0)), int(c.get("metadata_misses", 0))
    row("metadata hits / misses", f"{mh:,} / {mm:,}")
    row("metadata hit ratio", _ratio(mh, mm))
    bh, bm = int(c.get("block_hits", 0)), int(c.get("block_misses", 0))
    row("block hits / misses", f"{bh:,} / {bm:,}")
    row("block hit ratio", _ratio(bh, bm))
    row("block cache size", human_size(cache.get("block_bytes")))
    row("cache dir", str(cache.get("dir", "—")))
    row("state dir", str((status.get("state") or {}).get("dir", "—")))
    poll = status.get("poll_interval")
    row("polling for changes", f"every {human_duration(poll)}" if poll else "off")
    table.add_section()
    row("bytes read", _bytes(c, "bytes_read"))
    row("bytes downloaded", _bytes(c, "bytes_downloaded"))
    row("bytes uploaded", _bytes(c, "bytes_uploaded"))
    row("uploads / failed tries", f"{_count(c, 'uploads')} / {_count(c, 'upload_failures')}")
    return table


def pending_table(pending: list[dict]) -> Table | Text:
    if not pending:
        return Text("pending uploads: none")
    table = Table(title=f"pending uploads: {len(pending)}", title_justify="left")
    for column in ("name", "account", "state", "size", "attempts", "last error"):
        table.add_column(column, overflow="fold")
    for p in pending:
        table.add_row(
            Text(str(p.get("name", ""))),
            Text(str(p.get("account", ""))),
            Text(str(p.get("state", "")), style="red" if p.get("state") != "pending" else "yellow"),
            human_size(p.get("size")),
            str(p.get("attempts", 0)),
            Text(str(p.get("error") or "")),
        )
    return table
