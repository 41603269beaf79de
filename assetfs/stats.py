"""Counters for `.assetfs/status.json`: requests, errors, cache hits and misses, bytes."""

from __future__ import annotations

import time
from collections import Counter


class Stats:
    def __init__(self):
        self.counters: Counter[str] = Counter()
        self.started = time.time()

    def add(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def snapshot(self) -> dict:
        return {"started": self.started, "uptime": round(time.time() - self.started, 1), **self.counters}
