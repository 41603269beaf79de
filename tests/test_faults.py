"""A hostile provider: down, hung, slow, 5xx bursts, 429 and Spectrum's 403 with
Retry-After, connections reset mid-body, truncated bodies, tokens expiring mid-read and
mid-upload, and a file manager's storm over a 1,000-asset directory.

For each: every syscall returns within the mount's timeout (plus a margin for FUSE and a
busy machine), what is cached keeps being served, the mount recovers by itself when the
provider does, it unmounts while the provider is down, and no written byte is lost.
Everything runs against real mounts of a real emulator over HTTP.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_mount_mudstack import MudTruth
from test_mount_write import png
from truth import download, md5, spectrum_assets, wait_for

pytestmark = [pytest.mark.mount, pytest.mark.serial]

TIMEOUT = 5.0
MARGIN = 3.0  # FUSE round trips, retries' last sleep, and a busy 2-core machine
OPTIONS = f"timeout={TIMEOUT:g}s,metadata_ttl=1s"  # a short TTL so that listings go back to the provider
SEED_ORG, TEAM_ORG = "7000000000000300322", "7000000000000300418"


def drop_page_cache() -> None:
    """So that reads reach the mount instead of the kernel's copy of earlier ones."""
    subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=False, capture_output=True)


def quick(fn, *args, limit: float = TIMEOUT + MARGIN):
    """fn(*args), asserting that it came back (with a value or an error) within `limit`."""
    started = time.monotonic()
    try:
        return fn(*args)
    finally:
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"{getattr(fn, '__name__', fn)}{args} took {elapsed:.1f}s (limit {limit:.1f}s)"


def eio(fn, *args, limit: float = TIMEOUT + MARGIN) -> float:
    """Assert that fn(*args) fails with EIO within `limit`; the seconds it took."""
    started = time.monotonic()
    with pytest.raises(OSError) as caught:
        fn(*args)
    elapsed = time.monotonic() - started
    assert caught.value.errno == errno.EIO, caught.value
    assert elapsed < limit, f"{getattr(fn, '__name__', fn)}{args} failed after {elapsed:.1f}s (limit {limit:.1f}s)"
    print(f"EIO in {elapsed:.1f}s: {getattr(fn, '__name__', fn)} {Path(args[0]).name}")
    return elapsed


def read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def listdir(path: Path) -> list[str]:
    return sorted(os.listdir(path))


class SpectrumView:
    """The Spectrum account of a mount: a warm part (listed and read before the fault) and
    a cold part (never touched), with the provider's own bytes to compare with."""

    def __init__(self, emu, m):
        self.account = emu.account("spectrum")
        self.root = m.path / "carhartt"
        seed = {a["userFacingFileName"]: a for a in spectrum_assets(self.account, SEED_ORG)}
        self.warm_dir = self.root / SEED_ORG
        self.warm_file = self.warm_dir / "white MBA.png"
        self.warm_bytes = download(seed["white MBA"]["uploadedAssetUri"])
        self.cold_file = self.warm_dir / "mba logo only.png"
        self.cold_bytes = download(seed["mba logo only"]["uploadedAssetUri"])
        self.cold_dir = self.root / TEAM_ORG
        self.warm_listing = self.warm()

    def warm(self) -> list[str]:
        listing = listdir(self.warm_dir)
        os.listdir(self.warm_dir / ".assets" / self.warm_file.name)
        os.listdir(self.warm_dir / ".assets" / self.cold_file.name)
        assert read(self.warm_file) == self.warm_bytes
        return listing

    def stale_still_served(self) -> None:
        """The listing (past its TTL) and the file read earlier, from the caches."""
        time.sleep(1.2)  # past metadata_ttl: the listing goes back to the provider
        drop_page_cache()
        started = time.monotonic()
        assert quick(listdir, self.warm_dir) == self.warm_listing
        listed = time.monotonic()
        assert quick(read, self.warm_file) == self.warm_bytes
        print(f"stale listing in {listed - started:.1f}s, cached file in {time.monotonic() - listed:.2f}s")

    def new_fails(self) -> None:
        """What was never fetched: EIO within the timeout."""
        eio(os.listdir, self.cold_dir)
        eio(read, self.cold_file)

    def recovered(self, seconds: float = 20.0) -> None:
        """Once the provider answers again the same calls work, without a remount."""
        started = time.monotonic()
        deadline = started + seconds
        while True:
            try:
                assert quick(read, self.cold_file) == self.cold_bytes
                assert len(quick(listdir, self.cold_dir)) == 7  # six files and .assets/
                print(f"recovered {time.monotonic() - started:.1f}s after the provider did")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def kill(emu) -> None:
    """Stop an emulator that still holds hung or slowed requests (a polite stop waits for them)."""
    emu.process.kill()
    emu.process.wait()


