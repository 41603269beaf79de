"""First blocks fetched ahead for a directory whose files are being opened one after another.

A file manager drawing thumbnails, or `head`/`file` over a folder, opens a directory's files
a few at a time and reads the start of each: over a long path every round of opens waits a
round trip for its first bytes. So once a second file of one directory is opened for reading
within OPENED_TOGETHER seconds of the first, the first block of the directory's other files,
in listing order from after the later of the two, is fetched into the block cache, AT_ONCE
at a time (`-o first_blocks_ahead`, 0: off), once per listing of the directory, among its
first FILES_CAP files only, and never more than a window of files past the furthest one
opened (each further open moves it on), so that blocks fetched ahead are not pushed out of
the memory tier before they are read. Each goes through the reader a user's open would share
(read/pool.py), so an open of a file whose first block is coming waits for that fetch, not
a second one. Only files whose URL and size are known without a request, on a host the
request policy neither holds down nor paces (a rate-limited API host is left to the
user's own reads). A fetch that fails here is simply asked again by the file's own read.
"""

from __future__ import annotations

import functools
import logging
import time

import trio

from ..providers.base import Content
from ..view.node import Node
from ..view.view import View
from .pool import ReaderPool

log = logging.getLogger("assetfs.read")

AT_ONCE = 32  # first blocks in flight (`-o first_blocks_ahead`): 40 photos 8 at a time are 5 rounds, these 1-2
OPENED_TOGETHER = 2.0  # seconds between two opens of a directory's files that start it
FILES_CAP = 256  # only among a directory's first files in listing order (a folder of thousands: its first screens)


class _Run:
    """A directory's first blocks being asked ahead, for one listing of it."""

    def __init__(self, listed_at: float, files: list[Node], at_once: int):
        self.listed_at = listed_at
        self.files = files  # its first FILES_CAP files, in listing order
        self.where = {id(f): i for i, f in enumerate(files)}
        self.frontier = 0  # files before this one were asked (or passed over)
        self.limiter = trio.CapacityLimiter(at_once)


class FirstBlocksAhead:
    def __init__(self, readers: ReaderPool, view: View, at_once: int = AT_ONCE):
        self.readers = readers
        self.view = view
        self.stats = readers.stats
        self.at_once = at_once
        self._opened: dict[int, tuple[float, Node]] = {}  # directory inode -> (when, the file) of a first open
        self._runs: dict[int, _Run] = {}  # directory inode -> its first blocks asked ahead

    @property
    def window(self) -> int:
        """Files asked past the furthest one opened: what is fetched ahead and not read yet
        stays within the block cache's memory tier (a block pushed out of it before its turn
        on the disk came would be fetched again)."""
        return max(1, min(self.at_once, self.readers.cache.memory_blocks * 2 // 3))

    def opened(self, node: Node) -> None:
        """A file was opened for reading: the second of its directory within OPENED_TOGETHER
        seconds starts the directory's first blocks ahead (in the background); each open
        after that moves the files asked ahead on."""
        directory = node.parent
        if self.at_once <= 0 or directory is None or self.readers.nursery is None or directory.children is None:
            return
        run = self._runs.get(directory.ino)
        if run is not None and run.listed_at == directory.listed_at:
            if (at := run.where.get(id(node))) is not None and run.files[at] is node:
                self._ask(run, node, at)
            return  # once per listing
        now = time.monotonic()
        seen = self._opened.get(directory.ino)
        if seen is None or now - seen[0] > OPENED_TOGETHER or seen[1] is node:
            if len(self._opened) > 1000:
                self._opened = {ino: s for ino, s in self._opened.items() if now - s[0] <= OPENED_TOGETHER}
            self._opened[directory.ino] = (now, node)
            return
        del self._opened[directory.ino]
        files = []
        for i, f in enumerate(directory.children.values()):
            if i >= FILES_CAP:
                break
            files.append(f)
        if len(self._runs) > 1000:
            self._runs.clear()
        run = self._runs[directory.ino] = _Run(directory.listed_at, files, self.at_once)
        both = [run.where[id(f)] for f in (node, seen[1]) if id(f) in run.where and files[run.where[id(f)]] is f]
        if both:  # else both opened beyond the cap: nothing asked
            run.frontier = max(both) + 1  # after the files being opened
            self._ask(run, node, max(both))

    def _ask(self, run: _Run, node: Node, at: int) -> None:
        """Ask the first blocks of the run's files up to `window` past the `at`th."""
        stop = min(len(run.files), at + 1 + self.window)
        if stop <= run.frontier:
            return
        batch = []
        for f in run.files[run.frontier : stop]:
            content = self.view.content_at_hand(f) if f.provider is node.provider else None
            if content is None or not content.size or content.url is None:
                continue
            http = f.owner.http
            if http.held_down(content.url) or (http.budget is not None and http.is_api(content.url)):
                continue
            batch.append((f, content))
        run.frontier = stop
        if batch and self.readers.nursery is not None:
            log.debug("%s: fetching the first block of %d files ahead", node.above.path, len(batch))
            for f, content in batch:
                self.readers.nursery.start_soon(self._fetch, f, content, run.limiter)

    async def _fetch(self, node: Node, content: Content, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            reader = self.readers.open(content, node.owner.http, functools.partial(self.view.renew_url, node))
            try:
                if await reader.first_block():
                    self.stats.add("first_blocks_ahead")
            except Exception as e:  # the file's own read asks again, under the full policy
                log.debug("%s: first block ahead: %s: %s", node.path, type(e).__name__, e)
            finally:
                self.readers.close(reader)
