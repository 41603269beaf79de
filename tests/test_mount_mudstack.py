"""The read path on a real mount of the emulated Mudstack API: workspaces, the folder tree,
assets as files with their details under .assets/ (asset.json, versions), bytes, xattrs,
paging, tokens, names."""

from __future__ import annotations

import json
import os
import subprocess
import time
import unicodedata
from pathlib import Path

import httpx
import pytest
import trio
from truth import md5

from assetfs.providers.base import is_picture

pytestmark = pytest.mark.mount
ACCOUNT = "studio"


# -- the truth, straight from the emulator's API ---------------------------------------------


class MudTruth:
    """A plain httpx client of the Mudstack API, to compare the mount with."""

    def __init__(self, account: dict):
        self.account = account
        self.http = httpx.Client(base_url=account["base_url"], timeout=30)
        creds = {k: account[k] for k in ("account_id", "key", "secret")}
        self.token = self.http.post("/auth/token", json=creds).raise_for_status().json()["token"]

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, ws: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}", "x-account-id": self.account["account_id"]}
        if ws:
            headers["x-workspace-id"] = ws
        return self.http.request(method, path, headers=headers, **kwargs).raise_for_status().json()

    def workspaces(self) -> dict[str, str]:
        """name → id"""
        return {w["name"]: w["id"] for w in self.call("GET", "/workspaces")["workspaces"]}

    def folders(self, ws: str) -> list[str]:
        paths = []

        def walk(node):
            paths.append(node["path"])
            for child in node["children"]:
                walk(child)

        walk(self.call("GET", "/workspaces/folders/hierarchy", ws))
        return paths

    def assets(self, ws: str, location: str) -> list[dict]:
        out, page = [], 1
        while True:
            body = self.call(
                "GET", "/workspaces/assets/search", ws, params={"file_location": location, "page": page, "limit": 1000}
            )
            out += body["assets"]
            if page * body["limit"] >= body["total"]:
                return out
            page += 1

    def download(self, ws: str, asset_id: str, version_id: str | None = None) -> bytes:
        route = f"/workspaces/assets/{asset_id}" + (f"/versions/{version_id}" if version_id else "") + "/download"
        url = self.call("GET", route, ws)["url"]
        return httpx.get(url, timeout=30).raise_for_status().content

    def rename(self, ws: str, asset_id: str, name: str) -> dict:
        return self.call("PATCH", f"/workspaces/assets/{asset_id}/rename", ws, json={"name": name})


def children_of(path: str, folders: list[str]) -> list[str]:
    """Names of the folders directly under `path`."""
    return [
        f.rstrip("/").rsplit("/", 1)[1]
        for f in folders
        if f != path and f.startswith(path) and "/" not in f[len(path) :].rstrip("/")
    ]


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, f"user.assetfs.{name}").decode()


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def truth(emu):
    t = MudTruth(emu.account("mudstack"))
    yield t
    t.close()


@pytest.fixture
def studio(emu, mount):
    m = mount(emu.config, accounts=[ACCOUNT])
    return m, m.path / ACCOUNT


def every_asset(truth: MudTruth):
    """(workspace id, the asset's file in the mount relative to the account, asset)."""
    for ws_name, ws in truth.workspaces().items():
        for folder in truth.folders(ws):
            for asset in truth.assets(ws, folder):
                yield (
                    ws,
                    Path(ws_name, *folder.strip("/").split("/") if folder != "/" else ()) / asset["file_name"],
                    asset,
                )


def details(file: Path) -> Path:
    """An asset's directory beside its file: `.assets/<file name>/`."""
    return file.parent / ".assets" / file.name


# -- the tree --------------------------------------------------------------------------------


