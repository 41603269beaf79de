"""The mount's side (`[thumbnails] enable`): when a directory is opened, the pictures in it
whose thumbnails are missing or out of date get them from the provider's renditions, in
the background, at the lowest priority of the account's requests. The opendir waits for
them while they come (a file manager looks for thumbnails right after it lists a folder,
and reads the originals of those it does not find), but not for a provider that stalls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import trio

from ..errors import AssetfsError
from ..providers.base import is_picture
from ..providers.http import background
from ..stats import Stats
from ..view.node import Node
from ..view.view import View
from .standard import LARGEST, NotAPicture, ThumbnailCache, file_uri

log = logging.getLogger("assetfs.thumbnails")

AT_ONCE = 8  # renditions fetched at the same time, over the whole mount
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
        self._limiter = trio.CapacityLimiter(AT_ONCE)
        self._made: set[tuple[str, int]] = set()  # (URI, mtime) known to be in the cache
        self._making: dict[tuple[str, int], trio.Event] = {}

    async def listed(self, directory: Node, children: dict[str, Node]) -> None:
        """Start the thumbnails a directory's pictures lack, and wait for them a while."""
        if self.nursery is None:
            return
        wanted = []
        for name in sorted(children):
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
        events = []
        for (key, node), there in zip(wanted, current):
            if there:
                self._made.add(key)
                continue
            event = self._making.get(key)
            if event is None:
                event = self._making[key] = trio.Event()
                self.nursery.start_soon(self._make, key, node, event, name=f"thumbnail {node.path}")
            events.append(event)
        with trio.move_on_after(AT_MOST):
            for event in events:  # while they come, at most PATIENCE apart
                with trio.move_on_after(PATIENCE) as waiting:
                    await event.wait()
                if waiting.cancelled_caught:
                    return

    async def _make(self, key: tuple[str, int], node: Node, done: trio.Event) -> None:
        uri, mtime = key
        try:
            async with self._limiter:
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
        finally:
            self._making.pop(key, None)
            done.set()

    async def _rendition(self, node: Node) -> bytes:
        provider = node.provider
        rendition = provider.rendition(node.entry, LARGEST)
        response = await provider.http.request("GET", await provider.locate(rendition))
        self.stats.add("thumbnail_bytes", len(response.content))
        return response.content
