"""First blocks fetched ahead for a directory whose files are being opened one after another.

A file manager drawing thumbnails, or `head`/`file` over a folder, opens a directory's files
a few at a time and reads the start of each: over a long path every round of opens waits a
round trip for its first bytes. So once a second file of one directory is opened for reading
within OPENED_TOGETHER seconds of the first, the first block of the directory's other files,
in listing order from after the later of the two, is fetched into the block cache
(`-o first_blocks_ahead`: how many files ahead, 0: off), once per listing of the directory,
among its first FILES_CAP files only, and never more than a window of files past the
furthest one opened (each further open moves it on), so that blocks fetched ahead are not
pushed out of the memory tier before they are read. They are fetched as one batch by
libcurl (read/multi.py), over the connection opened when the directory was listed, under
one grant of the request policy. Each is claimed in the reader a user's open would share
(read/pool.py), so an open of a file whose first block is coming waits for that fetch, not
a second one. Only files whose URL and size are known without a request, on a host the
request policy neither holds down nor paces (a rate-limited API host is left to the
user's own reads). A fetch that fails here is simply asked again by the file's own read.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time

import trio

from ..options import MountOptions
from ..providers.http import ProviderHTTP, Unreachable
from ..view.node import Node
from ..view.view import View
from .multi import Fetch
from .pool import ReaderPool
from .reader import Pending, Reader

log = logging.getLogger("assetfs.read")

AT_ONCE = MountOptions.first_blocks_ahead  # files ahead (`-o first_blocks_ahead`)
OPENED_TOGETHER = 2.0  # seconds between two opens of a directory's files that start it
FILES_CAP = 256  # only among a directory's first files in listing order (a folder of thousands: its first screens)


class _Run:
    """A directory's first blocks being asked ahead, for one listing of it."""

    def __init__(self, listed_at: float, files: list[Node]):
        self.listed_at = listed_at
        self.files = files  # its first FILES_CAP files, in listing order
        self.where = {id(f): i for i, f in enumerate(files)}
        self.frontier = 0  # files before this one were asked (or passed over)


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
        run = self._runs[directory.ino] = _Run(directory.listed_at, files)
        both = [run.where[id(f)] for f in (node, seen[1]) if id(f) in run.where and files[run.where[id(f)]] is f]
        if both:  # else both opened beyond the cap: nothing asked
            run.frontier = max(both) + 1  # after the files being opened
            self._ask(run, node, max(both))

    def _ask(self, run: _Run, node: Node, at: int) -> None:
        """Ask the first blocks of the run's files up to `window` past the `at`th."""
        stop = min(len(run.files), at + 1 + self.window)
        if stop <= run.frontier:
            return
        batch: list[tuple[Reader, Pending, Fetch]] = []
        http = node.owner.http
        for f in run.files[run.frontier : stop]:
            content = self.view.content_at_hand(f) if f.provider is node.provider else None
            if content is None or not content.size or content.url is None:
                continue
            if http.held_down(content.url) or (http.budget is not None and http.is_api(content.url)):
                continue
            reader = self.readers.open(content, http, functools.partial(self.view.renew_url, f))
            pending = reader.claim_first_block()
            if pending is None:  # cached, or coming already
                self.readers.close(reader)
                continue
            end = min(content.size, self.readers.cache.block_size)
            batch.append((reader, pending, Fetch(content.url, [], end, whole=end == content.size)))
        run.frontier = stop
        if batch and self.readers.nursery is not None:
            log.debug("%s: fetching the first block of %d files ahead", node.above.path, len(batch))
            self.readers.nursery.start_soon(self._fetch, http, batch)
        else:
            self._drop(batch)

    async def _fetch(self, http: ProviderHTTP, batch: list[tuple[Reader, Pending, Fetch]]) -> None:
        """One grant of the request policy for the batch; each block is delivered as it comes."""
        token = trio.lowlevel.current_trio_token()
        ended: list[Fetch] = []
        arrived = trio.Event()
        left = {id(fetch): (reader, pending) for reader, pending, fetch in batch}

        def came(fetches: list[Fetch]) -> None:  # in the worker thread
            with contextlib.suppress(trio.RunFinishedError):  # the mount ended meanwhile
                token.run_sync_soon(deliver, fetches)

        def deliver(fetches: list[Fetch]) -> None:  # on the event loop
            nonlocal arrived
            for fetch in fetches:
                if (claimed := left.pop(id(fetch), None)) is None:  # came after the batch gave up
                    continue
                reader, pending = claimed
                if fetch.error is None and reader.first_block_came(pending, fetch.body):
                    self.stats.add("first_blocks_ahead")
                else:
                    log.debug("%s: first block ahead: %s", reader.content.version, fetch.error)
                    reader.first_block_dropped(pending)
                self.readers.close(reader)
            ended.extend(fetches)
            woken, arrived = arrived, trio.Event()
            woken.set()

        try:
            async with http.outside(batch[0][2].url, "GET") as grant:
                headers = {True: grant.header_lines(True), False: grant.header_lines(False)}
                for _, _, fetch in batch:
                    fetch.headers = headers[http.is_trusted(fetch.url)]
                self.readers.multi.submit([fetch for _, _, fetch in batch], came)
                with trio.move_on_after(http.timeout + 5):  # libcurl ends each by then
                    while left:
                        await arrived.wait()
                if (lost := next((f for f in ended if f.unreachable), None)) is not None:
                    raise Unreachable(f"GET ahead: {lost.error}", lost.url, lost.error or "")
        except Exception as e:  # each file's own read asks again, under the full policy
            log.debug("first blocks ahead: %s: %s", type(e).__name__, e)
        finally:
            self._drop(list(left.values()))

    def _drop(self, claimed) -> None:
        for reader, pending, *_ in claimed:
            reader.first_block_dropped(pending)
            self.readers.close(reader)
