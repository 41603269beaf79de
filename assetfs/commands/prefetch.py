"""`assetfs prefetch PATH…`: read files through the mount so that their bytes land in the
block cache, e.g. before going offline or before a tool that reads them many times.

Reading through the mount (not asking the providers directly) fills exactly the caches a
later read uses, with the mount's own retries and checksums. Directories are listed and
files read by the same N threads, so reading starts before the walk is done.
"""

from __future__ import annotations

import argparse
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from . import human_duration, human_size, paths_and_jobs

CHUNK = 1 << 20


class _Speed(ProgressColumn):
    """Transfer speed in the binary units the rest of the output uses."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{human_size(speed)}/s" if speed else "", style="progress.data.speed")


class Prefetch:
    """One run: a pool of readers, the files seen, and what went wrong."""

    def __init__(self, jobs: int, progress: Progress, console: Console):
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="prefetch")
        self.progress = progress
        self.console = console
        self.task = progress.add_task("prefetching", total=0, files="")
        self.lock = threading.Lock()
        self.outstanding = 0
        self.finished = threading.Event()
        self.stopping = threading.Event()
        self.seen: set[str] = set()
        self.files_found = self.files_read = self.bytes_found = self.bytes_read = 0
        self.errors: list[str] = []

    def submit(self, fn, path: str) -> None:
        with self.lock:
            self.outstanding += 1
        self.pool.submit(self._run, fn, path)

    def _run(self, fn, path: str) -> None:
        try:
            if not self.stopping.is_set():
                fn(path)
        except OSError as e:
            self._error(path, e.strerror or str(e))
        except Exception as e:  # noqa: BLE001 - a bug here must not hang the run
            self._error(path, f"{type(e).__name__}: {e}")
        finally:
            with self.lock:
                self.outstanding -= 1
                if self.outstanding == 0:
                    self.finished.set()

    def _error(self, path: str, message: str) -> None:
        with self.lock:
            self.errors.append(path)
        self.console.print(f"[red]✗[/red] {escape(path)}: {escape(message)}", highlight=False)

    def start(self, path: str) -> None:
        """A path named on the command line (always taken, even when hidden)."""
        self.submit(self._visit, path)

    def _visit(self, path: str) -> None:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            self._list(path)
        elif stat.S_ISREG(st.st_mode):
            self._found(path, st.st_size)

    def _list(self, directory: str) -> None:
        with self.lock:
            if directory in self.seen:
                return
            self.seen.add(directory)
        with os.scandir(directory) as entries:
            for entry in entries:
                # Hidden entries are the mount's control files (.assetfs), a workspace's
                # trash and local temporary files: not what "everything under here" means.
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    self.submit(self._list, entry.path)
                elif entry.is_file(follow_symlinks=False):
                    try:
                        size = entry.stat(follow_symlinks=False).st_size
                    except OSError as e:
                        self._error(entry.path, e.strerror or str(e))
                        continue
                    self._found(entry.path, size)

    def _found(self, path: str, size: int) -> None:
        with self.lock:
            if path in self.seen:
                return
            self.seen.add(path)
            self.files_found += 1
            self.bytes_found += size
            total = self.bytes_found
        self.progress.update(self.task, total=total)
        self._show_files()
        self.submit(self._read, path)

    def _read(self, path: str) -> None:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        read = 0
        with open(path, "rb", buffering=0) as f:
            while not self.stopping.is_set():
                n = f.readinto(view)
                if not n:
                    break
                read += n
                self.progress.advance(self.task, n)
        with self.lock:
            self.files_read += 1
            self.bytes_read += read
        self._show_files()

    def _show_files(self) -> None:
        self.progress.update(self.task, files=f"{self.files_read}/{self.files_found} files")

    def wait(self) -> None:
        try:
            while not self.finished.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stopping.set()
            self.pool.shutdown(wait=False, cancel_futures=True)
            raise
        self.pool.shutdown()


def run(args: argparse.Namespace) -> int:
    paths = paths_and_jobs(args)
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        _Speed(),
        TextColumn("{task.fields[files]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        run_ = Prefetch(args.jobs, progress, err)
        for path in paths:
            run_.start(path)
        run_.wait()
    elapsed = time.monotonic() - started
    rate = f", {human_size(run_.bytes_read / elapsed)}/s" if elapsed > 0 and run_.bytes_read else ""
    out.print(
        f"prefetched {run_.files_read:,} file{'s' if run_.files_read != 1 else ''}, "
        f"{human_size(run_.bytes_read)} ({run_.bytes_read:,} bytes) in {human_duration(elapsed)}{rate}",
        highlight=False,
    )
    if run_.errors:
        err.print(
            f"assetfs: {len(run_.errors)} path{'s' if len(run_.errors) != 1 else ''} could not be read (see above)",
            highlight=False,
        )
        return 1
    return 0