def test_tree_is_workspaces_then_folders_then_asset_files(studio, truth):
    m, root = studio
    workspaces = truth.workspaces()
    assert sorted(os.listdir(root)) == sorted(workspaces)
    for ws_name, ws in workspaces.items():
        folders = truth.folders(ws)
        for folder in folders:
            local = root / ws_name / folder.strip("/")
            files = [a["file_name"] for a in truth.assets(ws, folder)]
            expected = children_of(folder, folders) + files + [".assets"]
            expected += [".trash"] if folder == "/" else []  # each workspace shows its trash
            assert sorted(os.listdir(local)) == sorted(expected), folder
            assert all((local / f).is_file() for f in files)
            assert sorted(os.listdir(local / ".assets")) == sorted(files)
    heroes = root / "Game Art" / "characters" / "heroes"
    knight = heroes / ".assets" / "knight.png"
    assert (heroes / "knight.png").is_file()
    assert sorted(os.listdir(knight)) == ["asset.json", "thumbnail.png", "versions"]
    assert sorted(os.listdir(knight / "versions")) == ["v1", "v2", "v3"]
    assert all(os.listdir(knight / "versions" / v) == ["knight.png"] for v in ("v1", "v2", "v3"))
    # a trashed asset shows only in its workspace's .trash view
    trashed = [a for a in truth.assets(truth.workspaces()["Marketing"], "/campaigns/") if a["name"] == "old-logo"]
    assert not trashed
    assert any(n.startswith("old-logo") for n in os.listdir(root / "Marketing" / ".trash"))
    assert not any(n.startswith("old-logo") for n in os.listdir(root / "Marketing" / "campaigns"))
    assert os.path.isdir(root / "Game Art" / "environments" / "props")  # an empty folder is still a folder


def test_every_file_and_version_has_the_providers_bytes_and_size(studio, truth):
    m, root = studio
    checked = 0
    for ws, rel, asset in every_asset(truth):
        content = root / rel
        asset_dir = details(content)
        expected = truth.download(ws, asset["id"])
        assert content.stat().st_size == len(expected) == asset["currentVersion"]["size"]
        assert md5(content.read_bytes()) == md5(expected) == asset["currentVersion"]["checksum"]
        for version in asset["versions"]:
            local = asset_dir / "versions" / f"v{version['version_number']}" / asset["file_name"]
            data = truth.download(ws, asset["id"], version["id"])
            assert local.stat().st_size == len(data) == version["size"]
            assert local.read_bytes() == data
            checked += 1
    assert checked >= 15
    # versions really differ: the knight's v1 is not its v3
    heroes = root / "Game Art" / "characters" / "heroes"
    knight = heroes / ".assets" / "knight.png"
    assert (knight / "versions" / "v1" / "knight.png").read_bytes() != (heroes / "knight.png").read_bytes()
    assert (knight / "versions" / "v3" / "knight.png").read_bytes() == (heroes / "knight.png").read_bytes()


def test_asset_json_is_the_providers_object(studio, truth):
    m, root = studio
    for _ws, rel, asset in every_asset(truth):
        assert json.loads((details(root / rel) / "asset.json").read_text()) == asset


def test_xattrs_and_tools(studio, truth, tmp_path):
    m, root = studio
    ws = truth.workspaces()["Game Art"]
    [asset] = [a for a in truth.assets(ws, "/characters/heroes/") if a["name"] == "knight"]
    heroes = root / "Game Art" / "characters" / "heroes"
    knight = heroes / ".assets" / "knight.png"
    current = asset["currentVersion"]
    for path in (knight, heroes / "knight.png"):
        assert xattr(path, "id") == asset["id"]
        assert xattr(path, "checksum") == xattr(path, "md5") == current["checksum"]
        assert xattr(path, "version") == "3" == str(current["version_number"])
        assert xattr(path, "file_location") == "/characters/heroes/"
        assert xattr(path, "state") == "active"
        assert xattr(path, "workspace") == ws
    v1 = asset["versions"][0]
    assert xattr(knight / "versions" / "v1" / "knight.png", "md5") == v1["checksum"]
    assert xattr(knight / "versions" / "v1" / "knight.png", "version") == "1"
    assert xattr(root / "Game Art", "id") == ws
    assert xattr(root / "Game Art" / "characters", "file_location") == "/characters/"

    attrs = run("getfattr", "-d", str(heroes / "knight.png"))
    assert f'user.assetfs.id="{asset["id"]}"' in attrs and 'user.assetfs.state="active"' in attrs
    pngs = [a for _, _, a in every_asset(truth) if a["file_name"].endswith(".png") and a["workspace_id"] == ws]
    found = run(
        "find", str(root / "Game Art"), "-name", "*.png", "-path", "*/versions/*", "-not", "-path", "*/.trash/*"
    ).splitlines()
    assert len(found) == sum(len(a["versions"]) for a in pngs)
    files = run(
        "find",
        str(root / "Game Art"),
        "-name",
        ".assets",
        "-prune",
        "-o",
        "-name",
        ".trash",
        "-prune",
        "-o",
        "-type",
        "f",
        "-name",
        "*.png",
        "-print",
    ).splitlines()
    assert len(files) == len(pngs)  # each asset once
    sums = [
        line.split()[0]
        for line in run(
            "md5sum", str(heroes / "knight.png"), str(knight / "versions" / "v1" / "knight.png")
        ).splitlines()
    ]
    assert sums == [current["checksum"], v1["checksum"]]
    copy = tmp_path / "copy"
    run("cp", "-r", str(root / "Marketing"), str(copy))
    assert run("diff", "-r", str(root / "Marketing"), str(copy)) == ""
    assert int(run("du", "-sk", "--apparent-size", str(root / "Marketing")).split()[0]) > 0


