"""Measure assetfs against curl, dd and `rclone mount` (http backend over nginx) on the
same bytes in one run, and print the results as a Markdown table.

Every figure is a median of `--repeat` runs; ratios compare like with like (same URL,
same bytes, same machine, same moment). Page caches are dropped between cold runs."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from assetfs.units import parse_size

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mounting import MountedFS, is_mounted, unmount  # noqa: E402


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


def read_file(path: Path, block: int = 1 << 20) -> int:
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(block):
            total += len(chunk)
    return total


def read_cold_then_hot(path: Path) -> tuple[float, float, float]:
    """Seconds to the first 4 KiB, to read the whole file cold, and again from the page cache."""
    os.stat(path)
    drop_caches()
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        f.read(4096)
    first = time.perf_counter() - start
    drop_caches()
    cold = timed(lambda: read_file(path))
    hot = timed(lambda: read_file(path))
    return first, cold, hot


def ls_l(path: Path) -> int:
    out = subprocess.run(["ls", "-l", str(path)], check=True, capture_output=True, text=True).stdout
    return out.count("\n")


def curl(url: str) -> None:
    subprocess.run(["curl", "-sS", "-o", "/dev/null", url], check=True)


def dd(path: Path) -> None:
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"], check=True)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Emulator:
    def __init__(self, work: Path, assets: int, large: str):
        self.config_path = work / "emulator.toml"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "assetfs", "emulator", "--port", "0", "--quiet", "--assets", str(assets),
             "--large-file", large, "--data-dir", str(work / "emulator-data"), "--write-config", str(self.config_path)],
            stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        import tomllib
        self.config = tomllib.loads(self.config_path.read_text())

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


class Nginx:
    """A plain HTTP directory listing (autoindex) of a local folder, for rclone's http backend."""

    def __init__(self, work: Path, root: Path, port: int = 18931):
        prefix = work / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""
