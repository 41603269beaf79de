"""Mudstack writes, driven on the provider object against the emulator over real HTTP (no
FUSE): the three-step upload, new versions, the trash (delete, list, restore), renames and
moves, folders, and the refusals, each checked through the emulator's own API."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import httpx
import pytest
import trio
from emulator_log import names_used
from test_mount_mudstack import MudTruth
from truth import md5

from assetfs.config import parse_config
from assetfs.errors import AlreadyExists, AssetfsError, DirectoryNotEmpty, NotPermitted, ProviderError, errno_of
from assetfs.providers.base import ASSET, CONTAINER, CONTENT, TRASH, Entry, Upload
from assetfs.providers.registry import build_provider
from assetfs.stats import Stats

ACCOUNT = "studio"


# -- helpers ---------------------------------------------------------------------------------


def run(e, fn):
    """fn(provider) under trio with a provider for the emulator's Mudstack account."""

    async def main():
        config = parse_config({"accounts": {ACCOUNT: e.account("mudstack")}})
        provider = build_provider(ACCOUNT, config, Stats(), 30)
        try:
            return await fn(provider)
        finally:
            await provider.close()

    return trio.run(main)


async def children(provider, entry: Entry) -> dict[str, Entry]:
    entries = entry.children if entry.children is not None else await provider.list_dir(entry)
    return {c.name: c for c in entries}


async def at(provider, *names: str) -> Entry:
    """The entry at a path below the account, listing on the way."""
    entries = {e.name: e for e in await provider.list_root()}
    entry = None
    for i, name in enumerate(names):
        entry = entries[name]
        if i < len(names) - 1:
            entries = await children(provider, entry)
    return entry


def spool(tmp_path: Path, name: str, data: bytes, mime: str = "image/png") -> Upload:
    path = tmp_path / f"spool-{len(list(tmp_path.iterdir()))}"
    path.write_bytes(data)
    return Upload(path, name, len(data), md5(data), mime)


def trashed(truth: MudTruth, ws: str) -> list[dict]:
    return truth.call("GET", "/workspaces/assets/search", ws, params={"trashed": "true", "limit": 1000})["assets"]


def by_name(assets: list[dict]) -> dict[str, dict]:
    return {a["name"]: a for a in assets}


@pytest.fixture
def studio(fresh_emulator):
    """A private emulator (these tests change its data) and a client of its API."""
    e = fresh_emulator()
    t = MudTruth(e.account("mudstack"))
    yield e, t
    t.close()


# -- kinds -----------------------------------------------------------------------------------


def test_every_entry_has_its_kind_and_each_workspace_a_trash_view(emu):
    async def main(p):
        root = await p.list_root()
        game = next(e for e in root if e.name == "Game Art")
        top = await children(p, game)
        heroes = await at(p, "Game Art", "characters", "heroes")
        knight = (await children(p, heroes))["knight"]
        inside = await children(p, knight)
        versions = await children(p, inside["versions"])
        return root, top, heroes, knight, inside, versions, await children(p, heroes)

    root, top, heroes, knight, inside, versions, in_heroes = run(emu, main)
    assert root and all(ws.kind == CONTAINER for ws in root)
    assert top[".trash"].kind == TRASH and top[".trash"].is_dir and top[".trash"].key.endswith("/trash")
    assert top["characters"].kind == CONTAINER and top["style-guide"].kind == ASSET
    assert ".trash" not in in_heroes  # only the workspace lists the trash view
    assert heroes.kind == CONTAINER and knight.kind == ASSET
    assert inside["knight.png"].kind == CONTENT
    assert inside["asset.json"].kind == "" and inside["versions"].kind == ""
    assert all(v.kind == "" and all(f.kind == "" for f in v.children) for v in versions.values())


# -- new assets ------------------------------------------------------------------------------


