"""The directories and names a user sees: listings fetched lazily through the metadata
cache, containers laid out as files + subfolders + `.assets/`, local files over them,
negative entries, probe names, and content facts."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterator, MutableMapping

import pyfuse3
import trio

from ..errors import AssetfsError, NotADirectory, NotFound, ProviderError
from ..inodes import InodeTable
from ..kinds import HOLDERS
from ..metacache import MetaCache
from ..names import is_probe, safe_name, unique_names
from ..providers.base import (
    ASSET,
    Content,
    Entry,
    Provider,
    listed_before,
    mark_of,
    with_mark,
)
from ..stats import Stats
from .held import Held
from .layout import asset_details, content_of, place
from .node import ASSETS, ASSETS_DIR, Node
from .queries import RESULTS, Queries
from .sizes import SizesAhead

log = logging.getLogger("assetfs.view")

CONTROL_DIR = ".assetfs"
EXPAND_AT_ONCE = 8  # assets whose files are listed at the same time (Apple: one request each)
CHANGED_HERE = "changed here"  # the change mark of a listing the mount's own writes changed (no answer equals it)


class View:
    def __init__(
        self,
        providers: dict[str, Provider],
        metacache: MetaCache,
        stats: Stats,
        status: Callable[[], bytes],
        given: MutableMapping[str, tuple[float, int]] | None = None,
    ):
        self.inodes = InodeTable()
        self.held = Held()  # names held on this machine over the listings (write/ tells which)
        self.metacache = metacache
        self.stats = stats
        self.special_children: dict[int, Callable[[], dict[str, Node]]] = {}  # e.g. .assetfs/pending/
        self._directories: weakref.WeakValueDictionary[str, Node] = weakref.WeakValueDictionary()
        self._content_locks: dict[str, trio.Lock] = {}
        self._without_content: set[str] = set()  # assets already logged as having no content file
        self.queries = Queries(self)
        self.sizes = SizesAhead(metacache, stats)
        # Told whenever a provider's directory is looked at (the poller watches those), with
        # the change mark its listing came with (the poller's first mark).
        self.on_listed: Callable[[str, Entry, str | None], None] = lambda account, entry, mark: None
        # Directories whose listing just came from the provider, not the disk cache: their
        # opendir may open connections with requests of its own (`fetched_now`).
        self._fetched: set[int] = set()
        # The mtime and mode a file written through the mount was given (tar x, cp -a, rsync -a),
        # by its content version: shown for those bytes, so a second `rsync -a` sends nothing.
        # Kept in the state dir (`given`), read here once: attributes look them up per getattr.
        self._given_store = given if given is not None else {}
        self.given: dict[str, tuple[float, int]] = dict(self._given_store)
        self.root = Node(pyfuse3.ROOT_INODE, "", None, None, Entry("", "", True))
        self.inodes.add_root(self.root)
        self.root.children = {}
        control = self.new_node(CONTROL_DIR, self.root, None, Entry(CONTROL_DIR, CONTROL_DIR, True, time.time()))
        control.children = {}
        status_entry = Entry("status.json", "status.json", False, time.time())
        control.children["status.json"] = self.new_node("status.json", control, None, status_entry, render=status)
        self.pending_dir = self.new_node("pending", control, None, Entry("pending", "pending", True, time.time()))
        control.children["pending"] = self.pending_dir
        self.root.children[CONTROL_DIR] = control
        for account, provider in providers.items():
            entry = Entry(account, "", True, time.time(), xattrs={"user.assetfs.provider": type(provider).name})
            self.root.children[account] = self.new_node(safe_name(account, "account"), self.root, provider, entry)

    def new_node(
        self,
        name: str,
        parent: Node | None,
        provider: Provider | None,
        entry: Entry,
        render=None,
        asset: Entry | None = None,
    ) -> Node:
        return Node(self.inodes.new_ino(), name, parent, provider, entry, render, asset)

    # -- listing ----------------------------------------------------------------------------

    async def children(self, node: Node) -> dict[str, Node]:
        """A directory's children: the provider's entries, with local names over them (a
        local name hides a remote one of the same name)."""
        special = self.special_children.get(node.ino)
        if special is not None:
            return special()
        remote = await self.remote_children(node)
        local = self.held.held_in(node)
        if not local:
            return remote
        merged = {name: child for name, child in remote.items() if name not in local}
        merged.update((name, child) for name, child in local.items() if child is not None)
        return merged

    def fetched_now(self, node: Node) -> bool:
        """Whether the directory's listing came from the provider since this was last asked
        (a listing from the disk cache, as on a warm remount, is not: no network for it)."""
        fetched = node.ino in self._fetched
        self._fetched.discard(node.ino)
        return fetched

    async def remote_children(self, node: Node) -> dict[str, Node]:
        """A directory's children from memory, the disk cache, or the provider."""
        if not node.is_dir:
            raise NotADirectory(node.path)
        if node.kind == ASSETS:
            await self.remote_children(node.above)  # `.assets/` is made from its container's listing
            if node.children is None:  # first looked into: laid out now, and kept up to date from now on
                self._lay_out_details(
                    node, {placed.name: placed.entry for placed in place(node.above.listing or []) if placed.is_asset}
                )
            assert node.children is not None  # laid out above
            return node.children
        if node.entry.children is not None and node.children is None:
            self._lay_out(node, node.entry.children)
        if node.children is None or not (
            node.provider is None or node.entry.children is not None or self.metacache.is_fresh(node.listed_at)
        ):
            if node.lock is None:
                node.lock = trio.Lock()
            async with node.lock:
                if node.children is None or not self.metacache.is_fresh(node.listed_at):
                    entries, fetched_at = await self._listing(node)
                    self._lay_out(node, entries)
                    node.listed_at = fetched_at
                    node.negative = None
        assert node.children is not None  # laid out above
        if node.provider is not None and node.entry.children is None:
            self.on_listed(node.provider.account, node.entry, mark_of(node.listing))
        return node.children

    def _lay_out(self, node: Node, entries: list[Entry], adopting: Node | None = None) -> None:
        """The node's children made from the provider's entries. A directory holding assets
        shows their files, its other directories, and `.assets/` (always, even empty); an asset's directory its
        details (asset.json, versions, production outputs) but not its content, which is the
        file beside `.assets/`. Every child still there keeps its inode."""
        node.listing = entries
        if node.kind == ASSET and node.parent is not None and node.parent.kind == ASSETS:
            entries = asset_details(entries, node.provider)  # the content is the file beside .assets/
        previous = node.children or {}
        former = _Former(previous, adopting)
        if node.kind not in HOLDERS and not any(e.kind == ASSET for e in entries):
            names = unique_names([(safe_name(e.name, e.key), e.key.rsplit("/", 1)[-1]) for e in entries])
            node.children = {name: self._keep(former, node, name, entry) for name, entry in zip(names, entries)}
            self.queries.add_to(node)
            return
        hidden = previous.get(ASSETS_DIR) or self.new_node(
            ASSETS_DIR,
            node,
            node.provider,
            Entry(ASSETS_DIR, f"{node.entry.key}/{ASSETS_DIR}", True, node.entry.mtime, kind=ASSETS),
        )
        # `.assets/` is laid out once somebody looks into it (remote_children): until then a
        # listing of 100,000 assets makes no second 100,000 nodes (30 MB) nobody asked for.
        details: dict[str, Entry] | None = {} if hidden.children is not None else None
        children: dict[str, Node] = {}
        for placed in place(entries):
            if not placed.is_asset:
                children[placed.name] = self._keep(former, node, placed.name, placed.entry)
                continue
            if details is not None:
                details[placed.name] = placed.entry
            if placed.file is not None:
                children[placed.name] = self._keep(former, node, placed.name, placed.file, asset=placed.entry)
            elif placed.entry.children is not None and placed.entry.key not in self._without_content:
                self._without_content.add(placed.entry.key)
                log.info(
                    "%s/%s: the asset has no content file; it shows only under %s/", node.path, placed.name, ASSETS_DIR
                )
        if details is not None:
            self._lay_out_details(hidden, details)
        children[ASSETS_DIR] = hidden
        node.children = children
        self.queries.add_to(node)

    def _lay_out_details(self, hidden: Node, assets: dict[str, Entry]) -> None:
        """`.assets/`: a directory per asset (its own entry, whose children leave the content
        out), named as the asset's file is; each one still there keeps its inode."""
        former = _Former(hidden.children)
        hidden.children = {name: self._keep(former, hidden, name, asset, asset=asset) for name, asset in assets.items()}

    def _keep(self, former: _Former, parent: Node, name: str, entry: Entry, asset: Entry | None = None) -> Node:
        """The node for an entry: the one it had (same provider key) with the new entry,
        else a new one."""
        old = former.get(name, entry.key)
        if old is None or old.is_dir != entry.is_dir:
            node = self.new_node(name, parent, parent.provider, entry, asset=asset)
            if entry.is_dir:
                self._directories[node.cache_key()] = node
            return node
        old.name, old.parent, old.asset = name, parent, asset
        if old.entry is not entry:
            old.entry = entry
            old.attr_cache = None
            if entry.children is not None and old.children is not None:
                # Children that come with the entry (an asset's files) are as new as the
                # listing: a changed file or URL shows, and unchanged files keep their inodes.
                self._lay_out(old, entry.children)
        return old

    async def _listing(self, node: Node) -> tuple[list[Entry], float]:
        key = node.cache_key()
        listed_at = self.metacache.listed_at(key)
        if listed_at is not None and self.metacache.is_fresh(listed_at):
            cached = self.metacache.listing(key)
            if cached is not None:
                self.stats.add("metadata_hits")
                self.metacache.look_up_facts(_unsized_versions(cached[0]))
                return cached
        self.stats.add("metadata_misses")
        try:
            # With a listing to fall back on, stop waiting a little before the syscall's own
            # deadline: a hung or slow provider then shows the cached listing, not EIO.
            with (
                trio.move_on_at(_fallback_deadline() if listed_at is not None else math.inf) as waiting,
                listed_before(node.listing or ()),
            ):
                if node.parent is self.root:
                    entries = await node.owner.list_root()
                elif node.kind == RESULTS:
                    entries = await self.queries.results(node)
                else:
                    entries = await node.owner.list_dir(node.entry)
                entries = await self.with_files(node.owner, entries)
            if waiting.cancelled_caught:
                raise ProviderError("no answer in time")
        except AssetfsError as e:
            # The cached listing is read only now: a re-list that works never holds it too.
            cached = None if listed_at is None or isinstance(e, NotFound) else self.metacache.listing(key)
            if cached is None:
                raise
            log.warning("%s: %s; showing the listing cached %.0fs ago", node.path, e, time.time() - cached[1])
            return cached[0], time.time() - self.metacache.ttl + min(self.metacache.ttl, 5.0)
        self.metacache.look_up_facts(_unsized_versions(entries))
        if len(self._fetched) > 1000:  # listed by lookups, never opened as directories
            self._fetched.clear()
        self._fetched.add(node.ino)
        return entries, self.metacache.store_listing(key, entries)

    async def with_files(self, provider: Provider, entries: list[Entry]) -> list[Entry]:
        """Assets whose files a listing does not give (Apple: the image's name and type
        are in its own metadata) get them now, a few at a time: a file needs its name and
        extension to be shown. An asset whose files cannot be had shows only under
        `.assets/` until the next listing."""
        missing = [i for i, e in enumerate(entries) if e.kind == ASSET and e.children is None]
        if not missing:
            return entries
        mark, expanded = mark_of(entries), list[Entry | None](entries)
        limiter = trio.CapacityLimiter(EXPAND_AT_ONCE)

        async def expand(i: int) -> None:
            async with limiter:
                try:
                    expanded[i] = dataclasses.replace(entries[i], children=await provider.list_dir(entries[i]))
                except AssetfsError as e:
                    if isinstance(e, NotFound):
                        expanded[i] = None
                    else:
                        log.warning("%s: %s: its files could not be listed: %s", provider.account, entries[i].name, e)

        async with trio.open_nursery() as nursery:
            for i in missing:
                nursery.start_soon(expand, i)
        return with_mark([e for e in expanded if e is not None], mark)

    def directory(self, cache_key: str) -> Node | None:
        """A directory node still in memory, by its cache key."""
        return self._directories.get(cache_key)

    def listed_by(self, node: Node) -> Node:
        """The directory whose listing brought this node (files that came inline with their
        asset's listing, and `.assets/`, come with their container's)."""
        listed = node.above
        while listed.parent is not None and (listed.entry.children is not None or listed.kind == ASSETS):
            listed = listed.parent
        return listed

    def forget_listing(self, node: Node) -> None:
        """The provider's side of this directory changed: list it afresh."""
        if node.kind == ASSETS:
            node = node.above
        node.listed_at = 0.0
        if node.provider is not None:
            self.metacache.forget_listing(node.cache_key())

    async def lookup(self, parent: Node, name: str) -> Node:
        special = self.special_children.get(parent.ino)
        if special is not None:
            children = special()
            if name in children:
                return children[name]
            raise NotFound(name)
        local = self.held.held_in(parent) if parent.is_dir else {}
        if name in local:
            held = local[name]
            if held is None:
                raise NotFound(name)
            return held
        if is_probe(name):
            self.stats.add("probe_names")
            raise NotFound(name)
        found = await self.queries.lookup(parent, name)
        if found is not None:
            return found
        children = await self.remote_children(parent)
        if name in children:
            return children[name]
        expiry = parent.negative.get(name) if parent.negative else None
        if expiry is not None and expiry > time.time():
            raise NotFound(name)
        named: Entry | None = None
        if parent.provider is not None and parent.kind not in (ASSETS, RESULTS):
            named = await parent.provider.lookup(parent.entry, name)
        if named is None:
            if parent.negative is None:
                parent.negative = {}
            parent.negative[name] = time.time() + self.metacache.ttl
            raise NotFound(name)
        # Known by the name it was asked for (an ID); the same directory as the listed one, if any.
        node = next((c for c in children.values() if c.entry.key == named.key and c.is_dir == named.is_dir), None)
        if node is None:
            node = self.new_node(name, parent, parent.provider, named)
            if named.is_dir:
                self._directories.setdefault(node.cache_key(), node)
        children[name] = node
        return node

    # -- changes made through the mount ------------------------------------------------------

    async def show_asset(
        self, container: Node, asset: Entry, node: Node | None = None, was: Entry | None = None
    ) -> Node | None:
        """An asset made, changed or moved through the mount shows at once in its container
        (its listing kept fresh with it, in place of `was`, the asset as it was listed before
        a change of its key): as `node` when given (the file that became it keeps its inode),
        under the name the layout gives it. Its file node, if it has content."""
        [asset] = await self.with_files(container.owner, [asset])
        await self.remote_children(container)
        gone = {asset.key, was.key if was is not None else asset.key}
        listing = _changed_here([e for e in container.listing or [] if e.key not in gone] + [asset])
        file = content_of(asset)
        if node is not None and file is not None:
            node.entry = file  # matched by key in the layout: the node carries on as the asset's file
            node.attr_cache = None
        else:
            node = None
        container.listed_at = self.metacache.store_listing(container.cache_key(), listing)
        self._lay_out(container, listing, adopting=node)
        for child in (container.children or {}).values():
            if child.asset is not None and child.asset.key == asset.key and not child.is_dir:
                return child
        return None

    async def hide_asset(self, container: Node, asset: Entry) -> None:
        """An asset deleted or moved away through the mount leaves its container's listing."""
        if container.listing is None:
            return
        listing = _changed_here([e for e in container.listing if e.key != asset.key])
        container.listed_at = self.metacache.store_listing(container.cache_key(), listing)
        self._lay_out(container, listing)

    async def show_entry(self, container: Node, entry: Entry) -> Node:
        """A directory made through the mount (mkdir) shows at once."""
        await self.remote_children(container)
        listing = _changed_here([e for e in container.listing or [] if e.key != entry.key] + [entry])
        container.listed_at = self.metacache.store_listing(container.cache_key(), listing)
        self._lay_out(container, listing)
        return next(c for c in (container.children or {}).values() if c.entry.key == entry.key)

    async def hide_entry(self, container: Node, key: str) -> None:
        if container.listing is None:
            return
        listing = _changed_here([e for e in container.listing if e.key != key])
        container.listed_at = self.metacache.store_listing(container.cache_key(), listing)
        self._lay_out(container, listing)

    # -- content ----------------------------------------------------------------------------

    async def content(self, node: Node) -> Content:
        """A file's content with URL and size known (fetched once per version, kept for good)."""
        content = node.entry.content
        if content is None:
            raise NotFound(node.path)
        if content.url is not None and content.size is not None:
            return content
        fact = self.metacache.fact(content.version)
        if fact is None:
            fact = await self.sizes.wait(node, lambda f: self.known_size(f) is None)
        if fact is None:
            lock = self._content_locks.setdefault(content.version, trio.Lock())
            async with lock:
                fact = self.metacache.fact(content.version)
                if fact is None:
                    fact = await node.owner.resolve(content)
                    self.metacache.store_fact(content.version, fact)
            self._content_locks.pop(content.version, None)
        return _with_current_url(fact, content)

    def content_at_hand(self, node: Node) -> Content | None:
        """A file's content with URL and size if both are known without a request, else None."""
        content = node.entry.content
        if content is None or node.is_dir or node.local is not None or content.url is None:
            return None
        if content.size is not None:
            return content
        fact = self.metacache.fact(content.version)
        return _with_current_url(fact, content) if fact is not None and fact.size is not None else None

    async def renew_url(self, node: Node, refused: str) -> str:
        """A new URL for a file whose signed URL was refused (it expired while the file was
        open): from the provider's download route where URLs are handed out on demand, else
        from a fresh listing of the directory the URL came with."""
        content = node.entry.content
        if content is None:
            raise NotFound(node.path)
        if content.url is None:
            fact = await node.owner.resolve(content)
            self.metacache.store_fact(content.version, fact)
            url = fact.url
        else:
            listed = self.listed_by(node)
            self.forget_listing(listed)
            await self.remote_children(listed)
            url = node.entry.content.url if node.entry.content else None
        if not url or url == refused:
            raise ProviderError(f"{node.path}: the provider gave no new URL for a refused one")
        return url

    def give(self, node: Node, mtime: float, mode: int) -> None:
        """Show these times and mode for the node's current bytes, on this mount and the next."""
        content = node.entry.content
        if content is not None:
            self.given[content.version] = self._given_store[content.version] = (mtime, mode)
            node.attr_cache = None

    def known_size(self, node: Node) -> int | None:
        """The size if known without a request."""
        if node.local is not None:
            return node.local.size
        if node.render is not None:
            return len(node.render())
        entry = node.entry
        if entry.is_dir:
            return 0
        if entry.inline is not None:
            return len(entry.inline)
        if entry.content and entry.content.size is not None:
            return entry.content.size
        fact = self.metacache.fact(entry.content.version) if entry.content else None
        return fact.size if fact else None