def test_workspaces_from_the_config_by_name_or_id(emu, mount, truth):
    account = emu.account("mudstack")
    ids = truth.workspaces()
    config = {"accounts": {ACCOUNT: {**account, "workspaces": ["Marketing"]}}}
    assert os.listdir(mount(config).path / ACCOUNT) == ["Marketing"]
    config = {"accounts": {ACCOUNT: {**account, "workspaces": [ids["Game Art"]]}}}
    assert os.listdir(mount(config).path / ACCOUNT) == ["Game Art"]


# -- paging, tokens --------------------------------------------------------------------------


def test_a_folder_of_1200_assets_is_listed_completely(fresh_emulator, mount):
    e = fresh_emulator("--assets", "1200")
    t = MudTruth(e.account("mudstack"))
    try:
        ws = t.workspaces()["Game Art"]
        expected = t.assets(ws, "/bulk/")
        assert len(expected) == 1200
        m = mount(e.config, accounts=[ACCOUNT])
        e.reset_requests()
        bulk = m.path / ACCOUNT / "Game Art" / "bulk"
        assert sorted(os.listdir(bulk)) == sorted([a["file_name"] for a in expected] + [".assets"])
        assert e.requests()["GET /mudstack/workspaces/assets/search"] >= 3  # several pages, each once
        last = expected[-1]
        assert (bulk / last["file_name"]).read_bytes() == t.download(ws, last["id"])
    finally:
        t.close()


def test_token_expiry_and_revocation_during_a_mount(fresh_emulator, mount):
    e = fresh_emulator("--token-ttl", "2s")
    m = mount(e.config, accounts=[ACCOUNT])
    game = m.path / ACCOUNT / "Game Art"
    assert "characters" in os.listdir(game)
    time.sleep(3)  # the first token has expired
    knight = game / "characters" / "heroes" / "knight.png"
    assert len(knight.read_bytes()) == knight.stat().st_size > 0
    e.set_tokens(revoke_all=True, ttl=3600)  # a 401 with a token the client thinks valid
    assert "brand-guidelines.pdf" in os.listdir(m.path / ACCOUNT / "Marketing")
    assert e.requests()["POST /mudstack/auth/token"] >= 3
    assert "ms_demo_secret" not in m.log()


def test_bad_credentials_give_eacces_with_a_clear_log(emu, mount):
    import errno

    config = {"accounts": {ACCOUNT: {**emu.account("mudstack"), "secret": "wrong-secret-value"}}}
    m = mount(config)
    with pytest.raises(OSError) as err:
        os.listdir(m.path / ACCOUNT)
    assert err.value.errno == errno.EACCES
    assert "Mudstack account studio" in m.log() and "wrong-secret-value" not in m.log()


# -- names -----------------------------------------------------------------------------------


