"""The Prometheus endpoint (`[metrics] listen`, `-o metrics=ADDR`): the mount's counters,
read from `Stats` at each scrape, so status.json and /metrics never disagree.

Labels are account names (the config's section names), provider kinds, HTTP methods and
status codes, and FUSE operation names: never a path, a URL or a credential."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import ConfigError
from .stats import Stats

# status.json counters shown under a name of their own (or a label); every other counter is
# shown as assetfs_<name>_total
NAMED = {
    "bytes_read": ("assetfs_bytes_read", "Bytes read from files of the mount"),
    "bytes_uploaded": ("assetfs_bytes_uploaded", "Bytes of files uploaded to the providers"),
    "rate_limited": (
        "assetfs_rate_limited",
        "Answers of a provider that refused a request for its rate (429, rate-limit 403)",
    ),
}
CACHES = {"block": "blocks", "metadata": "metadata"}  # counter prefix → the `cache` label
FUSE_PREFIX = "fuse_"


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9464', '[::1]:9464' or ':9464' (all addresses) → (host, port)."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host.strip("[]") or "0.0.0.0", int(port)


def checked_listen(text: str) -> str:
    """The address as given, once it is known to parse ('off' too: no endpoint)."""
    if text.strip().lower() != "off":
        parse_listen(text)
    return text.strip()


class MountCollector(Collector):
    """Reads the counters at scrape time (in the server's thread: only copies are iterated)."""

    def __init__(self, stats: Stats, pending_uploads: Callable[[], int]):
        self.stats = stats
        self.pending_uploads = pending_uploads

    def collect(self) -> Iterator:
        counters = dict(self.stats.counters)  # a copy made at once: the event loop goes on counting
        counters.pop("requests", None)  # shown by its labels, below
        requests = CounterMetricFamily(
            "assetfs_requests",
            "HTTP requests to the providers by answer (code 'error': no answer; code 'ok': made in a worker "
            "thread, which tells success, not the status: a ranged GET of content, or a batch of size HEADs "
            "counted once as method 'HEAD')",
            labels=("account", "provider", "method", "code"),
        )
        for labels, count in dict(self.stats.requests).items():
            requests.add_metric(labels, count)
        yield requests
        yield from self.stats.request_seconds.collect()

        hits = CounterMetricFamily("assetfs_cache_hits", "Blocks and metadata found in the cache", labels=("cache",))
        misses = CounterMetricFamily("assetfs_cache_misses", "Blocks and metadata fetched", labels=("cache",))
        for prefix, cache in CACHES.items():
            hits.add_metric((cache,), counters.pop(f"{prefix}_hits", 0))
            misses.add_metric((cache,), counters.pop(f"{prefix}_misses", 0))
        yield hits
        yield misses

        ops = CounterMetricFamily("assetfs_fuse_ops", "FUSE operations answered, by operation", labels=("op",))
        for name in sorted(n for n in counters if n.startswith(FUSE_PREFIX)):
            ops.add_metric((name.removeprefix(FUSE_PREFIX),), counters.pop(name))
        yield ops

        for counter, (name, documentation) in NAMED.items():
            yield CounterMetricFamily(name, documentation, value=counters.pop(counter, 0))
        for counter in sorted(counters):
            yield CounterMetricFamily(
                f"assetfs_{_metric_name(counter)}", f"status.json counter {counter}", value=counters[counter]
            )

        yield GaugeMetricFamily(
            "assetfs_pending_uploads", "Files written and not yet uploaded", value=self.pending_uploads()
        )


def _metric_name(counter: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", counter)


class MetricsServer:
    """/metrics over HTTP in a thread of its own (prometheus_client's server): a scrape never
    waits for the event loop, and the event loop never waits for a scraper."""

    def __init__(self, listen: str, stats: Stats, pending_uploads: Callable[[], int]):
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MountCollector(stats, pending_uploads))
        self._server: WSGIServer | None = None

    def start(self) -> None:
        try:
            server, _ = start_http_server(self.port, self.host, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"metrics: cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        self._server = server
        self.port = server.server_address[1]  # the port chosen, when 0 was asked

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
