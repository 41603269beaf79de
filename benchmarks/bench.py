"""Measure assetfs against curl, local disk and `rclone mount` (http backend) reading the
same bytes from one nginx on 127.0.0.1, in one run, and print one table of ratios.

The emulator's listings point their content URLs at nginx (`--content-base-url`), so
assetfs, rclone and curl all download from the same server. Workloads follow
mountpoint-s3's CI (scripts/fio): sequential and random reads at 256 KiB with fio, time to
the first byte of a 1-byte read, `ls -f` / `ls -l` of 1k/10k/100k entries, and an upload.

`--wan`: the same through a proxy 20 ms away each way (wan.py).

Cold: a fresh mount, an empty cache, the page cache dropped. Warm: a fresh mount over the
block cache a cold read filled, the page cache dropped. Hot: the same mount again (page
cache). Every figure is a median of `--repeat` runs except the time-based fio runs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx

from assetfs.units import parse_size

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mounting import MountedFS, is_mounted, unmount  # noqa: E402

ACCOUNT = "carhartt"  # the emulator's Spectrum account: its first organizations get --assets N each
LISTING_PAGE = 500  # the page size the mount asks Spectrum for
SEARCH_PAGE = 500  # and Mudstack's search
# Listings live as long as rclone's (its --dir-cache-time, 5 min): a cold `ls -l` of 100,000
# files outlives the default 60 s, and the "warm" one would list the directory again.
LISTING_TTL = "metadata_ttl=5m"


# -- measuring ------------------------------------------------------------------------------


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fio(path: Path, rw: str, size: int, runtime: float | None = None, hot: bool = False) -> float:
    """Bytes per second of one fio job at 256 KiB (mountpoint-s3's read workloads); `hot`
    keeps what the page cache holds of the file."""
    args = [
        "fio",
        "--name=bench",
        f"--filename={path}",
        f"--rw={rw}",
        "--bs=256k",
        "--ioengine=sync",
        f"--size={size}",
        "--readonly",
        "--fallocate=none",
        f"--invalidate={0 if hot else 1}",
        "--output-format=json",
    ]
    if runtime:
        args += [f"--runtime={runtime}", "--time_based"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("{") :])["jobs"][0]["read"]["bw_bytes"]


def first_byte(path: Path) -> float:
    """Seconds to open a file and read its first byte (its lookup already done)."""
    os.stat(path)
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def listing(path: Path, flags: str) -> int:
    done = subprocess.run(["ls", flags, str(path)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ls {flags} {path}: exit {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout.count("\n")


def listed(m: MountedFS, path: Path, flags: str) -> int:
    """`listing` of a path in mount `m`; a failure shows what the mount logged."""
    try:
        return listing(path, flags)
    except RuntimeError as e:
        raise RuntimeError(f"{e}\nthe mount logged:\n{m.log()[-3000:]}") from None


def curl_seconds(url: str) -> tuple[float, float]:
    """(whole transfer, time to first byte) of a GET to /dev/null."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{time_starttransfer}", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def asset_file(org: Path, asset: str, file: str) -> Path:
    """An asset's file in either mount layout: `<org>/<name>.<ext>` (assets as files) or
    `<org>/<asset>/<file>` (assets as folders)."""
    candidates = [org / f"{asset}{Path(file).suffix}", org / file, org / asset / file]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{asset}: none of {', '.join(map(str, candidates))}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the servers and mounts -----------------------------------------------------------------


class Emulator:
    def __init__(self, work: Path, assets: int, content_base_url: str, large: str | None = None):
        work.mkdir(parents=True, exist_ok=True)
        config_path = work / "emulator.toml"
        args = [
            sys.executable,
            "-m",
            "assetfs",
            "emulator",
            "--port",
            "0",
            "--quiet",
            "--assets",
            str(assets),
            "--data-dir",
            str(work / "data"),
            "--write-config",
            str(config_path),
            "--content-base-url",
            content_base_url,
        ]
        if large:
            args += ["--large-file", large]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("the emulator did not start")
        self.config = tomllib.loads(config_path.read_text())
        self.account = self.config["accounts"][ACCOUNT]
        # Spectrum's documented limit (under 100 requests a minute) would make a 100k listing
        # (200 pages) wait two minutes for the clock: the benchmark measures the mount.
        self.account["rate_limit"] = "off"

    def org_listing(self, org: str, page_size: int | None = None) -> list[dict]:
        a = self.account
        url = f"{a['base_url']}/api/assets/saved/client/{a['client']}/organization/{org}"
        params = {"page": 1, "pageSize": page_size} if page_size else {}
        return httpx.get(url, params=params, headers={"SPECTRUM_API_TOKEN": a["token"]}, timeout=120).json()["contents"]

    def warm_pages(self, org: str) -> None:
        """Fetch every page of the mount's listing once (untimed): the emulator builds a page
        of generated assets once and then sends it as nginx would send a file."""
        a = self.account
        with httpx.Client(headers={"SPECTRUM_API_TOKEN": a["token"]}, timeout=120) as client:
            for page in range(1, 100000):
                contents = client.get(
                    f"{a['base_url']}/api/assets/saved/client/{a['client']}/organization/{org}",
                    params={"page": page, "pageSize": LISTING_PAGE},
                ).json()["contents"]
                if len(contents) < LISTING_PAGE:
                    return

    def warm_search(self, account: str, folder: str) -> None:
        """Ask Mudstack's search for every page of `folder` once (untimed), as the mount will:
        the emulator keeps each answer until something changes, as it keeps Spectrum's pages."""
        a = self.config["accounts"][account]
        with httpx.Client(base_url=a["base_url"], timeout=120) as client:
            token = client.post("/auth/token", json={k: a[k] for k in ("account_id", "key", "secret")}).json()["token"]
            headers = {"Authorization": f"Bearer {token}", "x-account-id": a["account_id"]}
            for workspace in client.get("/workspaces", headers=headers).json()["workspaces"]:
                for page in range(1, 100000):
                    found = client.get(
                        "/workspaces/assets/search",
                        headers={**headers, "x-workspace-id": workspace["id"]},
                        params={"file_location": folder, "page": page, "limit": SEARCH_PAGE},
                    ).json()
                    if len(found["assets"]) < SEARCH_PAGE:
                        break

    def stop(self):
        self.process.terminate()
        self.process.wait(30)


class Nginx:
    """One static file server (with directory listings, for rclone's http backend). A content
    URL's last part (the file name the emulator adds) is dropped. With `tls` (certificate and
    key files) it speaks HTTPS and HTTP/2, as a CDN does."""

    def __init__(self, work: Path, root: Path, tls: tuple[Path, Path] | None = None, access_log: Path | None = None):
        prefix = work / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = prefix / "nginx.conf"
        listen = f"127.0.0.1:{port}" + (
            f" ssl http2; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}" if tls else ""
        )
        conf.write_text(f"""
daemon off; worker_processes 2; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log;
events {{ worker_connections 4096; }}
http {{ access_log {access_log or "off"}; sendfile on; tcp_nopush on; default_type application/octet-stream;
  server {{ listen {listen}; root {root}; autoindex on; autoindex_exact_size on;
    rewrite "^(/.+/data/[0-9a-f]{{64}})/[^/]+$" $1 break; }} }}
""")
        self.process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(prefix)], stderr=subprocess.DEVNULL)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


