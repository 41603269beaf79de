"""A file manager over a 40 ms link (`benchmarks/run --wan --only thumbnails`): pcmanfm under
Xvfb, with a thumbnail cache of its own each time, opens a Mudstack folder of 200 photos of
about 3 MB. Measured: the seconds until its thumbnail cache (`normal/`) holds one thumbnail
per photo, the bytes the WAN proxies passed to the machine, and the originals read (GETs
in nginx's log). Four cases: assetfs without the option (pcmanfm reads every original),
`-o thumbnails`, `assetfs thumbnails DIR` run ahead (its time included), and rclone's http
backend over the same bytes on nginx.

The emulator makes each rendition once, on a shared CPU, where a real service keeps them:
they are made before any case (untimed), as a listing long ago would have."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import Row
from mounting import MountedFS
from pcmanfm import pcmanfm_home, pcmanfm_open
from PIL import Image
from test_file_manager import photo, put_asset
from test_mount_mudstack import MudTruth
from wan import WanBench

COUNT = 200
SIDE = 1152  # px: a PNG of about 3 MB with the photo's grain
WORKSPACE, FOLDER = "Game Art", "photos"
QUIET = 30  # s without a new thumbnail after which pcmanfm is taken to have made all it will
LONGEST = 900  # s at most per case


@dataclass
class Seen:
    """What one case cost until pcmanfm's thumbnail cache stopped growing."""

    seconds: float
    thumbnails: int
    ours: int  # of them, made by assetfs (the rest by pcmanfm's thumbnailer, from the originals)
    fetched: int  # bytes the proxies passed to the machine
    originals: int  # photos GET from nginx


