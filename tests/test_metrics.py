"""The Prometheus endpoint of a real mount (`[metrics] listen`, `-o metrics=`): scraped over
HTTP after reads and an upload, it says what status.json says, and names no secret."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from assetfs.config import parse_config
from assetfs.errors import ConfigError
from assetfs.options import parse_mount_options

MUDSTACK_FOLDER = ("studio", "Game Art", "characters")


def status(m) -> dict:
    return json.loads((m.path / ".assetfs" / "status.json").read_text())


def scrape(url: str) -> tuple[str, dict[str, list]]:
    """The page as text, and its samples by name: [(labels, value)]."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return text, samples


def value(samples: dict, name: str, **labels) -> float:
    return sum(v for have, v in samples.get(name, []) if labels.items() <= have.items())


@pytest.mark.mount
def test_a_scrape_after_reads_and_an_upload_agrees_with_status_json(fresh_emulator, mount, tmp_path):
    emu = fresh_emulator()
    config = {**emu.config, "metrics": {"listen": "127.0.0.1:0"}}  # any free port; status.json tells which
    m = mount(config, accounts=["carhartt", "studio"], options="write_back=0,poll_interval=off")
    org = m.path / "carhartt" / emu.account("spectrum")["organizations"][0]
    files = [p for p in org.iterdir() if p.is_file()]
    assert files, "the emulator's organization lists files"
    read = sum(len(p.read_bytes()) for p in files[:3])
    assert read > 0
    written = b"metrics " * 4096
    (m.path.joinpath(*MUDSTACK_FOLDER) / "counted.bin").write_bytes(written)  # write_back=0: uploaded at close

    before = status(m)
    url = before["metrics"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    text, samples = scrape(url)
    after = status(m)
    was, now = before["counters"], after["counters"]

    def between(name: str, counter: str, **labels) -> float:
        scraped = value(samples, name, **labels)
        assert was.get(counter, 0) <= scraped <= now.get(counter, 0), (name, labels, scraped, was, now)
        return scraped

    assert between("assetfs_bytes_read_total", "bytes_read") >= read
    assert between("assetfs_bytes_uploaded_total", "bytes_uploaded") == len(written)
    assert between("assetfs_cache_misses_total", "metadata_misses", cache="metadata") > 0
    assert between("assetfs_cache_misses_total", "block_misses", cache="blocks") > 0
    between("assetfs_cache_hits_total", "block_hits", cache="blocks")
    between("assetfs_rate_limited_total", "rate_limited")
    for op in ("lookup", "read", "write", "release"):
        assert between("assetfs_fuse_ops_total", f"fuse_{op}", op=op) > 0, op
    assert value(samples, "assetfs_pending_uploads") == len(after["pending_uploads"]) == 0

    # requests by account, provider, method and code; the histogram saw each one
    spectrum = value(
        samples, "assetfs_requests_total", account="carhartt", provider="spectrum", method="GET", code="200"
    )
    uploads = value(samples, "assetfs_requests_total", account="studio", provider="mudstack", method="POST")
    assert spectrum > 0 and uploads > 0
    downloads = value(samples, "assetfs_requests_total", method="GET", code="ok")
    assert downloads > 0  # the content GETs, made in worker threads
    assert value(samples, "assetfs_requests_total", method="transfer") == 0  # each is labelled by its method
    # status.json counts the API's answers and the content downloads; code "ok" also counts
    # the batches of size HEADs made in worker threads, which status.json counts apart
    api = sum(v for labels, v in samples["assetfs_requests_total"] if labels["code"] not in ("error", "ok"))
    assert was["requests"] == now["requests"]
    assert api < now["requests"] <= api + downloads
    assert value(samples, "assetfs_request_seconds_count") == value(samples, "assetfs_requests_total")
    assert value(samples, "assetfs_request_seconds_bucket", le="+Inf") == value(samples, "assetfs_requests_total")

    for account in emu.config["accounts"].values():
        for field in ("token", "key", "secret", "password", "client_secret"):
            if isinstance(account.get(field), str):
                assert account[field] not in text, f"{field} appears in /metrics"


@pytest.mark.mount
def test_o_metrics_off_turns_off_the_configured_endpoint(emu, mount):
    m = mount({**emu.config, "metrics": {"listen": "127.0.0.1:0"}}, accounts=["carhartt"], options="metrics=off")
    assert status(m)["metrics"] is None


@pytest.mark.mount
def test_an_address_in_use_stops_the_mount_with_a_clear_error(emu, mount):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            mount(emu.config, accounts=["carhartt"], options=f"metrics=127.0.0.1:{port}")


def test_metrics_are_off_unless_asked_and_addresses_are_checked():
    config = parse_config({"accounts": {}})
    assert parse_mount_options([]).metrics_listen(config.metrics.listen) is None
    assert parse_mount_options(["metrics=[::1]:9464"]).metrics_listen(None) == "[::1]:9464"
    listen = parse_config({"accounts": {}, "metrics": {"listen": "127.0.0.1:9464"}}).metrics.listen
    assert parse_mount_options([]).metrics_listen(listen) == "127.0.0.1:9464"
    with pytest.raises(ConfigError, match="metrics.listen: 'localhost' is not HOST:PORT"):
        parse_config({"accounts": {}, "metrics": {"listen": "localhost"}})
    with pytest.raises(ConfigError, match="-o metrics=9464"):
        parse_mount_options(["metrics=9464"])


def test_the_example_dashboard_asks_only_for_metrics_a_mount_serves():
    """Every series docs/grafana-dashboard.json queries is one the endpoint has, or a
    status.json counter the code counts (those appear once counted)."""
    import re
    from pathlib import Path

    from assetfs.metrics import MountCollector
    from assetfs.stats import Stats

    root = Path(__file__).parent.parent
    dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(assetfs_\w+?)(?:_total|_bucket)?\b", target["expr"])
    }
    served = {family.name for family in MountCollector(Stats(), lambda: 0).collect()}
    source = "\n".join(p.read_text() for p in (root / "assetfs").rglob("*.py"))
    counted = {f"assetfs_{name}" for name in re.findall(r'stats\.add\("(\w+)"', source)}
    assert queried and queried <= served | counted, queried - served - counted