class Rclone:
    """`rclone mount :http:` with its defaults (no VFS cache)."""

    def __init__(self, work: Path, url: str):
        work.mkdir(parents=True, exist_ok=True)
        self.path = work / "mnt"
        self.path.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                "rclone",
                "mount",
                ":http:",
                str(self.path),
                "--http-url",
                url,
                "--read-only",
                "--cache-dir",
                str(work / "cache"),
                "--vfs-cache-mode",
                "off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not is_mounted(self.path):
            if time.monotonic() > deadline:
                raise RuntimeError("rclone mount did not come up")
            time.sleep(0.05)

    def stop(self):
        unmount(self.path)
        self.process.terminate()
        self.process.wait(10)


# -- the table ------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    ours: str
    theirs: str
    ratio: str
    target: str = ""
    met: bool | None = None


def ratio_row(
    what: str, ours: float, theirs: float, unit: str, versus: str, higher_is_better: bool, goal: float | None = None
) -> Row:
    """A row whose ratio is > 1 when assetfs is faster; `goal` is the target ratio."""
    ratio = ours / theirs if higher_is_better else theirs / ours
    fmt = (
        (lambda v: f"{v / 1e6:.0f} MB/s")
        if unit == "rate"
        else (lambda v: f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s")
    )
    return Row(
        what,
        fmt(ours),
        f"{versus} {fmt(theirs)}",
        f"{ratio:.2f}× {versus}",
        f"≥ {goal}×" if goal is not None else "",
        None if goal is None else ratio >= goal,
    )


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="assetfs-bench-"))
        os.chmod(self.work, 0o755)
        self.site = self.work / "site"  # nginx's root: the emulators' data dirs and rclone's folders
        self.site.mkdir()
        self.nginx = self.content_server()
        self.rows: list[Row] = []
        self.mounts = 0

    def content_server(self) -> Nginx:
        return Nginx(self.work, self.site)

    def mount(self, emu: Emulator, cache: Path | None = None, options: str = "") -> MountedFS:
        self.mounts += 1
        return MountedFS(
            self.work / f"m{self.mounts}",
            emu.config,
            options=",".join(filter(None, [options, self.args.mount_options])),
            accounts=[ACCOUNT],
            cache_dir=cache,
            log_level="WARNING",
        )

    def rclone(self) -> Rclone:
        self.mounts += 1
        return Rclone(self.work / f"r{self.mounts}", self.nginx.url)

    def emulator(self, name: str, assets: int, large: str | None = None) -> Emulator:
        return Emulator(self.site / name, assets, f"{self.nginx.url}{name}/data/", large)

    # -- listings ---------------------------------------------------------------------------

    def listing_emulator(self, count: int) -> tuple[Emulator, str, Path]:
        """An emulator whose first organization lists `count` generated assets (its pages
        built before any timed run), and as many copies of one of their files in nginx's
        `many<count>/`, which rclone lists."""
        emu = self.emulator(f"list{count}", count)
        try:
            org = emu.account["organizations"][0]
            emu.warm_pages(org)
            sample = next(a for a in emu.org_listing(org, 50) if a["userFacingFileName"].startswith("generated"))
            png = httpx.get(sample["uploadedAssetUri"], timeout=30).content
            folder = self.site / f"many{count}"
            folder.mkdir()
            for i in range(count):
                (folder / f"generated {i + 1:05d}.png").write_bytes(png)
        except BaseException:
            emu.stop()
            raise
        return emu, org, folder

    def listings(self, count: int) -> None:
        emu, org, folder = self.listing_emulator(count)
        try:
            repeat = self.args.repeat if count <= 10000 else 1
            for flags in ("-f", "-l"):
                ours, rss = {"cold": [], "warm": []}, 0.0
                for _ in range(repeat):
                    m = self.mount(emu, options=LISTING_TTL)
                    try:
                        for state in ("cold", "warm"):
                            seconds = timed(lambda: self._check_count(listed(m, m.path / ACCOUNT / org, flags), count))
                            ours[state].append(seconds)
                        rss = max(rss, peak_rss_mb(m.process.pid))
                    finally:
                        m.stop()
                theirs = {"cold": [], "warm": []}
                for _ in range(repeat):
                    r = self.rclone()
                    try:
                        for state in ("cold", "warm"):
                            theirs[state].append(timed(lambda: listing(r.path / folder.name, flags)))
                    finally:
                        r.stop()
                for state in ("cold", "warm"):
                    goal = None
                    if flags == "-l" and count == 10000:
                        goal = 2.0 if state == "cold" else 1.0
                    label = f"`ls {flags}`, {count:,} assets, {state}" + (
                        ", sizes by HEAD (Spectrum)" if flags == "-l" else ""
                    )
                    self.rows.append(
                        ratio_row(
                            label + ("" if repeat > 1 else " (1 run)"),
                            median(ours[state]),
                            median(theirs[state]),
                            "time",
                            "rclone",
                            False,
                            goal,
                        )
                    )
                if count >= 100000:
                    self.rows.append(
                        Row(
                            f"peak RSS of the mount, `ls {flags}` of {count:,}",
                            f"{rss:.0f} MB",
                            "",
                            "",
                            "< 400 MB",
                            rss < 400,
                        )
                    )
                if flags == "-l" and count == 10000:
                    self._listed_sizes(emu, count, repeat, theirs)
            shutil.rmtree(folder)
        finally:
            emu.stop()

    def _listed_sizes(self, emu: Emulator, count: int, repeat: int, theirs: dict[str, list[float]]) -> None:
        """`ls -l` where the provider's listing carries the sizes (Mudstack's bulk folder of
        `count` assets), against the same rclone runs: no request per file on either side
        but rclone's HEADs."""
        account = next(n for n, a in emu.config["accounts"].items() if a["provider"] == "mudstack")
        emu.warm_search(account, "/bulk/")
        ours: dict[str, list[float]] = {"cold": [], "warm": []}
        for _ in range(repeat):
            self.mounts += 1
            m = MountedFS(
                self.work / f"m{self.mounts}", emu.config, options=LISTING_TTL, accounts=[account], log_level="WARNING"
            )
            try:
                bulk = next(p / "bulk" for p in (m.path / account).iterdir() if (p / "bulk").is_dir())
                for state in ("cold", "warm"):
                    ours[state].append(timed(lambda: self._check_count(listed(m, bulk, "-l"), count)))
            finally:
                m.stop()
        for state in ("cold", "warm"):
            self.rows.append(
                ratio_row(
                    f"`ls -l`, {count:,} assets, {state}, sizes in the listing (Mudstack)",
                    median(ours[state]),
                    median(theirs[state]),
                    "time",
                    "rclone",
                    False,
                    2.0 if state == "cold" else 1.0,
                )
            )

    @staticmethod
    def _check_count(lines: int, count: int) -> None:
        if lines < count:
            raise RuntimeError(f"the listing showed {lines} lines, expected at least {count}")

    # -- reads --------------------------------------------------------------------------------

    def reads(self) -> None:
        args = self.args
        emu = self.emulator("read", 0, args.large)
        try:
            org = emu.account["organizations"][1]
            url = next(a["uploadedAssetUri"] for a in emu.org_listing(org) if a["userFacingFileName"] == "large")
            if not url.startswith(self.nginx.url):
                raise RuntimeError(f"the listing's content URL {url} is not on nginx {self.nginx.url}")
            local = self.site / "read" / "data" / url.rsplit("/", 2)[-2]
            size = local.stat().st_size
            (self.site / "large.bin").symlink_to(local)
            runtime = args.runtime
            rate = lambda seconds: size / seconds  # noqa: E731

            curl_total, curl_first = [], []
            local_cold, local_hot = [], []
            for _ in range(args.repeat):
                drop_caches()
                total, first = curl_seconds(url)
                curl_total.append(total), curl_first.append(first)
                drop_caches()
                local_cold.append(fio(local, "read", size))
                local_hot.append(fio(local, "read", size, hot=True))
            drop_caches()
            local_random = fio(local, "randread", size, runtime)

            cold, warm, hot, ttfb, rss = [], [], [], [], []
            cache = self.work / "read-cache"

            def on_mount(measure, clear: bool):
                """Run measure(path, mount) on a fresh mount, page cache dropped (and the block cache)."""
                if clear:
                    shutil.rmtree(cache, ignore_errors=True)
                m = self.mount(emu, cache)
                try:
                    path = asset_file(m.path / ACCOUNT / org, "large", "large.bin")
                    drop_caches()
                    return measure(path, m)
                finally:
                    m.stop()

            def cold_then_hot(path: Path, m: MountedFS) -> None:
                cold.append(fio(path, "read", size))
                rss.append(peak_rss_mb(m.process.pid))
                hot.append(fio(path, "read", size, hot=True))

            for _ in range(args.repeat):
                ttfb.append(on_mount(lambda path, m: first_byte(path), clear=True))
                on_mount(cold_then_hot, clear=True)
                warm.append(on_mount(lambda path, m: fio(path, "read", size), clear=False))
            random_warm = on_mount(lambda path, m: fio(path, "randread", size, runtime), clear=False)
            random_cold = on_mount(lambda path, m: fio(path, "randread", size, runtime), clear=True)

            def on_rclone(measure):
                r = self.rclone()
                try:
                    drop_caches()
                    return measure(r.path / "large.bin")
                finally:
                    r.stop()

            r_cold = [on_rclone(lambda path: fio(path, "read", size)) for _ in range(args.repeat)]
            r_ttfb = [on_rclone(first_byte) for _ in range(args.repeat)]
            r_random = on_rclone(lambda path: fio(path, "randread", size, runtime))

            big = args.large
            self.rows += [
                ratio_row(
                    f"sequential read {big}, cold", median(cold), rate(median(curl_total)), "rate", "curl", True, 0.5
                ),
                ratio_row(f"sequential read {big}, cold", median(cold), median(r_cold), "rate", "rclone", True),
                ratio_row(
                    f"sequential read {big}, warm (block cache)",
                    median(warm),
                    median(local_cold),
                    "rate",
                    "local",
                    True,
                    0.5,
                ),
                ratio_row(
                    f"sequential read {big}, hot (page cache)", median(hot), median(local_hot), "rate", "local", True
                ),
                ratio_row(
                    f"random read 256 KiB, {runtime:g} s, warm", random_warm, r_random, "rate", "rclone", True, 3.0
                ),
                ratio_row(f"random read 256 KiB, {runtime:g} s, cold", random_cold, r_random, "rate", "rclone", True),
                ratio_row(
                    f"random read 256 KiB, {runtime:g} s, warm", random_warm, local_random, "rate", "local", True
                ),
                ratio_row(
                    "time to first byte, 1-byte read, cold", median(ttfb), median(r_ttfb), "time", "rclone", False, 1.0
                ),
                ratio_row(
                    "time to first byte, 1-byte read, cold", median(ttfb), median(curl_first), "time", "curl", False
                ),
                Row(
                    f"peak RSS of the mount, streaming {big}", f"{max(rss):.0f} MB", "", "", "< 200 MB", max(rss) < 200
                ),
            ]
        finally:
            emu.stop()

    # -- upload -------------------------------------------------------------------------------

    def upload(self) -> None:
        args = self.args
        emu = self.emulator("upload", 0)
        try:
            name, iq = next((n, a) for n, a in emu.config["accounts"].items() if a["provider"] == "iqmetrix")
            collection = next(iter(iq["collections"]))
            upload = self.work / "upload.bin"
            with open(upload, "wb") as f:
                for _ in range(parse_size(args.upload) >> 20):
                    f.write(os.urandom(1 << 20))
            token = httpx.post(
                f"{iq['auth_url']}/oauth2/token",
                data={
                    "grant_type": "password",
                    "username": iq["username"],
                    "password": iq["password"],
                    "client_id": iq["client_id"],
                    "client_secret": iq["client_secret"],
                },
            ).json()["access_token"]
            by_curl, by_cp = [], []
            for n in range(args.repeat):
                by_curl.append(
                    timed(
                        lambda: subprocess.run(
                            [
                                "curl",
                                "-sS",
                                "-o",
                                "/dev/null",
                                "-H",
                                f"Authorization: Bearer {token}",
                                "-F",
                                f"file=@{upload}",
                                f"{iq['base_url']}/assets",
                            ],
                            check=True,
                        )
                    )
                )
                self.mounts += 1
                # write_back=0: cp returns once the provider has the bytes (else it times the spool alone)
                m = MountedFS(
                    self.work / f"m{self.mounts}",
                    emu.config,
                    options="write_back=0",
                    accounts=[name],
                    log_level="WARNING",
                )
                try:
                    target = m.path / name / collection
                    os.listdir(target)
                    by_cp.append(
                        timed(lambda: subprocess.run(["cp", str(upload), str(target / f"upload{n}.bin")], check=True))
                    )
                finally:
                    m.stop()
            size = upload.stat().st_size
            self.rows.append(
                ratio_row(
                    f"upload, `cp` of {args.upload}",
                    size / median(by_cp),
                    size / median(by_curl),
                    "rate",
                    "curl -F",
                    True,
                    0.9,
                )
            )
        finally:
            emu.stop()

    def close(self) -> None:
        self.nginx.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def table(self) -> str:
        lines = [
            "| measurement | assetfs | compared with | ratio (> 1: assetfs faster) | target | met |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            met = "" if r.met is None else ("yes" if r.met else "**no**")
            lines.append(f"| {r.what} | {r.ours} | {r.theirs} | {r.ratio} | {r.target} | {met} |")
        lines.append(
            f"\n{os.cpu_count()} cores; medians of {self.args.repeat} runs unless noted; "
            f"{time.strftime('%Y-%m-%d')}; rclone {_version(['rclone', 'version'])}, "
            f"nginx {_version(['nginx', '-v'])}, {_version(['fio', '--version'])}"
        )
        return "\n".join(lines)


def _version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True)
    text = (out.stdout or out.stderr).split("\n")[0]
    return text.split("/")[-1].split()[-1] if "/" in text else text.split()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listings", default="1000,10000,100000", help="directory sizes to list (comma-separated)")
    parser.add_argument("--large", default="512MiB", help="size of the file read (default 512MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the 100k listing runs once)")
    parser.add_argument("--runtime", type=float, default=10, help="seconds per random-read fio run")
    parser.add_argument("--upload", default="256MiB", help="size of the uploaded file")
    parser.add_argument(
        "--only",
        choices=["listings", "reads", "upload", "thumbnails"],
        action="append",
        help="run only these parts (repeatable)",
    )
    parser.add_argument("--mount-options", default="", help="more -o options for the assetfs mounts")
    parser.add_argument(
        "--wan", action="store_true", help="through a proxy adding a round trip and capping each connection (wan.py)"
    )
    parser.add_argument("--delay-ms", type=float, default=20, help="with --wan: added each way (default 20)")
    parser.add_argument(
        "--rate-mb", type=float, default=50, help="with --wan: each connection's cap, MB/s (default 50)"
    )
    args = parser.parse_args()
    if args.wan:
        import wan

        if args.listings == parser.get_default("listings"):
            args.listings = "1000,10000"
        print(wan.run(args).table())
        return 0
    parts = args.only or ["listings", "reads", "upload"]
    bench = Bench(args)
    try:
        if "listings" in parts:
            for count in (int(c) for c in args.listings.split(",") if c):
                bench.listings(count)
        if "reads" in parts:
            bench.reads()
        if "upload" in parts:
            bench.upload()
    finally:
        bench.close()
        print(bench.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
