"""The interface a provider implements, and the entries it describes its tree with.

Entries are plain data (they are pickled into the metadata cache): a provider answers
"what is in this directory" and "where are this file's bytes"; naming, caching, inodes
and FUSE are somebody else's job. Entries and contents have __slots__: a directory of
100,000 assets holds 300,000 of them.
"""

from __future__ import annotations

import json
import logging
import operator
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, NoReturn, Protocol

import orjson

from ..errors import AssetfsError, NotPermitted, NotSupported, ReadOnly
from ..kinds import Kind
from ..query import Condition, Field, Query, QueryError, bind, select
from .http import ProviderHTTP

log = logging.getLogger(__name__)

# An id the API sent that may go into a URL path, a header and a cache key as it is.
PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")


def _pickled_as_arguments(cls):
    """Pickled as the class and a tuple of its fields, unpickled by calling it: without a
    memo (metacache.py pickles big listings without one) the default form writes every
    slot's name again for every object; this is a quarter smaller, pickles twice as fast
    and unpickles three times as fast."""
    values = operator.attrgetter(*(f.name for f in fields(cls)))
    cls.__reduce__ = lambda self: (cls, values(self))
    return cls


def _restore(obj, state) -> None:
    """Unpickle what a metadata cache written by an older version holds: `(None, {slot:
    value})`, or the __dict__ from before entries had __slots__ (a field it lacks takes its
    default)."""
    values = (state[1] if isinstance(state, tuple) else state) or {}
    for f in fields(obj):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        object.__setattr__(obj, f.name, values.get(f.name, default))


@_pickled_as_arguments
@dataclass(slots=True)
class Content:
    """Where a file's bytes live. `version` names these exact bytes: a new upload gets a
    new version, so anything cached under a version stays true for good."""

    version: str
    url: str | None = None  # GET-able with Range (may redirect); None until resolved
    # Not compared: the version decides it, and a size learnt later (view/sizes.py writes it
    # in) must not make an unchanged listing entry look changed on the next listing.
    size: int | None = field(default=None, compare=False)
    md5: str | None = None  # hex, when the provider publishes one
    mime: str | None = None

    __setstate__ = _restore