def unmount_within(m, seconds: float) -> float:
    """`fusermount3 -u` (again while the kernel says busy: a syscall is still in flight)
    until the mount is gone and its process has exited; the seconds that took."""
    started = time.monotonic()
    while True:
        result = subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            break
        assert "busy" in result.stderr, result.stderr
        assert time.monotonic() - started < seconds, f"still busy after {seconds}s"
        time.sleep(0.2)
    m.process.wait(max(1.0, seconds - (time.monotonic() - started)))
    return time.monotonic() - started


# -- down, hung, slow -------------------------------------------------------------------


def test_provider_down_cached_served_new_eio_then_recovers(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS, accounts=["carhartt"])
    view = SpectrumView(emu, m)
    port = emu.port
    emu.stop()  # connection refused from now on
    view.stale_still_served()
    view.new_fails()
    fresh_emulator(port=port)
    view.recovered()
    assert "showing the listing cached" in m.log()


def test_hung_provider_cached_served_new_eio_then_recovers(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS, accounts=["carhartt"])
    view = SpectrumView(emu, m)
    emu.set_faults(hang=True)
    view.stale_still_served()
    view.new_fails()
    emu.clear_faults()
    view.recovered()
    kill(emu)


def test_slow_provider_beyond_the_timeout_cached_served_new_eio_then_recovers(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS, accounts=["carhartt"])
    view = SpectrumView(emu, m)
    emu.set_faults(latency=TIMEOUT + 2)
    view.stale_still_served()
    view.new_fails()
    emu.clear_faults()
    view.recovered()
    kill(emu)


def test_the_first_read_after_a_stopped_provider_resumes_has_the_right_bytes(fresh_emulator, mount):
    """SIGSTOP: the provider's sockets accept and nothing answers. A read fails in time;
    right after SIGCONT the next read works, without waiting for a background probe."""
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS, accounts=["carhartt"])
    view = SpectrumView(emu, m)
    os.stat(view.cold_file)
    emu.process.send_signal(signal.SIGSTOP)
    try:
        eio(read, view.cold_file)
        time.sleep(0.5)
        eio(read, view.cold_file, limit=1.0)  # known down: failed fast (one short question)
        time.sleep(0.5)  # the provider comes back a while after the last question, as it would
    finally:
        emu.process.send_signal(signal.SIGCONT)
    started = time.monotonic()
    assert read(view.cold_file) == view.cold_bytes
    print(f"first read after the provider resumed: right bytes in {time.monotonic() - started:.2f}s")


@pytest.mark.parametrize("fault", ["down", "hung"])
def test_unmount_works_while_the_provider_is_down_or_hung(fresh_emulator, mount, fault):
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS)
    view = SpectrumView(emu, m)
    if fault == "down":
        emu.stop()
    else:
        emu.set_faults(hang=True)
    failed = []
    stuck = threading.Thread(target=lambda: failed.append(eio(read, view.cold_file)), daemon=True)
    stuck.start()  # a read waiting on the provider while we unmount
    time.sleep(0.5)
    took = unmount_within(m, TIMEOUT + 2 * MARGIN)  # busy only while the read in flight lasts
    stuck.join(TIMEOUT + MARGIN)
    assert failed, "the read in flight did not fail with EIO in time"
    assert m.process.returncode == 0, m.log()
    print(f"unmounted {fault} provider in {took:.1f}s")
    kill(emu)


# -- answers that fail ------------------------------------------------------------------


def test_a_5xx_burst_is_retried_and_a_lasting_one_is_eio(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS, accounts=["carhartt"])
    view = SpectrumView(emu, m)
    emu.set_faults(fail_status=503, fail_count=3)
    assert len(quick(listdir, view.cold_dir)) == 7
    emu.set_faults(fail_status=502, fail_count=3)
    assert quick(read, view.cold_file) == view.cold_bytes
    emu.set_faults(fail_status=500, fail_count=-1)
    view.stale_still_served()
    eio(read, view.cold_dir / "Crew Neck Mascot.jpg")
    emu.clear_faults()
    assert len(quick(read, view.cold_dir / "Crew Neck Mascot.jpg")) > 0


