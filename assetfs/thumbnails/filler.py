"""The mount's side (`[thumbnails] enable`): when a directory is opened, the pictures in it
whose thumbnails are missing or out of date get them from the provider's renditions, in
the background, at the lowest priority of the account's requests. The opendir waits for
them while they come (a file manager looks for thumbnails right after it lists a folder,
and reads the originals of those it does not find), but not for a provider that stalls."""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path

import trio

from ..errors import AssetfsError, NotFound
from ..providers.base import is_picture
from ..providers.http import background
from ..stats import Stats
from ..view.node import Node
from ..view.view import View
from .standard import LARGEST, NotAPicture, ThumbnailCache, file_uri

log = logging.getLogger("assetfs.thumbnails")

AT_ONCE = 16  # renditions fetched at the same time, over the whole mount
PATIENCE = 3.0  # seconds an opendir waits for the next thumbnail it started…
AT_MOST = 10.0  # …and in all


class Filler:
    def __init__(self, cache: ThumbnailCache, mountpoint: Path, view: View, shown_mtime: Callable[[Node], float]):
        self.cache = cache
        self.mountpoint = mountpoint
        self.view = view
        self.shown_mtime = shown_mtime  # the mtime `stat` shows for a node
        self.stats: Stats = view.stats
        self.nursery: trio.Nursery | None = None  # set once the mount runs
        self._made: set[tuple[str, int]] = set()  # (URI, mtime) known to be in the cache
        self._making: dict[tuple[str, int], trio.Event] = {}
        # To make, in the order a file manager shows them, the folder opened last first.
        self._queue: deque[tuple[tuple[str, int], Node]] = deque()
        self._workers = 0
        self._progress = trio.Event()  # set (and renewed) as each thumbnail is done

    async def listed(self, directory: Node, children: dict[str, Node]) -> None:
        """Start the thumbnails a directory's pictures lack, and wait for them while they come."""
        if self.nursery is None:
            return
        wanted = []
        for name in sorted(children, key=_natural):
            node = children[name]
            if node.is_dir or node.asset is None or node.local is not None or not is_picture(name):
                continue
            if node.provider is None or node.provider.rendition(node.entry, LARGEST) is None:
                continue
            key = (file_uri(f"{self.mountpoint}{node.path}"), int(self.shown_mtime(node)))
            if key not in self._made:
                wanted.append((key, node))
        if not wanted:
            return
        current = await trio.to_thread.run_sync(lambda: [self.cache.current(*key) for key, _ in wanted])
        events, batch = [], []
        for (key, node), there in zip(wanted, current):
            if there:
                self._made.add(key)
            elif key in self._making:
                events.append(self._making[key])
            else:
                events.append(self._making.setdefault(key, trio.Event()))
                batch.append((key, node))
        self._queue.extendleft(reversed(batch))
        while self._workers < min(AT_ONCE, len(self._queue)):
            self._workers += 1
            self.nursery.start_soon(self._work)
        # (and well before the opendir's own deadline: a short -o timeout must not make it EIO)
        with trio.move_on_at(min(trio.current_time() + AT_MOST, trio.current_effective_deadline() - 1.0)):
            while not all(event.is_set() for event in events):
                with trio.move_on_after(PATIENCE) as waiting:
                    await self._progress.wait()
                if waiting.cancelled_caught:
                    return  # the provider stalls: the file manager makes the rest itself

    async def _work(self) -> None:
        try:
            while self._queue:
                key, node = self._queue.popleft()
                try:
                    await self._make(key, node)
                finally:
                    self._making.pop(key).set()
                    self._progress.set()
                    self._progress = trio.Event()
        finally:
            self._workers -= 1

    async def _make(self, key: tuple[str, int], node: Node) -> None:
        uri, mtime = key
        try:
            with background():
                picture = await self._rendition(node)
                size = self.view.known_size(node)
                if size is None:
                    size = (await self.view.content(node)).size
            await trio.to_thread.run_sync(self.cache.store, uri, mtime, size, picture)
            self._made.add(key)
            self.stats.add("thumbnails_made")
        except (AssetfsError, NotAPicture, OSError) as e:
            # No thumbnail: the file manager makes its own, as without this option.
            self.stats.add("thumbnails_failed")
            log.info("%s: no thumbnail from the provider: %s", node.path, e)

    async def _rendition(self, node: Node) -> bytes:
        provider = node.owner
        rendition = provider.rendition(node.entry, LARGEST)
        if rendition is None:
            raise NotFound(f"{node.path}: the provider has no rendition of it")
        response = await provider.http.request("GET", await provider.locate(rendition))
        self.stats.add("thumbnail_bytes", len(response.content))
        return response.content


def _natural(name: str) -> list:
    """photo-2 before photo-10, as file managers sort."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.casefold())]
