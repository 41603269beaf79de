"""Query and saved-view directories: `.query/<expression>/` and `@<view>/` in every container
whose provider answers queries there.

`.query/` is not listed (so `find`, `du` and `rsync` do not walk into it) but opens when
named; an expression under it is checked against the container's fields before anything is
asked: a bad one is ENOENT at once, with a log line. Saved views are listed, in the
containers where their fields exist. A query's directory is laid out like its container
(each matching asset a file, `.assets/` beside them) from the provider's answer, cached under
its own key for `metadata_ttl` like any listing; a file keeps the name it has in its container
when that listing is at hand. Nothing in them can be written (EROFS, see `attributes.refusal`).
"""

from __future__ import annotations

import dataclasses
import logging

from ..kinds import Kind
from ..providers.base import CONTAINER, CONTENT, Entry
from ..query import QueryError, parse
from .node import ASSETS_DIR, Node

log = logging.getLogger("assetfs.view")

QUERY_DIR = ".query"
VIEW_MARK = "@"
QUERIES = Kind.QUERIES.value  # the kind of `.query/`
RESULTS = Kind.RESULTS.value  # the kind of a query's or a saved view's directory
QUERY_XATTR = "user.assetfs.query"
MAX_REMEMBERED = 4096  # query directories kept between lookups (a script may ask for many)


class Queries:
    """Finds `.query/`, its expressions and the saved views of containers, and lists them."""

    def __init__(self, view):
        self.view = view
        self._nodes: dict[str, Node] = {}  # by cache key: one inode per path, across listings

    def add_to(self, container: Node) -> None:
        """The saved views that apply here, among a container's children (before `.assets/`)."""
        views = self._views(container)
        children = container.children
        if not views or children is None:
            return
        details = children.pop(ASSETS_DIR, None)
        for name, node in views.items():
            if name in children:
                log.debug(
                    "%s: the provider has an entry named %s; the view of that name is not shown", container.path, name
                )
            else:
                children[name] = node
        if details is not None:
            children[ASSETS_DIR] = details

    async def lookup(self, parent: Node, name: str) -> Node | None:
        """`.query`, `.query/<expression>` or `@<view>` (without listing the container); None
        for any other name."""
        if parent.kind == QUERIES:
            return self._expression(parent, name)
        if name == QUERY_DIR and self._applies(parent):
            return self._node(
                parent,
                Entry(
                    QUERY_DIR, f"{parent.entry.key}/{QUERY_DIR}", True, parent.entry.mtime, children=[], kind=QUERIES
                ),
            )
        if name.startswith(VIEW_MARK) and parent.kind == CONTAINER:
            return self._views(parent).get(name)
        return None

    async def results(self, node: Node) -> list[Entry]:
        """The assets a query's directory holds, named as in their container where it is listed."""
        container = node.above.above if node.above.kind == QUERIES else node.above
        provider = container.owner

        async def home() -> list[Entry]:
            await self.view.remote_children(container)
            return container.listing or []

        found = await provider.query(container.entry, parse(node.entry.xattrs[QUERY_XATTR]), listing=home)
        listed = {e.key: e for e in container.listing or () if e.children is not None}
        found = await self.view.with_files(provider, [listed.get(e.key, e) for e in found])
        names = {
            c.asset.key: c.name for c in (container.children or {}).values() if c.asset is not None and not c.is_dir
        }
        return [_named(e, names[e.key]) if e.key in names else e for e in found]

    def _applies(self, container: Node) -> bool:
        return (
            container.kind == CONTAINER
            and container.provider is not None
            and container.provider.query_fields(container.entry) is not None
        )

    def _views(self, container: Node) -> dict[str, Node]:
        if not self._applies(container):
            return {}
        provider, views = container.owner, {}
        for name, expression in (getattr(provider.settings, "views", None) or {}).items():
            try:
                provider.bind_query(container.entry, parse(expression))
            except QueryError as e:
                log.debug("%s: view %s does not apply here: %s", container.path, name, e)
                continue
            views[VIEW_MARK + name] = self._node(container, _results_entry(container, VIEW_MARK + name, expression))
        return views

    def _expression(self, queries: Node, name: str) -> Node:
        container = queries.above
        try:
            container.owner.bind_query(container.entry, parse(name))
        except QueryError as e:
            self.view.stats.add("bad_queries")
            log.warning("%s/%s: %s", queries.path, name, e)
            raise
        return self._node(queries, _results_entry(queries, name, name))

    def _node(self, parent: Node, entry: Entry) -> Node:
        key = f"{parent.owner.account}:{entry.key}"
        node = self._nodes.get(key)
        if node is None:
            if len(self._nodes) >= MAX_REMEMBERED:  # the oldest goes; asked again, it is made anew
                del self._nodes[next(iter(self._nodes))]
            node = self._nodes[key] = self.view.new_node(entry.name, parent, parent.provider, entry)
        return node


def _results_entry(parent: Node, name: str, expression: str) -> Entry:
    return Entry(
        name, f"{parent.entry.key}/{name}", True, parent.entry.mtime, kind=RESULTS, xattrs={QUERY_XATTR: expression}
    )


def _named(asset: Entry, name: str) -> Entry:
    """An asset whose file is called `name` (its name in its container)."""
    if asset.children is None:
        return dataclasses.replace(asset, name=name)
    children = [
        dataclasses.replace(c, name=name) if c.kind == CONTENT and c.content is not None else c for c in asset.children
    ]
    return dataclasses.replace(asset, name=name, children=children)


def in_results(node: Node | None) -> bool:
    """Whether a node is `.query/`, a query's or a view's directory, or anything in them."""
    while node is not None:
        if node.kind in (QUERIES, RESULTS):
            return True
        node = node.parent
    return False