def test_a_new_file_is_uploaded_in_three_steps_without_credentials_to_the_signed_url(studio, tmp_path):
    e, t = studio
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks of the streamed PUT
    upload = spool(tmp_path, "paladin.png", data)
    sent: list[httpx.Request] = []

    async def main(p):
        async def record(request):
            sent.append(request)

        p.http.client.event_hooks = {"request": [record], "response": []}
        heroes = await at(p, "Game Art", "characters", "heroes")
        created = await p.create_asset(heroes, upload)
        listed = await children(p, heroes)
        return created, listed

    created, listed = run(e, main)
    ws = t.workspaces()["Game Art"]
    assets = by_name(t.assets(ws, "/characters/heroes/"))
    asset = assets["paladin"]
    assert asset["file_name"] == "paladin.png" and asset["currentVersion"]["checksum"] == md5(data)
    assert t.download(ws, asset["id"]) == data

    # the entry is the one the listing builds
    assert created.name == "paladin" and created.kind == ASSET and created.key == f"asset/{asset['id']}"
    same = listed["paladin"]
    assert (same.key, same.xattrs, [c.name for c in same.children]) == (
        created.key,
        created.xattrs,
        [c.name for c in created.children],
    )
    content = next(c for c in created.children if c.kind == CONTENT)
    assert content.name == "paladin.png" and content.size == len(data) and content.content.md5 == md5(data)
    assert created.xattrs["user.assetfs.file_location"] == "/characters/heroes/"

    # the three steps, and no credentials to the signed URL
    steps = [(r.method, r.url.path) for r in sent if r.method != "GET"]
    assert steps[-3][0] == "POST" and steps[-3][1].endswith("/workspaces/assets/upload/")
    assert steps[-2][0] == "PUT" and steps[-2][1].startswith("/upload/")
    assert steps[-1] == ("POST", "/mudstack/workspaces/assets/upload/assets")
    put = next(r for r in sent if r.method == "PUT")
    assert "authorization" not in put.headers and "x-account-id" not in put.headers
    assert put.headers["content-length"] == str(len(data)) and "transfer-encoding" not in put.headers
    assert put.headers["content-type"] == "image/png"
    api = [r for r in sent if r.method == "POST" and "/workspaces/" in r.url.path]
    assert api and all(
        r.headers["authorization"].startswith("Bearer ") and r.headers["x-workspace-id"] == ws for r in api
    )


def test_a_new_file_in_a_workspace_root_and_a_retried_signed_put(studio, tmp_path):
    e, t = studio
    data = os.urandom(200_000)
    e.set_faults(fail_status=503, fail_count=1, only_prefix="/upload/")  # the first PUT fails

    async def main(p):
        return await p.create_asset(await at(p, "Marketing"), spool(tmp_path, "press-kit.pdf", data, "application/pdf"))

    created = run(e, main)
    ws = t.workspaces()["Marketing"]
    asset = by_name(t.assets(ws, "/"))["press-kit"]
    assert t.download(ws, asset["id"]) == data
    assert created.xattrs["user.assetfs.file_location"] == "/" and created.xattrs["user.assetfs.md5"] == md5(data)
    puts = sum(n for k, n in e.requests().items() if k.startswith("PUT /upload/"))
    assert puts == 2


def test_a_checksum_mismatch_is_an_error_and_the_wrong_asset_goes_to_the_trash(studio, tmp_path):
    e, t = studio
    upload = spool(tmp_path, "broken.png", b"the real bytes")
    upload.md5 = md5(b"other bytes")  # as if the spool had changed since its md5 was taken

    async def main(p):
        environments = await at(p, "Game Art", "environments")
        # the signed PUT's ETag already tells: no asset is made
        with pytest.raises(ProviderError, match="storage received different bytes") as at_put:
            await p.create_asset(environments, upload)

        # storage that sends no md5 ETag: the asset's checksum tells
        async def drop_etag(response):
            if response.request.method == "PUT":
                del response.headers["etag"]

        p.http.client.event_hooks = {"request": [], "response": [drop_etag]}
        with pytest.raises(ProviderError, match="the provider stored different bytes") as at_asset:
            await p.create_asset(environments, upload)
        return at_put.value, at_asset.value

    at_put, at_asset = run(e, main)
    assert "moved to the trash" in str(at_asset) and errno_of(at_asset) == errno_of(at_put) == errno.EIO
    ws = t.workspaces()["Game Art"]
    assert "broken" not in by_name(t.assets(ws, "/environments/"))
    assert [a["currentVersion"]["checksum"] for a in trashed(t, ws) if a["name"] == "broken"] == [
        md5(b"the real bytes")
    ]


