"""Saves that rename the previous file away: emacs (`x` → `x~`), Blender (`x.blend` →
`x.blend1`), LibreOffice (`x` → `x.osl-tmp`), Word (`x` → `~WRL….tmp`) first rename the file
they are saving away, then put the new bytes under its name. An asset's file renamed within
its folder is therefore held here for the write-back window: the old name is free, the new
name is a backup showing the previous bytes (read-only, on this machine). A new file that
takes the old name within the window is the asset's new content: one new version of the same
asset. Otherwise, at the window's end, the rename reaches the provider — unless the new name
is a backup name, which never does: the asset then shows under its own name again."""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from ..providers.base import Entry
from ..view.node import Node

# A save's new file follows its rename within milliseconds; without a write-back delay a
# rename to a backup name still waits this long for it (a rename to any other name does not wait).
BACKUP_WINDOW = 2.0


@dataclass(eq=False)
class RenamedAway:
    container: Node  # the folder it happened in
    old_name: str  # the name left free
    asset: Entry  # the asset whose file was renamed away
    file: Entry | None  # the asset's file as it was listed (None: new content not uploaded yet)
    backup: Node  # the renamed node: the previous bytes under the new name
    due: float = field(default=0.0)  # when the window ends (time.time())

    @property
    def key(self) -> tuple[int, str]:
        return self.container.ino, self.old_name


class RenamedAways:
    """The renames held now, by folder and old name, and the task that ends each window."""

    def __init__(self, end: Callable[[RenamedAway], Awaitable[None]]):
        self._end = end
        self._held: dict[tuple[int, str], RenamedAway] = {}
        self._ending: list[RenamedAway] = []  # windows over, their rename on its way to the provider
        self.backups: weakref.WeakSet[Node] = weakref.WeakSet()  # nodes showing previous bytes
        self.nursery: trio.Nursery | None = None  # where windows are waited out (the mount's)

    def hold(self, away: RenamedAway, window: float) -> None:
        away.due = time.time() + max(window, 0.0)
        self._held[away.key] = away
        if self.nursery is not None:
            self.nursery.start_soon(self._wait, away)

    async def _wait(self, away: RenamedAway) -> None:
        await trio.sleep(max(0.0, away.due - time.time()))
        await self.end(away)

    def held(self, container: Node, name: str) -> RenamedAway | None:
        """The asset renamed away from this name, its window still open."""
        return self._held.get((container.ino, name))

    def of_backup(self, node: Node) -> RenamedAway | None:
        return next((away for away in self._held.values() if away.backup is node), None)

    def cancel(self, away: RenamedAway) -> None:
        if self._held.get(away.key) is away:
            del self._held[away.key]

    async def end(self, away: RenamedAway) -> None:
        if self._held.get(away.key) is away:
            del self._held[away.key]
            self._ending.append(away)
            try:
                await self._end(away)
            finally:
                self._ending.remove(away)

    async def end_all(self) -> None:
        """The mount is stopping: no window is waited out."""
        for away in list(self._held.values()):
            await self.end(away)

    def pending(self) -> list[RenamedAway]:
        """The renames held, and those on their way to the provider (still pending for
        `assetfs status` and `umount`)."""
        return list(self._held.values()) + self._ending
