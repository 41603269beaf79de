"""Thumbnails from the providers' renditions: a folder of pictures listed on a real mount
gets its freedesktop thumbnails (named as GIO names them, with the keys a file manager
checks) from the providers' small versions, and no original is read; `.assets/<file>/
thumbnail.png` is the rendition; `assetfs thumbnails` fills a user's cache ahead.
What the mount did is checked against the emulator's request log, not the mount's word."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio
from conftest import RunningEmulator
from mounting import MountedFS
from pending import status
from PIL import Image
from test_file_manager import photo, put_asset
from test_mount_mudstack import MudTruth
from truth import spectrum_assets

from assetfs.config import parse_config
from assetfs.errors import ConfigError
from assetfs.options import parse_mount_options
from assetfs.providers.http import RequestBudget, background
from assetfs.thumbnails.standard import SIZES, NotAPicture, ThumbnailCache, file_uri, thumbnail_name

WORKSPACE = "Game Art"
FOLDER, FAILING = "/thumbs/", "/thumbs-fail/"
PICTURES = ["photo-1.png", "sunset (2) & #3;50%.png", "café.jpg", "photo-4.png"]
SPECTRUM_ORG = "7000000000000300322"


def jpeg(variant: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo(variant))).convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A workspace folder of pictures and a PDF, and a mount that fills a thumbnail cache."""
    emu = RunningEmulator(tmp_path_factory.mktemp("thumbs-emulator"))
    truth = MudTruth(emu.account("mudstack"))
    ws = truth.workspaces()[WORKSPACE]
    for folder in (FOLDER, FAILING):
        truth.call("POST", "/workspaces/folders", ws, params={"folder": folder})
    for n, name in enumerate(PICTURES):
        put_asset(truth, ws, FOLDER, name, jpeg(n) if name.endswith(".jpg") else photo(n))
    put_asset(truth, ws, FOLDER, "notes.pdf", b"%PDF-1.4\n%%EOF\n")
    put_asset(truth, ws, FAILING, "broken.png", photo(5))
    tmp = tmp_path_factory.mktemp("thumbs-mount")
    thumbs = tmp / "thumbnails"
    m = MountedFS(tmp, {**emu.config, "thumbnails": {"enable": True, "dir": str(thumbs)}})
    try:
        yield emu, m, truth, thumbs
    finally:
        m.stop()
        truth.close()
        emu.stop()


def gio_uri(path: Path) -> str:
    """The URI GIO (and so pcmanfm, Nautilus, Thunar) makes of a path."""
    info = subprocess.run(
        ["gio", "info", "-a", "standard::name", str(path)], capture_output=True, text=True, check=True
    )
    return next(line.split(": ", 1)[1] for line in info.stdout.splitlines() if line.startswith("uri: "))


def thumbnail_text(path: Path) -> tuple[tuple[int, int], dict]:
    with Image.open(path) as image:
        return image.size, dict(image.info)


# -- the standard, without a mount -----------------------------------------------------------


def test_a_thumbnails_name_is_the_md5_of_the_uri_gio_makes(tmp_path):
    for name in ["plain.png", "sunset (2) & #3;50%.png", "café ünïcode.jpg", "a+b=c@d!~'$,.png", "tab\tand?q.png"]:
        path = tmp_path / name
        path.write_bytes(b"x")
        assert file_uri(path) == gio_uri(path), name
    assert thumbnail_name("file:///a/b.png") == hashlib.md5(b"file:///a/b.png").hexdigest() + ".png"


def test_store_writes_both_sizes_with_their_keys_atomically_and_nothing_for_what_is_no_picture(tmp_path):
    cache = ThumbnailCache(tmp_path / "thumbnails")
    uri = "file:///mnt/studio/x%20y.png"
    cache.store(uri, 1730000000, 4096, photo(1))
    for flavor, px in SIZES.items():
        size, text = thumbnail_text(cache.path(flavor, uri))
        assert max(size) == px
        assert (text["Thumb::URI"], text["Thumb::MTime"], text["Thumb::Size"]) == (uri, "1730000000", "4096")
        assert stat.S_IMODE(cache.path(flavor, uri).stat().st_mode) == 0o600
        assert stat.S_IMODE(cache.path(flavor, uri).parent.stat().st_mode) == 0o700
        assert [p.name for p in cache.path(flavor, uri).parent.iterdir()] == [thumbnail_name(uri)]  # no temp left
    assert cache.current(uri, 1730000000) and not cache.current(uri, 1730000001)

    other = "file:///mnt/studio/bad.png"
    for junk in (b"<html>not found</html>", b"\x89PNG\r\n\x1a\n" + b"\0" * 100):
        with pytest.raises(NotAPicture):
            cache.store(other, 1, 1, junk)
    assert not cache.path("normal", other).exists() and not cache.path("large", other).exists()
    assert len(list((tmp_path / "thumbnails" / "normal").iterdir())) == 1


