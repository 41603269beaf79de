"""Counters of one mount, read by `.assetfs/status.json` and the Prometheus endpoint
(metrics.py): requests, errors, cache hits and misses, bytes, FUSE operations."""

from __future__ import annotations

import time
from collections import Counter

from prometheus_client import Histogram

# Seconds an HTTP request to a provider takes: from a cached listing page to a large upload.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))


class Stats:
    def __init__(self):
        self.counters: Counter[str] = Counter()
        # HTTP answers by (account, provider, method, code); code "error": no answer at all
        self.requests: Counter[tuple[str, str, str, str]] = Counter()
        # kept apart from any global registry: each mount (and each test) has its own
        self.request_seconds = Histogram(
            "assetfs_request_seconds",
            "Seconds an HTTP request to a provider took, until its whole answer was in",
            ("account", "provider", "method"),
            buckets=REQUEST_BUCKETS,
            registry=None,
        )
        self.started = time.time()

    def add(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def request(self, labels: tuple[str, str], method: str, code: str, seconds: float) -> None:
        """One HTTP request of an account ((account, provider) in `labels`) and its outcome."""
        self.requests[(*labels, method, code)] += 1
        self.request_seconds.labels(*labels, method).observe(seconds)

    def snapshot(self) -> dict:
        return {"started": self.started, "uptime": round(time.time() - self.started, 1), **self.counters}