def _changed_here(entries: list[Entry]) -> list[Entry]:
    """A listing changed by the mount's own write: it vouches for no state of the provider,
    so its mark equals no answer, and a poller that starts from it (on the next mount) lists
    the directory again at the first round."""
    return with_mark(entries, CHANGED_HERE)


def _unsized_versions(entries: list[Entry]) -> Iterator[str]:
    """The content versions of a listing's files (an asset's among its children) whose size
    the listing does not give."""
    for entry in entries:
        for file in entry.children or (entry,):
            if file.content is not None and file.content.size is None:
                yield file.content.version


class _Former:
    """A directory's children as they were, found again by provider key: first under the
    name they are laid out with now, so that listing an unchanged directory of 100,000
    assets again makes no map of all its keys; that map only once a name is new."""

    __slots__ = ("_by_name", "_adopting", "_by_key")

    def __init__(self, children: dict[str, Node] | None, adopting: Node | None = None):
        self._by_name = children or {}
        self._adopting = adopting  # a node that carries on as this key's, whatever was there
        self._by_key: dict[str, Node] | None = None

    def get(self, name: str, key: str) -> Node | None:
        if self._adopting is not None and self._adopting.entry.key == key:
            return self._adopting
        node = self._by_name.get(name)
        if node is not None and node.entry.key == key:
            return node
        if self._by_key is None:
            self._by_key = {child.entry.key: child for child in self._by_name.values()}
        return self._by_key.get(key)


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
