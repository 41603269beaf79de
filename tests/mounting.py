"""Real FUSE mounts for the tests: `assetfs mount -f` in a subprocess, always unmounted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import logcheck
import tomli_w


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def unmount(path: Path) -> None:
    for args in (["fusermount3", "-u"], ["fusermount3", "-uz"], ["umount", "-l"]):
        if not is_mounted(path):
            return
        subprocess.run([*args, str(path)], capture_output=True)
        for _ in range(50):
            if not is_mounted(path):
                return
            time.sleep(0.1)


class MountedFS:
    """One running mount; `.path` is the mountpoint, `.log()` what the mount printed."""

    def __init__(
        self,
        tmp: Path,
        config: dict,
        options: str = "",
        accounts: list[str] | None = None,
        cache_dir: Path | None = None,
        state_dir: Path | None = None,
        log_level: str = "INFO",
        mountpoint: Path | None = None,
    ):
        """Mounted at `mountpoint` (an empty directory that exists), by default `tmp/mnt`."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.path = mountpoint or tmp / "mnt"
        self.path.mkdir(exist_ok=True)
        doc = {
            **config,
            "cache": dict(config.get("cache", {})),
            "state": dict(config.get("state", {})),
            "accounts": dict(config["accounts"]),
        }
        if accounts is not None:
            doc["accounts"] = {k: v for k, v in doc["accounts"].items() if k in accounts}
        doc["cache"]["dir"] = str(cache_dir or tmp / "cache")
        # Each test its own state dir (never the user's): next to a cache dir given, so that
        # a second mount on the same cache finds the uploads the first one left pending.
        self.state_dir = state_dir or (cache_dir.with_name(cache_dir.name + ".state") if cache_dir else tmp / "state")
        doc["state"]["dir"] = str(self.state_dir)
        self.config_path = tmp / "assetfs.toml"
        self.config_path.write_text(tomli_w.dumps(doc))
        self.log_path = tmp / "mount.log"
        args = [
            sys.executable,
            "-m",
            "assetfs",
            "mount",
            "-f",
            "--log-level",
            log_level,
            "--config",
            str(self.config_path),
            str(self.path),
        ]
        if options:
            args += ["-o", options]
        self._log = open(self.log_path, "wb")
        logcheck.watch(self.log_path)
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not is_mounted(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mount did not come up:\n{self.log()}")
            time.sleep(0.05)

    def wait_for_uploads(self, timeout: float = 30) -> None:
        """Until `.assetfs/status.json` lists no upload on its way (its write-back delay
        included); refused ones (failed, orphaned) stay and do not count."""
        from pending import wait_for_uploads

        wait_for_uploads(self.path, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        unmount(self.path)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        logcheck.stopped(self.log_path)
        unmount(self.path)
