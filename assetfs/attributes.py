"""What a node looks like to `stat` and `getfattr`: its mode (writable or not, decided
here once for the FUSE layer and the writer alike), size, times, and extended attributes.

Extended attributes are the provider's metadata under `user.assetfs.*`. Names outside
`user.` answer EOPNOTSUPP: `ls -l` asks every file for security.selinux and the POSIX ACLs,
and on EOPNOTSUPP it stops asking for the rest of the run (on ENODATA it would ask again
for every file). A node's attributes are made once per entry and kept on the node.
"""

from __future__ import annotations

import stat

import pyfuse3

from .errors import AssetfsError, NoAttribute, NotAnAttributeNamespace, NotPermitted, ReadOnly, XattrsOff
from .options import MountOptions
from .view.node import ASSETS, Node
from .view.queries import in_results

USER = b"user."


def refusal(node: Node, options: MountOptions) -> AssetfsError | None:
    """Why nothing can be written at this node (None: the provider decides per operation)."""
    if options.ro:
        return ReadOnly("mounted read-only (-o ro)")
    if node.provider is None:
        return NotPermitted("nothing can be written here")
    if node.provider.read_only_reason:
        return ReadOnly(node.provider.read_only_reason)
    if in_results(node):
        return ReadOnly("query results are read-only; write in the asset's own directory")
    return None


class Attributes:
    def __init__(self, options: MountOptions, ttl: float, started: float, given: dict[str, tuple[float, int]]):
        self.options = options
        self.ttl = ttl
        self.started = started
        self.given = given  # content version → (mtime, mode) given through the mount

    def stat(self, node: Node, size: int | None) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        local = node.local
        given = self.given.get(node.entry.content.version) if node.entry.content is not None and self.given else None
        mtime = local.mtime if local is not None else given[0] if given is not None else node.entry.mtime
        mode = (
            local.mode & ~(0o222 if local.read_only else 0)
            if local is not None
            else given[1]
            if given is not None
            else None
        )
        if mode is not None:
            attr.st_mode = stat.S_IFREG | (mode & ~self.options.umask)
            attr.st_nlink = 1
        else:
            writable = (
                refusal(node, self.options) is None
                and node.entry.inline is None
                and node.render is None
                and node.kind != ASSETS
            )
            if node.is_dir:
                attr.st_mode = stat.S_IFDIR | ((0o777 if writable else 0o555) & ~self.options.umask)
                attr.st_nlink = 2
            else:
                attr.st_mode = stat.S_IFREG | ((0o666 if writable else 0o444) & ~self.options.umask)
                attr.st_nlink = 1
        attr.st_size = size or 0
        attr.st_blksize = self.options.block_size
        attr.st_blocks = (attr.st_size + 511) // 512
        attr.st_uid = self.options.uid
        attr.st_gid = self.options.gid
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = int((mtime or self.started) * 1e9)
        ttl = 1.0 if (node.render is not None or local is not None) else self.ttl
        attr.entry_timeout = attr.attr_timeout = ttl
        return attr

    # -- extended attributes ----------------------------------------------------------------

    def xattrs_on(self) -> None:
        if self.options.noxattr:
            raise XattrsOff("extended attributes are off (-o noxattr)")

    def xattr(self, node: Node, name: bytes) -> bytes:
        self.xattrs_on()
        if not name.startswith(USER):
            raise NotAnAttributeNamespace(name.decode(errors="replace"))
        value = self._values(node).get(name)
        if value is None:
            raise NoAttribute(name.decode(errors="replace"))
        return value

    def xattr_names(self, node: Node) -> list[bytes]:
        self.xattrs_on()
        return list(self._values(node))

    def _values(self, node: Node) -> dict[bytes, bytes]:
        """The node's attributes as the kernel wants them, made once per entry."""
        memo = node.attr_cache
        if memo is not None and memo[0] is node.entry and node.local is None:
            return memo[1]
        values = dict(node.entry.xattrs)
        if node.asset is not None and node.asset is not node.entry:  # an asset's file: the asset's too
            values = {**node.asset.xattrs, **values}
        content = node.entry.content
        if content is not None:
            if content.md5:
                values.setdefault("user.assetfs.md5", content.md5)
            if content.mime:
                values.setdefault("user.assetfs.mime", content.mime)
            if content.url:
                values.setdefault("user.assetfs.source_url", content.url.split("?", 1)[0])
            values.setdefault("user.assetfs.version", content.version)
        if node.local is not None:
            values.update(node.local.xattrs)
            if not node.local.read_only:
                values["user.assetfs.state"] = node.local.state.value
        encoded = {k.encode(): v.encode("utf-8", errors="backslashreplace") for k, v in values.items()}
        node.attr_cache = (node.entry, encoded)
        return encoded