# -- new versions ----------------------------------------------------------------------------


def test_writing_an_assets_file_adds_a_version_shown_as_current_and_in_versions(studio, tmp_path):
    e, t = studio
    data = os.urandom(150_000)
    again = os.urandom(1000)

    async def main(p):
        knight = await at(p, "Game Art", "characters", "heroes", "knight")
        after = await p.replace_content(knight, spool(tmp_path, "knight.png", data))
        content = next(c for c in after.children if c.kind == CONTENT)
        twice = await p.replace_content(content, spool(tmp_path, "knight.png", again))  # the content entry works too
        versions = await children(p, next(c for c in twice.children if c.name == "versions"))
        return knight, after, twice, versions

    before, after, twice, versions = run(e, main)
    ws = t.workspaces()["Game Art"]
    asset = by_name(t.assets(ws, "/characters/heroes/"))["knight"]
    assert [v["version_number"] for v in asset["versions"]] == [1, 2, 3, 4, 5]
    assert t.download(ws, asset["id"], asset["versions"][3]["id"]) == data
    assert t.download(ws, asset["id"]) == again

    assert before.xattrs["user.assetfs.version"] == "3"
    assert after.key == before.key and after.kind == ASSET
    assert after.xattrs["user.assetfs.version"] == "4" and after.xattrs["user.assetfs.md5"] == md5(data)
    content = next(c for c in after.children if c.kind == CONTENT)
    assert content.name == "knight.png" and content.content.md5 == md5(data) and content.size == len(data)
    assert content.content.version != next(c for c in before.children if c.kind == CONTENT).content.version
    assert twice.xattrs["user.assetfs.version"] == "5"
    assert sorted(versions) == ["v1", "v2", "v3", "v4", "v5"]
    assert versions["v4"].children[0].content.md5 == md5(data)
    assert versions["v5"].children[0].content.md5 == md5(again)


# -- delete, trash, restore ------------------------------------------------------------------


def test_delete_goes_to_the_trash_view_and_a_move_out_of_it_restores(studio):
    e, t = studio

    async def main(p):
        game = await at(p, "Game Art")
        heroes = await at(p, "Game Art", "characters", "heroes")
        archer = (await children(p, heroes))["archer"]
        content = next(c for c in archer.children if c.kind == CONTENT)
        await p.delete_asset(content)  # rm of the content file
        in_heroes = await children(p, heroes)
        trash = await children(p, (await children(p, game))[".trash"])
        gone = trash["archer"]
        with pytest.raises(NotPermitted, match="already in the trash"):
            await p.delete_asset(gone)
        villains = await at(p, "Game Art", "characters", "villains")
        restored = await p.move_asset(gone, villains, "archer-restored.png")
        trash_after = await children(p, (await children(p, game))[".trash"])
        old_logo = (await children(p, (await children(p, await at(p, "Marketing")))[".trash"]))["old-logo"]
        back = await p.move_asset(old_logo, await at(p, "Marketing"), None)  # restore only
        return in_heroes, trash, restored, trash_after, old_logo, back

    in_heroes, trash, restored, trash_after, old_logo, back = run(e, main)
    ws = t.workspaces()["Game Art"]
    assert "archer" not in in_heroes and "archer" in trash
    assert trash["archer"].kind == ASSET and trash["archer"].xattrs["user.assetfs.state"] == "trashed"
    assert next(c for c in trash["archer"].children if c.kind == CONTENT).name == "archer.png"
    villains = by_name(t.assets(ws, "/characters/villains/"))
    asset = villains["archer-restored"]
    assert asset["isActive"] and asset["file_location"] == "/characters/villains/"
    assert "archer" not in by_name(trashed(t, ws)) and "archer-restored" not in trash_after
    assert restored.name == "archer-restored" and restored.kind == ASSET
    assert next(c for c in restored.children if c.kind == CONTENT).name == "archer-restored.png"
    assert restored.xattrs["user.assetfs.state"] == "active"
    assert restored.xattrs["user.assetfs.file_location"] == "/characters/villains/"

    marketing = t.workspaces()["Marketing"]
    assert old_logo.xattrs["user.assetfs.state"] == "trashed"
    assert by_name(t.assets(marketing, "/"))["old-logo"]["isActive"]
    assert back.xattrs["user.assetfs.file_location"] == "/" and back.xattrs["user.assetfs.state"] == "active"
    assert back.name == "old-logo"  # a restore only sends no rename
    assert [n["name"] for n in names_used(e, "mudstack") if n["event"] == "rename"] == ["archer-restored.png"]