def test_429_and_spectrums_403_with_retry_after_are_waited_out(fresh_emulator, mount):
    emu = fresh_emulator()
    config = {"accounts": {"carhartt": {**emu.account("spectrum"), "rate_limit": "off"}}}
    m = mount(config, options=OPTIONS)
    view = SpectrumView(emu, m)
    os.stat(view.cold_file)  # its size is known: what follows is the read's own GETs
    emu.set_faults(fail_status=429, fail_count=2, retry_after=1, only_prefix="/cdn/")
    started = time.monotonic()
    assert quick(read, view.cold_file) == view.cold_bytes
    assert time.monotonic() - started >= 2.0  # Retry-After was honoured, twice
    emu.clear_faults()
    # Spectrum's own limit: over it, 403 with Retry-After (not 429)
    emu.set_rate_limit("spectrum", 1, 2)
    emu.reset_requests()
    time.sleep(1.2)
    assert quick(listdir, view.warm_dir) == view.warm_listing
    assert len(quick(listdir, view.cold_dir)) == 7
    log = emu.control.get("/_emulator/requests").json()["log"]
    assert len([p for _, p in log if "/organization/" in p]) >= 3  # at least one 403, waited out
    emu.set_rate_limit("spectrum", 0)
    # a Retry-After beyond the timeout: EIO within the timeout, not after the wait
    emu.set_faults(fail_status=429, fail_count=-1, retry_after=60, only_prefix="/cdn/")
    eio(read, view.cold_dir / "Crew Neck Mascot.jpg")


@pytest.mark.parametrize("fault", ["reset_mid_body", "truncate_body"])
def test_a_body_cut_short_is_retried_and_never_cached(fresh_emulator, mount, fault):
    """A connection reset mid-body, or a body that ends short of its Content-Length."""
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS, accounts=["carhartt"])
    view = SpectrumView(emu, m)
    emu.set_faults(**{fault: 1}, only_prefix="/cdn/")
    assert quick(read, view.cold_file) == view.cold_bytes
    emu.set_faults(**{fault: 1}, only_prefix="/spectrum/")
    assert len(quick(listdir, view.cold_dir)) == 7
    other = view.cold_dir / "team logo.png"
    os.stat(other)
    emu.set_faults(**{fault: 1000}, only_prefix="/cdn/")
    eio(read, other)
    emu.clear_faults()
    drop_page_cache()
    assert md5(quick(read, other)) == md5(download(_cdn_url(emu, TEAM_ORG, "team logo", ".png")))


def _cdn_url(emu, org: str, name: str, ext: str) -> str:
    [asset] = [
        a
        for a in spectrum_assets(emu.account("spectrum"), org)
        if a["userFacingFileName"] == name and a["uploadedAssetUri"].split("?")[0].endswith(ext)
    ]
    return asset["uploadedAssetUri"]


# -- writes during an outage ------------------------------------------------------------


@pytest.mark.parametrize("fault", ["down", "hung"])
def test_a_write_during_an_outage_fails_at_close_and_lands_after_recovery(fresh_emulator, mount, fault):
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS + ",write_back=0", accounts=["studio"])  # close() uploads
    folder = m.path / "studio" / "Game Art" / "characters"
    os.listdir(folder)
    data = png((31, 41, 59), (64, 64))
    port = emu.port
    if fault == "down":
        emu.stop()
    else:
        emu.set_faults(hang=True)
    started = time.monotonic()
    with pytest.raises(OSError) as failure, open(folder / "outage.png", "wb") as f:
        f.write(data)
    took = time.monotonic() - started
    assert failure.value.errno == errno.EIO
    assert took < TIMEOUT + MARGIN, f"close took {took:.1f}s"
    pending = m.path / ".assetfs" / "pending"
    [kept] = [p for p in quick(os.listdir, pending) if p.endswith("outage.png")]
    assert quick(read, pending / kept) == data
    if fault == "down":
        emu = fresh_emulator(port=port)
    else:
        emu.clear_faults()
    time.sleep(1.2)
    os.listdir(folder)  # the mount sees the provider back: pending uploads are due at once
    wait_for(lambda: not os.listdir(pending), 10)
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    [asset] = [a for a in mud.assets(ws, "/characters/") if a["file_name"] == "outage.png"]
    assert md5(mud.download(ws, asset["id"])) == md5(data)
    kill(emu)


# -- tokens and signed URLs ------------------------------------------------------------------


