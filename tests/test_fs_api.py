"""The filesystem's operations in-process (no kernel): the tree of files and `.assets/`,
names, xattrs, and the write rules — write-back, renames and their flags, modes and times —
against real providers talking to the emulator over HTTP. Fast: many cases, one emulator."""

from __future__ import annotations

import errno
import os
import shutil
import threading

import pyfuse3
import pytest
import trio
from conftest import emulator_fixture
from fsapi import in_process, setattr_fields
from test_mount_mudstack import MudTruth

from assetfs.metacache import MetaCache
from assetfs.names import safe_name
from assetfs.providers.base import ASSET, CONTAINER, CONTENT, Content, Entry
from assetfs.view.layout import place
from assetfs.write.journal import REPLACE, Journal, PendingUpload

pytestmark = pytest.mark.trio
UI = "studio/Game Art/ui"


emulator_w = emulator_fixture("emulator_w")  # this module's own: its tests write


@pytest.fixture(scope="module")
def truth(emulator_w):
    t = MudTruth(emulator_w.account("mudstack"))
    yield t
    t.close()


def workspace(truth: MudTruth, name: str = "Game Art") -> str:
    return truth.workspaces()[name]


def names_on_provider(truth: MudTruth, location: str = "/ui/") -> list[str]:
    return sorted(a["file_name"] for a in truth.assets(workspace(truth), location))


async def fails(errno_: int, call) -> None:
    with pytest.raises(pyfuse3.FUSEError) as caught:
        await call
    assert caught.value.errno == errno_, errno.errorcode[caught.value.errno]


# -- layout: pure rules ---------------------------------------------------------------------


def _asset(ident: str, name: str, file: str | None) -> Entry:
    children = [Entry("asset.json", f"asset/{ident}/asset.json", False, inline=b"{}")]
    if file is not None:
        children.insert(
            0,
            Entry(
                file,
                f"asset/{ident}/content",
                False,
                content=Content(f"v:{ident}"),
                kind=CONTENT,
                xattrs={"user.assetfs.mime": "image/png"},
            ),
        )
    return Entry(name, f"asset/{ident}", True, children=children, xattrs={"user.assetfs.id": ident}, kind=ASSET)


async def test_layout_names_files_by_their_content_and_keeps_them_unique_across_files_and_folders():
    entries = [
        _asset("a1", "logo", "logo.png"),
        Entry("logo.png", "folder/logo.png", True, kind=CONTAINER),
        _asset("a2", "logo", "logo.png"),
        _asset("a3", "dot", ".assets"),
        _asset("a4", "bare", None),
    ]
    placed = list(place(entries))
    names = [p.name for p in placed]
    assert len(set(names)) == len(names)
    assert names[:3] == ["logo (a1).png", "logo (logo.png).png", "logo (a2).png"]  # marked with their ids
    assert names[3] == "\uff0eassets"  # the real .assets is the hidden directory
    assert placed[4].file is None and placed[4].name == "bare"  # no content: only under .assets/
    assert placed[0].file.xattrs == {"user.assetfs.mime": "image/png"}  # the asset's are added when shown
    # the same assets in another order keep their names
    again = {p.entry.key: p.name for p in place(list(reversed(entries)))}
    assert again == {p.entry.key: p.name for p in placed}


async def test_layout_names_stay_safe():
    placed = place([_asset("x", "evil", "../../etc/passwd"), _asset("y", "dots", ".."), _asset("z", "nul", "a\0b")])
    for p in placed:
        assert "/" not in p.name and "\0" not in p.name and p.name not in (".", "..")
        assert p.name == safe_name(p.name, "")


# -- the tree ------------------------------------------------------------------------------


async def test_containers_show_files_subfolders_and_hidden_asset_directories(emulator_w, tmp_path):
    async with in_process(emulator_w, tmp_path) as fs:
        org = "carhartt/" + (await fs.listdir("carhartt"))[0]
        names = await fs.listdir(org)
        assert names[-1] == ".assets" and len(names) > 1
        files = names[:-1]
        assert all(os.path.splitext(n)[1] for n in files)  # a real extension each
        assert sorted(await fs.listdir(f"{org}/.assets")) == sorted(files)
        for name in files:
            assert not (await fs.stat(f"{org}/{name}")).st_mode & 0o040000
            details = await fs.listdir(f"{org}/.assets/{name}")
            assert "asset.json" in details and name not in details
        ws = await fs.listdir("studio/Game Art")
        assert {"characters", "environments", "ui", ".trash", ".assets"} <= set(ws)
        assert "style-guide.pdf" in ws
        assert "v3" in await fs.listdir("studio/Game Art/characters/heroes/.assets/knight.png/versions")


