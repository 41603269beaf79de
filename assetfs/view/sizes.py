"""Sizes asked ahead for a directory that is being stat'ed file by file.

`ls -l`, a file manager or `find -size` read a directory and then stat every file in it.
Where the provider publishes no sizes (Spectrum), each stat would wait for its own HEAD,
one after another. So once a second file of a directory read moments ago needs its size,
the sizes still unknown in that directory are asked for, many at a time, in the
directory's order, by libcurl in one worker thread (read/heads.py); each stat, and each
readdir that lists the file, waits only for its own answer. A HEAD that fails here is simply
asked again by the file's own stat, under the full request policy (retries, errors). A
directory merely walked through (a path lookup, `cat` of one file) asks for nothing ahead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import trio

from ..errors import AssetfsError
from ..metacache import MetaCache
from ..options import MountOptions
from ..providers.base import Content, Provider, SharedSizeBook
from ..read.heads import head_sizes
from ..stats import Stats
from .node import Node

log = logging.getLogger("assetfs.view")

HEADS_AT_ONCE = MountOptions.heads_at_once  # HEADs in flight (`-o heads_at_once`; why so many: there)
READ_RECENTLY = 30.0  # seconds after a directory was read that its stats count as "ls -l"
LISTED_PATIENCE = 5.0  # seconds a readdir waits, in all, for sizes asked ahead
PERSIST_AT_ONCE = 1000  # sizes learnt written to the metadata cache per transaction


class SizesAhead:
    def __init__(self, metacache: MetaCache, stats: Stats):
        self.metacache = metacache
        self.stats = stats
        self.at_once = HEADS_AT_ONCE
        self.nursery: trio.Nursery | None = None  # set once the mount runs
        self._read: dict[int, list] = {}  # directory inode -> [when it was read, files sized since]
        self._queued: set[str] = set()  # content versions whose HEAD is asked ahead
        self._progress = trio.Event()  # set (and renewed) as each round of answers comes in

    def directory_read(self, directory: Node) -> None:
        now = time.monotonic()
        if len(self._read) > 1000:
            self._read = {ino: seen for ino, seen in self._read.items() if now - seen[0] < READ_RECENTLY}
        self._read[directory.ino] = [now, 0]

    async def wait(self, node: Node, unknown: Callable[[Node], bool]) -> Content | None:
        """The size of `node`'s content from a batch asked ahead (starting one if this is the
        second file of a directory just read to need it), or None: ask for it yourself."""
        if node.entry.content is None:
            return None
        version = node.entry.content.version
        if version not in self._queued:
            seen = self._read.get(node.parent.ino) if node.parent is not None else None
            if seen is None or time.monotonic() - seen[0] > READ_RECENTLY or self.nursery is None:
                return None
            seen[1] += 1
            if seen[1] < 2:
                return None
            self._start(node.above, node, unknown)
            if version not in self._queued:
                return None
        await self._answered(version)
        return self._learnt(node)

    async def listed(self, node: Node, until: float) -> Content | None:
        """For a readdir: the size of `node`'s content if it is being asked ahead (waited
        for until `until`, trio's clock, so that the listing carries it and `ls -l` needs no
        getattr per file), else None at once: a plain listing never waits for a HEAD."""
        content = node.entry.content
        if content is None or content.version not in self._queued:
            return None
        with trio.move_on_at(until):  # past it the kernel asks (getattr) when it wants the size
            await self._answered(content.version)
        return self._learnt(node)

    async def _answered(self, version: str) -> None:
        while version in self._queued:
            await self._progress.wait()

    def _learnt(self, node: Node) -> Content | None:
        """The content with its size, once asked ahead (None if the HEAD failed)."""
        content = node.entry.content
        if content is None:
            return None
        return content if content.size is not None else self.metacache.fact(content.version)

    def _start(self, directory: Node, node: Node, unknown: Callable[[Node], bool]) -> None:
        """Ask for the unknown sizes of the directory's files, from `node` on and then
        the ones before it (the order `ls` stats them in)."""
        del self._read[directory.ino]  # one batch per reading of the directory
        provider = directory.owner
        files = list((directory.children or {}).values())
        at = next((i for i, f in enumerate(files) if f is node), 0)
        batch: list[Content] = []  # no other copy: 100,000 files ask for their sizes at the listing's peak
        for i in range(len(files)):
            f = files[(at + i) % len(files)]
            content = f.entry.content
            if (
                f.is_dir
                or content is None
                or content.version in self._queued
                or f.provider is not provider
                or not unknown(f)
                or provider.head_url(content) is None
            ):
                continue
            self._queued.add(content.version)
            batch.append(content)
        del files
        if len(batch) < 2 or self.nursery is None:
            self._queued.difference_update(c.version for c in batch)
            return
        log.debug("%s: asking the sizes of %d files ahead", directory.path, len(batch))
        self.nursery.start_soon(self._ask, provider, batch)

    async def _ask(self, provider: Provider, batch: list[Content]) -> None:
        learnt: list[Content] = []
        token = trio.lowlevel.current_trio_token()
        http = provider.http
        cancelled = False

        def answer(sizes: list[tuple[Content, int | None]]) -> None:  # on the event loop
            before = len(learnt)
            for content, size in sizes:
                if size is not None:
                    # Into the listing's own Content: a version's size holds for good, and a
                    # separate fact per file would cost 100,000 files another 15 MB.
                    content.size = size
                    learnt.append(content)
            self.stats.add("sizes_ahead", len(learnt) - before)
            self._answer(c.version for c, _ in sizes)

        started = time.monotonic()
        try:
            if provider.shared_sizes is not None:  # a fleet: what another mount learnt is not asked again
                batch = await self._from_fleet(provider.shared_sizes, batch)
                if not batch:
                    return
            first = provider.head_url(batch[0])
            if first is None:  # a batch holds only files whose HEAD tells their size
                return
            async with http.outside(first, "HEAD") as grant:
                policy = _PerOrigin(http, grant)
                await trio.to_thread.run_sync(
                    lambda: head_sizes(
                        ((c, url) for c in batch if (url := provider.head_url(c)) is not None),
                        headers=policy.headers,
                        at_once=self.at_once,
                        timeout=http.timeout,
                        before=policy.before,
                        answer=lambda sizes: token.run_sync_soon(answer, sizes),
                        stopped=lambda: cancelled,
                    ),
                    abandon_on_cancel=True,
                )
            log.debug("%d of %d sizes asked ahead came in %.1fs", len(learnt), len(batch), time.monotonic() - started)
        except AssetfsError as e:  # the files left are asked again by their own stats
            log.debug("sizes ahead stopped: %s", e)
        finally:
            cancelled = True
            self._answer(c.version for c in batch)  # what was not answered is asked by the file's own stat
            for at in range(0, len(learnt), PERSIST_AT_ONCE):  # short transactions: SQLite holds each one's pages
                self.metacache.persist_facts({c.version: c for c in learnt[at : at + PERSIST_AT_ONCE]})
            if provider.shared_sizes is not None and learnt:
                with trio.CancelScope(shield=True), trio.move_on_after(2):  # told even as the mount stops
                    await provider.shared_sizes.learnt({c.version: c.size for c in learnt if c.size is not None})

    async def _from_fleet(self, shared: SharedSizeBook, batch: list[Content]) -> list[Content]:
        """The sizes of the batch that the fleet knows, answered at once: the rest of it."""
        known = await shared.known([c.version for c in batch])
        if not known:
            return batch
        found = {}
        for content in batch:
            if (size := known.get(content.version)) is not None:
                content.size = size
                found[content.version] = content
        self.metacache.persist_facts(found)  # and for this machine's next mount
        self.stats.add("sizes_ahead", len(found))
        self._answer(known)
        return [c for c in batch if c.version not in known]

    def _answer(self, versions: Iterable[str]) -> None:
        """The HEADs for these versions are over (their sizes, where they came, are known by now)."""
        self._queued.difference_update(versions)
        self._progress.set()
        self._progress = trio.Event()


class _PerOrigin:
    """The request policy's answers for the URLs of a batch (credentials for the provider's
    own hosts only, pacing for its API), worked out once per origin, not once per file."""

    def __init__(self, http, grant):
        self.http = http
        self.grant = grant
        self._headers: dict[str, list[str]] = {}
        self._api: dict[str, bool] = {}
        self._sent = 0

    def headers(self, url: str) -> list[str]:
        at = _origin(url)
        lines = self._headers.get(at)
        if lines is None:
            lines = self._headers[at] = self.grant.header_lines(self.http.is_trusted(url))
        return lines

    def before(self, url: str) -> None:  # in the worker thread, before each HEAD
        at = _origin(url)
        api = self._api.get(at)
        if api is None:
            api = self._api[at] = self.http.is_api(url)
        if self._sent and api:  # the first was paced by `outside`
            self.grant.pace(url)
        self._sent += 1


def _origin(url: str) -> str:
    """scheme://host[:port] of an absolute URL: a cheap key, not a parse."""
    at = url.find("/", url.find("//") + 2)
    return url if at < 0 else url[:at]
