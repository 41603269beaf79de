"""The path model: nodes for accounts, organizations, assets and files; listings fetched
lazily through the metadata cache; safe unique names; negative entries; probe names."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pyfuse3
import trio

from .errors import AssetfsError, NotADirectory, NotFound
from .inodes import InodeTable
from .metacache import MetaCache
from .names import is_probe, safe_name, unique_names
from .providers.base import Content, Entry, Provider
from .stats import Stats

log = logging.getLogger("assetfs.tree")

CONTROL_DIR = ".assetfs"


class Node:
    """One file or directory of the mount."""

    __slots__ = ("ino", "name", "parent", "provider", "entry", "children", "listed_at", "negative", "lock", "render")

    def __init__(self, ino: int, name: str, parent: Node | None, provider: Provider | None, entry: Entry,
                 render: Callable[[], bytes] | None = None):
        self.ino = ino
        self.name = name
        self.parent = parent
        self.provider = provider
        self.entry = entry
        self.children: dict[str, Node] | None = None
        self.listed_at = 0.0
        self.negative: dict[str, float] = {}
        self.lock: trio.Lock | None = None
        self.render = render  # a virtual file made fresh on each open (status.json)

    @property
    def is_dir(self) -> bool:
        return self.entry.is_dir

    @property
    def path(self) -> str:
        parts, node = [], self
        while node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def cache_key(self) -> str:
        return f"{self.provider.account}:{self.entry.key}"


class Tree:
    def __init__(self, providers: dict[str, Provider], metacache: MetaCache, stats: Stats, status: Callable[[], bytes]):
        self.inodes = InodeTable()
        self.metacache = metacache
        self.stats = stats
        self.root = Node(pyfuse3.ROOT_INODE, "", None, None, Entry("", "", True))
        self.inodes.add_root(self.root)
        self.root.children = {}
        control = self._new(CONTROL_DIR, self.root, None, Entry(CONTROL_DIR, CONTROL_DIR, True, time.time()))
        control.children = {}
        status_entry = Entry("status.json", "status.json", False, time.time())
        control.children["status.json"] = self._new("status.json", control, None, status_entry, render=status)
        self.root.children[CONTROL_DIR] = control
        for account, provider in providers.items():
            entry = Entry(account, "", True, time.time(), xattrs={"user.assetfs.provider": type(provider).name})
            self.root.children[account] = self._new(safe_name(account, "account"), self.root, provider, entry)
        self._content_locks: dict[str, trio.Lock] = {}

    def _new(self, name: str, parent: Node | None, provider: Provider | None, entry: Entry, render=None) -> Node:
        return Node(self.inodes.new_ino(), name, parent, provider, entry, render)

    # -- listing --------------------------------------------------------------------------

    async def children(self, node: Node) -> dict[str, Node]:
        """A directory's children, from memory, the disk cache, or the provider."""
        if not node.is_dir:
            raise NotADirectory(node.path)
        if node.entry.children is not None and node.children is None:
            node.children = self._adopt(node, node.entry.children)
        if node.children is not None and (node.provider is None or node.entry.children is not None
                                          or self.metacache.is_fresh(node.listed_at)):
            return node.children
        if node.lock is None:
            node.lock = trio.Lock()
        async with node.lock:
            if node.children is not None and self.metacache.is_fresh(node.listed_at):
                return node.children
            entries, fetched_at = await self._listing(node)
            node.children = self._adopt(node, entries, previous=node.children)
            node.listed_at = fetched_at
            node.negative.clear()
        return node.children

    async def _listing(self, node: Node) -> tuple[list[Entry], float]:
        key = node.cache_key()
        cached = self.metacache.listing(key)
        if cached is not None and self.metacache.is_fresh(cached[1]):
            self.stats.add("metadata_hits")
            return cached
        self.stats.add("metadata_misses")
        try:
            if node.parent is self.root:
                entries = await node.provider.list_root()
            else:
                entries = await node.provider.list_dir(node.entry)
        except AssetfsError as e:
            if cached is None or isinstance(e, NotFound):
                raise
            log.warning("%s: %s; showing the listing cached %.0fs ago", node.path, e, time.time() - cached[1])
            return cached[0], time.time() - self.metacache.ttl + min(self.metacache.ttl, 5.0)
        return entries, self.metacache.store_listing(key, entries)

    def _adopt(self, parent: Node, entries: list[Entry], previous: dict[str, Node] | None = None) -> dict[str, Node]:
        """Nodes for entries under safe unique names, keeping the inode of every entry that
        is still there (same provider key) so the kernel's view stays valid."""
        wanted = [(safe_name(e.name, e.key), e.key.rsplit("/", 1)[-1]) for e in entries]
        names = unique_names(wanted)
        by_key = {n.entry.key: n for n in (previous or {}).values()}
        children: dict[str, Node] = {}
        for name, entry in zip(names, entries):
            old = by_key.get(entry.key)
            if old is not None and old.name == name and old.is_dir == entry.is_dir:
                if old.entry.content != entry.content or old.entry.inline != entry.inline:
                    old.entry = entry
                    if entry.children is not None:
                        old.children = None
                else:
                    old.entry = entry
                children[name] = old
            else:
                children[name] = self._new(name, parent, parent.provider, entry)
        return children

    async def lookup(self, parent: Node, name: str) -> Node:
        if is_probe(name):
            self.stats.add("probe_names")
            raise NotFound(name)
        children = await self.children(parent)
        if name in children:
            return children[name]
        expiry = parent.negative.get(name)
        if expiry is not None and expiry > time.time():
            raise NotFound(name)
        found = None
        if parent.provider is not None:
            found = await parent.provider.lookup(parent.entry, name)
        if found is None:
            parent.negative[name] = time.time() + self.metacache.ttl
            raise NotFound(name)
        node = self._new(name, parent, parent.provider, found)  # known by the name it was asked for
        children[name] = node
        return node

    # -- content --------------------------------------------------------------------------

    async def content(self, node: Node) -> Content:
        """A file's content with URL and size known (fetched once per version, kept for good)."""
        content = node.entry.content
        if content is None:
            raise NotFound(node.path)
        if content.url is not None and content.size is not None:
            return content
        fact = self.metacache.fact(f"content:{content.version}")
        if fact is not None:
            return fact
        lock = self._content_locks.setdefault(content.version, trio.Lock())
        async with lock:
            fact = self.metacache.fact(f"content:{content.version}")
            if fact is None:
                fact = await node.provider.resolve(content)
                self.metacache.store_fact(f"content:{content.version}", fact)
        self._content_locks.pop(content.version, None)
        return fact

    def known_size(self, node: Node) -> int | None:
        """The size if known without a request."""
        if node.render is not None:
            return len(node.render())
        entry = node.entry
        if entry.is_dir:
            return 0
        if entry.inline is not None:
            return len(entry.inline)
        if entry.content and entry.content.size is not None:
            return entry.content.size
        fact = self.metacache.fact(f"content:{entry.content.version}") if entry.content else None
        return fact.size if fact else None
