"""Evaluating a query on a container's listing, for what the provider's API cannot answer.

The listing's asset entries carry the provider's asset object as their asset.json; a query's
conditions are checked against that object, so a local answer and the API's agree on the
fields they share.
"""

from __future__ import annotations

import json

import trio

from .fields import Condition, matches


def asset_object(entry) -> dict | None:
    """The provider's object for an asset entry (its asset.json); None for anything else (a
    folder has no files listed with it)."""
    for child in entry.children or ():
        if child.name == "asset.json" and child.inline is not None:
            try:
                value = json.loads(child.inline)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _select(entries: list, groups: list[list[Condition]]) -> list:
    chosen = []
    for entry in entries:
        asset = asset_object(entry)
        if asset is not None and matches(groups, asset):
            chosen.append(entry)
    return chosen


async def select(entries: list, groups: list[list[Condition]]) -> list:
    """The asset entries of a listing that match any alternative (in a worker thread: a
    large listing takes a while to parse)."""
    return await trio.to_thread.run_sync(_select, entries, groups, abandon_on_cancel=False)
