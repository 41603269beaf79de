"""Names held on this machine over the provider's listing. Per directory, a name holds a
node (a file being written or waiting for its upload, or the previous bytes of a save) or
None (removed here before the provider's listing says so). The view asks what is held and
shows it over the listing; write/ tells what is held now. Nothing else changes these names,
nor the name, place or local file of a node they hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..providers.base import Entry
from .node import Node

if TYPE_CHECKING:
    from ..write.overlay import LocalFile

_NOTHING: Mapping[str, Node | None] = {}


class Held:
    def __init__(self) -> None:
        self._names: dict[int, dict[str, Node | None]] = {}

    def held_in(self, directory: Node) -> Mapping[str, Node | None]:
        """What this directory holds here, by name: a node shown over the listing, or None
        for a name that shows nothing."""
        return self._names.get(directory.ino) or _NOTHING

    def hold(self, node: Node, local: LocalFile | None = None) -> None:
        """The node shows under its name in its directory, whatever the listing says; with
        `local`, its bytes are that local file."""
        if local is not None:
            node.local = local
        self._of(node.above)[node.name] = node

    def let_go(self, node: Node) -> None:
        """The node is held no more: its name is the listing's again (unless held by
        another node meanwhile) and its bytes are the provider's."""
        self._release(node)
        node.local = None
        node.attr_cache = None

    def hide(self, directory: Node, name: str) -> None:
        """The name shows nothing, whatever the listing says (removed here, the provider
        not told yet or its listing not changed yet)."""
        self._of(directory)[name] = None

    def unhide(self, directory: Node, name: str) -> None:
        """A hidden name is the listing's again; a name that holds a node stays held."""
        names = self._names.get(directory.ino, {})
        if name in names and names[name] is None:
            del names[name]

    def move(self, node: Node, parent: Node, name: str, entry: Entry | None = None) -> None:
        """A held node takes a new name (in another directory, maybe), showing `entry`
        from now on when given; its old name is the listing's again, unless hidden."""
        self._release(node)
        node.name, node.parent, node.attr_cache = name, parent, None
        if entry is not None:
            node.entry = entry
        self.hold(node)

    def set_aside(self, node: Node, name: str, entry: Entry) -> None:
        """An asset's file held here under another name, showing `entry` (the previous bytes
        of a save): no longer the asset's file, its old name shows nothing, and the next
        listing lays the asset's file out anew."""
        directory = node.above
        if directory.children is not None and directory.children.get(node.name) is node:
            del directory.children[node.name]
        self.hide(directory, node.name)
        node.asset = None
        self.move(node, directory, name, entry)

    def put_back(self, node: Node, name: str, asset: Entry, file: Entry | None) -> None:
        """A node set aside is the asset's file again, under its old name: as listed
        (`file`), or as the local file it still is (None)."""
        directory = node.above
        self._release(node)
        self.unhide(directory, name)
        node.name, node.asset, node.attr_cache = name, asset, None
        if file is not None:
            node.entry = file
        if directory.children is not None:
            directory.children[name] = node

    def _release(self, node: Node) -> None:
        """The node's name is the listing's again, unless another node holds it now."""
        names = self._names.get(node.above.ino, {})
        if names.get(node.name) is node:
            del names[node.name]

    def _of(self, directory: Node) -> dict[str, Node | None]:
        return self._names.setdefault(directory.ino, {})
