"""The benchmark over a long path (`benchmarks/run --wan`): the same nginx and emulator as the
loopback benchmark, each behind a proxy of ours (wanproxy.py) that adds 20 ms each way and
caps each connection at 50 MB/s, as a provider across the internet would be. assetfs, rclone
and curl all go through the proxies.

It measures what a user on such a link waits for: `ls -l` of 1,000 and 10,000 files of
unknown size (one HEAD each), the first 64 KiB of 40 photos 8 at a time (a file manager's
thumbnails), the first byte of 10 files one after another, and a cold read of a large file;
and the mount's own CPU seconds per 1,000 assets listed and per GiB read. `--only thumbnails`:
a file manager drawing 200 photos' thumbnails (thumbnails.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import (
    ACCOUNT,
    LISTING_TTL,
    Bench,
    Emulator,
    Nginx,
    Rclone,
    Row,
    asset_file,
    curl_seconds,
    drop_caches,
    fio,
    listing,
    median,
    peak_rss_mb,
    ratio_row,
)

HERE = Path(__file__).resolve().parent
PHOTOS = 40  # thumbnails of a file manager's first screen
PHOTOS_AT_ONCE = 8
PHOTO_HEAD = 64 << 10  # bytes of each photo read (a thumbnail's worth)
FIRST_BYTES = 10  # files opened one after another


class WanLink:
    """A wanproxy.py process in front of `upstream` (http://host:port/…): `.url` is the same
    URL through the proxy."""

    def __init__(self, upstream: str, delay_ms: float, rate_mb: float):
        scheme, _, rest = upstream.partition("://")
        origin, _, path = rest.partition("/")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "wanproxy.py"),
                "--to",
                origin,
                "--delay-ms",
                str(delay_ms),
                "--rate-mb",
                str(rate_mb),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        address = self.process.stdout.readline().strip()
        if not address:
            raise RuntimeError("the WAN proxy did not start")
        self.origin = origin
        self.url = f"{scheme}://{address}/{path}"

    def delivered(self) -> int:
        """Bytes the proxy has passed on to its clients so far (what they fetched)."""
        self.process.send_signal(signal.SIGUSR1)
        return int(self.process.stdout.readline().split()[1])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_heads(paths: list[Path], at_once: int, size: int) -> None:
    """Read the first `size` bytes of each path, `at_once` at a time (a thumbnailer)."""

    def head(path: Path) -> None:
        with open(path, "rb") as f:
            f.read(size)

    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(head, paths))


def first_bytes(paths: list[Path]) -> float:
    """Seconds to open and read one byte of each path, one after another (lookups done)."""
    for path in paths:
        os.stat(path)
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            f.read(1)
    return time.perf_counter() - start


def curl_first_bytes(urls: list[str]) -> float:
    """Seconds to the first byte of each URL, one after another on one curl (one connection)."""
    args = ["curl", "-sS", "-r", "0-0"]
    for url in urls:
        args += ["-o", "/dev/null", "-w", "%{time_starttransfer}\\n", url]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return sum(float(v) for v in out.split())


class WanBench(Bench):
    """Content over HTTPS with HTTP/2 (as CDNs serve it) from a certificate of the run's own,
    which the mounts, rclone and curl are all told to trust (SSL_CERT_FILE); the API over HTTP."""

    def __init__(self, args):
        super().__init__(args)
        self.content = WanLink(self.nginx.url, args.delay_ms, args.rate_mb)
        self.links = [self.content]
        self.photos_done = False

    def content_server(self) -> Nginx:
        cert, key = self.work / "cert.pem", self.work / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
            + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        os.environ["SSL_CERT_FILE"] = os.environ["CURL_CA_BUNDLE"] = str(cert)  # inherited by every client started
        self.access_log = self.work / "access.log"  # the thumbnails benchmark counts the originals read in it
        return Nginx(self.work, self.site, tls=(cert, key), access_log=self.access_log)

    def emulator(self, name: str, assets: int, large: str | None = None) -> Emulator:
        """An emulator whose API and content URLs are both behind a proxy."""
        emu = Emulator(self.site / name, assets, f"{self.content.url}{name}/data/", large)
        api = WanLink(emu.url, self.args.delay_ms, self.args.rate_mb)
        self.links.append(api)
        for account in emu.config["accounts"].values():
            for key in ("base_url", "auth_url"):
                if key in account:
                    account[key] = account[key].replace(api.origin, api.url.split("/")[2])
        return emu

    def rclone(self) -> Rclone:
        self.mounts += 1
        return Rclone(self.work / f"r{self.mounts}", self.content.url)

    def close(self) -> None:
        for link in self.links:
            link.stop()
        super().close()

    # -- listings and photos ------------------------------------------------------------------

    def wan_listings(self, count: int, repeat: int) -> None:
        emu, org, folder = self.listing_emulator(count)
        try:
            ours, cpu = [], []
            for _ in range(repeat):
                m = self.mount(emu, options=LISTING_TTL)
                try:
                    before = cpu_seconds(m.process.pid)
                    ours.append(self._timed_listing(lambda: listing(m.path / ACCOUNT / org, "-l"), count))
                    cpu.append(cpu_seconds(m.process.pid) - before)
                finally:
                    m.stop()
            theirs = []
            for _ in range(repeat if count <= 1000 else 1):
                r = self.rclone()
                try:
                    theirs.append(self._timed_listing(lambda: listing(r.path / folder.name, "-l"), count))
                finally:
                    r.stop()
            goal = {1000: 1.0, 10000: 6.0}.get(count)
            row = ratio_row(
                f"`ls -l`, {count:,} files of unknown size, cold" + ("" if len(theirs) > 1 else " (rclone: 1 run)"),
                median(ours),
                median(theirs),
                "time",
                "rclone",
                False,
            )
            if goal is not None:
                row.target, row.met = f"≤ {goal:g} s", median(ours) <= goal
            self.rows.append(row)
            self.rows.append(
                Row(
                    f"mount CPU per 1,000 assets listed (`ls -l` of {count:,})",
                    f"{median(cpu) / count * 1000:.3f} s",
                    "",
                    "",
                )
            )
            if not self.photos_done:  # once, on the smallest listing
                self.photos_done = True
                self._photos(emu, org, folder, count, repeat)
            shutil.rmtree(folder)
        finally:
            emu.stop()

    def _timed_listing(self, run, count: int) -> float:
        start = time.perf_counter()
        lines = run()
        seconds = time.perf_counter() - start
        self._check_count(lines, count)
        return seconds

    def _photos(self, emu: Emulator, org: str, folder: Path, count: int, repeat: int) -> None:
        """A file manager's first view of a folder of `count` photos on a fresh mount: `ls -l`,
        then the first 64 KiB of 40 photos 8 at a time, the page cache dropped in between (so
        the photos row is cold data with the sizes known on both sides: rclone's listing
        HEADs every file). Then, on another fresh mount after an `ls -l`, the first byte of 10
        files one after another; curl reads the same 10 on one connection."""
        names = sorted(p.name for p in folder.iterdir())[:PHOTOS]
        firsts = names[PHOTOS - FIRST_BYTES :]
        urls = [f"{self.content.url}{folder.name}/{n.replace(' ', '%20')}" for n in firsts]

        def first_view(directory: Path) -> tuple[float, float]:
            start = time.perf_counter()
            self._check_count(listing(directory, "-l"), count)
            listed = time.perf_counter() - start
            drop_caches()
            start = time.perf_counter()
            read_heads([directory / n for n in names], PHOTOS_AT_ONCE, PHOTO_HEAD)
            return listed, time.perf_counter() - start

        def first_byte_each(directory: Path) -> float:
            listing(directory, "-l")
            return first_bytes([directory / n for n in firsts])

        ours: dict[str, list[float]] = {"view": [], "photos": [], "first": []}
        theirs: dict[str, list[float]] = {"view": [], "photos": [], "first": []}
        by_curl: list[float] = []
        for _ in range(repeat):
            for side, measured in ((self._ours, ours), (self._rclone, theirs)):
                listed, photos = side(emu, org, folder, first_view)
                measured["view"].append(listed + photos)
                measured["photos"].append(photos)
                measured["first"].append(side(emu, org, folder, first_byte_each))
            by_curl.append(curl_first_bytes(urls))
        view = ratio_row(
            f"a file manager's first view: `ls -l` of {count:,} files of unknown size, "
            f"then the first 64 KiB of {PHOTOS} photos, {PHOTOS_AT_ONCE} at a time, cold",
            median(ours["view"]),
            median(theirs["view"]),
            "time",
            "rclone",
            False,
        )
        view.target, view.met = "≤ 2 s", median(ours["view"]) <= 2
        first = f"first byte of {FIRST_BYTES} files one after another, cold"
        self.rows += [
            view,
            ratio_row(
                f"first 64 KiB of {PHOTOS} photos, {PHOTOS_AT_ONCE} at a time, cold (sizes known)",
                median(ours["photos"]),
                median(theirs["photos"]),
                "time",
                "rclone",
                False,
                2.0,
            ),
            ratio_row(first, median(ours["first"]), median(theirs["first"]), "time", "rclone", False),
            ratio_row(first, median(ours["first"]), median(by_curl), "time", "curl (one connection)", False),
        ]

    def _ours(self, emu: Emulator, org: str, folder: Path, measure):
        """measure(directory) on a fresh assetfs mount."""
        m = self.mount(emu, options=LISTING_TTL)
        try:
            return measure(m.path / ACCOUNT / org)
        finally:
            m.stop()

    def _rclone(self, emu: Emulator, org: str, folder: Path, measure):
        """measure(directory) on a fresh rclone mount of the same files."""
        r = self.rclone()
        try:
            return measure(r.path / folder.name)
        finally:
            r.stop()

    # -- the large read -----------------------------------------------------------------------

    def wan_read(self, repeat: int) -> None:
        args = self.args
        emu = self.emulator("read", 0, args.large)
        try:
            org = emu.account["organizations"][1]
            url = next(a["uploadedAssetUri"] for a in emu.org_listing(org) if a["userFacingFileName"] == "large")
            local = self.site / "read" / "data" / url.rsplit("/", 2)[-2]
            size = local.stat().st_size
            (self.site / "large.bin").symlink_to(local)
            ours, cpu, rss, theirs, by_curl = [], [], [], [], []
            for _ in range(repeat):
                m = self.mount(emu, self.work / f"read-cache{self.mounts}")
                try:
                    path = asset_file(m.path / ACCOUNT / org, "large", "large.bin")
                    drop_caches()
                    before = cpu_seconds(m.process.pid)
                    ours.append(fio(path, "read", size))
                    cpu.append(cpu_seconds(m.process.pid) - before)
                    rss.append(peak_rss_mb(m.process.pid))
                finally:
                    m.stop()
                r = self.rclone()
                try:
                    drop_caches()
                    theirs.append(fio(r.path / "large.bin", "read", size))
                finally:
                    r.stop()
                drop_caches()
                by_curl.append(size / curl_seconds(url)[0])
            big = args.large
            self.rows += [
                ratio_row(f"read {big} cold", median(ours), median(by_curl), "rate", "curl (one flow)", True, 3.0),
                ratio_row(f"read {big} cold", median(ours), median(theirs), "rate", "rclone", True),
                Row(f"mount CPU per GiB read (cold read of {big})", f"{median(cpu) / size * (1 << 30):.2f} s", "", ""),
                Row(
                    f"peak RSS of the mount, streaming {big}", f"{max(rss):.0f} MB", "", "", "< 200 MB", max(rss) < 200
                ),
            ]
        finally:
            emu.stop()

    def table(self) -> str:
        a = self.args
        return (
            super().table()
            + f"; through wanproxy.py: {a.delay_ms:g} ms each way ({2 * a.delay_ms:g} ms round trip),"
            + f" each connection capped at {a.rate_mb:g} MB/s each way; content over HTTPS (HTTP/2 where the"
            + " client offers it), the API over HTTP"
        )


def run(args) -> WanBench:
    bench = WanBench(args)
    parts = args.only or ["listings", "reads"]
    try:
        if "listings" in parts:
            for count in (int(c) for c in args.listings.split(",") if c):
                bench.wan_listings(count, args.repeat)
        if "reads" in parts:
            bench.wan_read(args.repeat)
        if "thumbnails" in parts:
            import thumbnails

            thumbnails.measure(bench)
    finally:
        bench.close()
    return bench
