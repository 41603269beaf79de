"""Sizes asked ahead for a directory that is being stat'ed file by file.

`ls -l`, a file manager or `find -size` read a directory and then stat every file in it.
Where the provider publishes no sizes (Spectrum), each stat would wait for its own HEAD,
one after another. So once a second file of a directory read moments ago needs its size,
the sizes still unknown in that directory are asked for, HEADS_AT_ONCE at a time, in the
directory's order, with http.client in worker threads (a tenth of the CPU of a request
through httpx); each stat waits only for its own answer. A HEAD that fails here is simply
asked again by the file's own stat, under the full request policy (retries, errors). A
directory merely walked through (a path lookup, `cat` of one file) asks for nothing ahead.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

import trio

from ..errors import AssetfsError
from ..metacache import MetaCache
from ..providers.base import Content, Provider
from ..providers.http import Unreachable
from ..read.transfer import ConnectionPool, head_size
from ..stats import Stats
from .node import Node

log = logging.getLogger("assetfs.view")

HEADS_AT_ONCE = 8        # worker threads, each on a keep-alive connection of its own
READ_RECENTLY = 30.0     # seconds after a directory was read that its stats count as "ls -l"
PERSIST_AT_ONCE = 1000   # sizes learnt written to the metadata cache per transaction


class SizesAhead:
    def __init__(self, metacache: MetaCache, stats: Stats, connections: ConnectionPool):
        self.metacache = metacache
        self.stats = stats
        self.connections = connections  # the data plane's keep-alive connections, shared with reads
        self.nursery: trio.Nursery | None = None   # set once the mount runs
        self._read: dict[int, list] = {}            # directory inode -> [when it was read, files sized since]
        self._queued: set[str] = set()              # content versions whose HEAD is asked ahead
        self._waiters: dict[str, trio.Event] = {}   # …and the stats waiting for one of them

    def directory_read(self, directory: Node) -> None:
        now = time.monotonic()
        if len(self._read) > 1000:
            self._read = {ino: seen for ino, seen in self._read.items() if now - seen[0] < READ_RECENTLY}
        self._read[directory.ino] = [now, 0]

    async def wait(self, node: Node, unknown: Callable[[Node], bool]) -> Content | None:
        """The size of `node`'s content from a batch asked ahead (starting one if this is the
        second file of a directory just read to need it), or None: ask for it yourself."""
        version = node.entry.content.version
        if version not in self._queued:
            seen = self._read.get(node.parent.ino) if node.parent is not None else None
            if seen is None or time.monotonic() - seen[0] > READ_RECENTLY or self.nursery is None:
                return None
            seen[1] += 1
            if seen[1] < 2:
                return None
            self._start(node.parent, node, unknown)
            if version not in self._queued:
                return None
        await self._waiters.setdefault(version, trio.Event()).wait()
        return self.metacache.fact(version)

    def _start(self, directory: Node, node: Node, unknown: Callable[[Node], bool]) -> None:
        """Ask for the unknown sizes of the directory's files, from `node` on and then
        the ones before it (the order `ls` stats them in)."""
        del self._read[directory.ino]  # one batch per reading of the directory
        provider = directory.provider
        files = list((directory.children or {}).values())
        at = next((i for i, f in enumerate(files) if f is node), 0)
        batch: dict[str, Content] = {}
        for f in files[at:] + files[:at]:
            content = f.entry.content
            if (f.is_dir or content is None or content.version in self._queued or content.version in batch
                    or f.provider is not provider or not unknown(f)):
                continue
            if provider.head_url(content) is not None:
                batch[content.version] = content
        if provider is None or len(batch) < 2:
            return
        self._queued.update(batch)
        log.debug("%s: asking the sizes of %d files ahead", directory.path, len(batch))
        self.nursery.start_soon(self._ask, provider, list(batch.values()))

    async def _ask(self, provider: Provider, batch: list[Content]) -> None:
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for content in batch:
            todo.put(content)
        learnt: dict[str, Content] = {}
        token = trio.lowlevel.current_trio_token()

        def answer(content: Content, size: int | None) -> None:  # on the event loop
            if size is not None:
                fact = Content(content.version, content.url, size, content.md5, content.mime)
                learnt[content.version] = fact
                self.metacache.remember_facts({content.version: fact})
                self.stats.add("sizes_ahead")
            self._answer(content.version)

        async def worker() -> None:
            try:
                async with provider.http.outside(provider.head_url(batch[0])) as grant:
                    await trio.to_thread.run_sync(self._head_all, todo, provider, grant,
                                                  lambda c, size: token.run_sync_soon(answer, c, size),
                                                  abandon_on_cancel=True)
            except AssetfsError as e:  # the files left are asked again by their own stats
                log.debug("sizes ahead stopped: %s", e)

        started = time.monotonic()
        try:
            async with trio.open_nursery() as workers:
                for _ in range(HEADS_AT_ONCE):
                    workers.start_soon(worker)
            log.debug("%d of %d sizes asked ahead came in %.1fs", len(learnt), len(batch), time.monotonic() - started)
        finally:
            for content in batch:  # what was not answered is asked by the file's own stat
                self._answer(content.version)
            facts = list(learnt.items())
            with trio.CancelScope(shield=True):  # in short transactions: SQLite holds each one's pages in memory
                for at in range(0, len(facts), PERSIST_AT_ONCE):
                    await trio.to_thread.run_sync(self.metacache.persist_facts, dict(facts[at:at + PERSIST_AT_ONCE]))

    def _head_all(self, todo: queue.SimpleQueue, provider: Provider, grant, answer) -> None:
        """In a worker thread: HEAD one URL after another over one connection until none is
        left, or the host stops answering (`outside` notes the outage)."""
        http = provider.http
        first = True
        while True:
            try:
                content = todo.get_nowait()
            except queue.Empty:
                return
            url = provider.head_url(content)
            if not first and http.is_api(url):
                grant.pace(url)
            first = False
            try:
                size = head_size(self.connections, url, http.is_trusted, grant.credentials, grant.user_agent,
                                 grant.pace)
            except Unreachable:
                answer(content, None)
                raise
            except AssetfsError as e:
                log.debug("%s: no size ahead: %s", content.version, e)
                size = None
            answer(content, size)

    def _answer(self, version: str) -> None:
        """The HEAD for `version` is over (its size, if it came, is a fact by now)."""
        self._queued.discard(version)
        waiter = self._waiters.pop(version, None)
        if waiter is not None:
            waiter.set()