def test_the_trash_view_lists_every_page(fresh_emulator):
    e = fresh_emulator("--assets", "1100")
    t = MudTruth(e.account("mudstack"))
    try:
        ws = t.workspaces()["Game Art"]
        bulk = t.assets(ws, "/bulk/")
        for asset in bulk[:1050]:
            t.call("DELETE", f"/workspaces/assets/{asset['id']}", ws)

        async def main(p):
            return await children(p, (await children(p, await at(p, "Game Art")))[".trash"])

        trash = run(e, main)
        assert {a.xattrs["user.assetfs.id"] for a in trash.values()} == {a["id"] for a in bulk[:1050]}
        assert e.requests()["GET /mudstack/workspaces/assets/search"] >= 3
    finally:
        t.close()


# -- renames and moves -----------------------------------------------------------------------


def test_rename_move_and_both_within_a_workspace_and_not_across(studio):
    e, t = studio

    async def main(p):
        villains = await at(p, "Game Art", "characters", "villains")
        heroes = await at(p, "Game Art", "characters", "heroes")
        dragon = (await children(p, villains))["dragon"]
        renamed = await p.move_asset(dragon, villains, "wyrm.jpg")  # rename only: the file name shown
        moved = await p.move_asset(renamed, heroes, None)  # move only
        both = await p.move_asset(moved, await at(p, "Game Art"), "drake.jpg")  # both
        listed = await children(p, await at(p, "Game Art"))
        with pytest.raises(NotPermitted, match="moving between workspaces is not an API operation"):
            await p.move_asset(both, await at(p, "Marketing"), None)
        gone = await p.move_asset(both, listed[".trash"], None)  # into the trash view
        return renamed, moved, both, listed, gone

    renamed, moved, both, listed, gone = run(e, main)
    ws = t.workspaces()["Game Art"]
    assert renamed.name == "wyrm" and renamed.xattrs["user.assetfs.file_location"] == "/characters/villains/"
    assert next(c for c in renamed.children if c.kind == CONTENT).name == "wyrm.jpg"
    assert moved.xattrs["user.assetfs.file_location"] == "/characters/heroes/"
    assert both.name == "drake" and both.xattrs["user.assetfs.file_location"] == "/"
    assert next(c for c in both.children if c.kind == CONTENT).name == "drake.jpg"
    assert listed["drake"].key == both.key
    # A move only sends no rename; each rename is one request to the rename route.
    assert [n["name"] for n in names_used(e, "mudstack") if n["event"] == "rename"] == ["wyrm.jpg", "drake.jpg"]
    assert gone.xattrs["user.assetfs.state"] == "trashed"
    assert by_name(trashed(t, ws))["drake"]["file_location"] == "/"
    assert "drake" not in by_name(t.assets(ws, "/")) and "dragon" not in by_name(t.assets(ws, "/characters/villains/"))


# -- folders ---------------------------------------------------------------------------------