class ThumbnailsBench:
    """The photos on the emulator's Mudstack workspace and, for rclone, as files next to it."""

    def __init__(self, bench: WanBench):
        self.bench = bench
        self.emu = bench.emulator("thumbnails", 0)
        api = bench.links[-1]
        self.account_name, account = next(
            (n, a) for n, a in self.emu.config["accounts"].items() if a["provider"] == "mudstack"
        )
        direct = {**account, "base_url": account["base_url"].replace(api.url.split("/")[2], api.origin)}
        self.truth = MudTruth(direct)  # set up and warmed straight, not through the link
        self.files = bench.site / FOLDER
        self.files.mkdir()
        ws = self.truth.workspaces()[WORKSPACE]
        self.truth.call("POST", "/workspaces/folders", ws, params={"folder": f"/{FOLDER}/"})
        for n in range(COUNT):
            data = photo(n, SIDE)
            (self.files / f"photo-{n + 1:03d}.png").write_bytes(data)
            put_asset(self.truth, ws, f"/{FOLDER}/", f"photo-{n + 1:03d}.png", data)
        # the originals as nginx is asked for them: the emulator's files (a content URL adds a
        # cosmetic name after the file), and rclone's
        data_dir = bench.site / "thumbnails" / "data"
        self.originals = {f"/thumbnails/data/{p.name}" for p in data_dir.iterdir() if p.stat().st_size > 1 << 20}
        self.originals |= {f"/{FOLDER}/{p.name}" for p in self.files.iterdir()}
        self.photo_bytes = sum(p.stat().st_size for p in self.files.iterdir())
        for asset in self.truth.assets(ws, f"/{FOLDER}/"):  # the renditions, made once
            self.truth.call("GET", f"/workspaces/thumbnail/{asset['currentVersion']['thumbnail_file_id']}", ws)

    def close(self) -> None:
        self.truth.close()
        self.emu.stop()

    # -- the cases ------------------------------------------------------------------------------

    def assetfs(self, options: str = "", ahead: bool = False) -> Seen:
        """pcmanfm on a fresh assetfs mount; `ahead`: `assetfs thumbnails` fills its cache first."""
        home = self._home()
        env, thumbnails = pcmanfm_home(home)
        config = {**self.emu.config, "thumbnails": {"dir": str(thumbnails)}}
        self.bench.mounts += 1
        m = MountedFS(
            self.bench.work / f"m{self.bench.mounts}",
            config,
            options=",".join(filter(None, [options, self.bench.args.mount_options])),
            accounts=[self.account_name],
            log_level="WARNING",
        )
        try:
            folder = m.path / self.account_name / WORKSPACE / FOLDER
            return self._watch(folder, env, thumbnails, ahead)
        finally:
            m.stop()

    def rclone(self) -> Seen:
        """pcmanfm on a fresh rclone mount of the same photos on nginx."""
        env, thumbnails = pcmanfm_home(self._home())
        r = self.bench.rclone()
        try:
            return self._watch(r.path / FOLDER, env, thumbnails, ahead=False)
        finally:
            r.stop()

    def _home(self) -> Path:
        self.bench.mounts += 1
        return self.bench.work / f"home{self.bench.mounts}"

    def _watch(self, folder: Path, env: dict, thumbnails: Path, ahead: bool) -> Seen:
        """Seconds from the start (of `assetfs thumbnails` when `ahead`, else of pcmanfm) to
        the last new file in `normal/`, with the bytes and originals it took."""
        normal = thumbnails / "normal"
        log_start = self.bench.access_log.stat().st_size
        fetched_start = self._fetched()
        start = time.perf_counter()
        if ahead:
            subprocess.run(
                [sys.executable, "-m", "assetfs", "thumbnails", str(folder), "--dir", str(thumbnails)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        last, made = start, 0
        with pcmanfm_open(folder, env) as (_, fm):
            while time.perf_counter() - last < QUIET and time.perf_counter() - start < LONGEST:
                now = len(list(normal.glob("*.png"))) if normal.is_dir() else 0
                if now > made:
                    last, made = time.perf_counter(), now
                if made >= COUNT or fm.poll() is not None:
                    break
                time.sleep(0.1)
        ours = sum(by_assetfs(p) for p in normal.glob("*.png"))
        seen = Seen(last - start, made, ours, self._fetched() - fetched_start, self._originals_read(log_start))
        print(folder, seen, file=sys.stderr, flush=True)
        return seen

    def _fetched(self) -> int:
        return sum(link.delivered() for link in self.bench.links)

    def _originals_read(self, log_start: int) -> int:
        """Photos with a GET in nginx's log since `log_start` (its size then)."""
        with open(self.bench.access_log, "rb") as f:
            f.seek(log_start)
            lines = f.read().decode(errors="replace").splitlines()
        read = set()
        for line in lines:
            request = line.split('"')[1].split() if line.count('"') >= 2 else []
            if len(request) >= 2 and request[0] == "GET":
                path = request[1].split("?")[0]
                read |= {path, "/".join(path.split("/")[:4])} & self.originals
        return len(read)


def by_assetfs(thumbnail: Path) -> bool:
    """A thumbnail assetfs wrote (it signs them `Software: assetfs`)."""
    with Image.open(thumbnail) as image:
        return image.info.get("Software") == "assetfs"


def measure(bench: WanBench) -> None:
    """The four cases, once each (a case takes up to a minute), and their rows."""
    setup = ThumbnailsBench(bench)
    try:
        seen = {
            "rclone": setup.rclone(),
            "assetfs without the option": setup.assetfs(),
            "assetfs `-o thumbnails`": setup.assetfs("thumbnails"),
            "assetfs, `assetfs thumbnails DIR` run ahead": setup.assetfs(ahead=True),
        }
    finally:
        setup.close()
    theirs = seen["rclone"]
    size = f"{COUNT} photos of {setup.photo_bytes / COUNT / 1e6:.1f} MB"
    for case, s in seen.items():
        done = f"{s.thumbnails}/{COUNT} thumbnails, {s.ours} from the provider, {s.originals} originals read"
        rows = [
            Row(f"{case} (1 run): seconds until pcmanfm's thumbnails of {size} ({done})", f"{s.seconds:.1f} s", "", ""),
            Row(f"{case}: bytes fetched", f"{s.fetched / 1e6:.1f} MB", "", ""),
        ]
        if case != "rclone":
            fewer, sooner = theirs.fetched / s.fetched, theirs.seconds / s.seconds
            rows[0].theirs, rows[0].ratio = f"rclone {theirs.seconds:.1f} s", f"{sooner:.2f}× rclone"
            rows[1].theirs, rows[1].ratio = f"rclone {theirs.fetched / 1e6:.1f} MB", f"{fewer:.1f}× fewer"
            if "thumbnails" in case:
                rows[0].target, rows[0].met = "≥ 5×", sooner >= 5
                rows[1].target, rows[1].met = "≥ 20×", fewer >= 20
        bench.rows += rows
