"""Showing a change made on the provider, by someone else, now: the directory is listed
afresh and the kernel is told to forget what it kept of it (names, attributes, pages of the
files whose bytes changed). A file open for reading keeps the reader it opened, so it reads
the version it opened to its end; the next open gets the new bytes. The poller finds such
changes; so does an operation the provider refuses because its target no longer exists
(`heal`), which lists again what it touched."""

from __future__ import annotations

import errno
import logging
import math

import pyfuse3
import trio

from ..errors import AssetfsError
from .node import ASSETS, ASSETS_DIR, Node
from .view import View

log = logging.getLogger("assetfs.refresh")

HEAL_AGAIN_AFTER = 10.0  # seconds before a refusal lists the same directory again


class _Seen:
    """A child as it was before the new listing (its node, and the entry it showed then)."""

    __slots__ = ("node", "snapshot")

    def __init__(self, node: Node):
        self.node = node
        self.snapshot = node.entry


def _snapshot(directory: Node) -> tuple[Node, dict]:
    return directory, {name: _Seen(child) for name, child in (directory.children or {}).items()}


def _version(entry) -> str | None:
    return entry.content.version if entry.content else None


def _signature(child) -> tuple | None:
    """What a name stands for, as far as the kernel's caches are concerned."""
    if child is None:
        return None
    node, entry = (child.node, child.snapshot) if isinstance(child, _Seen) else (child, child.entry)
    return node.ino, entry.is_dir, _version(entry), entry.mtime, entry.size


class Refresher:
    def __init__(self, view: View):
        self.view = view
        self.nursery: trio.Nursery | None = None  # where healing lists again (set by the mount)
        self._healing: set[int] = set()  # directories being listed again after a refusal
        self._healed_at: dict[int, float] = {}  # …and when (trio.current_time()) they last were

    def node_of(self, account: str, key: str) -> Node | None:
        """The directory node of a provider key, if the view still holds it."""
        node = self.view.directory(f"{account}:{key}")
        if node is None and key == "":
            node = next(
                (
                    n
                    for n in (self.view.root.children or {}).values()
                    if n.provider is not None and n.provider.account == account
                ),
                None,
            )
        return node

    async def changed(self, account: str, key: str) -> None:
        """The poller saw this directory change on the provider."""
        node = self.node_of(account, key)
        if node is None:  # not in memory any more: the next listing must not come from the disk cache
            self.view.metacache.forget_listing(f"{account}:{key}")
            return
        await self.refresh(node)

    async def refresh(self, node: Node) -> None:
        """List the directory afresh and invalidate in the kernel what differs."""
        await self._relist(*self._forget(node))

    def heal(self, nodes: list[Node], why: object) -> None:
        """An operation on these nodes met the provider's "does not exist" (`why`): something
        they show was removed elsewhere. The listings that show them are dropped at once, so
        the next look asks the provider, and listed again in the background, where the kernel
        is told what went (it cannot be told while the operation is being answered: it waits
        for that answer). A directory being healed, or healed less than HEAL_AGAIN_AFTER
        ago, is left as it is: a provider that lists what it then refuses (a broken file) costs
        one listing per interval, not one per `stat`."""
        now, forgotten = trio.current_time(), []
        for directory in self._listings_showing(nodes):
            if directory.ino in self._healing or now - self._healed_at.get(directory.ino, -math.inf) < HEAL_AGAIN_AFTER:
                continue
            self._healing.add(directory.ino)
            self._healed_at[directory.ino] = now
            forgotten.append(self._forget(directory))
        for ino in [i for i, at in self._healed_at.items() if now - at >= HEAL_AGAIN_AFTER]:
            del self._healed_at[ino]
        if not forgotten:
            return
        log.info("%s: %s; listing it again", ", ".join(d.path or "/" for d, _ in forgotten), why)
        if self.nursery is None:
            self._healing.difference_update(d.ino for d, _ in forgotten)
        else:
            self.nursery.start_soon(self._heal, forgotten)

    def _listings_showing(self, nodes: list[Node]) -> list[Node]:
        """The directories whose listings show these nodes: the one that lists each node, then
        a directory's own listing (which the first may find gone)."""
        found: dict[int, Node] = {}
        for node in nodes:
            if node.provider is None:
                continue
            if node.parent is not None and (listed := self.view.listed_by(node)).provider is not None:
                found.setdefault(listed.ino, listed)
            if node.is_dir and node.entry.children is None and node.kind != ASSETS:
                found.setdefault(node.ino, node)
        return list(found.values())

    async def _heal(self, forgotten: list[tuple[Node, list]]) -> None:
        try:
            for directory, snapshots in forgotten:
                if _shown(directory):
                    await self._relist(directory, snapshots)
        except Exception:  # in the background: logged, never allowed to end the mount
            log.exception("listing %s again failed", ", ".join(d.path for d, _ in forgotten))
        finally:
            self._healing.difference_update(d.ino for d, _ in forgotten)

    def _forget(self, node: Node) -> tuple[Node, list[tuple[Node, dict]]]:
        """Drop the directory's listing (memory and disk); what it showed until now, to tell
        the kernel the difference once it is listed again."""
        if node.kind == ASSETS:
            node = node.above
        snapshots = [_snapshot(node)]
        hidden = (node.children or {}).get(ASSETS_DIR)
        if hidden is not None:
            snapshots.append(_snapshot(hidden))
        self.view.forget_listing(node)
        return node, snapshots

    async def _relist(self, node: Node, snapshots: list[tuple[Node, dict]]) -> None:
        try:
            await self.view.remote_children(node)
        except AssetfsError as e:
            log.warning("%s: changed on the provider, but listing it again failed: %s", node.path, e)
            return
        for directory, before in snapshots:
            await self._show(directory, before)

    async def _show(self, directory: Node, before: dict[str, _Seen]) -> None:
        """Tell the kernel which names of `directory` changed. A file whose bytes changed
        becomes a new inode: the old one keeps its old entry, so a reader that has it open
        goes on with the version (and size) it opened, and the next open finds the new one."""
        after = directory.children or {}
        changed = []
        for name in set(before) | set(after):
            seen, new = before.get(name), after.get(name)
            if _signature(seen) == _signature(new):
                continue
            changed.append(name)
            if seen is not None and new is seen.node:
                same = seen.node
                if same.local is None and not same.is_dir and _version(same.entry) != _version(seen.snapshot):
                    after[name] = self.view.new_node(name, directory, same.provider, same.entry, asset=same.asset)
                    same.entry, same.attr_cache = seen.snapshot, None
                else:
                    await _kernel(pyfuse3.invalidate_inode, same.ino, True)  # same bytes, new times or size
            await _kernel(pyfuse3.invalidate_entry, directory.ino, name.encode("utf-8", "surrogateescape"))
        await _kernel(pyfuse3.invalidate_inode, directory.ino, False)  # its listing as `ls` reads it
        if changed:
            log.info("%s: %d name(s) changed on the provider: shown now", directory.path, len(changed))


def _shown(directory: Node) -> bool:
    """Whether the directory is still in its parent's listing (not found gone meanwhile)."""
    parent = directory.parent
    return parent is None or parent.children is None or parent.children.get(directory.name) is directory


async def _kernel(call, *args) -> None:
    """A kernel cache invalidation, in a worker thread: it waits for FUSE requests on the
    same inode, which this event loop must stay free to answer. A name or inode the kernel
    does not know is nothing to forget."""
    try:
        await trio.to_thread.run_sync(call, *args, abandon_on_cancel=True)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            log.debug("kernel invalidation %s%r: %s", call.__name__, args, e)