def test_folders_are_made_and_removed_and_a_full_one_is_refused(studio, tmp_path):
    e, t = studio

    async def main(p):
        game = await at(p, "Game Art")
        audio = await p.make_container(game, "audio")
        sfx = await p.make_container(audio, "sfx")
        listed = await children(p, game)
        with pytest.raises(AlreadyExists, match="already exists"):
            await p.make_container(game, "audio")
        boom = await p.create_asset(sfx, spool(tmp_path, "boom.wav", b"RIFF....WAVE", "audio/wav"))
        errors = []
        for target in (audio, sfx):  # a subfolder, an asset: not empty
            with pytest.raises(DirectoryNotEmpty, match="not empty") as err:
                await p.delete_container(target)
            errors.append(err.value)
        await p.delete_asset(boom)  # a trashed asset does not keep its folder
        await p.delete_container(sfx)
        await p.delete_container(audio)
        return audio, sfx, listed, errors, await children(p, game)

    audio, sfx, listed, errors, after = run(e, main)
    ws = t.workspaces()["Game Art"]
    assert audio.kind == sfx.kind == CONTAINER and audio.name == "audio" and sfx.name == "sfx"
    assert audio.key == f"ws/{ws}/folder/audio" and sfx.key == f"ws/{ws}/folder/audio/sfx"
    assert sfx.xattrs["user.assetfs.file_location"] == "/audio/sfx/" and sfx.xattrs["user.assetfs.id"]
    assert listed["audio"].key == audio.key and listed["audio"].kind == CONTAINER
    assert all("not empty" in str(x) and errno_of(x) == errno.ENOTEMPTY for x in errors)
    folders = t.folders(ws)
    assert "/audio/" not in folders and "/audio/sfx/" not in folders and "audio" not in after
    assert by_name(trashed(t, ws))["boom"]["file_location"] == "/audio/sfx/"


# -- refusals --------------------------------------------------------------------------------


def test_what_the_api_cannot_do_is_refused_with_a_reason(emu, tmp_path):
    upload = spool(tmp_path, "x.png", b"x")

    async def main(p):
        root_entry = Entry(ACCOUNT, "", True)
        game = await at(p, "Game Art")
        top = await children(p, game)
        trash = top[".trash"]
        knight = await at(p, "Game Art", "characters", "heroes", "knight")
        inside = await children(p, knight)
        v1 = (await children(p, inside["versions"]))["v1"]
        calls = {
            "in the trash": p.create_asset(trash, upload),
            "account": p.create_asset(root_entry, upload),
            "version": p.replace_content(v1.children[0], upload),
            "asset.json": p.delete_asset(inside["asset.json"]),
            "workspace": p.delete_container(game),
            "trash view": p.delete_container(trash),
            "trash name": p.make_container(game, ".trash"),
            "backslash": p.make_container(game, "a\\b"),
            "content rename": p.move_asset(inside["knight.png"], top["characters"], "k"),
        }
        out = {}
        for what, call in calls.items():
            try:
                await call
            except AssetfsError as e:
                out[what] = e
        return out

    refused = run(emu, main)
    assert len(refused) == 9
    assert all(isinstance(e, NotPermitted) and errno_of(e) == errno.EPERM for e in refused.values()), refused
    assert "only shows deleted assets" in str(refused["in the trash"])
    assert "versions/ and asset.json cannot be changed" in str(refused["version"])
    assert "no way to delete a workspace" in str(refused["workspace"])


def test_an_asset_read_back_without_the_new_version_still_shows_it(emu):
    """If the asset read after a version upload lags behind, the entry shows the version
    the upload answered as current and under versions/ all the same."""
    from assetfs.providers import mudstack

    t = MudTruth(emu.account("mudstack"))
    try:
        ws = t.workspaces()["Game Art"]
        knight = by_name(t.assets(ws, "/characters/heroes/"))["knight"]
    finally:
        t.close()
    new = {**knight["currentVersion"], "id": "new-version", "version_number": 4, "checksum": md5(b"new"), "size": 3}
    entry = mudstack._asset_entry(mudstack._with_current(knight, new), ws)
    content = next(c for c in entry.children if c.kind == CONTENT)
    assert content.content.version == "mudstack:new-version" and content.content.md5 == md5(b"new")
    assert entry.xattrs["user.assetfs.version"] == "4"
    versions = next(c for c in entry.children if c.name == "versions")
    assert [v.name for v in versions.children] == ["v1", "v2", "v3", "v4"]
    assert mudstack.Mudstack.writes == {"create", "replace", "delete", "mkdir", "rmdir", "move"}
