"""`assetfs thumbnails PATH…`: fill the thumbnail cache of the user who runs it for the
pictures under PATHs, ahead of a file manager, from the providers' renditions.

It walks as prefetch does (N threads listing and working at once) and reads each picture's
`.assets/<file>/thumbnail.png` through the mount, so the requests go under the mount's own
policy and cache; no original is read. A picture whose provider makes no rendition is left
to the file manager.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..providers.base import is_picture
from ..thumbnails.standard import ThumbnailCache, default_dir, file_uri
from . import human_duration, paths_and_jobs
from .prefetch import Prefetch


class Thumbnailing(Prefetch):
    """Prefetch's walk; each picture found gets its thumbnails instead of being read."""

    def __init__(self, jobs: int, progress: Progress, console: Console, cache: ThumbnailCache):
        super().__init__(jobs, progress, console)
        self.cache = cache
        self.outcomes = {"made": 0, "current": 0, "none": 0}
        progress.update(self.task, description="thumbnails")

    def _found(self, path: str, size: int) -> None:
        if not is_picture(path):
            return
        with self.lock:
            if path in self.seen:
                return
            self.seen.add(path)
            self.files_found += 1
            found = self.files_found
        self.progress.update(self.task, total=found)
        self.submit(self._read, path)

    def _read(self, path: str) -> None:
        try:
            st = os.stat(path)
            uri, mtime = file_uri(path), int(st.st_mtime)
            if self.cache.current(uri, mtime):
                outcome = "current"
            else:
                directory, name = os.path.split(path)
                try:
                    picture = Path(directory, ".assets", name, "thumbnail.png").read_bytes()
                except FileNotFoundError:
                    outcome = "none"  # the provider makes no rendition of it
                else:
                    self.cache.store(uri, mtime, st.st_size, picture)
                    outcome = "made"
            with self.lock:
                self.outcomes[outcome] += 1
        finally:
            self.progress.advance(self.task, 1)


def run(args: argparse.Namespace) -> int:
    paths = paths_and_jobs(args)
    cache = ThumbnailCache(Path(os.path.expanduser(args.dir)) if args.dir else default_dir())
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        run_ = Thumbnailing(args.jobs, progress, err, cache)
        for path in paths:
            run_.start(path)
        run_.wait()
    made, current, none = (run_.outcomes[k] for k in ("made", "current", "none"))
    out.print(
        f"thumbnails in {cache.base}: {made:,} made, {current:,} already there, "
        f"{none:,} without a rendition from the provider, in {human_duration(time.monotonic() - started)}",
        highlight=False,
    )
    if run_.errors:
        err.print(f"assetfs: {len(run_.errors)} path(s) failed (see above)", highlight=False)
        return 1
    return 0
