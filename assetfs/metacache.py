"""Metadata on disk (diskcache): directory listings with a TTL, kept past it so that a
provider outage still shows the last known tree, and content facts kept for good.

A big listing, and the sizes learnt for a directory, are written behind the syscall that
brought them, by one thread, in order, once the mount is quiet: a big listing's pickle takes
a tenth of a cold listing's time (and the GIL), which neither that `ls` nor the next one
need wait for. Until it is on disk a listing is answered from memory; a forgotten one is
never written after the forgetting."""

from __future__ import annotations

import logging
import pickle
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import diskcache

log = logging.getLogger(__name__)

STREAMED_LISTING = 1000  # entries from which a listing is pickled through a file
SPOOL_READ = 1 << 16  # bytes at a time that file is copied into the cache
WRITE_AFTER = 1.0  # seconds after it was stored that a big listing or facts are written at the soonest,
QUIET = 0.5  # once the mount has served no request for this long (a big listing's pickle
WRITE_AT_THE_LATEST = 30.0  # takes the GIL for a second), and at the latest this long after
FACTS_AT_ONCE = 500  # versions looked up in one query (SQLite allows 999 parameters in old builds)


class MetaCache:
    def __init__(self, directory: Path, ttl: float):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ttl = ttl
        # A small SQLite page cache and no memory map: what is read often is memoized here,
        # and each worker thread's connection would otherwise keep 32 MiB of pages, plus the
        # mapped database, in the mount's memory.
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=2 << 30,
            eviction_policy="least-recently-stored",
            sqlite_cache_size=1 << 10,
            sqlite_mmap_size=0,
        )
        # Facts are true for good and only this mount stores them: once read (or known to be
        # missing) they are answered from memory, not one SQLite query per file of a listing;
        # keyed by the version strings the entries already hold.
        self._facts: dict[str, object] = {}
        self._no_fact: set[str] = set()
        # Big listings not on disk yet (the newest per key: entries, fetched_at, when stored by
        # time.monotonic), and the thread that writes them.
        self._unstored: dict[str, tuple[list, float, float]] = {}
        self._unstored_facts: list[tuple[dict, float]] = []  # (facts, when stored by time.monotonic())
        #: time.monotonic() of the mount's last request (set by the mount): writes wait for quiet.
        self.last_request: Callable[[], float] = lambda: 0.0
        self._writing: str | None = None
        self._forgotten: set[str] = set()  # keys forgotten while being written: deleted after
        self._behind = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False

    def listed_at(self, key: str) -> float | None:
        """When the cached listing of a directory was fetched, without reading the listing:
        a stale one is read only if the provider fails, never alongside a fresh copy."""
        with self._behind:
            unstored = self._unstored.get(key)
        if unstored is not None:
            return unstored[1]
        at = self._cache.get(("listed_at", key))
        if at is None:  # a listing stored by an older version, or none
            cached = self.listing(key)
            return cached[1] if cached is not None else None
        return at

    def listing(self, key: str) -> tuple[list, float] | None:
        """(entries, fetched_at) of a directory, fresh or not."""
        with self._behind:
            unstored = self._unstored.get(key)
        if unstored is not None:
            return unstored[0], unstored[1]
        value = self._cache.get(("listing", key), read=True)
        if hasattr(value, "read"):
            with value:
                return pickle.load(value)
        return value  # a small listing (or one stored by an older version)

    def is_fresh(self, fetched_at: float) -> bool:
        return time.time() - fetched_at < self.ttl

    def store_listing(self, key: str, entries: list) -> float:
        """The listing as fetched now: a small one is written at once, a big one behind."""
        now = time.time()
        if len(entries) < STREAMED_LISTING or self._closing:
            self._write(key, entries, now)
            return now
        with self._behind:
            self._unstored[key] = (entries, now, time.monotonic())
            self._wake_writer()
        return now

    def _wake_writer(self) -> None:
        """(Holding `_behind`.) The writer thread, started when first needed, has work."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_behind, name="assetfs-metadata", daemon=True)
            self._writer.start()
        self._behind.notify()

    def forget_listing(self, key: str) -> None:
        with self._behind:
            self._unstored.pop(key, None)
            if self._writing == key:
                self._forgotten.add(key)
        self._delete(key)

    def _write_behind(self) -> None:
        while True:
            with self._behind:
                while True:
                    oldest = next(iter(self._unstored.items()), None)
                    if self._unstored_facts:
                        stored = self._unstored_facts[0][1]
                    elif oldest is not None:
                        stored = oldest[1][2]
                    else:
                        if self._closing:
                            self._writer = None
                            return
                        self._behind.wait()
                        continue
                    due = (
                        0.0
                        if self._closing
                        else min(max(stored + WRITE_AFTER, self.last_request() + QUIET), stored + WRITE_AT_THE_LATEST)
                        - time.monotonic()
                    )
                    if due <= 0:
                        break
                    self._behind.wait(due)
                facts = None
                if self._unstored_facts:
                    facts = self._unstored_facts.pop(0)[0]
                elif oldest is not None:
                    key, listing = oldest
                    self._writing = key
            if facts is not None:
                try:
                    self._write_facts(facts)
                except Exception as e:  # asked again (a HEAD) by the next mount
                    log.warning("%d sizes were not written to the metadata cache: %s", len(facts), e)
            else:
                self._write_listing_behind(key, listing)

    def _write_listing_behind(self, key: str, listing: tuple[list, float, float]) -> None:
        """(The writer thread.) Written unless a newer one came meanwhile; deleted again
        if it was forgotten while being written."""
        try:
            self._write(key, listing[0], listing[1])
        except Exception as e:  # a cache that cannot be written: the listing is fetched again next time
            log.warning("the listing of %s was not written to the metadata cache: %s", key, e)
        with self._behind:
            if self._unstored.get(key) is listing:
                del self._unstored[key]
            self._writing = None
            forgotten = key in self._forgotten
            self._forgotten.discard(key)
        if forgotten:
            self._delete(key)

    def _write(self, key: str, entries: list, at: float) -> None:
        """A big listing is pickled straight into a file, without a memo: 100,000 assets never
        become one big bytes object (with the pickler's doubling buffer and memo, as much
        again as the entries themselves) in memory."""
        if len(entries) < STREAMED_LISTING:
            with self._cache.transact():
                self._cache.set(("listing", key), (entries, at))
                self._cache.set(("listed_at", key), at)
            return
        with tempfile.TemporaryFile(dir=self._cache.directory) as spool:
            pickler = pickle.Pickler(spool, protocol=pickle.HIGHEST_PROTOCOL)
            pickler.fast = True  # no memo of every object pickled: entries are trees, nothing is shared
            pickler.dump((entries, at))
            spool.seek(0)
            with self._cache.transact():
                self._cache.set(("listing", key), _SmallReads(spool), read=True)
                self._cache.set(("listed_at", key), at)

    def _delete(self, key: str) -> None:
        with self._cache.transact():
            self._cache.delete(("listing", key))
            self._cache.delete(("listed_at", key))

    def _finish_writing(self) -> None:
        """Every listing waiting is written, and any stored from now on at once."""
        with self._behind:
            self._closing = True
            writer = self._writer
            self._behind.notify()
        if writer is not None:
            writer.join()

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

    def look_up_facts(self, versions: Iterable[str]) -> None:
        """Which of a listing's versions have a fact on disk, found with one query per
        FACTS_AT_ONCE (diskcache has no get of many keys): the others are known to be missing
        at once, not asked of SQLite one by one as the listing is read (a fifth of a cold
        `ls` of 10,000 files). If the query fails, they are asked one by one as before."""
        unknown = [v for v in versions if v not in self._facts and v not in self._no_fact]
        for at in range(0, len(unknown), FACTS_AT_ONCE):
            chunk = unknown[at : at + FACTS_AT_ONCE]
            keys = [_fact_key(v) for v in chunk]
            try:  # diskcache keeps a string key as it is (raw), indexed by (key, raw)
                rows = self._cache._sql(
                    f"SELECT key FROM Cache WHERE raw = 1 AND key IN ({','.join('?' * len(keys))})", keys
                ).fetchall()
            except (sqlite3.Error, AttributeError) as e:
                log.debug("facts looked up one by one: %s", e)
                return
            present = {key for (key,) in rows}
            self._no_fact.update(version for version, key in zip(chunk, keys) if key not in present)

    def store_fact(self, version: str, value) -> None:
        self.remember_facts({version: value})
        self._write_facts({version: value})

    def remember_facts(self, facts: dict) -> None:
        """Known from now on, in this mount (`persist_facts` keeps them for the next)."""
        self._facts.update(facts)
        self._no_fact.difference_update(facts)

    def persist_facts(self, facts: dict) -> None:
        """Kept for the next mount (a directory's sizes, learnt together; this mount has them
        in its listing): written behind, in one transaction, once the mount is quiet."""
        with self._behind:
            self._unstored_facts.append((facts, time.monotonic()))
            self._wake_writer()

    def _write_facts(self, facts: dict) -> None:
        with self._cache.transact():
            for version, value in facts.items():
                self._cache.set(_fact_key(version), value)
        self._no_fact.difference_update(facts)  # looked up before they were learnt: there now

    def clear(self) -> None:
        with self._behind:
            self._unstored.clear()
            self._unstored_facts.clear()
            if self._writing is not None:
                self._forgotten.add(self._writing)
        self._cache.clear()
        self._facts.clear()
        self._no_fact.clear()

    def close(self) -> None:
        self._finish_writing()
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
