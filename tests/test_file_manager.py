"""Browse it like a drive: a real file manager (pcmanfm under Xvfb) thumbnails an
organization of real-sized images, and GIO, find, du, rsync, cp -r and tar see every asset
as one file. What the tools saw is compared with the providers' own APIs, not the mount.

pcmanfm (libfm 1.3) draws images up to its `thumbnail_max` (2 MiB) itself, in memory, and
hands bigger ones to gdk-pixbuf-thumbnailer, which stores a 128 px thumbnail in the
freedesktop cache under the md5 of the file's URI: the test's photos are 1024×1024 PNGs of
more than 2 MiB, as real photos are. Set ASSETFS_SCREENSHOT=path to keep the screenshot
there too (scripts/screenshot does, for the README), and ASSETFS_SCREENSHOT_MOUNTPOINT=dir to
mount the -o thumbnails test there, since the picture shows the folder's path.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import RunningEmulator
from emulator_log import writes_sent
from mounting import MountedFS
from pcmanfm import pcmanfm_home, pcmanfm_open, thumbnail_name
from pending import status, wait_for_uploads
from PIL import Image, ImageChops
from test_mount_apple import AppleTruth
from test_mount_mudstack import MudTruth
from truth import download, md5

from assetfs.emulator.samples import _picture

pytestmark = pytest.mark.mount

WORKSPACE, PHOTOS = "Game Art", "/photos/"
PHOTO_COUNT = 6
APPLE_ORG = "9467895078742654934"
SPECTRUM_ORG = "7000000000000300322"


def photo(variant: int, side: int = 1024) -> bytes:
    """A side×side PNG of more than 2 MiB (at 1024 px; 1152 px make 3 MB): a gradient with
    grain, as a photo compresses."""
    grain = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).point(lambda v: v // 5)
    out = io.BytesIO()
    ImageChops.add(_picture(variant, (side, side)), grain).save(out, "PNG", compress_level=1)
    assert out.tell() > 2 * 1024 * 1024
    return out.getvalue()


def put_asset(truth: MudTruth, ws: str, location: str, name: str, data: bytes) -> None:
    """Mudstack's three-step upload, straight to the API."""
    up = truth.call("POST", "/workspaces/assets/upload/", ws, json={"name": name})
    httpx.put(up["signed_url"], content=data, timeout=60).raise_for_status()
    truth.call(
        "POST",
        "/workspaces/assets/upload/assets",
        ws,
        json={"temp_file_key": up["key"], "original_file_name": name, "file_location": location},
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An emulator whose workspace has a folder of photos, and one mount of it."""
    emu = RunningEmulator(tmp_path_factory.mktemp("fm-emulator"))
    truth = MudTruth(emu.account("mudstack"))
    ws = truth.workspaces()[WORKSPACE]
    truth.call("POST", "/workspaces/folders", ws, params={"folder": PHOTOS})
    for n in range(PHOTO_COUNT):
        put_asset(truth, ws, PHOTOS, f"photo-{n + 1}.png", photo(n))
    m = MountedFS(tmp_path_factory.mktemp("fm-mount"), emu.config, options="write_back=1s")
    try:
        yield emu, m, truth
    finally:
        m.stop()
        truth.close()
        emu.stop()


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    return result


# -- pcmanfm -------------------------------------------------------------------------------------


def browse(folder: Path, env: dict, wanted: set[str], cache: Path, shot: Path, keep_as: str) -> None:
    """Open the folder in pcmanfm under Xvfb until the thumbnails `wanted` are in `cache`
    (normal/), and take a screenshot of the window (copied to $`keep_as` when set)."""
    with pcmanfm_open(folder, env) as (display, fm):
        deadline = time.monotonic() + 120
        while not wanted <= {p.name for p in cache.glob("*.png")} and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)  # let the window draw the last thumbnail
        display.screenshot(shot)
        if os.environ.get(keep_as):
            shutil.copyfile(shot, os.environ[keep_as])
        still_running = fm.poll() is None
    assert still_running, f"pcmanfm exited: {fm.stderr.read().decode(errors='replace')}"


def test_pcmanfm_thumbnails_every_photo_of_an_organization(world, tmp_path):
    emu, m, truth = world
    if shutil.which("pcmanfm") is None or shutil.which("Xvfb") is None:
        pytest.fail("pcmanfm and Xvfb are missing: scripts/setup installs them")
    ws = truth.workspaces()[WORKSPACE]
    listed = truth.assets(ws, PHOTOS)
    folder = m.path / "studio" / WORKSPACE / PHOTOS.strip("/")
    files = sorted(folder / a["file_name"] for a in listed)
    assert len(files) == PHOTO_COUNT
    env, thumbnails = pcmanfm_home(tmp_path)
    cache = thumbnails / "normal"
    before = status(m.path)["counters"]
    emu.reset_requests()

    wanted = {thumbnail_name(f): f for f in files}
    shot = tmp_path / "pcmanfm.png"
    browse(folder, env, set(wanted), cache, shot, "ASSETFS_SCREENSHOT")

    made = sorted(p.name for p in cache.glob("*.png"))
    assert made == sorted(wanted), f"one thumbnail per photo, named by its URI's md5; screenshot: {shot}"
    for name in wanted:
        with Image.open(cache / name) as thumb:
            assert max(thumb.size) == 128  # normal/: 128 px

    # each photo was read from the provider, and nothing failed
    after = status(m.path)["counters"]
    assert after.get("bytes_read", 0) - before.get("bytes_read", 0) >= sum(a["currentVersion"]["size"] for a in listed)
    for counter in ("errors", "internal_errors", "timeouts"):
        assert after.get(counter, 0) == before.get(counter, 0), counter
    fetched = [path for path in emu.requests() if path.startswith("GET /cdn/")]
    for asset in listed:
        assert any(path.startswith(f"GET /cdn/{asset['currentVersion']['key']}") for path in fetched), asset[
            "file_name"
        ]
    assert " ERROR " not in m.log()
    with Image.open(shot) as screen:  # the window, with the photos' thumbnails drawn in it
        assert screen.size[0] > 600 and len(screen.convert("RGB").getcolors(1 << 20)) > 1000


def test_pcmanfm_draws_the_grid_from_the_providers_renditions_and_reads_no_original(world, tmp_path):
    """With -o thumbnails the mount fills pcmanfm's thumbnail cache as the folder is listed:
    pcmanfm finds every thumbnail there and reads none of the photos."""
    emu, _, truth = world
    ws = truth.workspaces()[WORKSPACE]
    listed = truth.assets(ws, PHOTOS)
    env, thumbnails = pcmanfm_home(tmp_path)
    config = {**emu.config, "thumbnails": {"dir": str(thumbnails)}}
    mountpoint = os.environ.get("ASSETFS_SCREENSHOT_MOUNTPOINT")
    m = MountedFS(tmp_path / "mount", config, options="thumbnails", mountpoint=Path(mountpoint) if mountpoint else None)
    try:
        folder = m.path / "studio" / WORKSPACE / PHOTOS.strip("/")
        wanted = {thumbnail_name(folder / a["file_name"]) for a in listed}
        before = status(m.path)["counters"]
        emu.reset_requests()
        shot = tmp_path / "pcmanfm-thumbnails.png"
        browse(folder, env, wanted, thumbnails / "normal", shot, "ASSETFS_THUMBNAILS_SCREENSHOT")
        after = status(m.path)["counters"]
        log = m.log()
    finally:
        m.stop()

    assert sorted(p.name for p in (thumbnails / "normal").glob("*.png")) == sorted(wanted)
    for name in wanted:
        with Image.open(thumbnails / "normal" / name) as thumb:
            assert max(thumb.size) == 128 and thumb.info["Software"] == "assetfs"  # ours, not pcmanfm's own
    assert after.get("bytes_read", 0) == before.get("bytes_read", 0), "an original was read"
    assert after.get("thumbnails_made", 0) - before.get("thumbnails_made", 0) == PHOTO_COUNT
    asked = emu.requests()
    for asset in listed:
        assert not any(path.startswith(f"GET /cdn/{asset['currentVersion']['key']}") for path in asked), asset[
            "file_name"
        ]
    assert sum(n for path, n in asked.items() if path.startswith("GET /cdn/renditions/")) == PHOTO_COUNT
    assert " ERROR " not in log
    with Image.open(shot) as screen:  # the window, with the photos' thumbnails drawn in it
        assert screen.size[0] > 600 and len(screen.convert("RGB").getcolors(1 << 20)) > 1000


# -- GIO ---------------------------------------------------------------------------------------


def test_gio_lists_and_describes_the_assets_as_files(world):
    _, m, truth = world
    ws = truth.workspaces()[WORKSPACE]
    listed = {a["file_name"]: a for a in truth.assets(ws, PHOTOS)}
    folder = m.path / "studio" / WORKSPACE / PHOTOS.strip("/")
    assert run("gio", "list", str(folder)).stdout.split() == sorted(listed)
    info = run("gio", "info", str(folder / "photo-1.png")).stdout
    fields = dict(line.strip().split(": ", 1) for line in info.splitlines() if ": " in line)
    assert fields["type"] == "regular"
    assert fields["standard::content-type"] == "image/png"
    assert int(fields["standard::size"]) == listed["photo-1.png"]["currentVersion"]["size"]
    assert fields["uri"] == (folder / "photo-1.png").as_uri()


def test_gio_copy_into_a_mudstack_folder_makes_one_asset(world, tmp_path):
    emu, m, truth = world
    data = photo(7)
    (tmp_path / "gio.png").write_bytes(data)
    target = m.path / "studio" / "Marketing"
    run("gio", "copy", str(tmp_path / "gio.png"), str(target / "gio.png"))
    wait_for_uploads(m.path)
    ws = truth.workspaces()["Marketing"]
    [asset] = [a for a in truth.assets(ws, "/") if a["file_name"] == "gio.png"]
    assert truth.download(ws, asset["id"]) == data


# -- find, du, tar: one file per asset -----------------------------------------------------------


def apple_contents(emu) -> list[dict]:
    """Image metadata of every asset of the organization, brand by brand, from the API."""
    truth = AppleTruth(emu.account("apple"))
    try:
        out = []
        for brand in emu.account("apple")["organizations"][APPLE_ORG]:
            for asset in truth.assets(APPLE_ORG, brand):
                out.append(truth.image(APPLE_ORG, asset["brandAssetDetails"]["imageId"]))
        return out
    finally:
        truth.close()


def outside_assets(path: str) -> bool:
    return "/.assets/" not in path and not path.endswith("/.assets")


def test_find_counts_each_asset_once(world):
    emu, m, _ = world
    org = m.path / "apple" / APPLE_ORG
    found = run("find", str(org), "-type", "f", "-name", "*.png").stdout.splitlines()
    pngs = [i for i in apple_contents(emu) if i["contentType"] == "image/png"]
    assert len(found) == len(pngs) and all(outside_assets(p) for p in found)


def test_du_counts_each_asset_once(world):
    emu, m, _ = world
    org = m.path / "apple" / APPLE_ORG
    sizes = sorted(i["fileSize"] for i in apple_contents(emu))
    entries = [line.split("\t", 1) for line in run("du", "-ab", str(org)).stdout.splitlines()]
    files = [(int(size), path) for size, path in entries if os.path.isfile(path)]
    assert sorted(size for size, path in files if outside_assets(path)) == sizes
    assert {Path(path).name for _, path in files if not outside_assets(path)} == {"asset.json"}
    dirs = sum(os.stat(path).st_size for size, path in entries if os.path.isdir(path) and outside_assets(path))
    assert int(run("du", "-sb", "--exclude=.assets", str(org)).stdout.split()[0]) == sum(sizes) + dirs


def test_tar_of_an_organization_holds_every_asset_once(world, tmp_path):
    emu, m, _ = world
    archive = tmp_path / "org.tar"
    run("tar", "cf", str(archive), "-C", str(m.path / "apple"), APPLE_ORG)
    with tarfile.open(archive) as tar:
        got = Counter(
            md5(tar.extractfile(member).read())
            for member in tar.getmembers()
            if member.isfile() and outside_assets(member.name)
        )
    assert got == Counter(md5(download(i["cdnUrl"])) for i in apple_contents(emu))


# -- rsync and cp -r -------------------------------------------------------------------------------


def tree_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".assets" not in p.relative_to(root).parts
    }


def transferred(result: subprocess.CompletedProcess) -> list[str]:
    """The files an `rsync --itemize-changes` sent (`>f…`: a quick check that failed on size or
    time sends the file again, which on a mount is a new upload)."""
    return [line for line in result.stdout.splitlines() if line.startswith((">", "<"))]


def test_rsync_from_the_mount_to_local_to_a_new_mudstack_folder_and_again_transfers_nothing(world, tmp_path):
    emu, m, truth = world
    source = m.path / "carhartt" / SPECTRUM_ORG
    local = tmp_path / "backup"
    run("rsync", "-a", f"{source}/", f"{local}/")
    assert transferred(run("rsync", "-a", "--itemize-changes", f"{source}/", f"{local}/")) == []
    files = tree_of(local)
    assert files and all("/" not in name for name in files)

    # .assets/ holds the source provider's details: metadata to keep, not files to upload
    target = m.path / "studio" / "Marketing" / "from-spectrum"
    run("rsync", "-a", "--exclude=.assets", f"{local}/", f"{target}/")
    wait_for_uploads(m.path)
    ws = truth.workspaces()["Marketing"]
    uploaded = {a["file_name"]: a for a in truth.assets(ws, "/from-spectrum/")}
    assert sorted(uploaded) == sorted(files)
    assert all(uploaded[name]["currentVersion"]["checksum"] == md5(data) for name, data in files.items())

    emu.reset_requests()
    again = run("rsync", "-a", "--exclude=.assets", "--itemize-changes", f"{local}/", f"{target}/")
    assert transferred(again) == [], again.stdout
    wait_for_uploads(m.path)
    assert writes_sent(emu) == []


def test_cp_r_of_a_local_tree_makes_the_same_folders_and_files(world, tmp_path):
    _, m, truth = world
    kit = tmp_path / "kit"
    for rel, data in {
        "logo.png": photo(8)[:5000],
        "sub/notes.txt": b"notes\n",
        "sub/deeper/sheet.pdf": b"%PDF-1.4\n%%EOF\n",
        "sub/deeper/more.txt": b"more\n",
    }.items():
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        (kit / rel).write_bytes(data)
    workspace = m.path / "studio" / "Marketing"
    run("cp", "-r", str(kit), str(workspace))
    wait_for_uploads(m.path)

    ws = truth.workspaces()["Marketing"]
    assert {"/kit/", "/kit/sub/", "/kit/sub/deeper/"} <= set(truth.folders(ws))
    on_provider = {}
    for location in ("/kit/", "/kit/sub/", "/kit/sub/deeper/"):
        for a in truth.assets(ws, location):
            on_provider[location.removeprefix("/kit/") + a["file_name"]] = truth.download(ws, a["id"])
    assert on_provider == tree_of(kit)
    assert tree_of(workspace / "kit") == tree_of(kit)
