"""Writes on real mounts: `cp` uploads, overwrites replace, rsync and editors work, and no
failure or kill loses what was written (requests counted and bytes checked at the emulator)."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from PIL import Image
from test_mount_apple import AppleTruth
from test_mount_iqmetrix import api as iq_api
from test_mount_mudstack import MudTruth
from truth import md5, wait_for

pytestmark = pytest.mark.mount
APPLE_ORG, APPLE_BRAND = "9467895078742654934", "9467895078742654921"


def png(color: tuple[int, int, int], size=(48, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def uploads(emu) -> int:
    """Upload requests the emulator has seen, of every provider."""
    return sum(
        n
        for k, n in emu.requests().items()
        if k.startswith("POST") and ("upload" in k or k.endswith("/assets") or "/versions" in k)
    )


@pytest.fixture
def writable(fresh_emulator, mount, tmp_path):
    emu = fresh_emulator()
    cache = tmp_path / "cache"
    return emu, mount(emu.config, cache_dir=cache, options="write_back=0"), cache  # close() uploads


def mudstack_folder(m) -> Path:
    return m.path / "studio" / "Game Art" / "characters"


def test_cp_uploads_to_apple_iqmetrix_and_mudstack_with_identical_md5(writable, tmp_path):
    emu, m, _ = writable
    data = png((200, 30, 60))
    source = tmp_path / "logo.png"
    source.write_bytes(data)
    brand = m.path / "apple" / APPLE_ORG / APPLE_BRAND
    subprocess.run(["cp", str(source), str(brand)], check=True)
    subprocess.run(["cp", str(source), str(m.path / "stores" / "logos")], check=True)
    subprocess.run(["cp", str(source), str(mudstack_folder(m))], check=True)

    apple = AppleTruth(emu.account("apple"))
    [asset] = [
        a for a in apple.assets(APPLE_ORG, APPLE_BRAND) if a["brandAssetDetails"].get("partnersAssetId") == "logo"
    ]
    image = apple.image(APPLE_ORG, asset["brandAssetDetails"]["imageId"])
    assert md5(httpx.get(image["cdnUrl"]).content) == md5(data)
    assert os.listdir(brand).count("logo.png") == 1 and (brand / "logo.png").read_bytes() == data
    assert "asset.json" in os.listdir(brand / ".assets" / "logo.png")

    iq_id = os.getxattr(m.path / "stores" / "logos" / "logo.png", "user.assetfs.id").decode()
    with iq_api(emu.account("iqmetrix")) as client:
        assert client.get(f"/assets/{iq_id}").json()["md5Checksum"] == md5(data)

    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    [new] = [a for a in mud.assets(ws, "/characters/") if a["file_name"] == "logo.png"]
    assert new["currentVersion"]["checksum"] == md5(data)
    assert md5(mud.download(ws, new["id"])) == md5(data)
    assert (mudstack_folder(m) / "logo.png").read_bytes() == data


def test_overwriting_a_mudstack_file_makes_a_new_version(writable, tmp_path):
    emu, m, _ = writable
    first, second = png((10, 10, 200)), png((10, 200, 10))
    target = mudstack_folder(m) / "hero.png"
    target.write_bytes(first)
    target.write_bytes(second)
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    [asset] = [a for a in mud.assets(ws, "/characters/") if a["file_name"] == "hero.png"]
    assert asset["currentVersion"]["version_number"] == 2
    assert md5(mud.download(ws, asset["id"])) == md5(second)
    versions = sorted(os.listdir(mudstack_folder(m) / ".assets" / "hero.png" / "versions"))
    assert versions == ["v1", "v2"]
    assert (mudstack_folder(m) / ".assets" / "hero.png" / "versions" / "v1" / "hero.png").read_bytes() == first
    assert (mudstack_folder(m) / "hero.png").read_bytes() == second


def test_rsync_twice_transfers_nothing_the_second_time(writable, tmp_path):
    emu, m, _ = writable
    source = tmp_path / "art"
    source.mkdir()
    for n in range(4):
        (source / f"tile{n}.png").write_bytes(png((n * 60, 100, 100)))
    target = mudstack_folder(m)
    first = subprocess.run(["rsync", "-a", "--stats", f"{source}/", f"{target}/"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "Number of regular files transferred: 4" in first.stdout
    emu.reset_requests()
    second = subprocess.run(["rsync", "-a", "--stats", f"{source}/", f"{target}/"], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "Number of regular files transferred: 0" in second.stdout
    assert uploads(emu) == 0
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    names = {a["file_name"] for a in mud.assets(ws, "/characters/")}
    assert {f"tile{n}.png" for n in range(4)} <= names


def test_an_editor_style_save_commits_exactly_once(writable):
    emu, m, _ = writable
    folder = mudstack_folder(m)
    (folder / "notes.png").write_bytes(png((1, 2, 3)))
    emu.reset_requests()
    # vim: probe file, swap file, write the new text to a temporary name, rename over the file
    (folder / "4913").write_bytes(b"")
    os.unlink(folder / "4913")
    (folder / ".notes.png.swp").write_bytes(b"swap" * 100)
    new = png((4, 5, 6))
    (folder / "notes.png~").write_bytes(new)
    os.rename(folder / "notes.png~", folder / "notes.png")
    os.unlink(folder / ".notes.png.swp")
    assert uploads(emu) == 1
    assert (folder / "notes.png").read_bytes() == new
    assert ".notes.png.swp" not in os.listdir(folder)


def test_temporary_names_are_never_uploaded(writable):
    emu, m, _ = writable
    emu.reset_requests()
    brand = m.path / "apple" / APPLE_ORG / APPLE_BRAND
    for name in (".goutputstream-XYZ123", "draft.png~", ".hidden.png", "x.swp"):
        (brand / name).write_bytes(png((9, 9, 9)))
        assert (brand / name).read_bytes() == png((9, 9, 9))
    assert uploads(emu) == 0


def test_a_failed_upload_fails_close_keeps_its_bytes_and_succeeds_later(fresh_emulator, mount):
    emu = fresh_emulator()
    m = mount(emu.config, options="timeout=5s,write_back=0")
    data = png((77, 77, 77))
    os.listdir(mudstack_folder(m))
    emu.set_faults(fail_status=500, fail_count=-1, only_prefix="/mudstack")
    target = mudstack_folder(m) / "stubborn.png"
    with pytest.raises(OSError) as failure:
        with open(target, "wb") as f:
            f.write(data)
    assert failure.value.errno == errno.EIO
    pending = m.path / ".assetfs" / "pending"
    [kept] = [p for p in pending.iterdir() if p.name.endswith("stubborn.png")]
    assert kept.read_bytes() == data
    emu.clear_faults()
    wait_for(lambda: not os.listdir(pending), 40)
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    [asset] = [a for a in mud.assets(ws, "/characters/") if a["file_name"] == "stubborn.png"]
    assert md5(mud.download(ws, asset["id"])) == md5(data)


def test_kill_9_with_an_upload_pending_then_remount_completes_it(fresh_emulator, mount, tmp_path):
    emu = fresh_emulator()
    cache = tmp_path / "cache"
    m = mount(emu.config, cache_dir=cache, options="timeout=5s,write_back=0")
    data = png((123, 45, 67))
    brand = m.path / "apple" / APPLE_ORG / APPLE_BRAND
    os.listdir(brand)
    emu.set_faults(fail_status=503, fail_count=-1, only_prefix="/apple")
    with pytest.raises(OSError):
        with open(brand / "survivor.png", "wb") as f:
            f.write(data)
    m.process.send_signal(signal.SIGKILL)
    m.process.wait(10)
    m.stop()
    emu.clear_faults()
    again = mount(emu.config, cache_dir=cache)
    apple = AppleTruth(emu.account("apple"))

    def uploaded():
        return [
            a
            for a in apple.assets(APPLE_ORG, APPLE_BRAND)
            if a["brandAssetDetails"].get("partnersAssetId") == "survivor"
        ]

    [asset] = wait_for(uploaded, 40)
    image = apple.image(APPLE_ORG, asset["brandAssetDetails"]["imageId"])
    assert md5(httpx.get(image["cdnUrl"]).content) == md5(data)
    wait_for(lambda: not os.listdir(again.path / ".assetfs" / "pending"), 20)


def test_spectrum_is_read_only_and_iqmetrix_cannot_overwrite_or_delete(writable, tmp_path):
    emu, m, _ = writable
    org = m.path / "carhartt" / "7000000000000300322"
    with pytest.raises(OSError) as e:
        (org / "new.png").write_bytes(b"x")
    assert e.value.errno == errno.EROFS
    with pytest.raises(OSError) as e:
        os.mkdir(org / "folder")
    assert e.value.errno == errno.EROFS
    logos = m.path / "stores" / "logos"
    seed = logos / "iqmetrix.jpg"
    emu.reset_requests()
    with pytest.raises(OSError) as e:
        seed.write_bytes(b"new")
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.unlink(seed)
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.mkdir(logos / "sub")
    assert e.value.errno == errno.EPERM
    assert uploads(emu) == 0
    assert "no update or delete" in m.log()


def test_mudstack_mkdir_rm_and_mv_map_to_folders_trash_and_rename(writable):
    emu, m, _ = writable
    folder = mudstack_folder(m)
    os.mkdir(folder / "sketches")
    (folder / "sketches" / "idea.png").write_bytes(png((5, 5, 5)))
    mud = MudTruth(emu.account("mudstack"))
    ws = mud.workspaces()["Game Art"]
    assert "/characters/sketches/" in mud.folders(ws)
    [asset] = mud.assets(ws, "/characters/sketches/")
    os.rename(folder / "sketches" / "idea.png", folder / "sketches" / "concept.png")
    assert sorted(os.listdir(folder / "sketches")) == [".assets", "concept.png"]
    assert mud.call("GET", f"/workspaces/assets/{asset['id']}", ws)["file_name"] == "concept.png"
    subprocess.run(["rm", "-r", str(folder / "sketches")], check=True)  # the file, .assets/, the folder
    assert mud.assets(ws, "/characters/sketches/") == [] and "/characters/sketches/" not in mud.folders(ws)
    trash = m.path / "studio" / "Game Art" / ".trash"
    assert "concept.png" in os.listdir(trash)
    os.rename(trash / "concept.png", folder / "concept.png")
    assert mud.call("GET", f"/workspaces/assets/{asset['id']}", ws)["isActive"] is True
    assert "concept.png" in os.listdir(folder)


def test_an_apple_intent_set_as_an_xattr_before_close_is_used(writable):
    emu, m, _ = writable
    brand = m.path / "apple" / APPLE_ORG / APPLE_BRAND
    target = brand / "cover.png"
    with open(target, "wb") as f:
        f.write(png((1, 99, 1)))
        os.setxattr(target, "user.assetfs.intent", b"COVER_PHOTO")
    with pytest.raises(OSError) as e:
        os.setxattr(brand / ".assets" / "cover.png" / "asset.json", "user.other", b"x")
    assert e.value.errno == errno.EPERM
    apple = AppleTruth(emu.account("apple"))
    [asset] = [
        a for a in apple.assets(APPLE_ORG, APPLE_BRAND) if a["brandAssetDetails"].get("partnersAssetId") == "cover"
    ]
    assert asset["brandAssetDetails"]["intent"] == "COVER_PHOTO"
