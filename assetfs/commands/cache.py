"""`assetfs cache info|clear`: what the cache dir holds, and emptying what can be fetched again.

The cache dir mixes two kinds of data: copies (metadata/, blocks/) that the providers can
give back at any time, and state that exists nowhere else (spool/ holds written bytes not
yet uploaded, journal/ the uploads due, written/ the names files were written with,
memory/ what a provider must remember across mounts). `clear` only ever touches the first
kind. Both caches are diskcache (SQLite), safe to clear while a mount runs: it fetches again.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import CommandError, human_size

COPIES = {
    "metadata": "listings and file facts (fetched again when needed)",
    "blocks": "downloaded file content (LRU, up to cache max_size)",
}
STATE = {
    "spool": "bytes written through the mount, until uploaded",
    "journal": "uploads not yet confirmed by the provider",
    "written": "names files were written with",
    "memory": "what providers remember across mounts",
}


def run(args: argparse.Namespace) -> int:
    directory = cache_dir(args)
    console = Console()
    if args.action == "info":
        return info(directory, console)
    return clear(directory, console)


def cache_dir(args: argparse.Namespace) -> Path:
    if args.cache_dir:
        return Path(os.path.expanduser(args.cache_dir))
    from ..config import load_config
    from ..errors import ConfigError

    try:
        return load_config(args.config).cache.path
    except ConfigError as e:
        raise CommandError(str(e)) from None


def disk_usage(path: Path) -> int:
    """Bytes on disk under `path`, like `du -s` (hard links counted once)."""
    total, seen = 0, set()
    for root, dirs, files in os.walk(path, onerror=None):
        for name in [*dirs, *files]:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def journal_states(directory: Path) -> Counter[str]:
    """Uploads in the journal, by state. Read without creating anything."""
    if not (directory / "journal").is_dir():
        return Counter()
    from ..write.journal import Journal

    journal = Journal(directory / "journal")
    try:
        return Counter(record.state for record in journal.all())
    finally:
        journal.close()
        _compact(directory / "journal" / "cache.db", vacuum=False)  # opening it wrote its settings to the log


def _compact(db: Path, vacuum: bool = True) -> None:
    """Give the space back: SQLite keeps freed pages, and its write-ahead log keeps growing
    while a mount holds the database open. Best effort: a busy database stays as it is."""
    import sqlite3

    if not db.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if vacuum:
                connection.execute("VACUUM")
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


def _clear_blocks(path: Path) -> int:
    """Delete the block store's files (a running mount fetches again what it reads next)."""
    from ..read.blockcache import BlockCache

    blocks = BlockCache(path, size_limit=0)
    try:
        return blocks.clear()
    finally:
        blocks.close()


def _say(console: Console, text: str) -> None:
    console.print(Text(text), soft_wrap=True)  # one line, however narrow the terminal


def _describe(states: Counter[str]) -> str:
    total = sum(states.values())
    if not total:
        return "none"
    return f"{total} (" + ", ".join(f"{n} {state}" for state, n in sorted(states.items())) + ")"


def info(directory: Path, console: Console) -> int:
    if not directory.is_dir():
        raise CommandError(f"{directory}: no cache dir there yet (the first mount makes it)", code=1)
    table = Table(title=f"cache {directory}", title_justify="left")
    table.add_column("dir")
    table.add_column("size", justify="right")
    table.add_column("holds")
    total = 0
    for name, holds in {**COPIES, **STATE}.items():
        size = disk_usage(directory / name) if (directory / name).is_dir() else 0
        total += size
        table.add_row(f"{name}/", human_size(size), holds + ("" if name in COPIES else " (kept by clear)"))
    table.add_section()
    table.add_row("total", human_size(total), "")
    console.print(table)
    _say(console, f"pending uploads in the journal: {_describe(journal_states(directory))}")
    return 0


def clear(directory: Path, console: Console) -> int:
    if not directory.is_dir():
        raise CommandError(f"{directory}: no cache dir there (nothing to clear)", code=1)
    import diskcache

    for name in COPIES:
        path = directory / name
        if not path.is_dir():
            continue
        before = disk_usage(path)
        if name == "blocks":
            removed = _clear_blocks(path)
        else:
            cache = diskcache.Cache(str(path))  # keeps the settings the mount stored (size limit, eviction)
            try:
                removed = cache.clear(retry=True)
            finally:
                cache.close()
            _compact(path / "cache.db")
        _say(console, f"cleared {name}/: {removed:,} entries, {human_size(before)} → {human_size(disk_usage(path))}")
    states = journal_states(directory)
    kept = ", ".join(f"{name}/ ({human_size(disk_usage(directory / name))})" for name in STATE
                     if (directory / name).is_dir())
    _say(console, f"kept {kept or 'nothing else'}: written bytes and upload state are never cleared")
    if states:
        _say(console, f"pending uploads in the journal: {_describe(states)}")
    return 0
