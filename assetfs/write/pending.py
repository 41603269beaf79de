"""`.assetfs/pending/`: one read-only file per upload the provider has not confirmed yet,
with its bytes, so nothing waiting (or refused) is out of the user's reach."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..names import safe_name
from ..providers.base import Entry
from ..view.node import Node
from ..view.view import View
from .journal import PendingUpload
from .overlay import LocalFile
from .spool import SpoolFile


class PendingDirectory:
    def __init__(self, view: View, pending: Callable[[], list[PendingUpload]]):
        self.view = view
        self.pending = pending
        self._nodes: dict[str, Node] = {}
        view.special_children[view.pending_dir.ino] = self.children

    def children(self) -> dict[str, Node]:
        children, nodes = {}, {}
        for record in self.pending():
            node = self._nodes.get(record.id)
            if node is None:
                try:
                    spool = SpoolFile(Path(record.spool))
                except OSError:
                    continue
                name = safe_name(f"{record.id} {record.name}", record.id)
                node = self.view.new_node(
                    name, self.view.pending_dir, None, Entry(name, f"pending:{record.id}", False, record.mtime)
                )
                node.local = LocalFile(spool, record, record.mtime, read_only=True)
            node.entry = Entry(
                node.name,
                node.entry.key,
                False,
                record.mtime,
                xattrs={
                    "user.assetfs.account": record.account,
                    "user.assetfs.state": record.state,
                    "user.assetfs.target": record.target.name,
                    "user.assetfs.attempts": str(record.attempts),
                    "user.assetfs.error": record.last_error,
                },
            )
            if node.local is not None:
                node.local.record = record
            nodes[record.id] = node
            children[node.name] = node
        for gone in set(self._nodes) - set(nodes):
            local = self._nodes[gone].local
            if local is not None and local.handles <= 0:
                local.close()
        self._nodes = nodes
        return children
