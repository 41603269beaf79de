"""What a node is: which operations make sense where (the write path) and how a directory
is laid out (the view). An entry carries its kind as the plain string value: entries are
pickled into the metadata cache, where an enum member would be stored as a reference to
this class instead of as the short string earlier caches hold."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    NONE = ""  # nothing to write
    CONTAINER = "container"  # holds assets: an organization, brand, collection, workspace or folder
    ASSET = "asset"  # one asset's directory
    CONTENT = "content"  # an asset's content file (its current version)
    TRASH = "trash"  # a view of deleted assets that can be restored
    ASSETS = "assets"  # a container's hidden `.assets/`, one directory per asset
    QUERIES = "queries"  # `.query/`
    RESULTS = "results"  # a query's or a saved view's directory


HOLDERS = (Kind.CONTAINER.value, Kind.TRASH.value)  # directories of assets: always with their `.assets/`