class _NoXattrs(dict):
    """The xattrs of an entry that has none: one shared empty mapping, not an empty dict
    per entry (two thirds of a listing's entries have none: 13 MB for 100,000 assets).
    Changing it is a bug, so it refuses; it pickles as a reference to itself."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("an entry without xattrs shares this empty mapping: give it a dict of its own")

    __setitem__ = __delitem__ = __ior__ = update = setdefault = pop = popitem = clear = _refuse

    def __reduce__(self):
        return "NO_XATTRS"


NO_XATTRS = _NoXattrs()


# What an entry is (kinds.py), by the names providers describe their trees with.
CONTAINER = Kind.CONTAINER.value
ASSET = Kind.ASSET.value
CONTENT = Kind.CONTENT.value
TRASH = Kind.TRASH.value


class Growing(Protocol):
    """A file still being written, uploaded as it grows (see Provider.streams)."""

    def chunks(self) -> AsyncIterator[bytes]:
        """Its bytes from the start as they come; ends once the file is closed (`Upload.size`
        and `md5` are filled in by then). Each call starts again at 0."""
        ...


@dataclass
class Upload:
    """Bytes written through the mount, spooled on local disk until the provider has them."""

    path: Path  # the spool file: stream from it, never read it whole
    name: str  # the file name the user wrote
    size: int
    md5: str
    mime: str
    xattrs: dict[str, str] = field(default_factory=dict)  # user.assetfs.* set before close (e.g. intent)
    growing: Growing | None = None  # still being written: send `growing.chunks()`, size and md5 come at its end


@_pickled_as_arguments
@dataclass(slots=True)
class Entry:
    name: str  # the provider's name for it (made safe and unique later)
    key: str  # the provider's handle for this node (an id or a path)
    is_dir: bool
    mtime: float = 0.0
    content: Content | None = None  # a file whose bytes stream from the provider
    inline: bytes | None = None  # a small file made locally (asset.json)
    children: list[Entry] | None = None  # a directory known without a request (an asset's files)
    xattrs: dict[str, str] = field(default_factory=lambda: NO_XATTRS)  # shared when empty: never changed in place
    kind: str = Kind.NONE.value  # a Kind's value (kinds.py)

    __setstate__ = _restore

    @property
    def size(self) -> int | None:
        if self.inline is not None:
            return len(self.inline)
        return self.content.size if self.content else 0


class Listing(list):
    """A directory's entries with the change mark of the answer they came from: what
    `Provider.change_mark` would have answered at that moment. The poller starts from it, so
    a change made right after a listing shows at the first round, and a listing read back
    from the disk cache (pickled with its mark) is checked against the provider at once."""

    mark: str | None = None


def with_mark(entries: list[Entry], mark: str | None) -> list[Entry]:
    """The entries as a Listing that carries `mark` (None: the answer implied no mark)."""
    listing = Listing(entries)
    listing.mark = mark
    return listing


def mark_of(entries) -> str | None:
    """The change mark a listing came with; None for one made or changed here."""
    return getattr(entries, "mark", None)


class SharedSizeBook(Protocol):
    """Content sizes known to a whole fleet, by version (a version's size holds for good)."""

    async def known(self, versions: list[str]) -> dict[str, int]:
        """The sizes of these versions that some mount has learnt (none if the store is away)."""

    async def learnt(self, sizes: dict[str, int]) -> None:
        """Tell the fleet these sizes (nothing if the store is away)."""


class Provider:
    """One configured account of one provider."""

    #: The provider's name, as the config's `provider =` spells it: each subclass sets it.
    name: ClassVar[str]
    #: Why writes fail here, for the log line (issue: read-only providers answer EROFS).
    read_only_reason = ""
    #: The write operations this provider's API has: "create", "replace", "delete",
    #: "mkdir", "rmdir", "move". The others are refused before any byte is written.
    writes: frozenset[str] = frozenset()
    #: Why the operations not in `writes` are refused, for the log line.
    missing_writes_reason = ""
    #: The uploads ("create", "replace") that can start while the file is still being
    #: written: `Upload.growing` is a body of unknown length (chunked transfer encoding).
    streams: frozenset[str] = frozenset()

    def __init__(self, account: str, settings, http: ProviderHTTP):
        self.account = account
        self.settings = settings
        self.http = http
        #: What the provider must remember across mounts (e.g. the assets an iQmetrix
        #: collection gained through the mount): a dict here, a disk store when mounted.
        self.memory: MutableMapping = {}
        #: Sizes learnt by HEAD, shared with the other mounts of a fleet (fleet/sizes.py).
        self.shared_sizes: SharedSizeBook | None = None

    async def list_root(self) -> list[Entry]:
        """The account's top level (organizations, collections, workspaces)."""
        raise NotImplementedError

    async def list_dir(self, entry: Entry) -> list[Entry]:
        """The children of a directory whose `children` are not known inline."""
        raise NotImplementedError

    async def lookup(self, parent: Entry, name: str) -> Entry | None:
        """A child that listings do not show but that exists when named (an organization
        ID typed as a path, an asset GUID). None when the provider has no such notion."""
        return None

    async def change_mark(self, directory: Entry, previous: str | None, this_round: dict | None = None) -> str | None:
        """The cheapest honest answer to "did this directory change?": a mark that differs
        from `previous` (the last mark, None at the first question) once anything in it was
        uploaded, renamed or deleted. None: no such question for this directory (it is not
        polled; its listing lives out metadata_ttl). `this_round`: shared by the questions
        of one poll round, for answers several directories need. `list_dir` gives the same
        mark with its entries (`with_mark`) where its answer holds what the mark is made of."""
        return None

    def head_url(self, content: Content) -> str | None:
        """The URL whose HEAD alone tells the content's size (what `resolve` asks), or None
        where finding the size takes more than that."""
        return content.url

    async def resolve(self, content: Content) -> Content:
        """Fill in a content's URL and size: from metadata where the API has it, else HEAD."""
        if content.url is None:
            raise NotSupported(f"no URL for {content.version}")
        if content.size is None:
            size, _ = await self.http.head(content.url)
            return Content(content.version, content.url, size, content.md5, content.mime)
        return content

    def rendition(self, file: Entry, size: int) -> Content | None:
        """The provider's own smaller picture of an image file, at least `size` px on its
        longer side where the original is that big (the caller scales it down the rest), as
        a content read like any other; no request is made here. None where the provider
        renders none: the iQmetrix and Apple APIs document no such route."""
        return None

    async def locate(self, content: Content) -> str:
        """The URL a content's bytes are read from (a request where the provider hands URLs
        out on demand), without asking its size."""
        if content.url is None:
            raise NotSupported(f"no URL for {content.version}")
        return content.url

    async def close(self) -> None:
        await self.http.aclose()

    # -- queries: the assets of a container that match an expression ------------------------

    def query_fields(self, container: Entry) -> dict[str, Field] | None:
        """The fields a query can name in this container; None where queries do not apply."""
        return None

    def bind_query(self, container: Entry, query: Query) -> list[list[Condition]]:
        """The query checked against this container's fields (QueryError before any request)."""
        fields = self.query_fields(container)
        if fields is None:
            raise QueryError(f"{container.name}: queries apply to directories of assets, not here")
        return bind(query, fields)

    async def query(self, container: Entry, query: Query, listing=None) -> list[Entry]:
        """The container's assets that match, as `list_dir` gives them. Here: evaluated on
        the listing (`listing()`, the cached one where the caller has it); a provider whose
        API can search overrides this."""
        groups = self.bind_query(container, query)
        entries = await listing() if listing is not None else await self.list_dir(container)
        return await select(entries, groups)

    # -- writes: each says why it cannot, unless the provider can ---------------------------

    def supports(self, operation: str) -> bool:
        return operation in self.writes

    def refuse(self, what: str) -> NoReturn:
        if self.read_only_reason:
            raise ReadOnly(f"{what}: {self.read_only_reason}")
        raise NotPermitted(f"{what}: {self.missing_writes_reason or f'the {self.name} API has no way to do this'}")

    async def create_asset(self, container: Entry, upload: Upload) -> Entry:
        """Upload a new file into a container; the new asset's directory entry (with its
        children), so it shows at once."""
        self.refuse("creating an asset")

    async def replace_content(self, asset: Entry, upload: Upload) -> Entry:
        """New content for an existing asset (a new version where the provider keeps
        versions); the asset's directory entry as it now is."""
        self.refuse("replacing an asset's file")

    async def delete_asset(self, asset: Entry) -> None:
        self.refuse("deleting an asset")

    async def make_container(self, parent: Entry, name: str) -> Entry:
        self.refuse("creating a folder")

    async def delete_container(self, container: Entry) -> None:
        self.refuse("deleting a folder")

    async def move_asset(self, asset: Entry, container: Entry, name: str | None) -> Entry:
        """Rename and/or move an asset (from a trash view: restore it); its new directory entry.
        `name` is the file name the mount is to show for it, extension included, exactly as
        asked (`mv notes.txt notes` gives `notes`, whatever the provider's own rename does
        with extensions); None keeps its name (a move only: no rename is sent)."""
        self.refuse("renaming or moving an asset")


def asset_json(meta) -> bytes:
    """The provider's metadata for an asset, pretty-printed (the asset.json file); made for
    every asset of a listing, so by orjson. What orjson refuses (a lone surrogate from the
    JSON, "\\udc80", which cannot be UTF-8; an integer past 64 bits) goes through json, a
    surrogate written as its escape."""
    try:
        # Copied: orjson's bytes keep the capacity of its write buffer (several KiB for a
        # few hundred bytes), which 100,000 assets would turn into hundreds of MB.
        return memoryview(orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)).tobytes()
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(meta, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        return text.encode("utf-8", errors="backslashreplace")


# Pictures the providers' image services scale (raster formats; not SVG, PDF or video).
PICTURES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def is_picture(name: str) -> bool:
    return Path(name).suffix.lower() in PICTURES


def parse_time(value) -> float:
    """Seconds since the epoch of an API date ('2022-04-05T15:06:58.69', '…Z', '…+00:00');
    dates without a zone are taken as UTC. 0 when absent or unreadable."""
    if not value or not isinstance(value, str):
        return 0.0
    try:  # the usual forms, at C speed (it is parsed for every asset of a listing)
        dt = datetime.fromisoformat(value)
    except ValueError:
        odd = _parse_odd_time(value)
        if odd is None:
            return 0.0
        dt = odd
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_odd_time(value: str) -> datetime | None:
    """A date fromisoformat refuses as it is: blanks around it, more fraction digits than it takes."""
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # Python wants at most 6 fraction digits
        head, _, rest = text.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def text_field(value) -> str | None:
    """A name field: a non-blank string, else None (a number or an object is no name)."""
    return value if isinstance(value, str) and value.strip() else None


def plain_id(value) -> str | None:
    """An id fit for a URL path, a header and a key, or None (a hostile or odd id is no id)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if PLAIN_ID.match(text) else None


# The entries a directory showed before it is listed again, by key: set by the view around
# the provider's listing, read where the listing is parsed (in whichever task or worker
# thread: context variables follow both).
_listed_before: ContextVar[Mapping[str, Entry]] = ContextVar("assetfs_listed_before", default=MappingProxyType({}))


@contextmanager
def listed_before(entries: Iterable[Entry]) -> Iterator[None]:
    """While listing a directory again: an entry that comes back unchanged is the object
    already in memory, and its fresh copy is freed as soon as it is parsed — a re-list of
    100,000 assets does not hold the old and the new listing at once."""
    token = _listed_before.set({entry.key: entry for entry in entries})
    try:
        yield
    finally:
        _listed_before.reset(token)


def skip_malformed(items, build, where: str) -> list[Entry]:
    """Entries for a listing's items; an item the API sent malformed (a field of the wrong
    type) is left out with a log line, so that one bad asset does not hide the rest. An
    entry equal to the one listed before (`listed_before`) is that one."""
    before = _listed_before.get()
    entries = []
    for item in items:
        try:
            entry = build(item)
            same = before.get(entry.key)
            entries.append(same if same is not None and same == entry else entry)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as e:
            ident = item.get("id") if isinstance(item, dict) else None
            log.warning("%s: left out %.80r: the API sent it malformed (%s: %s)", where, ident, type(e).__name__, e)
    return entries


def first_error(group: BaseExceptionGroup) -> BaseException:
    """What a nursery's failure answers: its first error of ours, so that a 404 stays ENOENT
    and a refusal EACCES (a bare ExceptionGroup would be an unexpected EIO)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = first_error(exc)
        if isinstance(exc, AssetfsError):
            return exc
    return group
