"""One file or directory of the mount."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..kinds import Kind
from ..providers.base import Entry, Provider

if TYPE_CHECKING:
    from ..write.overlay import LocalFile

# The hidden directory of a container that holds one directory per asset.
ASSETS_DIR = ".assets"
ASSETS = Kind.ASSETS.value  # its kind


class Node:
    """What the view knows of one path: the provider's entry it shows, its remote children
    once listed, and a local file standing in for its bytes (held.py: write/ tells it so)."""

    __slots__ = (
        "ino",
        "name",
        "parent",
        "provider",
        "entry",
        "asset",
        "children",
        "listing",
        "listed_at",
        "negative",
        "lock",
        "render",
        "local",
        "attr_cache",
        "__weakref__",
    )

    def __init__(
        self,
        ino: int,
        name: str,
        parent: Node | None,
        provider: Provider | None,
        entry: Entry,
        render: Callable[[], bytes] | None = None,
        asset: Entry | None = None,
    ):
        self.ino = ino
        self.name = name
        self.parent = parent
        self.provider = provider
        self.entry = entry
        self.asset = asset  # the asset this node is the file or the directory of
        self.children: dict[str, Node] | None = None  # the remote children, by name, once listed
        self.listing: list[Entry] | None = None  # the provider's entries they were made from
        self.listed_at = 0.0
        self.negative: dict[str, float] | None = None  # names known not to exist, until when (made when needed)
        self.lock: trio.Lock | None = None
        self.render = render  # a virtual file made fresh on each open (status.json)
        self.local: LocalFile | None = None  # the bytes are here, not (yet) there
        #: attributes.Attributes' memo of this node's xattrs: (the entry they are of, by name)
        self.attr_cache: tuple[Entry, dict[bytes, bytes]] | None = None

    @property
    def above(self) -> Node:
        """The parent of any node but the root."""
        if self.parent is None:
            raise ValueError("the root has no parent")
        return self.parent

    @property
    def owner(self) -> Provider:
        """The provider of a node of an account (every node but the root and the control
        directory's)."""
        if self.provider is None:
            raise ValueError(f"{self.path}: not a node of an account")
        return self.provider

    @property
    def held(self) -> LocalFile:
        """The local file of a node known to have one."""
        if self.local is None:
            raise ValueError(f"{self.path}: no local file")
        return self.local

    @property
    def is_dir(self) -> bool:
        return self.entry.is_dir

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def path(self) -> str:
        parts, node = [], self
        while node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def cache_key(self) -> str:
        return f"{self.owner.account}:{self.entry.key}"

    def __repr__(self) -> str:
        return f"<Node {self.ino} {self.path!r} {self.kind or '-'}{' local' if self.local is not None else ''}>"
