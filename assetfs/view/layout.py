"""How a container's listing becomes a directory: each asset is its content file, other
directories (subfolders, brands, the trash) stay directories, and every asset also has a
directory under `.assets/` named exactly like its file.

Pure: entries in, names out, so the rules are tested without a provider or a kernel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from ..names import safe_name, unique_names
from ..providers.base import ASSET, CONTENT, Entry
from .node import ASSETS_DIR


@dataclass(slots=True)
class Placed:
    name: str  # unique among the files, subfolders and `.assets/` entries
    entry: Entry  # the provider's entry (for an asset: the asset)
    file: Entry | None = None  # an asset's content file, under the name shown

    @property
    def is_asset(self) -> bool:
        return self.entry.kind == ASSET


THUMBNAIL, THUMBNAIL_PX = "thumbnail.png", 256  # in `.assets/<file>/`: the provider's rendition


def asset_details(entries: list[Entry], provider) -> list[Entry]:
    """What an asset's directory under `.assets/` shows: its entries but its content (the
    file beside `.assets/`), and thumbnail.png, the provider's own rendition of that content
    where it makes one (read like any file; made here without a request)."""
    file = next((e for e in entries if e.kind == CONTENT and e.content is not None), None)
    shown = [e for e in entries if e.kind != CONTENT]
    if file is not None and provider is not None:
        rendition = provider.rendition(file, THUMBNAIL_PX)
        if rendition is not None:
            shown.append(Entry(THUMBNAIL, f"{file.key}/{THUMBNAIL}", False, file.mtime, content=rendition))
    return shown


def content_of(asset: Entry) -> Entry | None:
    """An asset's content file, if its children are known and it has one."""
    for child in asset.children or ():
        if child.kind == CONTENT and child.content is not None:
            return child
    return None


def place(entries: list[Entry]) -> Iterator[Placed]:
    """Names for a container's entries, in their order (one at a time: a listing of 100,000
    is laid out without a list of them). An asset is named by its content file (name and
    real extension); one without a content file by its own name (it lives only under
    `.assets/`). Names are unique across all of them, duplicates marked with the provider's
    id, so one asset keeps one name whatever the listing's order."""
    files = [content_of(entry) if entry.kind == ASSET else None for entry in entries]
    names = [_wanted_name(entry, file) for entry, file in zip(entries, files)]
    if len(set(names)) < len(names):  # (else no (name, id) pairs for 100,000 names that need no mark)
        names = unique_names([(name, _ident(entry)) for name, entry in zip(names, entries)])
    for name, entry, file in zip(names, entries, files):
        if file is not None and file.name != name:  # (its xattrs are shown with the asset's: attributes.py)
            file = dataclasses.replace(file, name=name)
        yield Placed(name, entry, file)


def _wanted_name(entry: Entry, file: Entry | None) -> str:
    raw = file.name if file is not None else entry.name
    name = safe_name(raw, _ident(entry))
    if name == ASSETS_DIR:
        return "\uff0e" + name[1:]  # a look-alike: the real one is the hidden directory
    return raw if name == raw else name  # the entry's own string, not a copy per file of a listing


def _ident(entry: Entry) -> str:
    return entry.key.rsplit("/", 1)[-1]
