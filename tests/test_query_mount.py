"""Query and saved-view directories on a real mount of the emulator (all four providers):
each query lists what the emulator's data says should match, a view lists what the same
ad-hoc query lists, files read the bytes and carry the xattrs of their home entries, bad
expressions and probe names fail at once without a request, and nothing there is writable."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from mounting import MountedFS
from truth import md5, spectrum_assets

pytestmark = pytest.mark.mount
APPLE_ORG, APPLE_BRAND = "9467895078742654934", "9467895078742654921"
SPECTRUM_ORG = "7000000000000300418"
COVERS = "brandAssetDetails.intent==COVER_PHOTO"


@pytest.fixture(scope="module")
def fs(emulator, tmp_path_factory):
    accounts = {name: dict(account) for name, account in emulator.config["accounts"].items()}
    accounts["apple"]["views"] = {"covers": COVERS, "recent": "updatedDate=ge=-3650d"}
    accounts["studio"]["views"] = {"heroes": "library==Characters", "covers": COVERS}
    accounts["carhartt"]["views"] = {"live": "active==true"}
    m = MountedFS(tmp_path_factory.mktemp("query-mount"), {"accounts": accounts})
    yield m
    m.stop()


def files(directory) -> set[str]:
    """The asset files of a directory (not its subfolders, views, .query/ or .assets/)."""
    return {e.name for e in os.scandir(directory) if e.is_file()}


def ids_of(directory) -> dict[str, str]:
    """File name → the asset id it carries (user.assetfs.id)."""
    return {n: os.getxattr(os.path.join(directory, n), "user.assetfs.id").decode() for n in files(directory)}


def md5_of(path) -> str:
    return md5(Path(path).read_bytes())


def when(text: str) -> datetime:
    found = datetime.fromisoformat(text)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def check_query(home, expression: str, expected_ids: set[str]):
    """The query's files are the home files of exactly the expected assets, same names, ids,
    xattrs and bytes; its `.assets/` holds their details."""
    found = home / ".query" / expression
    listed = ids_of(found)
    assert set(listed.values()) == expected_ids and expected_ids
    home_ids = ids_of(home)
    assert listed == {n: i for n, i in home_ids.items() if i in expected_ids}  # named as at home
    for name in listed:
        same = [(a, os.getxattr(found / name, a)) for a in os.listxattr(found / name)]
        assert same == [(a, os.getxattr(home / name, a)) for a in os.listxattr(home / name)]
        assert md5_of(found / name) == md5_of(home / name)
        assert (found / ".assets" / name / "asset.json").read_bytes() == (
            home / ".assets" / name / "asset.json"
        ).read_bytes()
    return found


# ---- per provider: what the emulator's data says --------------------------------------------------


def test_spectrum_query(fs, emulator):
    assets = spectrum_assets(emulator.config["accounts"]["carhartt"], SPECTRUM_ORG)
    middle = sorted(a["createdDate"] for a in assets)[len(assets) // 2]
    home = fs.path / "carhartt" / SPECTRUM_ORG
    check_query(
        home,
        "active==true;productionJobs.status==*",
        {str(a["id"]) for a in assets if a["active"] and a.get("productionJobs")},
    )
    check_query(
        home, f"createdDate=lt={middle}", {str(a["id"]) for a in assets if when(a["createdDate"]) < when(middle)}
    )
    shown = subprocess.run(["ls", f"{home}/@live/"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and set(shown.stdout.split("\n")) - {""} == files(home / ".query" / "active==true")


def test_iqmetrix_query(fs, emulator):
    account = emulator.config["accounts"]["stores"]
    token = (
        httpx.post(
            account["auth_url"] + "/oauth2/token",
            data={
                "grant_type": "password",
                "username": account["username"],
                "password": account["password"],
                "client_id": account["client_id"],
                "client_secret": account["client_secret"],
            },
        )
        .raise_for_status()
        .json()
    )
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    checked = 0
    for collection, guids in account["collections"].items():
        assets = [
            httpx.get(f"{account['base_url']}/assets/{g}", headers=headers).raise_for_status().json() for g in guids
        ]
        wanted = {a["id"] for a in assets if a["mimeType"].startswith("image/")}
        if wanted:
            check_query(fs.path / "stores" / collection, "mimeType==image%2F*", wanted)
            checked += 1
    assert checked, "no collection of the emulator holds an image to query"


def apple_assets(emulator, **params) -> list[dict]:
    account = emulator.config["accounts"]["apple"]
    with httpx.Client(base_url=account["base_url"] + "/api/v1") as c:
        token = c.post(
            "/oauth2/token",
            json={
                "client_id": account["client_id"],
                "client_secret": account["client_secret"],
                "grant_type": "client_credentials",
                "scope": "business",
            },
        ).json()
        c.headers["Authorization"] = f"Bearer {token['access_token']}"
        return (
            c.get(f"/orgs/{APPLE_ORG}/brands/{APPLE_BRAND}/assets", params={"limit": 100, **params})
            .raise_for_status()
            .json()["data"]
        )


def test_apple_query_and_view(fs, emulator):
    assets = apple_assets(emulator)
    brand = fs.path / "apple" / APPLE_ORG / APPLE_BRAND
    covers = {a["id"] for a in assets if a["brandAssetDetails"]["intent"] == "COVER_PHOTO"}
    found = check_query(brand, COVERS, covers)
    assert files(brand / "@covers") == files(found)  # the saved view lists the same files
    assert ids_of(brand / "@covers") == ids_of(found)
    assert {"@covers", "@recent"} <= set(os.listdir(brand))
    assert ".query" not in os.listdir(brand) and os.path.isdir(brand / ".query")  # opens when named, not walked
    assert os.listdir(brand / ".query") == []
    assert files(brand / "@recent") == files(brand)
    assert not [
        n for n in os.listdir(fs.path / "apple" / APPLE_ORG) if n.startswith(("@", ".query"))
    ]  # brands, not assets
    deleted = {a["id"] for a in apple_assets(emulator, ql="state==DELETED")}
    assert deleted and set(ids_of(brand / ".query" / "state==DELETED").values()) == deleted  # no home, still shown
    check_query(
        brand,
        "state==PUBLISHED;name==asset_*",
        {
            a["id"]
            for a in assets
            if a["state"] == "PUBLISHED" and a["brandAssetDetails"].get("partnersAssetId", "").startswith("asset_")
        },
    )


def test_mudstack_query_and_view(fs, emulator):
    heroes = fs.path / "studio" / "Game Art" / "characters" / "heroes"
    home_ids = ids_of(heroes)
    knight = {i for n, i in home_ids.items() if "knight" in n.lower()}
    check_query(heroes, "KNIGHT", knight)
    assert files(heroes / "@heroes") == files(heroes / ".query" / "library==Characters")
    assert "@covers" not in os.listdir(heroes)  # a view whose fields Mudstack lacks does not apply
    assert not os.path.exists(heroes / "@covers")


# ---- failures: fast, local, read-only ----------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, logged",
    [
        ("x=y", "unknown operator = at character 2"),
        ("brandAssetDetails.intnet==COVER_PHOTO", "did you mean brandAssetDetails.intent"),
        ("createdDate=gt=monday", "'monday' is not a date"),
    ],
)
def test_a_bad_expression_fails_at_once_without_a_request(fs, emulator, expression, logged):
    brand = fs.path / "apple" / APPLE_ORG / APPLE_BRAND
    os.listdir(brand)
    before = emulator.requests()
    started = time.monotonic()
    with pytest.raises(OSError) as e:
        os.listdir(brand / ".query" / expression)
    assert e.value.errno in (errno.ENOENT, errno.EINVAL)
    assert time.monotonic() - started < 1
    assert emulator.requests() == before
    assert logged in fs.log()


def test_probe_names_under_query_never_reach_the_network(fs, emulator):
    brand = fs.path / "apple" / APPLE_ORG / APPLE_BRAND
    os.listdir(brand)
    before = emulator.requests()
    for probe in (".DS_Store", ".hidden", "desktop.ini", "._x", ".Trash-0"):
        assert not os.path.exists(brand / ".query" / probe)
    assert emulator.requests() == before


def test_query_directories_are_read_only(fs):
    heroes = fs.path / "studio" / "Game Art" / "characters" / "heroes"
    found = heroes / ".query" / "KNIGHT"
    name = sorted(files(found))[0]
    for attempt in (
        lambda: open(found / "new.png", "wb"),
        lambda: os.unlink(found / name),
        lambda: os.mkdir(heroes / ".query" / "x=y"),
        lambda: open(found / name, "r+b"),
        lambda: os.rename(found / name, heroes / "moved.png"),
        lambda: open(heroes / "@heroes" / "x", "wb"),
    ):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EROFS
    assert name in files(heroes)


def test_views_open_with_ls_and_find(fs):
    brand = fs.path / "apple" / APPLE_ORG / APPLE_BRAND
    shown = subprocess.run(["ls", f"{brand}/@covers/"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and set(shown.stdout.split("\n")) - {""} == files(brand / "@covers")
    found = subprocess.run(
        ["find", f"{brand}/@covers/", "-name", "asset.json"], capture_output=True, text=True, timeout=30
    )
    assert found.returncode == 0 and len(found.stdout.split()) == len(files(brand / "@covers"))
    workspace = fs.path / "studio" / "Game Art"
    assert subprocess.run(["ls", "-la", f"{workspace}/@heroes/"], capture_output=True, timeout=30).returncode == 0
    assert os.getxattr(brand / "@covers", "user.assetfs.query").decode() == COVERS


def test_results_are_cached(fs, emulator):
    heroes = fs.path / "studio" / "Game Art" / "characters" / "heroes"
    expression = "library==Characters;text==r"
    first = files(heroes / ".query" / expression)
    before = emulator.requests()
    assert files(heroes / ".query" / expression) == first
    assert emulator.requests() == before


def test_views_do_not_keep_a_folder_from_being_removed(fs):
    folder = fs.path / "studio" / "Game Art" / "ui" / "query-scratch"
    os.mkdir(folder)
    assert "@heroes" in os.listdir(folder)
    os.rmdir(folder)
    assert not folder.exists()
