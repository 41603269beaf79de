"""The read path on a real mount of the emulated Apple Business Connect API: organizations
by legal name, brands by display name (IDs typed as paths resolve), assets as image files,
their details under .assets/, bytes, asset.json, xattrs, discovery, paging, tokens, names."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from truth import download, md5

from assetfs.providers.base import parse_time

pytestmark = pytest.mark.mount
ORG, BRAND = "9467895078742654934", "9467895078742654921"
OTHER_BRAND = "9467895078742654922"
SECOND_ORG, SECOND_BRAND = "9467895078742655101", "9467895078742655111"
SEED_ASSET = "brand_asset_10101"


# ---- the truth, straight from the emulated API --------------------------------------------------


class AppleTruth:
    """A direct client of the API (not through the mount)."""

    def __init__(self, account: dict):
        self.account = account
        self.http = httpx.Client(base_url=account["base_url"] + "/api/v1", timeout=30)
        self.sign_in()

    def sign_in(self) -> None:
        body = {
            "client_id": self.account["client_id"],
            "client_secret": self.account["client_secret"],
            "grant_type": "client_credentials",
            "scope": "business",
        }
        token = self.http.post("/oauth2/token", json=body).raise_for_status().json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params):
        response = self.http.get(path, params=params)
        if response.status_code == 401:  # tests with short-lived tokens
            self.sign_in()
            response = self.http.get(path, params=params)
        return response.raise_for_status().json()

    def assets(self, org: str, brand: str, limit: int = 37) -> list[dict]:
        """Every listed asset of a brand, cursor by cursor (another page size than the mount's)."""
        out, after = [], None
        while True:
            body = self.get(f"/orgs/{org}/brands/{brand}/assets", limit=limit, **({"after": after} if after else {}))
            out += body["data"]
            after = body["pagination"].get("cursors", {}).get("after")
            if not after:
                return out

    def asset(self, org: str, asset_id: str) -> dict:
        return self.get(f"/orgs/{org}/assets/{asset_id}")

    def image(self, org: str, image_id: str) -> dict:
        return self.get(f"/orgs/{org}/images/{image_id}/metadata")

    def upload(self, org: str, filename: str, data: bytes) -> dict:
        r = self.http.post(f"/orgs/{org}/images/upload", files={"file": (filename, data, "application/octet-stream")})
        return r.raise_for_status().json()

    def create(self, org: str, brand: str, image_id: str, partners_id: str | None) -> dict:
        details = {"imageId": image_id, "intent": "GALLERY", "altTexts": [{"text": "t", "locale": "en"}]}
        if partners_id is not None:
            details["partnersAssetId"] = partners_id
        r = self.http.post(f"/orgs/{org}/brands/{brand}/assets", json={"brandAssetDetails": details})
        return r.raise_for_status().json()

    def close(self) -> None:
        self.http.close()


EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/heic": ".heic"}


def dir_name(asset: dict) -> str:
    return asset["brandAssetDetails"].get("partnersAssetId") or asset["id"]


def file_name(asset: dict, image: dict) -> str:
    """An asset's file: its name and its image's extension."""
    return dir_name(asset) + EXTENSIONS[image["contentType"]]


def org_names(truth: AppleTruth, organizations) -> dict[str, str]:
    """org id → the name the mount shows: the legal name /me gives for its own, else the id."""
    me = truth.get("/me")["orgDetails"]
    return {org: me["legalName"] if org == me["orgId"] else org for org in organizations}


def brand_names(truth: AppleTruth, org: str, brands) -> list[str]:
    shown = {b["id"]: b["displayName"] for b in truth.get(f"/orgs/{org}/brands")["data"]}
    return [shown.get(b, b) for b in brands]


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, f"user.assetfs.{name}").decode()


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def count(emu, fragment: str, method: str = "GET") -> int:
    return sum(n for k, n in emu.requests().items() if k.startswith(method + " ") and fragment in k)