async def test_named_organizations_and_ids_typed_as_paths(emulator_w, tmp_path):
    apple = emulator_w.account("apple")
    org_id = next(iter(apple["organizations"]))
    async with in_process(emulator_w, tmp_path, accounts=["apple"]) as fs:
        orgs = await fs.listdir("apple")
        assert "Café Aurora LLC" in orgs  # the legal name /me gives
        brands = await fs.listdir("apple/Café Aurora LLC")
        assert "Café Aurora" in brands  # the brand's display name
        assert await fs.ino(f"apple/{org_id}") == await fs.ino("apple/Café Aurora LLC")
        assert await fs.getxattr("apple/Café Aurora LLC", "user.assetfs.id") == org_id.encode()
        files = await fs.listdir("apple/Café Aurora LLC/Café Aurora")
        assert files[-1] == ".assets" and all(n.endswith((".jpg", ".png", ".heic")) for n in files[:-1])


async def test_spectrum_organizations_named_in_the_config(emulator_w, tmp_path):
    spectrum = dict(emulator_w.account("spectrum"))
    first, second = spectrum["organizations"][:2]
    spectrum["organizations"] = {"Main store": first}
    from fsapi import FS

    from assetfs.config import parse_config
    from assetfs.mount import Mount
    from assetfs.options import MountOptions

    config = parse_config(
        {
            "cache": {"dir": str(tmp_path / "c")},
            "state": {"dir": str(tmp_path / "s")},
            "accounts": {"carhartt": spectrum},
        }
    )
    mount = Mount(config, tmp_path / "mnt", MountOptions())
    fs = FS(mount)
    try:
        assert await fs.listdir("carhartt") == ["Main store"]
        assert ".assets" in await fs.listdir("carhartt/Main store")
        assert ".assets" in await fs.listdir(f"carhartt/{second}")  # not configured, found by its ID
    finally:
        await mount.close()


# -- xattrs ----------------------------------------------------------------------------------


async def test_xattrs_user_namespace_only_answered_from_memory(emulator_w, tmp_path):
    async with in_process(emulator_w, tmp_path, accounts=["studio"]) as fs:
        path = "studio/Game Art/style-guide.pdf"
        ino = await fs.ino(path)
        names = await fs.ops.listxattr(ino, None)
        assert b"user.assetfs.id" in names and b"user.assetfs.md5" in names
        assert all(n.startswith(b"user.") for n in names)
        assert await fs.ops.getxattr(ino, b"user.assetfs.id", None)
        await fails(errno.EOPNOTSUPP, fs.ops.getxattr(ino, b"security.selinux", None))
        await fails(errno.EOPNOTSUPP, fs.ops.getxattr(ino, b"system.posix_acl_access", None))
        await fails(errno.ENODATA, fs.ops.getxattr(ino, b"user.nothing", None))
        node = fs.view.inodes.get(ino)
        memo = node.attr_cache
        await fs.ops.getxattr(ino, b"user.assetfs.id", None)
        assert node.attr_cache is memo  # made once per entry, not per call
    async with in_process(emulator_w, tmp_path / "x", accounts=["studio"], options="noxattr") as fs:
        await fails(errno.ENOSYS, fs.getxattr("studio/Game Art/style-guide.pdf", "user.assetfs.id"))


# -- writing ---------------------------------------------------------------------------------


