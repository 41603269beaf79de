"""Load: 32 parallel readers over a 1,000-asset organization for a bounded time, and
`find | xargs md5sum` over a 10,000-asset one: no error, every byte the provider's (checked
against the emulator's API directly), each read within the timeout, and the mount's peak
RSS (VmHWM) bounded. Figures are printed (pytest -s) for the README."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from truth import download, md5, spectrum_assets

from assetfs.providers.base import asset_json

pytestmark = [pytest.mark.mount, pytest.mark.serial]
TIMEOUT = 30.0  # the default: under load the point is "no error", not speed
READERS = 32
READ_FOR = 20.0  # seconds the parallel readers run
RSS_LIMIT = 250 << 20  # the README's streaming target is 200 MB; listings of 10,000 assets come on top


def expected_md5s(assets: list[dict]) -> dict[str, str]:
    """The md5 of every asset's upload, fetched from the emulator (not through the mount)."""
    with httpx.Client(timeout=30) as client:

        def one(asset):
            return str(asset["id"]), md5(client.get(asset["uploadedAssetUri"]).raise_for_status().content)

        with ThreadPoolExecutor(8) as pool:
            return dict(pool.map(one, assets))


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def content_files(org: Path) -> dict[str, Path]:
    """asset id → its content file in the mount."""
    out = {}
    for content in org.iterdir():
        if content.is_file():
            out[os.getxattr(content, "user.assetfs.id").decode()] = content
    return out


def test_32_parallel_readers_over_1000_assets(fresh_emulator, mount):
    emu = fresh_emulator("--assets", "1000")
    account = emu.account("spectrum")
    org_id = account["organizations"][0]
    assets = spectrum_assets(account, org_id)
    assert len(assets) == 1003
    expected = expected_md5s(assets)
    m = mount(emu.config, options=f"timeout={TIMEOUT:.0f}s", accounts=["carhartt"])
    files = content_files(m.path / "carhartt" / org_id)
    assert set(files) == set(expected)
    emu.reset_requests()

    errors: list[str] = []
    reads = [0] * READERS
    slowest = [0.0] * READERS
    seen: set[str] = set()
    lock = threading.Lock()
    deadline = time.monotonic() + READ_FOR

    def reader(n: int) -> None:
        order = list(files.items())
        random.Random(n).shuffle(order)
        while time.monotonic() < deadline:
            for asset_id, path in order:
                if time.monotonic() >= deadline:
                    return
                started = time.monotonic()
                try:
                    data = path.read_bytes()
                except OSError as e:
                    errors.append(f"{path.name}: {e}")
                    return
                slowest[n] = max(slowest[n], time.monotonic() - started)
                if md5(data) != expected[asset_id]:
                    errors.append(f"{path.name}: wrong bytes ({len(data)})")
                reads[n] += 1
                with lock:
                    seen.add(asset_id)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(READ_FOR + 60)
    assert not any(t.is_alive() for t in threads), "a reader hung"
    rss = peak_rss(m.process.pid)
    requests = emu.requests()
    gets = sum(n for k, n in requests.items() if k.startswith("GET"))
    print(
        f"\nLOAD 32 readers x {READ_FOR:.0f}s over {len(files)} assets: {sum(reads)} whole-file reads, "
        f"{len(seen)} distinct, slowest read {max(slowest) * 1000:.0f} ms, {gets} GETs at the emulator, "
        f"peak RSS {rss / 2**20:.0f} MiB"
    )
    assert errors == []
    assert seen == set(files)  # every asset was read, and every read was right
    assert max(slowest) < TIMEOUT + 1
    assert gets <= 2 * len(files)  # the block cache and the page cache, not the network, served the repeats
    assert rss < RSS_LIMIT
    assert "Traceback" not in m.log()


def test_find_xargs_md5sum_over_10000_assets(fresh_emulator, mount):
    emu = fresh_emulator("--assets", "10000")
    account = emu.account("spectrum")
    org_id = account["organizations"][0]
    assets = spectrum_assets(account, org_id)
    assert len(assets) == 10003
    by_id = {str(a["id"]): a for a in assets}
    started = time.monotonic()
    expected = expected_md5s(assets)
    fetched = time.monotonic() - started
    m = mount(emu.config, options=f"timeout={TIMEOUT:.0f}s", accounts=["carhartt"])
    org = m.path / "carhartt" / org_id
    started = time.monotonic()
    run = subprocess.run(
        # (the providers' renditions, .assets/*/thumbnail.png, are made by the emulator: not this test's load)
        f"find '{org}' -type f ! -name thumbnail.png -print0 | xargs -0 -P 4 md5sum",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    rss = peak_rss(m.process.pid)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]
    sums: dict[str, str] = {}
    for line in run.stdout.splitlines():
        digest, path = line.split("  ", 1)
        sums[path] = digest
    by_dir: dict[Path, dict[str, str]] = defaultdict(dict)
    for path, digest in sums.items():
        by_dir[Path(path).parent][Path(path).name] = digest
    files = by_dir[org]
    asset_dirs = [d for d, digests in by_dir.items() if "asset.json" in digests]
    assert len(files) == len(asset_dirs) == len(assets)  # every asset's file, and its directory with asset.json
    wrong, outputs = [], 0
    for asset_dir in asset_dirs:
        digests = by_dir[asset_dir]
        asset = by_id[os.getxattr(asset_dir, "user.assetfs.id").decode()]
        assert asset_dir.parent == org / ".assets" and set(digests) == {"asset.json"}
        if files[asset_dir.name] != expected[str(asset["id"])] or digests["asset.json"] != md5(asset_json(asset)):
            wrong.append(str(asset_dir))
        for job in asset.get("productionJobs") or []:  # the seeded assets' embroidery outputs
            for output in job["result"]["outputs"]:
                name = output["uri"].split("?")[0].rsplit("/", 1)[-1]
                outputs += 1
                if by_dir[asset_dir / "production" / job["reference"]].get(name) != md5(download(output["uri"])):
                    wrong.append(f"{asset_dir.name}/production/{job['reference']}/{name}")
    assert outputs > 0 and len(sums) == 2 * len(assets) + outputs  # nothing else was found
    print(
        f"\nLOAD find | xargs md5sum over {len(assets)} assets: {len(sums)} files in {elapsed:.1f} s "
        f"({len(sums) / elapsed:.0f} files/s), peak RSS {rss / 2**20:.0f} MiB; truth fetched in {fetched:.1f} s"
    )
    assert wrong == []
    assert rss < RSS_LIMIT
    assert "Traceback" not in m.log()