def test_tokens_expiring_and_revoked_mid_read_are_renewed(fresh_emulator, mount):
    """iQmetrix images stream from /images/{id} with the bearer token: reads go on while
    every token lives a second and, halfway, the one the mount holds is revoked."""
    from test_mount_iqmetrix import iq_assets

    emu = fresh_emulator("--assets", "24")
    emu.set_tokens(ttl=1)  # every token lives a second
    account = emu.account("iqmetrix")
    m = mount(emu.config, options=OPTIONS, accounts=["stores"])
    bulk = m.path / "stores" / "bulk"
    truth = {a["name"]: a["md5Checksum"] for a in iq_assets(account, account["collections"]["bulk"])}
    names = [n for n in listdir(bulk) if n != ".assets"]
    assert sorted(truth) == names
    emu.reset_requests()
    half = len(names) // 2
    for name in names[:half]:  # tokens expire every second: renewed as they go
        assert md5(quick(read, bulk / name)) == truth[name]
        time.sleep(0.1)
    emu.set_tokens(ttl=None)
    time.sleep(1.1)
    assert md5(quick(read, bulk / names[half])) == truth[names[half]]  # with a long-lived token
    emu.set_tokens(revoke_all=True)  # refused from now on: a 401, a new token, the read goes on
    for name in names[half + 1 :]:
        assert md5(quick(read, bulk / name)) == truth[name]
    counts = emu.requests()
    images = sum(n for k, n in counts.items() if k.startswith("GET /iqmetrix/images/"))
    assert images == len(names) + 1  # one block fetch was refused and tried again
    assert sum(n for k, n in counts.items() if k.endswith("/oauth2/token")) >= 3, counts


def test_a_token_revoked_mid_upload_is_renewed_and_the_upload_lands(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, options=OPTIONS + ",write_back=0", accounts=["studio", "stores"])  # close() uploads
    folder = m.path / "studio" / "Game Art" / "characters"
    os.listdir(folder)
    os.listdir(m.path / "stores" / "logos")
    # Mudstack: the token is revoked while the bytes go to the signed URL (step 2 of 3)
    data = png((2, 7, 18), (80, 80))
    emu.set_faults(latency=1.5, only_prefix="/upload/")
    revoker = threading.Timer(0.7, lambda: emu.set_tokens(revoke_all=True))
    revoker.start()
    quick(Path.write_bytes, folder / "midway.png", data)
    revoker.join()
    emu.clear_faults()
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    [asset] = [a for a in mud.assets(ws, "/characters/") if a["file_name"] == "midway.png"]
    assert md5(mud.download(ws, asset["id"])) == md5(data)
    # iQmetrix: revoked between the writes and the close that uploads
    logo = png((18, 7, 2), (40, 40))
    with open(m.path / "stores" / "logos" / "fresh.png", "wb") as f:
        f.write(logo)
        emu.set_tokens(revoke_all=True)
    assert quick(read, m.path / "stores" / "logos" / "fresh.png") == logo
    assert not os.listdir(m.path / ".assetfs" / "pending")


URL_TTL = 3.0


@pytest.mark.parametrize(
    "account, large, small",
    [
        ("studio", "Game Art/large.bin", "Game Art/characters"),  # URLs from the download route
        ("carhartt", f"{TEAM_ORG}/large.bin", f"{SEED_ORG}"),  # URLs that come with the listing
    ],
)
def test_signed_urls_that_expire_are_renewed_mid_read_and_after_caching(fresh_emulator, mount, account, large, small):
    """Content URLs that live 3 s: a 24 MiB file read half, then the rest after its URL
    expired; a file whose URL was resolved (and cached) earlier, read after it expired."""
    emu = fresh_emulator("--large-file", "24MiB", "--signed-url-ttl", f"{URL_TTL:g}s")
    m = mount(emu.config, options=OPTIONS + ",read_ahead=2MiB", accounts=[account])  # the rest is fetched later
    root = m.path / account
    small_dir = root / small
    if account == "studio":
        small_file = next(p for p in sorted(small_dir.iterdir()) if p.is_file())
    else:
        small_file = small_dir / "white MBA.png"
    with open(small_file, "rb"):
        pass  # its URL is resolved and kept
    with open(root / large, "rb") as f:
        head = f.read(4 << 20)
        time.sleep(URL_TTL + 0.5)
        rest = quick(f.read)
    time.sleep(URL_TTL + 0.5)
    drop_page_cache()
    small_bytes = quick(read, small_file)
    assert len(small_bytes) == small_file.stat().st_size > 0
    if account == "studio":  # Mudstack publishes md5s: the mount checked the whole files itself
        assert md5(head + rest) == getxattr(root / large, "user.assetfs.md5")
    else:
        seed = {a["userFacingFileName"]: a for a in spectrum_assets(emu.account("spectrum"), SEED_ORG)}
        assert small_bytes == download(seed["white MBA"]["uploadedAssetUri"])
        [big] = [a for a in spectrum_assets(emu.account("spectrum"), TEAM_ORG) if a["userFacingFileName"] == "large"]
        assert md5(head + rest) == md5(download(big["uploadedAssetUri"]))
    assert len(head + rest) == 24 << 20
    renewals = m.log().count("asking the provider for a new URL")
    assert renewals >= 2, m.log()[-3000:]
    print(f"{account}: {renewals} signed URLs renewed")