async def test_a_new_file_is_uploaded_after_the_delay_and_shows_as_the_assets_file(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=2") as fs:
        await fs.write_file(f"{UI}/new.txt", b"hello")
        assert "new.txt" not in names_on_provider(truth)  # not yet: within the write-back delay
        assert await fs.getxattr(f"{UI}/new.txt", "user.assetfs.state") == b"waiting"
        pending = await fs.listdir(".assetfs/pending")
        assert len(pending) == 1 and pending[0].endswith("new.txt")
        ino = await fs.ino(f"{UI}/new.txt")
        await fs.drain()
        assert names_on_provider(truth).count("new.txt") == 1
        assert await fs.ino(f"{UI}/new.txt") == ino  # the same file, now the asset's
        assert await fs.read_file(f"{UI}/new.txt") == b"hello"
        assert (await fs.listdir(UI)).count("new.txt") == 1
        assert "asset.json" in await fs.listdir(f"{UI}/.assets/new.txt")
        await fs.ops.setattr(ino, _times(), setattr_fields(mtime=True, mode=True), None, None)  # tar x, cp -a: accepted
        await fs.unlink(f"{UI}/new.txt")
        assert "new.txt" not in names_on_provider(truth)


async def test_safe_save_through_a_temporary_name_replaces_once(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0.2") as fs:
        await fs.write_file(f"{UI}/doc.txt", b"one")
        await fs.drain()
        for tmp_name in ("sedAb12Cd", "tmpo9xnaayw", "doc.txt.new"):
            fh = await fs.create(f"{UI}/{tmp_name}")
            await fs.ops.write(fh, 0, f"saved via {tmp_name}".encode())
            await fs.close(fh)
            await fs.rename(f"{UI}/{tmp_name}", f"{UI}/doc.txt")
            await fs.drain()
            assert await fs.read_file(f"{UI}/doc.txt") == f"saved via {tmp_name}".encode()
            assert names_on_provider(truth).count("doc.txt") == 1 and tmp_name not in names_on_provider(truth)
        [asset] = [a for a in truth.assets(workspace(truth), "/ui/") if a["file_name"] == "doc.txt"]
        assert len(asset["versions"]) == 4
        assert truth.download(workspace(truth), asset["id"]) == b"saved via doc.txt.new"


async def test_dup_flush_then_more_writes_are_one_upload_with_every_byte(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0.2") as fs:
        uploads = fs.mount.stats.counters["uploads"]
        fh = await fs.create(f"{UI}/g1.txt")
        await fs.ops.flush(fh)  # the shell's close() after dup2: nothing new yet
        await fs.ops.write(fh, 0, b"hello\n")  # written through the duplicate: accepted
        await fs.ops.flush(fh)
        await fs.ops.flush(fh)  # a flush with nothing new
        await fs.ops.write(fh, 6, b"world\n")  # written after a flush: dirty again
        await fs.close(fh)
        await fs.drain()
        assert fs.mount.stats.counters["uploads"] == uploads + 1
        [asset] = [a for a in truth.assets(workspace(truth), "/ui/") if a["file_name"] == "g1.txt"]
        assert truth.download(workspace(truth), asset["id"]) == b"hello\nworld\n"


async def test_without_write_back_close_uploads_and_later_writes_are_a_new_version(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0") as fs:
        fh = await fs.create(f"{UI}/now.txt")
        await fs.ops.write(fh, 0, b"first")
        await fs.ops.flush(fh)
        assert "now.txt" in names_on_provider(truth)  # close() returned once the provider had it
        await fs.ops.flush(fh)  # nothing new: nothing uploaded
        await fs.ops.write(fh, 5, b"+more")
        await fs.close(fh)
        [asset] = [a for a in truth.assets(workspace(truth), "/ui/") if a["file_name"] == "now.txt"]
        assert len(asset["versions"]) == 2
        assert truth.download(workspace(truth), asset["id"]) == b"first+more"


async def test_a_file_removed_or_renamed_within_the_delay_is_uploaded_once_or_never(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0.5") as fs:
        await fs.write_file(f"{UI}/gone.txt", b"x")
        await fs.unlink(f"{UI}/gone.txt")
        await fs.write_file(f"{UI}/first.txt", b"y")
        await fs.rename(f"{UI}/first.txt", f"{UI}/final.txt")
        await fs.drain()
        names = names_on_provider(truth)
        assert "gone.txt" not in names and "first.txt" not in names and names.count("final.txt") == 1
        assert await fs.listdir(".assetfs/pending") == []


async def test_big_files_never_uploaded_leave_no_checksum_thread_behind(emulator_w, tmp_path):
    """Big in-order writes are hashed on a thread of their own. A file that is never uploaded
    (a temporary one, or one removed while open) ends that thread with its spool."""

    def hashing() -> int:
        return sum(t.name == "assetfs-md5" and t.is_alive() for t in threading.enumerate())

    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0") as fs:
        before = hashing()
        for name, removed_while_open in (("big.tmp", False), ("scratch.part", False), ("kept.bin", True)):
            fh = await fs.create(f"{UI}/{name}")
            await fs.ops.write(fh, 0, os.urandom(1 << 20))
            assert hashing() == before + 1
            if removed_while_open:
                await fs.unlink(f"{UI}/{name}")
                await fs.ops.release(fh)
            else:
                await fs.close(fh)
                await fs.unlink(f"{UI}/{name}")
            with trio.fail_after(5):  # the thread ends once it has hashed what it was handed
                while hashing() > before:
                    await trio.sleep(0.01)


async def test_renaming_an_assets_file_renames_the_asset_and_flags_are_honoured(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0") as fs:
        await fs.write_file(f"{UI}/a.txt", b"a")
        await fs.write_file(f"{UI}/b.txt", b"b")
        ino = await fs.ino(f"{UI}/a.txt")
        await fs.rename(f"{UI}/a.txt", f"{UI}/c.txt")
        listing = await fs.listdir(UI)
        assert "c.txt" in listing and "a.txt" not in listing and listing.count("c.txt") == 1
        assert await fs.ino(f"{UI}/c.txt") == ino
        assert "c.txt" in names_on_provider(truth) and "a.txt" not in names_on_provider(truth)
        await fails(errno.EEXIST, fs.rename(f"{UI}/c.txt", f"{UI}/b.txt", 1))  # RENAME_NOREPLACE
        await fails(errno.EINVAL, fs.rename(f"{UI}/c.txt", f"{UI}/b.txt", 2))  # RENAME_EXCHANGE
        await fs.rename(f"{UI}/c.txt", "studio/Game Art/c.txt")  # into another folder
        assert "c.txt" in await fs.listdir("studio/Game Art")
        assert "c.txt" in names_on_provider(truth, "/")


async def test_directories_refuse_what_posix_and_the_api_refuse(emulator_w, tmp_path):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0") as fs:
        await fs.mkdir(f"{UI}/full")
        await fs.write_file(f"{UI}/full/x.txt", b"x")
        await fs.mkdir(f"{UI}/empty")
        await fails(errno.ENOTEMPTY, fs.rename(f"{UI}/empty", f"{UI}/full"))
        await fails(errno.EPERM, fs.rename(f"{UI}/empty", f"{UI}/moved"))  # no folder move in the API
        await fails(errno.ENOTEMPTY, fs.rmdir(f"{UI}/full"))
        await fails(errno.EEXIST, fs.mkdir(f"{UI}/full"))
        await fs.unlink(f"{UI}/full/x.txt")
        await fs.rmdir(f"{UI}/full/.assets") if await fs.exists(f"{UI}/full/.assets") else None
        await fs.rmdir(f"{UI}/full")
        assert "full" not in await fs.listdir(UI)


async def test_modes_and_times_accepted_where_tools_need_it_refused_elsewhere(emulator_w, tmp_path):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=5") as fs:
        folder = await fs.ino(UI)
        await fs.ops.setattr(folder, _times(), setattr_fields(mtime=True, mode=True, uid=True), None, None)
        fh = await fs.create(f"{UI}/t.txt")
        ino = await fs.ino(f"{UI}/t.txt")
        attrs = await fs.ops.setattr(ino, _times(0o600), setattr_fields(mtime=True, mode=True), None, None)
        assert attrs.st_mode & 0o777 == 0o600 and attrs.st_mtime_ns == 1_000_000_000_000_000_000
        await fs.close(fh)
        old = await fs.ino("studio/Game Art/style-guide.pdf")
        await fails(errno.EPERM, fs.ops.setattr(old, _times(), setattr_fields(mode=True), None, None))
        await fs.unlink(f"{UI}/t.txt")


async def test_the_times_and_mode_given_to_a_written_file_stay_with_its_bytes(emulator_w, tmp_path):
    """rsync -a sets them on its temporary file before the rename, tar x and cp -a after the
    close: either way the uploaded file shows them, on the next mount too, even after the
    cache was cleared (else the next `rsync -a` would send every file again)."""
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0.2") as fs:
        fh = await fs.create(f"{UI}/.given.txt.XyZ123")
        await fs.ops.write(fh, 0, b"given")
        await fs.close(fh)
        ino = await fs.ino(f"{UI}/.given.txt.XyZ123")
        await fs.ops.setattr(ino, _times(0o640), setattr_fields(mtime=True, mode=True), None, None)
        await fs.rename(f"{UI}/.given.txt.XyZ123", f"{UI}/given.txt")
        await fs.drain()
        shown = await fs.stat(f"{UI}/given.txt")
        assert (shown.st_mode & 0o777, shown.st_mtime_ns) == (0o640, 1_000_000_000_000_000_000)
    shutil.rmtree(tmp_path / "cache")  # they live in the state dir: a cleared cache keeps them
    async with in_process(emulator_w, tmp_path, accounts=["studio"]) as fs:
        shown = await fs.stat(f"{UI}/given.txt")
        assert (shown.st_mode & 0o777, shown.st_mtime_ns) == (0o640, 1_000_000_000_000_000_000)


async def test_refusals_of_providers_that_cannot(emulator_w, tmp_path):
    async with in_process(emulator_w, tmp_path, accounts=["stores", "carhartt"], options="write_back=0.2") as fs:
        logos = "stores/logos"
        existing = next(n for n in await fs.listdir(logos) if n != ".assets")
        fh = await fs.create(f"{logos}/sedXYZ")
        await fs.ops.write(fh, 0, b"x")
        await fs.close(fh)
        await fails(errno.EPERM, fs.rename(f"{logos}/sedXYZ", f"{logos}/{existing}"))  # iQmetrix cannot replace
        await fs.unlink(f"{logos}/sedXYZ")  # sed removes its temporary
        await fs.drain()
        assert fs.mount.stats.counters["uploads"] == 0  # nothing reached the provider
        org = "carhartt/" + (await fs.listdir("carhartt"))[0]
        await fails(errno.EROFS, fs.create(f"{org}/new.png"))
        name = (await fs.listdir(org))[0]
        await fails(errno.EROFS, fs.rename(f"{org}/{name}", f"{org}/other.png"))
        await fails(errno.EROFS, fs.unlink(f"{org}/{name}"))


async def test_an_open_for_writing_without_truncation_copies_the_file_at_its_first_write(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0.2") as fs:
        await fs.write_file(f"{UI}/cow.txt", b"0123456789")
        await fs.drain()
        uploads = fs.mount.stats.counters["uploads"]
        fh = await fs.open(f"{UI}/cow.txt", os.O_RDWR)  # r+b, nothing written: nothing sent
        assert await fs.ops.read(fh, 0, 4) == b"0123"
        await fs.close(fh)
        await fs.drain()
        assert fs.mount.stats.counters["uploads"] == uploads
        fh = await fs.open(f"{UI}/cow.txt", os.O_WRONLY)  # a write in the middle: the rest is kept
        await fs.ops.write(fh, 3, b"xyz")
        await fs.close(fh)
        await fs.drain()
        assert fs.mount.stats.counters["uploads"] == uploads + 1
        [asset] = [a for a in truth.assets(workspace(truth), "/ui/") if a["file_name"] == "cow.txt"]
        assert truth.download(workspace(truth), asset["id"]) == b"012xyz6789" and len(asset["versions"]) == 2


async def test_fsync_uploads_at_once_and_a_pending_copy_removed_gives_the_file_up(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=60") as fs:
        fh = await fs.create(f"{UI}/synced.txt")
        await fs.ops.write(fh, 0, b"synced")
        await fs.ops.fsync(fh, False)
        assert "synced.txt" in names_on_provider(truth)  # no waiting for the delay
        await fs.close(fh)
        await fs.write_file(f"{UI}/abandoned.txt", b"never")
        [copy] = await fs.listdir(".assetfs/pending")
        await fs.unlink(f".assetfs/pending/{copy}")
        assert "abandoned.txt" not in await fs.listdir(UI)
        assert await fs.listdir(".assetfs/pending") == []
        assert "abandoned.txt" not in names_on_provider(truth)


async def test_rm_r_of_a_folder_removes_its_files_its_assets_directory_then_itself(emulator_w, tmp_path, truth):
    async with in_process(emulator_w, tmp_path, accounts=["studio"], options="write_back=0") as fs:
        await fs.mkdir(f"{UI}/gone")
        await fs.write_file(f"{UI}/gone/a.txt", b"a")
        await fs.rmdir(f"{UI}/gone/.assets/a.txt")  # `rm -r` may reach .assets/ first: the asset goes
        await fs.unlink(f"{UI}/gone/a.txt")  # ... and its file after it, quietly
        await fs.rmdir(f"{UI}/gone/.assets")
        await fs.rmdir(f"{UI}/gone")
        assert "gone" not in await fs.listdir(UI)
        assert "/ui/gone/" not in truth.folders(workspace(truth))


async def test_an_apple_image_replaced_through_a_rename_shows_once(emulator_w, tmp_path):
    import io

    from PIL import Image

    brand = "apple/Café Aurora LLC/Aurora Roasters"
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "PNG")
    async with in_process(emulator_w, tmp_path, accounts=["apple"], options="write_back=0.2") as fs:
        target = next(n for n in await fs.listdir(brand) if n.endswith(".png"))
        before = await fs.listdir(brand)
        fh = await fs.create(f"{brand}/tmpsave")
        await fs.ops.write(fh, 0, out.getvalue())
        await fs.close(fh)
        await fs.rename(f"{brand}/tmpsave", f"{brand}/{target}")
        await fs.drain()
        assert sorted(await fs.listdir(brand)) == sorted(before)  # one entry, in place of the old image
        assert await fs.read_file(f"{brand}/{target}") == out.getvalue()


async def test_a_pending_upload_journaled_by_the_old_layout_resumes(emulator_w, tmp_path, truth):
    """The per-asset-directory layout journaled a replace with its asset directory as the
    directory; such a record is still uploaded by the next mount."""
    ws = workspace(truth)
    [asset] = [a for a in truth.assets(ws, "/") if a["file_name"] == "style-guide.pdf"]
    versions = len(asset["versions"])
    spool = tmp_path / "cache" / "spool"
    spool.mkdir(parents=True, mode=0o700)
    (spool / "old").write_bytes(b"%PDF new bytes")
    journal = Journal(tmp_path / "cache" / "journal")
    target = Entry(
        asset["name"],
        f"asset/{asset['id']}",
        True,
        kind=ASSET,
        xattrs={"user.assetfs.workspace": ws, "user.assetfs.id": asset["id"]},
    )
    import hashlib

    journal.put(
        PendingUpload(
            "studio",
            REPLACE,
            target,
            f"studio:asset/{asset['id']}",
            "style-guide.pdf",
            str(spool / "old"),
            state="pending",
            size=14,
            md5=hashlib.md5(b"%PDF new bytes").hexdigest(),
            mime="application/pdf",
        )
    )
    journal.close()
    async with in_process(emulator_w, tmp_path, accounts=["studio"]) as fs:
        await fs.drain()
    [asset] = [a for a in truth.assets(ws, "/") if a["file_name"] == "style-guide.pdf"]
    assert len(asset["versions"]) == versions + 1
    assert truth.download(ws, asset["id"]) == b"%PDF new bytes"


def _times(mode: int = 0o644) -> pyfuse3.EntryAttributes:
    attr = pyfuse3.EntryAttributes()
    attr.st_mtime_ns = 1_000_000_000_000_000_000
    attr.st_mode = mode
    return attr


# -- sizes asked ahead ----------------------------------------------------------------------


async def test_sizes_asked_ahead_that_fail_are_asked_again_by_each_files_own_stat(emulator_w, tmp_path):
    """Spectrum publishes no sizes. Stats of a directory just read ask its sizes ahead; the
    HEADs that fail there (a 503: the batch does not retry) are asked again, with retries, by
    the stat of their own file: every size right, and none asked more than needed."""
    async with in_process(emulator_w, tmp_path, accounts=["carhartt"]) as fs:
        org = "carhartt/" + (await fs.listdir("carhartt"))[0]
        first, *files = [n for n in await fs.listdir(org) if n != ".assets"]
        assert len(files) >= 2
        emulator_w.reset_requests()
        sizes = {first: (await fs.stat(f"{org}/{first}")).st_size}  # the first stat asks for its own
        emulator_w.set_faults(fail_status=503, fail_count=1, only_prefix="/cdn/")
        try:
            sizes.update({name: (await fs.stat(f"{org}/{name}")).st_size for name in files})
        finally:
            emulator_w.clear_faults()
        heads = sum(n for k, n in emulator_w.requests().items() if k.startswith("HEAD "))
        assert fs.mount.stats.counters["sizes_ahead"] == len(files) - 1  # the second stat's on, one failed
        assert heads == 1 + len(files) + 1  # the failed one, asked again
        for name in [first, *files]:
            assert sizes[name] == len(await fs.read_file(f"{org}/{name}")) > 0


async def test_sizes_asked_ahead_are_kept_for_the_next_mount_a_moment_later_or_as_it_stops(
    emulator_w, tmp_path, monkeypatch
):
    """Sizes learnt ahead are in this mount's listing at once; they are written to the disk
    cache a moment after the batch, once the mount is quiet (not while `ls -l` runs again),
    and at once if the mount stops first, so the next mount asks no HEAD for them."""
    monkeypatch.setattr("assetfs.metacache.WRITE_AFTER", 0.3)
    monkeypatch.setattr("assetfs.metacache.QUIET", 0.1)
    for stop_early in (False, True):
        async with in_process(emulator_w, tmp_path / str(stop_early), accounts=["carhartt"]) as fs:
            org = "carhartt/" + (await fs.listdir("carhartt"))[0]
            files = [n for n in await fs.listdir(org) if n != ".assets"]
            for name in files[:2]:
                await fs.stat(f"{org}/{name}")  # the second asks the others' sizes ahead
            versions = [
                node.entry.content.version
                for name, node in fs.view.root.children["carhartt"].children[org.split("/")[1]].children.items()
                if name in files[2:]
            ]
            with trio.fail_after(5):
                while fs.mount.stats.counters.get("sizes_ahead", 0) < len(files) - 1:
                    await trio.sleep(0.01)
            stored = fs.view.metacache._cache.get
            if not stop_early:
                assert stored(f"fact:content:{versions[0]}") is None  # not yet: a moment later
                await trio.sleep(0.6)
                assert all(stored(f"fact:content:{v}") is not None for v in versions)
        if stop_early:
            cache = MetaCache(tmp_path / str(stop_early) / "cache" / "metadata", ttl=60)
            assert all(cache.fact(v) is not None for v in versions)
            cache.close()


async def test_a_readdir_waits_for_sizes_asked_ahead_only_so_long(emulator_w, tmp_path, monkeypatch):
    """A readdir after the sizes were asked ahead waits for them, so the listing carries them;
    when the HEADs are slow it waits only so long in all, and the files not sized by then
    are listed without a size (the kernel asks for it with a getattr)."""
    monkeypatch.setattr("assetfs.fuse_ops.LISTED_PATIENCE", 0.3)
    # one slow HEAD after another
    async with in_process(emulator_w, tmp_path, accounts=["carhartt"], options="heads_at_once=1") as fs:
        org = "carhartt/" + (await fs.listdir("carhartt"))[0]
        first, second, *rest = [n for n in await fs.listdir(org) if n != ".assets"]
        fh = await fs.ops.opendir(await fs.ino(org), None)
        emulator_w.set_faults(latency=0.5, only_prefix="/cdn/")
        try:
            await fs.stat(f"{org}/{first}")  # its own HEAD
            await fs.stat(f"{org}/{second}")  # …and the others' asked ahead: slow
            listed = {}
            original = pyfuse3.readdir_reply

            def catch(token, name, attrs, next_id):
                listed[os.fsdecode(name)] = attrs
                return True

            monkeypatch.setattr(pyfuse3, "readdir_reply", catch)
            with trio.fail_after(3):
                await fs.ops.readdir(fh, 0, None)
            monkeypatch.setattr(pyfuse3, "readdir_reply", original)
        finally:
            emulator_w.clear_faults()
            await fs.ops.releasedir(fh)
        unsized = [n for n in rest if listed[n].attr_timeout == 0]
        assert unsized  # not waited for past the patience
        assert listed[first].st_size > 0 and listed[first].attr_timeout > 0
        for name in rest:  # each is sized once its HEAD is in
            assert (await fs.stat(f"{org}/{name}")).st_size == len(await fs.read_file(f"{org}/{name}"))