def test_store_keeps_a_pictures_own_mode_and_makes_rgba_of_the_rest(tmp_path):
    """A photo's thumbnail gets no alpha channel it did not have (a third more to compress);
    a mode PNG cannot hold as it is (CMYK) or a palette is made RGBA, and still read back."""
    cache = ThumbnailCache(tmp_path / "thumbnails")
    pictures = {
        "rgb": (Image.new("RGB", (300, 150), (200, 30, 40)), "PNG", "RGB"),
        "grey": (Image.new("L", (300, 150), 90), "PNG", "L"),
        "alpha": (Image.new("RGBA", (300, 150), (0, 0, 255, 100)), "PNG", "RGBA"),
        "cmyk": (Image.new("CMYK", (300, 150), (0, 255, 255, 0)), "JPEG", "RGBA"),
        "palette": (Image.new("RGB", (300, 150), (0, 204, 0)).convert("P"), "GIF", "RGBA"),
    }
    for name, (image, kind, mode) in pictures.items():
        out = io.BytesIO()
        image.save(out, kind)
        uri = f"file:///mnt/studio/{name}"
        cache.store(uri, 1, None, out.getvalue())
        for flavor, px in SIZES.items():
            with Image.open(cache.path(flavor, uri)) as thumbnail:
                assert (thumbnail.format, thumbnail.mode, thumbnail.size) == ("PNG", mode, (px, px // 2)), name
                assert thumbnail.info["Thumb::URI"] == uri
                corner = thumbnail.convert("RGBA").getpixel((0, 0))
            with Image.open(io.BytesIO(out.getvalue())) as sent:
                expected = sent.convert("RGBA").getpixel((0, 0))
            assert all(abs(a - b) <= 2 for a, b in zip(corner, expected)), (name, corner, expected)


def test_a_mount_run_by_root_for_a_user_gives_the_user_its_thumbnails(tmp_path):
    cache = ThumbnailCache(tmp_path / "thumbnails", owner=(4321, 4321))
    cache.store("file:///mnt/a.png", 1, 1, photo(2))
    for path in (tmp_path / "thumbnails", cache.path("normal", "file:///mnt/a.png").parent):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321)
    for flavor in SIZES:
        assert cache.path(flavor, "file:///mnt/a.png").stat().st_uid == 4321


def test_thumbnails_are_off_unless_asked_for():
    assert not parse_config({"accounts": {}}).thumbnails.enable
    assert not parse_mount_options([]).thumbnails and parse_mount_options(["ro,thumbnails"]).thumbnails
    chosen = parse_config({"accounts": {}, "thumbnails": {"enable": True, "dir": "~/thumbs"}}).thumbnails
    assert chosen.enable and chosen.path == Path.home() / "thumbs"
    with pytest.raises(ConfigError, match="thumbnails.size: unknown key"):
        parse_config({"accounts": {}, "thumbnails": {"size": 64}})


def test_background_requests_wait_behind_every_other_one():
    order: list[str] = []

    async def main():
        budget = RequestBudget(4, 0.3)

        async def ask(who: str, low: bool):
            if low:
                with background():
                    await budget.acquire()
            else:
                await budget.acquire()
            order.append(who)

        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(ask, f"thumb{n}", True)
            await trio.sleep(0.01)
            for n in range(6):
                nursery.start_soon(ask, f"user{n}", False)

    trio.run(main)
    # The thumbnails came first but leave room: every user request went before the rest of them.
    users = [i for i, who in enumerate(order) if who.startswith("user")]
    assert len(order) == 12 and max(users) < 9, order


# -- the emulator's renditions, over HTTP ----------------------------------------------------------


def test_spectrum_cdn_scales_by_its_image_parameters(emu):
    account = emu.account("spectrum")
    assets = spectrum_assets(account, account["organizations"][0])
    url = next(a["uploadedAssetUri"] for a in assets if a["uploadedAssetUri"].split("?")[0].endswith(".png"))
    with Image.open(io.BytesIO(httpx.get(url).content)) as original:
        size = original.size
    for query, wanted in [
        ("width=100&height=100&mode=crop", (100, 100)),
        ("w=100&h=100&mode=pad", (100, 100)),
        ("width=100&height=50&mode=stretch", (100, 50)),
        ("width=100&height=100", (100, round(size[1] * 100 / size[0]))),  # max: inside the box
        ("width=4000", size),  # max never makes it larger
    ]:
        response = httpx.get(f"{url}&{query}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png", query
        assert Image.open(io.BytesIO(response.content)).size == wanted, query
        assert int(httpx.head(f"{url}&{query}").headers["content-length"]) == len(response.content)
    for bad in ("width=abc", "width=100&mode=zoom", "width=0", "height=99999"):
        assert httpx.get(f"{url}&{bad}").status_code == 400, bad
    output = next(o["uri"] for a in assets for j in a["productionJobs"] or [] for o in j["result"]["outputs"])
    assert httpx.get(output + "&width=64").status_code == (200 if output.split("?")[0].endswith(".png") else 400)


def test_mudstack_thumbnail_route_answers_a_small_png_or_404(emu):
    truth = MudTruth(emu.account("mudstack"))
    try:
        ws = truth.workspaces()[WORKSPACE]
        assets = [a for folder in truth.folders(ws) for a in truth.assets(ws, folder)]
        for asset in assets:
            route = f"/workspaces/thumbnail/{asset['currentVersion']['thumbnail_file_id']}"
            if asset["file_name"].endswith((".png", ".jpg")):
                thumb = Image.open(io.BytesIO(httpx.get(truth.call("GET", route, ws)["url"]).content))
                assert thumb.format == "PNG" and max(thumb.size) <= 256
            else:
                with pytest.raises(httpx.HTTPStatusError, match="404"):
                    truth.call("GET", route, ws)
        with pytest.raises(httpx.HTTPStatusError, match="404"):
            truth.call("GET", "/workspaces/thumbnail/00000000-0000-5000-8000-000000000000", ws)
    finally:
        truth.close()


# -- on a real mount ----------------------------------------------------------------------------


def test_listing_a_folder_of_pictures_fills_the_cache_from_renditions_and_reads_no_original(world):
    emu, m, truth, thumbs = world
    ws = truth.workspaces()[WORKSPACE]
    assets = {a["file_name"]: a for a in truth.assets(ws, FOLDER)}
    folder = m.path / "studio" / WORKSPACE / FOLDER.strip("/")
    before = status(m.path)["counters"]
    emu.reset_requests()

    assert sorted(os.listdir(folder)) == sorted([".assets", *PICTURES, "notes.pdf"])  # the opendir waits for them

    for name in PICTURES:
        path = folder / name
        st = path.stat()
        uri = gio_uri(path)
        for flavor, px in SIZES.items():
            thumb = thumbs / flavor / thumbnail_name(uri)
            size, text = thumbnail_text(thumb)
            assert max(size) == px, (name, flavor)
            assert text["Thumb::URI"] == uri
            assert text["Thumb::MTime"] == str(int(st.st_mtime))
            assert text["Thumb::Size"] == str(st.st_size)
    assert sorted(p.name for p in (thumbs / "normal").iterdir()) == sorted(
        thumbnail_name(gio_uri(folder / n)) for n in PICTURES
    ), "one per picture, none for the PDF"

    asked = emu.requests()
    for name in PICTURES:
        version = assets[name]["currentVersion"]
        assert asked.get(f"GET /mudstack/workspaces/thumbnail/{version['thumbnail_file_id']}") == 1, name
        assert not any(p.startswith(f"GET /cdn/{version['key']}") for p in asked), f"{name}: its original was read"
    assert sum(n for p, n in asked.items() if p.startswith("GET /cdn/renditions/")) == len(PICTURES)
    after = status(m.path)["counters"]
    assert after.get("bytes_read", 0) == before.get("bytes_read", 0)
    assert after["thumbnails_made"] - before.get("thumbnails_made", 0) == len(PICTURES)
    fetched = after["thumbnail_bytes"] - before.get("thumbnail_bytes", 0)
    originals = sum(assets[n]["currentVersion"]["size"] for n in PICTURES)
    assert fetched * 5 < originals, (fetched, originals)

    emu.reset_requests()
    os.listdir(folder)  # listed again: the thumbnails are there, nothing is asked
    assert not any("/thumbnail/" in p or "/cdn/" in p for p in emu.requests())


def test_a_rendition_that_fails_leaves_no_thumbnail(world):
    emu, m, _, thumbs = world
    folder = m.path / "studio" / WORKSPACE / FAILING.strip("/")
    before = status(m.path)["counters"].get("thumbnails_failed", 0)
    emu.set_faults(fail_status=500, fail_count=-1, only_prefix="/mudstack/workspaces/thumbnail")
    try:
        assert sorted(os.listdir(folder)) == [".assets", "broken.png"]
        deadline = time.monotonic() + 60
        while status(m.path)["counters"].get("thumbnails_failed", 0) == before and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        emu.clear_faults()
    assert status(m.path)["counters"].get("thumbnails_failed", 0) == before + 1
    uri = gio_uri(folder / "broken.png")
    assert not (thumbs / "normal" / thumbnail_name(uri)).exists()
    assert not (thumbs / "large" / thumbnail_name(uri)).exists()
    assert not list((thumbs / "normal").glob(".assetfs-*"))


def test_assets_thumbnail_png_is_the_providers_rendition(world):
    emu, m, truth, _ = world
    ws = truth.workspaces()[WORKSPACE]
    asset = next(a for a in truth.assets(ws, FOLDER) if a["file_name"] == "photo-1.png")
    details = m.path / "studio" / WORKSPACE / FOLDER.strip("/") / ".assets"
    shown = (details / "photo-1.png" / "thumbnail.png").read_bytes()
    signed = truth.call("GET", f"/workspaces/thumbnail/{asset['currentVersion']['thumbnail_file_id']}", ws)["url"]
    assert shown == httpx.get(signed).content
    assert (details / "photo-1.png" / "thumbnail.png").stat().st_size == len(shown)
    assert Image.open(io.BytesIO(shown)).size == (256, 256)
    assert "thumbnail.png" not in os.listdir(details / "notes.pdf")  # no rendition of a PDF

    # Spectrum: its image parameters on the CDN route (inferred), the original's format
    org = m.path / "carhartt" / SPECTRUM_ORG
    picture = next(p for p in sorted(org.iterdir()) if p.suffix in (".png", ".jpg"))
    emu.reset_requests()
    with Image.open(org / ".assets" / picture.name / "thumbnail.png") as thumb:
        scaled = thumb.size
    with Image.open(picture) as original:
        wanted = original.copy()
        wanted.thumbnail((256, 256))
    assert scaled == wanted.size and max(scaled) <= 256

    # iQmetrix and Apple document no rendition: nothing is shown
    for account in ("stores", "apple"):
        for details_dir in (m.path / account).rglob(".assets"):
            for asset_dir in details_dir.iterdir():
                assert "thumbnail.png" not in os.listdir(asset_dir), asset_dir
            break


def test_assetfs_thumbnails_fills_a_users_cache_ahead(world, tmp_path):
    _, m, _, _ = world
    org = m.path / "carhartt" / SPECTRUM_ORG
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    command = [sys.executable, "-m", "assetfs", "thumbnails", "--jobs", "2", str(org)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    pictures = [p for p in org.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    assert pictures
    assert f"{len(pictures)} made, 0 already there" in first.stdout
    for path in pictures:
        uri = gio_uri(path)
        size, text = thumbnail_text(tmp_path / "xdg" / "thumbnails" / "normal" / thumbnail_name(uri))
        assert text["Thumb::URI"] == uri and text["Thumb::MTime"] == str(int(path.stat().st_mtime))
        assert max(size) <= 128
    # again with its default (16 pictures at once): nothing to make, nothing made twice
    again = subprocess.run(command[:4] + command[6:], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"0 made, {len(pictures)} already there" in again.stdout
