"""`assetfs cache info|clear`: what the cache dir holds, and emptying what can be fetched again.

The cache dir holds only copies (metadata/, blocks/) that the providers can give back at
any time. What exists nowhere else lives in the state dir (spool/ holds written bytes not
yet uploaded, journal/ the uploads due, memory/ what a provider must remember across
mounts): `info` shows it, `clear` never touches it. Both caches are diskcache (SQLite),
safe to clear while a mount runs: it fetches again.
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
    "memory": "what providers remember across mounts",
    "given": "times and modes given to files written through the mount",
}


def run(args: argparse.Namespace) -> int:
    cache, state = directories(args)
    console = Console()
    if args.action == "info":
        return info(cache, state, console)
    return clear(cache, state, console)


def directories(args: argparse.Namespace) -> tuple[Path, Path]:
    """The cache dir and the state dir: from the options given, else from the config."""
    cache = Path(os.path.expanduser(args.cache_dir)) if args.cache_dir else None
    state = Path(os.path.expanduser(args.state_dir)) if args.state_dir else None
    if cache is None or state is None:
        from ..config import default_state_dir, load_config
        from ..errors import ConfigError

        try:
            config = load_config(args.config)
        except ConfigError as e:
            if cache is None or args.config:
                raise CommandError(str(e)) from None
            return cache, default_state_dir()  # --cache-dir alone, and no config to say more
        cache, state = cache or config.cache.path, state or config.state.path
    return cache, state


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
    """Uploads in the state dir's journal, by state. Read without creating anything."""
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


def info(cache: Path, state: Path, console: Console) -> int:
    if not cache.is_dir():
        raise CommandError(f"{cache}: no cache dir there yet (the first mount makes it)", code=1)
    table = Table(title=f"cache {cache}, state {state}", title_justify="left")
    table.add_column("dir")
    table.add_column("size", justify="right")
    table.add_column("holds")
    total = 0
    for directory, parts, note in ((cache, COPIES, ""), (state, STATE, " (state dir: never cleared)")):
        for name, holds in parts.items():
            size = disk_usage(directory / name) if (directory / name).is_dir() else 0
            total += size
            table.add_row(f"{name}/", human_size(size), holds + note)
    table.add_section()
    table.add_row("total", human_size(total), "")
    console.print(table)
    _say(console, f"pending uploads in the journal: {_describe(journal_states(state))}")
    return 0


def clear(cache: Path, state: Path, console: Console) -> int:
    if not cache.is_dir():
        raise CommandError(f"{cache}: no cache dir there (nothing to clear)", code=1)
    import diskcache

    for name in COPIES:
        path = cache / name
        if not path.is_dir():
            continue
        before = disk_usage(path)
        if name == "blocks":
            removed = _clear_blocks(path)
        else:
            db = diskcache.Cache(str(path))  # keeps the settings the mount stored (size limit, eviction)
            try:
                removed = db.clear(retry=True)
            finally:
                db.close()
            _compact(path / "cache.db")
        _say(console, f"cleared {name}/: {removed:,} entries, {human_size(before)} → {human_size(disk_usage(path))}")
    _say(
        console,
        f"kept the state dir {state} (bytes written but not yet uploaded, the upload journal, "
        f"what providers remember): never cleared",
    )
    states = journal_states(state)
    if states:
        _say(console, f"pending uploads in the journal: {_describe(states)}")
    return 0