daemon off; worker_processes 2; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  server {{ listen 127.0.0.1:{port}; root {root}; autoindex on; autoindex_exact_size on; }} }}
""")
        self.process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(prefix)], stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}/"
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
    def __init__(self, work: Path, url: str):
        self.path = work / "rclone-mnt"
        self.path.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            ["rclone", "mount", ":http:", str(self.path), "--http-url", url, "--read-only",
             "--cache-dir", str(work / "rclone-cache"), "--vfs-cache-mode", "off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not is_mounted(self.path):
            if time.monotonic() > deadline:
                raise RuntimeError("rclone mount did not come up")
            time.sleep(0.05)

    def stop(self):
        unmount(self.path)
        self.process.terminate()
        self.process.wait(10)


def iq_account_name(config: dict) -> str:
    return next(name for name, a in config["accounts"].items() if a["provider"] == "iqmetrix")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=int, default=10000)
    parser.add_argument("--large", default="512MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--upload", default="256MiB")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="assetfs-bench-"))
    rows: list[tuple[str, str, str, str]] = []
    emu = Emulator(work, args.assets, args.large)
    nginx = rclone = None
    try:
        account = next(a for a in emu.config["accounts"].values() if a["provider"] == "spectrum")
        big_org, large_org = account["organizations"][0], account["organizations"][1]
        headers = {"SPECTRUM_API_TOKEN": account["token"]}
        listing = httpx.get(f"{account['base_url']}/api/assets/saved/client/{account['client']}/organization/{large_org}",
                            headers=headers, timeout=60).json()["contents"]
        large_url = next(a["uploadedAssetUri"] for a in listing if a["userFacingFileName"] == "large")

        # The same bytes on local disk (for dd) and behind nginx (for rclone).
        site = work / "site"
        (site / "many").mkdir(parents=True)
        local = site / "large.bin"
        subprocess.run(["curl", "-sS", "-o", str(local), large_url], check=True)
        size = local.stat().st_size
        small = (site / "many")
        sample = httpx.get(next(a["uploadedAssetUri"] for a in listing if a["userFacingFileName"] != "large"), timeout=30).content
        for i in range(args.assets):
            (small / f"generated {i + 1:05d}.png").write_bytes(sample)
        os.chmod(work, 0o755)
        nginx = Nginx(work, site)

        def assetfs_mount(tag: str, options: str = "") -> MountedFS:
            return MountedFS(work / tag, emu.config, options=options, log_level="WARNING")

        # -- listings ----------------------------------------------------------------
        cold, warm, x_cold, x_warm = [], [], [], []
        for n in range(args.repeat):
            m = assetfs_mount(f"ls{n}")
            cold.append(timed(lambda: ls_l(m.path / "carhartt" / big_org)))
            warm.append(timed(lambda: ls_l(m.path / "carhartt" / big_org)))
            m.stop()
            m = assetfs_mount(f"lsx{n}", "noxattr")
            x_cold.append(timed(lambda: ls_l(m.path / "carhartt" / big_org)))
            x_warm.append(timed(lambda: ls_l(m.path / "carhartt" / big_org)))
            m.stop()
        r_cold, r_warm = [], []
        for n in range(args.repeat):
            (work / f"r{n}").mkdir()
            rclone = Rclone(work / f"r{n}", nginx.url)
            r_cold.append(timed(lambda: ls_l(rclone.path / "many")))
            r_warm.append(timed(lambda: ls_l(rclone.path / "many")))
            rclone.stop()
            rclone = None
        rows.append((f"cold `ls -l`, {args.assets:,} assets", f"{median(cold):.2f} s", f"rclone {median(r_cold):.2f} s",
                     f"{median(r_cold) / median(cold):.2f}× rclone"))
        rows.append((f"warm `ls -l`, {args.assets:,} assets", f"{median(warm) * 1000:.0f} ms", f"rclone {median(r_warm) * 1000:.0f} ms",
                     f"{median(r_warm) / median(warm):.2f}× rclone"))
        rows.append((f"cold `ls -l`, {args.assets:,} assets, `-o noxattr`", f"{median(x_cold):.2f} s",
                     f"rclone {median(r_cold):.2f} s", f"{median(r_cold) / median(x_cold):.2f}× rclone"))
        rows.append((f"warm `ls -l`, {args.assets:,} assets, `-o noxattr`", f"{median(x_warm) * 1000:.0f} ms",
                     f"rclone {median(r_warm) * 1000:.0f} ms", f"{median(r_warm) / median(x_warm):.2f}× rclone"))

        # -- sequential read of the large file --------------------------------------------
        mb = size / 1e6
        t_curl, t_dd_cold, t_dd_hot = [], [], []
        for _ in range(args.repeat):
            t_curl.append(timed(lambda: curl(large_url)))
            drop_caches()
            t_dd_cold.append(timed(lambda: dd(local)))
            t_dd_hot.append(timed(lambda: dd(local)))
        a_cold, a_warm, a_hot, ttfb, rss = [], [], [], [], []
        for n in range(args.repeat):
            m = assetfs_mount(f"read{n}")  # a new cache dir: cold
            first, cold, hot = read_cold_then_hot(m.path / "carhartt" / large_org / "large.bin")
            ttfb.append(first), a_cold.append(cold), a_hot.append(hot)
            drop_caches()
            a_warm.append(timed(lambda: read_file(m.path / "carhartt" / large_org / "large.bin")))
            rss.append(peak_rss_mb(m.process.pid))
            m.stop()
            shutil.rmtree(work / f"read{n}" / "cache", ignore_errors=True)
        rc_cold, rc_hot, rc_ttfb = [], [], []
        for n in range(args.repeat):
            (work / f"rr{n}").mkdir()
            rclone = Rclone(work / f"rr{n}", nginx.url)
            first, cold, hot = read_cold_then_hot(rclone.path / "large.bin")
            rc_ttfb.append(first), rc_cold.append(cold), rc_hot.append(hot)
            rclone.stop()
            rclone = None
        rate = lambda t: f"{mb / median(t):.0f} MB/s"  # noqa: E731
        rows.append((f"cold read, {args.large} (network)", rate(a_cold), f"curl {rate(t_curl)}, rclone {rate(rc_cold)}",
                     f"{median(t_curl) / median(a_cold):.2f}× curl, {median(rc_cold) / median(a_cold):.2f}× rclone"))
        rows.append((f"warm read, {args.large} (block cache)", rate(a_warm), f"local dd {rate(t_dd_cold)}",
                     f"{median(t_dd_cold) / median(a_warm):.2f}× dd"))
        rows.append((f"hot read, {args.large} (page cache)", rate(a_hot), f"local dd {rate(t_dd_hot)}, rclone {rate(rc_hot)}",
                     f"{median(t_dd_hot) / median(a_hot):.2f}× dd"))
        rows.append(("time to first byte (cold)", f"{median(ttfb) * 1000:.1f} ms", f"rclone {median(rc_ttfb) * 1000:.1f} ms",
                     f"{median(rc_ttfb) / median(ttfb):.2f}× rclone"))
        rows.append((f"peak RSS of the mount, streaming {args.large}", f"{max(rss):.0f} MB", "target < 200 MB",
                     "met" if max(rss) < 200 else "not met"))

        # -- upload: cp through the mount vs curl to the same route -----------------------------
        iq = next(a for a in emu.config["accounts"].values() if a["provider"] == "iqmetrix")
        collection = next(iter(iq["collections"]))
        upload = work / "upload.bin"
        with open(upload, "wb") as f:
            for _ in range(parse_size(args.upload) >> 20):
                f.write(os.urandom(1 << 20))
        token = httpx.post(f"{iq['auth_url']}/oauth2/token", data={
            "grant_type": "password", "username": iq["username"], "password": iq["password"],
            "client_id": iq["client_id"], "client_secret": iq["client_secret"]}).json()["access_token"]
        t_up_curl, t_up_cp = [], []
        for n in range(args.repeat):
            t_up_curl.append(timed(lambda: subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", "-F", f"file=@{upload}",
                 f"{iq['base_url']}/assets"], check=True)))
            m = assetfs_mount(f"up{n}", "write_back=0")  # cp returns once the provider has the bytes
            target = m.path / iq_account_name(emu.config) / collection
            os.listdir(target)
            t_up_cp.append(timed(lambda: subprocess.run(["cp", str(upload), str(target / f"upload{n}.bin")], check=True)))
            m.stop()
        up_mb = upload.stat().st_size / 1e6
        rows.append((f"upload, `cp` of {args.upload}", f"{up_mb / median(t_up_cp):.0f} MB/s",
                     f"curl -F {up_mb / median(t_up_curl):.0f} MB/s", f"{median(t_up_curl) / median(t_up_cp):.2f}× curl"))
    finally:
        if rclone:
            rclone.stop()
        if nginx:
            nginx.stop()
        emu.stop()
        shutil.rmtree(work, ignore_errors=True)

    print("\n| measurement | assetfs | compared with | ratio (>1: assetfs faster) |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{os.cpu_count()} cores; medians of {args.repeat} runs; {time.strftime('%Y-%m-%d')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