def test_duplicate_and_hostile_names_are_unique_safe_and_stable(fresh_emulator, mount, tmp_path):
    e = fresh_emulator()
    t = MudTruth(e.account("mudstack"))
    try:
        ws = t.workspaces()["Game Art"]
        heroes = {a["name"]: a for a in t.assets(ws, "/characters/heroes/")}
        t.rename(ws, heroes["knight"]["id"], "hero")
        t.rename(ws, heroes["archer"]["id"], "hero")  # two assets named alike
        chars = {a["name"]: a for a in t.assets(ws, "/characters/")}
        t.rename(ws, chars["concept-sheet"]["id"], "villains")  # an asset named as a sibling folder
        env = {a["name"]: a for a in t.assets(ws, "/environments/")}
        t.rename(ws, env["forest"]["id"], "back\\slash\x01bell")  # control character and backslash
        t.rename(ws, env["castle"]["id"], "x" * 300)  # longer than a name may be
        expected_ids = {
            a["id"] for f in ("/characters/heroes/", "/characters/", "/environments/") for a in t.assets(ws, f)
        }

        def names(m) -> dict[str, list[str]]:
            game = m.path / ACCOUNT / "Game Art"
            return {d: sorted(os.listdir(game / d)) for d in ("characters/heroes", "characters", "environments")}

        m1 = mount(e.config, accounts=[ACCOUNT])
        first = names(m1)
        game = m1.path / ACCOUNT / "Game Art"
        for listing in first.values():
            assert len(listing) == len(set(listing))
            for name in listing:
                assert len(name.encode()) <= 255 and "/" not in name and not any(ord(c) < 32 for c in name)
                assert unicodedata.is_normalized("NFC", name)
        hero = [n for n in first["characters/heroes"] if n.startswith("hero")]
        assert len(hero) == 2 and hero != ["hero", "hero"]
        ids = {xattr(game / "characters/heroes" / n, "id") for n in hero}
        assert ids == {heroes["knight"]["id"], heroes["archer"]["id"]}
        villains = [n for n in first["characters"] if n.startswith("villains")]
        assert len(villains) == 2
        assert {os.path.isdir(game / "characters" / n) for n in villains} == {True, False}  # the folder, the file
        assert any(f.startswith("dragon") for f in os.listdir(game / "characters" / "villains"))
        seen_ids = set()
        for d, listing in first.items():
            for name in listing:
                path = game / d / name
                if path.is_file():
                    seen_ids.add(xattr(path, "id"))
                    asset = json.loads((details(path) / "asset.json").read_text())
                    assert path.stat().st_size == asset["currentVersion"]["size"]
                    assert path.read_bytes() == t.download(ws, asset["id"])
                    thumbnail = ["thumbnail.png"] if is_picture(name) else []  # the provider's rendition
                    assert sorted(os.listdir(details(path))) == ["asset.json", *thumbnail, "versions"]
        assert seen_ids == expected_ids
        long_name = next(n for n in first["environments"] if n.startswith("xxxx"))
        assert len(long_name.encode()) <= 255 and os.path.isdir(game / "environments" / ".assets" / long_name)
        m1.stop()
        m2 = mount(e.config, accounts=[ACCOUNT], cache_dir=tmp_path / "other-cache")
        assert names(m2) == first  # the same names on another mount, without the cache
    finally:
        t.close()


# -- a versions directory listed on demand ---------------------------------------------------


def test_versions_listed_on_demand_when_the_asset_object_has_none(emu, truth):
    """An asset object without versions[] gets a versions directory that lists
    `GET …/{asset_id}/versions` when opened (no mount: the provider against the emulator)."""
    from assetfs.config import parse_config
    from assetfs.providers import mudstack
    from assetfs.providers.registry import build_provider
    from assetfs.stats import Stats

    ws = truth.workspaces()["Game Art"]
    [asset] = [a for a in truth.assets(ws, "/characters/heroes/") if a["name"] == "knight"]
    stripped = {k: v for k, v in asset.items() if k != "versions"}
    entry = mudstack._asset_entry(stripped, ws)
    versions_dir = next(c for c in entry.children if c.name == "versions")
    assert versions_dir.children is None

    async def main():
        provider = build_provider(ACCOUNT, parse_config({"accounts": {ACCOUNT: emu.account("mudstack")}}), Stats(), 30)
        try:
            listed = await provider.list_dir(versions_dir)
            resolved = await provider.resolve(listed[0].children[0].content)
        finally:
            await provider.close()
        return listed, resolved

    listed, resolved = trio.run(main)
    assert [v.name for v in listed] == ["v1", "v2", "v3"]
    assert [v.children[0].name for v in listed] == ["knight.png"] * 3
    first = asset["versions"][0]
    assert resolved.size == first["size"] and resolved.md5 == first["checksum"]
    assert md5(httpx.get(resolved.url, timeout=30).content) == first["checksum"]
