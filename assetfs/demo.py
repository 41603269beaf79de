"""`assetfs demo`: the emulator with sample data, mounted, with a short tour."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from .config import load_config
from .mount import Mount
from .options import MountOptions


def start_emulator(workdir: Path, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    config_path = workdir / "config.toml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "assetfs",
            "emulator",
            "--port",
            "0",
            "--quiet",
            "--data-dir",
            str(workdir / "emulator"),
            "--write-config",
            str(config_path),
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip() if process.stdout is not None else ""
    if not url.startswith("http://"):
        process.kill()
        raise SystemExit("assetfs demo: the emulator did not start")
    return process, url, config_path


def tour(mountpoint: Path, url: str) -> str:
    m = str(mountpoint)
    return f"""
assetfs demo: the sample assets of four providers (emulated at {url}) are mounted at {m}

Try, in another terminal:
  ls -l {m}                                     one directory per account
  ls -l {m}/carhartt/7000000000000300322        Spectrum assets of an organization, one file each
  find {m}/carhartt -name '*.DST'               production outputs (under each org's hidden .assets/)
  cat {m}/apple/*/*/.assets/*/asset.json | head -40   provider metadata, pretty-printed
  getfattr -d {m}/studio/*/*.pdf                ids, checksums, states as xattrs
  md5sum {m}/stores/logos/*.jpg                 content streams on read
  cat {m}/.assetfs/status.json                  requests, cache hits, bytes

Ctrl-C unmounts and stops the demo.
"""


def run_demo(mountpoint: str | None, options: MountOptions) -> int:
    with tempfile.TemporaryDirectory(prefix="assetfs-demo-") as tmp:
        workdir = Path(tmp)
        target = Path(mountpoint) if mountpoint else workdir / "mnt"
        target.mkdir(parents=True, exist_ok=True)
        emulator, url, config_path = start_emulator(workdir)
        try:
            config = load_config(config_path)
            options.cache_dir = options.cache_dir or str(workdir / "cache")
            options.state_dir = options.state_dir or str(workdir / "state")  # the emulator's: thrown away with it
            mount = Mount(config, target, options)
            trio.run(mount.run, lambda: print(tour(target, url), flush=True))
        finally:
            emulator.terminate()
            emulator.wait(10)
        print("assetfs demo: unmounted, emulator stopped.")
    return 0