def getxattr(path: Path, name: str) -> str:
    return os.getxattr(path, name).decode()


def _iq_href(emu, collection: str, name: str) -> str:
    from test_mount_iqmetrix import iq_assets

    account = emu.account("iqmetrix")
    [asset] = [a for a in iq_assets(account, account["collections"][collection]) if a["name"] == name]
    return asset["href"]


# -- a file manager's storm -------------------------------------------------------------


def test_rate_limit_is_a_config_key_with_provider_defaults():
    from assetfs.config import parse_config
    from assetfs.errors import ConfigError

    def account(provider: str, **extra) -> dict:
        base = {
            "spectrum": {"client": "c", "token": "t"},
            "apple": {"client_id": "i", "client_secret": "s"},
            "mudstack": {"account_id": "a", "key": "k", "secret": "s"},
        }[provider]
        return {"provider": provider, "base_url": "https://api.example", **base, **extra}

    accounts = parse_config(
        {
            "accounts": {
                "s": account("spectrum"),
                "a": account("apple"),
                "m": account("mudstack"),
                "off": account("spectrum", rate_limit="off"),
                "own": account("mudstack", rate_limit="600/5m"),
            }
        }
    ).accounts
    assert accounts["s"].rate_limit == (90, 60.0)  # Spectrum: under 100 requests per 60 s
    assert accounts["a"].rate_limit == (15, 1.0)  # Apple: 15 requests per second
    assert accounts["m"].rate_limit is None  # not documented: none
    assert accounts["off"].rate_limit is None
    assert accounts["own"].rate_limit == (600, 300.0)
    with pytest.raises(ConfigError, match=r"accounts.s.rate_limit: .*not a rate: 'fast'"):
        parse_config({"accounts": {"s": account("spectrum", rate_limit="fast")}})


STORM_LIMIT, STORM_WINDOW = 200, 2.0  # the emulator's iQmetrix limit: 100 requests/s
STORM_BUDGET = "160/2s"  # the account's rate_limit, a fifth under it: a loaded machine delays
# some sends, and they then reach the provider closer together


def test_a_file_manager_storm_stays_under_the_rate_limit(fresh_emulator, mount):
    """Every file of a 1,000-asset directory has its first 64 KiB read at once (64 threads):
    the account's request budget spaces the requests, so the provider refuses none and no
    read fails."""
    from test_mount_iqmetrix import iq_assets

    emu = fresh_emulator("--assets", "1000")
    account = emu.account("iqmetrix")
    truth = {a["name"]: a["md5Checksum"] for a in iq_assets(account, account["collections"]["bulk"])}
    emu.set_rate_limit("iqmetrix", STORM_LIMIT, STORM_WINDOW)
    config = {
        "accounts": {
            "stores": {**account, "collections": {"bulk": account["collections"]["bulk"]}, "rate_limit": STORM_BUDGET}
        }
    }
    m = mount(config, options="timeout=30s")
    bulk = m.path / "stores" / "bulk"
    emu.reset_requests()
    started = time.monotonic()
    names = [n for n in listdir(bulk) if n != ".assets"]
    listed = time.monotonic() - started

    def first_64k(name: str) -> bytes:
        with open(bulk / name, "rb") as f:
            return f.read(64 << 10)

    with ThreadPoolExecutor(64) as pool:
        heads = dict(zip(names, pool.map(first_64k, names)))
    took = time.monotonic() - started
    assert sorted(truth) == names
    assert all(md5(heads[n]) == truth[n] for n in names)  # small files: the 64 KiB are the whole file
    counts = emu.requests()
    api = {k: n for k, n in counts.items() if k.startswith(("GET /iqmetrix/assets/", "GET /iqmetrix/images/"))}
    # a refused request (429) would have been sent again: one of each, and nothing more
    assert len(api) == 2000 and set(api.values()) == {1}, sorted(k for k, n in api.items() if n > 1)[:5]
    status = json.loads((m.path / ".assetfs" / "status.json").read_text())
    assert status["counters"].get("errors", 0) == 0, status["counters"]
    rate = 2000 / took
    print(
        f"storm: listed 1000 in {listed:.1f}s, read 1000 x 64 KiB in {took - listed:.1f}s, "
        f"{took:.1f}s in all, {rate:.0f} API requests/s (budget {STORM_BUDGET}, limit {STORM_LIMIT}/{STORM_WINDOW:g}s); "
        f"requests {sum(counts.values())}"
    )
