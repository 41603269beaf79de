"""The path model: nodes for accounts, organizations, assets and files; listings fetched
lazily through the metadata cache; safe unique names; negative entries; probe names."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import weakref
from pathlib import Path
from collections.abc import Callable

import pyfuse3
import trio

from .errors import AssetfsError, NotADirectory, NotFound, ProviderError
from .inodes import InodeTable
from .metacache import MetaCache
from .names import is_probe, safe_name, unique_names
from .providers.base import CONTAINER, CONTENT, Content, Entry, Provider
from .stats import Stats
from .write.journal import CREATE, PendingUpload
from .write.overlay import LocalFile, WrittenFile, WrittenNames
from .write.spool import SpoolFile

log = logging.getLogger("assetfs.tree")

CONTROL_DIR = ".assetfs"


class Node:
    """One file or directory of the mount."""

    __slots__ = ("ino", "name", "parent", "provider", "entry", "children", "listed_at", "negative", "lock", "render",
                 "overlay", "local", "written", "__weakref__")

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
        self.overlay: dict[str, Node | None] | None = None  # local and written files; None marks a removed name
        self.local: LocalFile | None = None                 # this file lives in the spool for now
        self.written: WrittenFile | None = None             # this file was uploaded through the mount

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

    @property
    def kind(self) -> str:
        return self.entry.kind


class Tree:
    def __init__(self, providers: dict[str, Provider], metacache: MetaCache, stats: Stats, status: Callable[[], bytes],
                 written: WrittenNames | None = None):
        self.inodes = InodeTable()
        self.written_names = written
        self._directories: weakref.WeakValueDictionary[str, Node] = weakref.WeakValueDictionary()
        self.deleted: set[str] = set()  # keys of assets deleted through this mount
        self.pending: Callable[[], list[PendingUpload]] = list  # the uploader's pending list, once it exists
        self._pending_nodes: dict[str, Node] = {}
        self.metacache = metacache
        self.stats = stats
        self.root = Node(pyfuse3.ROOT_INODE, "", None, None, Entry("", "", True))
        self.inodes.add_root(self.root)
        self.root.children = {}
        control = self._new(CONTROL_DIR, self.root, None, Entry(CONTROL_DIR, CONTROL_DIR, True, time.time()))
        control.children = {}
        status_entry = Entry("status.json", "status.json", False, time.time())
        control.children["status.json"] = self._new("status.json", control, None, status_entry, render=status)
        self.pending_dir = self._new("pending", control, None, Entry("pending", "pending", True, time.time()))
        control.children["pending"] = self.pending_dir
        self.root.children[CONTROL_DIR] = control
        for account, provider in providers.items():
            entry = Entry(account, "", True, time.time(), xattrs={"user.assetfs.provider": type(provider).name})
            self.root.children[account] = self._new(safe_name(account, "account"), self.root, provider, entry)
        self._content_locks: dict[str, trio.Lock] = {}

    def _new(self, name: str, parent: Node | None, provider: Provider | None, entry: Entry, render=None) -> Node:
        return Node(self.inodes.new_ino(), name, parent, provider, entry, render)

    # -- listing --------------------------------------------------------------------------

    async def children(self, node: Node) -> dict[str, Node]:
        """A directory's children: the provider's entries, with local and written files
        over them (a local name hides a remote one of the same name)."""
        if node is self.pending_dir:
            return self._pending_children()
        remote = await self.remote_children(node)
        overlay = self.overlay(node)
        if not overlay:
            return remote
        merged = {name: child for name, child in remote.items() if name not in overlay}
        merged.update((name, child) for name, child in overlay.items() if child is not None)
        return merged

    async def remote_children(self, node: Node) -> dict[str, Node]:
        """A directory's children from memory, the disk cache, or the provider."""
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

    def _pending_children(self) -> dict[str, Node]:
        """`.assetfs/pending/`: one read-only file per upload not yet confirmed, with its bytes."""
        children, nodes = {}, {}
        for record in self.pending():
            node = self._pending_nodes.get(record.id)
            if node is None:
                try:
                    spool = SpoolFile(Path(record.spool))
                except OSError:
                    continue
                name = safe_name(f"{record.id} {record.name}", record.id)
                entry = Entry(name, f"pending:{record.id}", False, record.mtime, xattrs={})
                node = self._new(name, self.pending_dir, None, entry)
                node.local = LocalFile(spool, record, record.mtime, read_only=True)
            node.entry.xattrs = {"user.assetfs.account": record.account, "user.assetfs.state": record.state,
                                 "user.assetfs.target": record.target.name, "user.assetfs.attempts": str(record.attempts),
                                 "user.assetfs.error": record.last_error}
            nodes[record.id] = node
            children[node.name] = node
        for gone in set(self._pending_nodes) - set(nodes):
            self._pending_nodes[gone].local.spool.close()
        self._pending_nodes = nodes
        return children

    def overlay(self, node: Node) -> dict[str, Node | None]:
        """Local and written files of a directory (written ones loaded from disk once)."""
        if node.overlay is None:
            node.overlay = {}
            if node.provider is not None and self.written_names is not None and node.kind == CONTAINER:
                self._directories[node.cache_key()] = node
                for name, written in self.written_names.of(node.cache_key()).items():
                    node.overlay[name] = self.written_node(node, name, written)
        return node.overlay

    def written_node(self, parent: Node, name: str, written: WrittenFile) -> Node:
        entry = Entry(name, f"written:{written.asset.key}", False, written.mtime, kind=CONTENT)
        node = self._new(name, parent, parent.provider, entry)
        node.written = written
        return node

    def local_node(self, parent: Node, name: str, local: LocalFile) -> Node:
        entry = Entry(name, f"local:{id(local)}", False, local.mtime, kind=CONTENT)
        node = self._new(name, parent, parent.provider, entry)
        node.local = local
        self.overlay(parent)[name] = node
        if parent.provider is not None:
            self._directories[parent.cache_key()] = parent
        return node

    def adopt_one(self, parent: Node, name: str, entry: Entry) -> Node:
        """A node for one entry the provider just returned (after mkdir or a move)."""
        return self._new(name, parent, parent.provider, entry)

    def directory(self, cache_key: str) -> Node | None:
        """A directory node still in memory, by its cache key."""
        return self._directories.get(cache_key)

    def forget_listing(self, node: Node) -> None:
        """The provider's side of this directory changed through us: list it afresh."""
        node.listed_at = 0.0
        if node.provider is not None:
            self.metacache.forget_listing(node.cache_key())

    async def _listing(self, node: Node) -> tuple[list[Entry], float]:
        key = node.cache_key()
        cached = self.metacache.listing(key)
        if cached is not None and self.metacache.is_fresh(cached[1]):
            self.stats.add("metadata_hits")
            return cached
        self.stats.add("metadata_misses")
        try:
            # With a listing to fall back on, stop waiting a little before the syscall's own
            # deadline: a hung or slow provider then shows the cached listing, not EIO.
            with trio.move_on_at(_fallback_deadline() if cached is not None else math.inf) as waiting:
                if node.parent is self.root:
                    entries = await node.provider.list_root()
                else:
                    entries = await node.provider.list_dir(node.entry)
            if waiting.cancelled_caught:
                raise ProviderError("no answer in time")
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
                old.entry = entry
                if entry.children is not None and old.children is not None:
                    # Children that come with the entry (an asset's files) are as new as the
                    # listing: a changed file or URL shows, and unchanged files keep their inodes.
                    old.children = self._adopt(old, entry.children, previous=old.children)
                children[name] = old
            else:
                children[name] = self._new(name, parent, parent.provider, entry)
        return children

    async def lookup(self, parent: Node, name: str) -> Node:
        if parent is self.pending_dir:
            children = self._pending_children()
            if name in children:
                return children[name]
            raise NotFound(name)
        overlay = self.overlay(parent) if parent.is_dir else {}
        if name in overlay:
            if overlay[name] is None:
                raise NotFound(name)
            return overlay[name]
        if is_probe(name):
            self.stats.add("probe_names")
            raise NotFound(name)
        children = await self.remote_children(parent)
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
        if node.written is not None and node.entry.content is None:
            node.entry.content = await self._written_content(node)
        content = node.entry.content
        if content is None:
            raise NotFound(node.path)
        if content.url is not None and content.size is not None:
            return content
        fact = self.metacache.fact(f"content:{content.version}")
        if fact is None:
            lock = self._content_locks.setdefault(content.version, trio.Lock())
            async with lock:
                fact = self.metacache.fact(f"content:{content.version}")
                if fact is None:
                    fact = await node.provider.resolve(content)
                    self.metacache.store_fact(f"content:{content.version}", fact)
            self._content_locks.pop(content.version, None)
        return _with_current_url(fact, content)

    async def renew_url(self, node: Node, refused: str) -> str:
        """A new URL for a file whose signed URL was refused (it expired while the file was
        open): from the provider's download route where URLs are handed out on demand, else
        from a fresh listing of the directory the URL came with."""
        content = node.entry.content
        if content is None:
            raise NotFound(node.path)
        if content.url is None:
            fact = await node.provider.resolve(content)
            self.metacache.store_fact(f"content:{content.version}", fact)
            url = fact.url
        else:
            listed = node.parent
            while listed.parent is not None and listed.entry.children is not None:
                listed = listed.parent  # files that came inline with their asset's listing
            self.forget_listing(listed)
            await self.remote_children(listed)
            url = node.entry.content.url if node.entry.content else None
        if not url or url == refused:
            raise ProviderError(f"{node.path}: the provider gave no new URL for a refused one")
        return url

    async def _written_content(self, node: Node) -> Content:
        asset = node.written.asset
        files = asset.children if asset.children is not None else await node.provider.list_dir(asset)
        for entry in files:
            if entry.kind == CONTENT and entry.content is not None:
                return entry.content
        raise NotFound(f"{node.path}: its asset has no content file any more")

    def known_size(self, node: Node) -> int | None:
        """The size if known without a request."""
        if node.render is not None:
            return len(node.render())
        if node.local is not None:
            return node.local.spool.size
        if node.written is not None:
            return node.written.size
        entry = node.entry
        if entry.is_dir:
            return 0
        if entry.inline is not None:
            return len(entry.inline)
        if entry.content and entry.content.size is not None:
            return entry.content.size
        fact = self.metacache.fact(f"content:{entry.content.version}") if entry.content else None
        return fact.size if fact else None

    # -- after an upload ---------------------------------------------------------------------

    def uploaded(self, record: PendingUpload, asset: Entry) -> None:
        """Show what an upload became: the file keeps its name (a written file) and the new
        or changed asset appears in its container at the next listing."""
        directory = self.directory(record.directory_key)
        known = self.written_names.of(record.directory_key) if self.written_names else {}
        if record.action == CREATE or record.name in known:
            written = WrittenFile(asset, record.size, record.md5, record.mtime)
            if self.written_names is not None:
                self.written_names.put(record.directory_key, record.name, written)
            if directory is None:
                self.metacache.forget_listing(record.directory_key)
                return
            node = self.overlay(directory).get(record.name)
            if node is not None and (node.local is None or node.local.record is None or node.local.record.id == record.id):
                node.local = None
                node.written = written
                node.entry = Entry(record.name, f"written:{asset.key}", False, record.mtime, kind=CONTENT)
            self.forget_listing(directory)
            return
        # New content for the file of an asset directory: the directory shows the asset as it now is.
        if directory is None:
            return
        directory.entry = asset
        if asset.children is not None:
            directory.children = self._adopt(directory, asset.children, previous=directory.children)
        else:
            directory.listed_at = 0.0
        for child in (directory.children or {}).values():
            if child.local is not None and child.local.record is not None and child.local.record.id == record.id:
                child.local = None
        if directory.parent is not None:
            self.forget_listing(directory.parent)


def _with_current_url(fact: Content, listed: Content) -> Content:
    """A version's bytes never change, but the URL a listing gives for them may (a signed
    URL renewed, a provider back with new signatures): the freshest URL, the known size."""
    if listed.url is None or listed.url == fact.url:
        return fact
    return dataclasses.replace(fact, url=listed.url)


def _fallback_deadline() -> float:
    """When to give up on the provider and answer from the cache: a second (at most a
    quarter of the time left) before the deadline of the syscall being served."""
    deadline = trio.current_effective_deadline()
    if deadline == math.inf:
        return math.inf
    return deadline - min(1.0, max(0.0, deadline - trio.current_time()) / 4)