def png(size=(64, 48), color=(200, 30, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def apple(emu, mount):
    truth = AppleTruth(emu.account("apple"))
    m = mount(emu.config, accounts=["apple"])
    yield m, m.path / "apple", truth
    truth.close()


# ---- tests -------------------------------------------------------------------------------------


def test_tree_is_orgs_then_brands_then_one_file_per_asset(apple, emu):
    m, root, truth = apple
    organizations = emu.account("apple")["organizations"]
    names = org_names(truth, organizations)
    assert sorted(os.listdir(root)) == sorted(names.values())
    assert names[ORG] == "Café Aurora LLC"
    for org, brands in organizations.items():
        assert sorted(os.listdir(root / names[org])) == sorted(brand_names(truth, org, brands))
        assert os.stat(root / org).st_ino == os.stat(root / names[org]).st_ino  # the ID resolves to it
        for brand in brands:
            assets = truth.assets(org, brand)
            assert assets and all(a["state"] != "DELETED" for a in assets)
            files = [file_name(a, truth.image(org, a["brandAssetDetails"]["imageId"])) for a in assets]
            assert sorted(os.listdir(root / org / brand)) == sorted(files + [".assets"])
            assert sorted(os.listdir(root / org / brand / ".assets")) == sorted(files)
    # an asset without partnersAssetId is named by its id
    unnamed = [a for a in truth.assets(ORG, BRAND) if "partnersAssetId" not in a["brandAssetDetails"]]
    assert unnamed and any(n.startswith(unnamed[0]["id"] + ".") for n in os.listdir(root / ORG / BRAND))
    assert (root / ORG / BRAND / "brand_asset_10101.png").is_file()
    assert os.listdir(root / ORG / BRAND / ".assets" / "brand_asset_10101.png") == ["asset.json"]


def test_listing_a_brand_fetches_each_image_s_metadata_once(apple, emu):
    """A file needs its image's type (its extension) and size: one metadata request per
    image when the brand is listed, none more when its files and details are opened."""
    m, root, truth = apple
    emu.reset_requests()
    names = os.listdir(root / ORG / BRAND)
    assets = truth.assets(ORG, BRAND)
    assert len(names) == len(assets) + 1 > 3
    assert count(emu, "/metadata") == len(assets) and count(emu, f"/orgs/{ORG}/assets/") == 0
    before = count(emu, "/metadata")
    os.stat(root / ORG / BRAND / "brand_asset_10101.png")
    os.listdir(root / ORG / BRAND / ".assets" / "brand_asset_10101.png")
    assert count(emu, "/metadata") == before


def test_every_image_has_the_providers_bytes_and_size_and_asset_json_is_the_api_object(apple, emu):
    m, root, truth = apple
    checked = 0
    for org, brands in emu.account("apple")["organizations"].items():
        for brand in brands:
            for asset in truth.assets(org, brand):
                image = truth.image(org, asset["brandAssetDetails"]["imageId"])
                content = root / org / brand / file_name(asset, image)
                asset_dir = root / org / brand / ".assets" / content.name
                assert os.listdir(asset_dir) == ["asset.json"]
                expected = download(image["cdnUrl"])
                assert content.stat().st_size == image["fileSize"] == len(expected)
                assert md5(content.read_bytes()) == md5(expected)
                assert json.loads((asset_dir / "asset.json").read_bytes()) == truth.asset(org, asset["id"])
                assert asset_dir.stat().st_mtime == pytest.approx(parse_time(asset["updatedDate"]), abs=1)
                checked += 1
    assert checked >= 10


def test_xattrs_of_the_asset_file_and_its_directory(apple):
    m, root, truth = apple
    asset_dir = root / ORG / BRAND / ".assets" / "brand_asset_10101.png"
    asset = truth.asset(ORG, "9467895078742654944")
    image = root / ORG / BRAND / "brand_asset_10101.png"
    for path in (asset_dir, image):
        assert xattr(path, "id") == "9467895078742654944"
        assert xattr(path, "state") == "SUBMITTED"
        assert xattr(path, "etag") == asset["etag"] == "58df050c-ddd1-11ec-b406-17be3fa34229"
        assert xattr(path, "intent") == "PLACECARD_LOGO"
        assert xattr(path, "partners_asset_id") == SEED_ASSET
        assert xattr(path, "image_id") == "1e863dc0-0980-11f0-9cd2-0242ac120002"
        assert xattr(path, "alt_texts") == "en: A barista preparing a cafe latte; es: de prueba"
        assert xattr(path, "created") == "2026-10-01T17:22:19.00Z"
    assert xattr(image, "mime") == "image/png"
    assert (xattr(image, "width"), xattr(image, "height")) == ("1024", "1024")
    attrs = run("getfattr", "-d", str(image))
    assert 'user.assetfs.intent="PLACECARD_LOGO"' in attrs and 'user.assetfs.id="9467895078742654944"' in attrs
    with Image.open(image) as img:  # a real image, readable through the mount
        assert img.size == (1024, 1024)


def test_ls_find_du_cp(apple, tmp_path):
    m, root, truth = apple
    brand = root / SECOND_ORG / SECOND_BRAND
    listing = run("ls", "-laR", str(brand))
    assert "asset.json" in listing
    found = sorted(
        p.rsplit("/", 1)[1]
        for p in run("find", str(brand), "-type", "f", "(", "-name", "*.png", "-o", "-name", "*.jpg", ")").split()
    )
    expected = sorted(
        file_name(a, truth.image(SECOND_ORG, a["brandAssetDetails"]["imageId"]))
        for a in truth.assets(SECOND_ORG, SECOND_BRAND)
    )
    assert found == expected
    assert int(run("du", "-sk", "--apparent-size", str(brand)).split()[0]) > 0
    run("cp", "-r", str(brand), str(tmp_path / "copy"))
    assert run("diff", "-r", str(brand), str(tmp_path / "copy")) == ""


def test_organizations_and_brands_are_discovered_when_the_config_leaves_them_out(emu, mount):
    account = emu.account("apple")
    truth = AppleTruth(account)
    try:
        me = truth.get("/me")["orgDetails"]
        m = mount({"accounts": {"apple": {**account, "organizations": {}}}})
        root = m.path / "apple"
        assert os.listdir(root) == [me["legalName"]] and me["orgId"] == ORG
        assert xattr(root / me["legalName"], "legal_name") == me["legalName"]
        assert xattr(root / me["legalName"], "id") == ORG
        brands = truth.get(f"/orgs/{ORG}/brands")["data"]
        assert sorted(os.listdir(root / ORG)) == sorted(b["displayName"] for b in brands)
        assert xattr(root / ORG / "Café Aurora", "display_name") == "Café Aurora"
        assert xattr(root / ORG / "Café Aurora", "id") == BRAND
        assert "brand_asset_10101.png" in os.listdir(root / ORG / BRAND)
        m2 = mount({"accounts": {"apple": {**account, "organizations": {SECOND_ORG: []}}}})
        assert os.listdir(m2.path / "apple") == [SECOND_ORG]
        assert os.listdir(m2.path / "apple" / SECOND_ORG) == brand_names(truth, SECOND_ORG, [SECOND_BRAND])
    finally:
        truth.close()


def test_an_org_or_brand_not_in_the_config_resolves_when_named(emu, mount):
    account = emu.account("apple")
    m = mount({"accounts": {"apple": {**account, "organizations": {ORG: [BRAND]}}}})
    root = m.path / "apple"
    assert os.listdir(root) == ["Café Aurora LLC"] and os.listdir(root / ORG) == ["Café Aurora"]
    assert os.listdir(root / SECOND_ORG) == ["Northwind Bakery"]
    assert len(os.listdir(root / ORG / OTHER_BRAND)) >= 3
    for missing in (root / "123456789", root / ORG / "123456789", root / ORG / "not-a-brand"):
        with pytest.raises(FileNotFoundError):
            os.listdir(missing)


def test_a_listing_of_many_pages_is_walked_to_the_end(fresh_emulator, mount):
    e = fresh_emulator("--assets", "1200")
    truth = AppleTruth(e.account("apple"))
    try:
        assets = truth.assets(ORG, BRAND, limit=100)
        assert len(assets) > 1200
        config = {"accounts": {"apple": {**e.account("apple"), "rate_limit": "off"}}}  # an image's metadata each
        m = mount(config)
        e.reset_requests()
        names = os.listdir(m.path / "apple" / "Café Aurora LLC" / "Café Aurora")  # by name: no ID lookups
        assert len(names) == len(set(names)) == len(assets) + 1
        assert count(e, f"/brands/{BRAND}/assets") == -(-len(assets) // 100)  # one request per page of 100
        newest = assets[-1]
        image = truth.image(ORG, newest["brandAssetDetails"]["imageId"])
        assert file_name(newest, image) in names
        assert (m.path / "apple" / ORG / BRAND / file_name(newest, image)).read_bytes() == download(image["cdnUrl"])
    finally:
        truth.close()


def test_tokens_are_renewed_before_expiry_and_after_a_401(fresh_emulator, mount):
    e = fresh_emulator("--token-ttl", "2s")
    truth = AppleTruth(e.account("apple"))
    try:
        wanted = []  # (path in the brand, bytes), known before the mount asks for anything
        for asset in truth.assets(ORG, BRAND)[:3]:
            image = truth.image(ORG, asset["brandAssetDetails"]["imageId"])
            wanted.append((file_name(asset, image), download(image["cdnUrl"])))
        assert len(wanted) == 3
        e.reset_requests()  # from here on, only the mount asks for tokens
        m = mount(e.config, accounts=["apple"])
        brand = m.path / "apple" / ORG / BRAND
        assert (brand / wanted[0][0]).read_bytes() == wanted[0][1]
        time.sleep(3)  # the mount's token has expired
        assert (brand / wanted[1][0]).read_bytes() == wanted[1][1]
        assert 2 <= count(e, "/oauth2/token", "POST") <= 3  # renewed, not fetched per request
        e.set_tokens(ttl=3600)
        e.set_tokens(revoke_all=True)  # a 401 on a token the mount thinks is good
        before = count(e, "/oauth2/token", "POST")
        assert len(os.listdir(m.path / "apple" / ORG / OTHER_BRAND)) > 1  # a page, then images' metadata at once
        assert (brand / wanted[2][0]).read_bytes() == wanted[2][1]
        assert count(e, "/oauth2/token", "POST") == before + 1  # one new token for the requests refused
        assert "refused" not in m.log()
    finally:
        truth.close()


def test_duplicate_and_hostile_names_are_unique_and_safe(fresh_emulator, mount):
    e = fresh_emulator()
    truth = AppleTruth(e.account("apple"))
    try:
        made = {}
        for label, filename, partners_id in [
            ("dup1", "asset.json", "dup"),
            ("dup2", "photo", "dup"),
            ("slash", "a.png", "a/b"),
            ("dots", "b.png", ".."),
            ("long", "c.png", "x" * 300),
            ("none", "d.png", None),
        ]:
            image = truth.upload(SECOND_ORG, filename, png(color=(len(label) * 20, 10, 10)))
            made[label] = (truth.create(SECOND_ORG, SECOND_BRAND, image["id"], partners_id), image)
        m = mount(e.config, accounts=["apple"])
        brand = m.path / "apple" / SECOND_ORG / SECOND_BRAND
        names = os.listdir(brand)
        assert names[-1] == ".assets"
        names = names[:-1]
        assert len(names) == len(set(names)) == len(truth.assets(SECOND_ORG, SECOND_BRAND))
        dup1, dup2 = made["dup1"][0]["id"], made["dup2"][0]["id"]
        assert f"dup ({dup1}).png" in names and f"dup ({dup2}).png" in names and "dup.png" not in names
        assert "a\u2215b.png" in names and "...png" in names and made["none"][0]["id"] + ".png" in names
        [long] = [n for n in names if n.startswith("xxx")]
        assert len(long.encode()) <= 255 and long.endswith(".png")
        for name in names:
            assert "/" not in name and name not in (".", "..")
            assert xattr(brand / name, "id")
            assert os.listdir(brand / ".assets" / name) == ["asset.json"]
        # an image uploaded as "asset.json" or without an extension: the file is named by its
        # asset and its image's type
        assert json.loads((brand / ".assets" / f"dup ({dup1}).png" / "asset.json").read_bytes())["id"] == dup1
        assert (brand / f"dup ({dup1}).png").read_bytes() == download(made["dup1"][1]["cdnUrl"])
        assert (brand / f"dup ({dup2}).png").read_bytes() == download(made["dup2"][1]["cdnUrl"])
        assert (brand / "a\u2215b.png").read_bytes() == download(made["slash"][1]["cdnUrl"])
        assert (brand / long).stat().st_size == made["long"][1]["fileSize"]
    finally:
        truth.close()
