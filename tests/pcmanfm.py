"""pcmanfm under Xvfb, opening a folder in a home of its own: the file-manager tests and the
thumbnails benchmark (benchmarks/thumbnails.py) watch what it does to the thumbnail cache."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

CONVERT = shutil.which("convert", path="/usr/bin:/bin")  # ImageMagick's own


class Display:
    """Xvfb on a display number it picks itself."""

    def __init__(self):
        read, write = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1100x760x24", "-nolisten", "tcp"],
            pass_fds=[write],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as f:
            self.name = ":" + f.readline().strip()

    def screenshot(self, path: Path) -> None:
        xwd = subprocess.run(["xwd", "-root", "-silent", "-display", self.name], capture_output=True, check=True).stdout
        # trimmed to the window: the screen around it is black
        subprocess.run([CONVERT or "convert", "xwd:-", "-trim", "+repage", f"png:{path}"], input=xwd, check=True)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def thumbnail_name(path: Path) -> str:
    """The freedesktop thumbnail spec: md5 of the file's URI, `.png`."""
    return hashlib.md5(path.as_uri().encode()).hexdigest() + ".png"


def pcmanfm_home(tmp_path: Path) -> tuple[dict, Path]:
    """A home of its own for pcmanfm (thumbnail view), and the environment to run it in;
    also its thumbnail cache (`$XDG_CACHE_HOME/thumbnails`, fresh)."""
    home = tmp_path / "home"
    config = home / ".config" / "pcmanfm" / "default"
    config.mkdir(parents=True)
    (config / "pcmanfm.conf").write_text("[ui]\nwin_width=1080\nwin_height=740\nview_mode=thumbnail\nshow_hidden=0\n")
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "NO_AT_BRIDGE": "1",
    }
    return env, home / ".cache" / "thumbnails"


@contextlib.contextmanager
def pcmanfm_open(folder: Path, env: dict) -> Iterator[tuple[Display, subprocess.Popen]]:
    """pcmanfm showing `folder` on a display of its own, both stopped on leaving."""
    display = Display()
    fm = subprocess.Popen(
        ["pcmanfm", "--no-desktop", str(folder)],
        env={**env, "DISPLAY": display.name},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield display, fm
    finally:
        try:
            fm.terminate()
            try:
                fm.wait(10)
            except subprocess.TimeoutExpired:  # busy in a folder's opendir, it may not heed SIGTERM
                fm.kill()
                fm.wait(10)
        finally:
            display.stop()
