"""Metadata on disk (diskcache): directory listings with a TTL, kept past it so that a
provider outage still shows the last known tree, and content facts kept for good."""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path

import diskcache

STREAMED_LISTING = 1000  # entries from which a listing is pickled through a file
SPOOL_READ = 1 << 16     # bytes at a time that file is copied into the cache


class MetaCache:
    def __init__(self, directory: Path, ttl: float):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ttl = ttl
        # A small SQLite page cache and no memory map: what is read often is memoized here,
        # and each worker thread's connection would otherwise keep 32 MiB of pages, plus the
        # mapped database, in the mount's memory.
        self._cache = diskcache.Cache(str(directory), size_limit=2 << 30, eviction_policy="least-recently-stored",
                                      sqlite_cache_size=1 << 10, sqlite_mmap_size=0)
        # Facts are true for good and only this mount stores them: once read (or known to be
        # missing) they are answered from memory, not one SQLite query per file of a listing;
        # keyed by the version strings the entries already hold.
        self._facts: dict[str, object] = {}
        self._no_fact: set[str] = set()

    def listed_at(self, key: str) -> float | None:
        """When the cached listing of a directory was fetched, without reading the listing:
        a stale one is read only if the provider fails, never alongside a fresh copy."""
        at = self._cache.get(("listed_at", key))
        if at is None:  # a listing stored by an older version, or none
            cached = self.listing(key)
            return cached[1] if cached is not None else None
        return at

    def listing(self, key: str) -> tuple[list, float] | None:
        """(entries, fetched_at) of a directory, fresh or not."""
        value = self._cache.get(("listing", key), read=True)
        if hasattr(value, "read"):
            with value:
                return pickle.load(value)
        return value  # a small listing (or one stored by an older version)

    def is_fresh(self, fetched_at: float) -> bool:
        return time.time() - fetched_at < self.ttl

    def store_listing(self, key: str, entries: list) -> float:
        """A big listing is pickled straight into a file, without a memo: 100,000 assets never
        become one big bytes object (with the pickler's doubling buffer and memo, as much
        again as the entries themselves) in memory."""
        now = time.time()
        if len(entries) < STREAMED_LISTING:
            with self._cache.transact():
                self._cache.set(("listing", key), (entries, now))
                self._cache.set(("listed_at", key), now)
            return now
        with tempfile.TemporaryFile(dir=self._cache.directory) as spool:
            pickler = pickle.Pickler(spool, protocol=pickle.HIGHEST_PROTOCOL)
            pickler.fast = True  # no memo of every object pickled: entries are trees, nothing is shared
            pickler.dump((entries, now))
            spool.seek(0)
            with self._cache.transact():
                self._cache.set(("listing", key), _SmallReads(spool), read=True)
                self._cache.set(("listed_at", key), now)
        return now

    def forget_listing(self, key: str) -> None:
        with self._cache.transact():
            self._cache.delete(("listing", key))
            self._cache.delete(("listed_at", key))

    def fact(self, version: str):
        """What is true for good of a content version (its size and URL), or None."""
        value = self._facts.get(version)
        if value is None and version not in self._no_fact:
            value = self._cache.get(_fact_key(version))
            if value is None:
                self._no_fact.add(version)
            else:
                self._facts[version] = value
        return value

    def store_fact(self, version: str, value) -> None:
        self.remember_facts({version: value})
        self.persist_facts({version: value})

    def remember_facts(self, facts: dict) -> None:
        """Known from now on, in this mount (`persist_facts` keeps them for the next)."""
        self._facts.update(facts)
        self._no_fact.difference_update(facts)

    def persist_facts(self, facts: dict) -> None:
        """Written to disk in one transaction (a directory's sizes, learnt together); may
        run in a worker thread."""
        with self._cache.transact():
            for version, value in facts.items():
                self._cache.set(_fact_key(version), value)
        self._no_fact.difference_update(facts)  # looked up before they were learnt: there now

    def clear(self) -> None:
        self._cache.clear()
        self._facts.clear()
        self._no_fact.clear()

    def close(self) -> None:
        self._cache.close()


class _SmallReads:
    """A file read at most 64 KiB at a time: diskcache copies a stored file in 4 MiB reads,
    two of them alive at once, at the moment a re-list peaks."""

    def __init__(self, file):
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(SPOOL_READ if size < 0 else min(size, SPOOL_READ))


def _fact_key(version: str) -> str:
    """A string: diskcache stores it as it is, where a tuple key is pickled (and the pickle
    optimized) on every lookup, a third of a cold listing's CPU when each file is looked up."""
    return f"fact:content:{version}"
