"""The read path on a real mount of the emulated Apple Business Connect API: orgs, brands,
asset directories, image bytes, asset.json, xattrs, discovery, paging, tokens, names."""

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

from assetfs.providers.base import parse_time
from truth import download, md5

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
        body = {"client_id": self.account["client_id"], "client_secret": self.account["client_secret"],
                "grant_type": "client_credentials", "scope": "business"}
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


def dir_name(asset: dict) -> str:
    return asset["brandAssetDetails"].get("partnersAssetId") or asset["id"]


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


def test_tree_is_orgs_then_brands_then_one_directory_per_asset(apple, emu):
    m, root, truth = apple
    organizations = emu.account("apple")["organizations"]
    assert sorted(os.listdir(root)) == sorted(organizations)
    for org, brands in organizations.items():
        assert sorted(os.listdir(root / org)) == sorted(brands)
        for brand in brands:
            assets = truth.assets(org, brand)
            assert assets and all(a["state"] != "DELETED" for a in assets)
            assert sorted(os.listdir(root / org / brand)) == sorted(dir_name(a) for a in assets)
    # an asset without partnersAssetId is named by its id
    unnamed = [a for a in truth.assets(ORG, BRAND) if "partnersAssetId" not in a["brandAssetDetails"]]
    assert unnamed and (root / ORG / BRAND / unnamed[0]["id"]).is_dir()
    seed = root / ORG / BRAND / SEED_ASSET
    assert sorted(os.listdir(seed)) == ["asset.json", "brand_asset_10101.png"]


def test_listing_a_brand_fetches_no_image_metadata_until_an_asset_is_opened(apple, emu):
    m, root, truth = apple
    emu.reset_requests()
    names = os.listdir(root / ORG / BRAND)
    assert len(names) > 3
    assert count(emu, "/metadata") == 0 and count(emu, "/assets/") == 0
    os.listdir(root / ORG / BRAND / SEED_ASSET)
    assert count(emu, "/metadata") == 1
    assert count(emu, f"/orgs/{ORG}/assets/") == 1


def test_every_image_has_the_providers_bytes_and_size_and_asset_json_is_the_api_object(apple, emu):
    m, root, truth = apple
    checked = 0
    for org, brands in emu.account("apple")["organizations"].items():
        for brand in brands:
            for asset in truth.assets(org, brand):
                asset_dir = root / org / brand / dir_name(asset)
                image = truth.image(org, asset["brandAssetDetails"]["imageId"])
                content = asset_dir / image["filename"]
                assert sorted(os.listdir(asset_dir)) == sorted(["asset.json", image["filename"]])
                expected = download(image["cdnUrl"])
                assert content.stat().st_size == image["fileSize"] == len(expected)
                assert md5(content.read_bytes()) == md5(expected)
                assert json.loads((asset_dir / "asset.json").read_bytes()) == truth.asset(org, asset["id"])
                assert asset_dir.stat().st_mtime == pytest.approx(parse_time(asset["updatedDate"]), abs=1)
                checked += 1
    assert checked >= 10


def test_xattrs_of_the_asset_directory_and_its_image(apple):
    m, root, truth = apple
    asset_dir = root / ORG / BRAND / SEED_ASSET
    asset = truth.asset(ORG, "9467895078742654944")
    for path in (asset_dir, asset_dir / "brand_asset_10101.png"):
        assert xattr(path, "id") == "9467895078742654944"
        assert xattr(path, "state") == "SUBMITTED"
        assert xattr(path, "etag") == asset["etag"] == "58df050c-ddd1-11ec-b406-17be3fa34229"
        assert xattr(path, "intent") == "PLACECARD_LOGO"
        assert xattr(path, "partners_asset_id") == SEED_ASSET
        assert xattr(path, "image_id") == "1e863dc0-0980-11f0-9cd2-0242ac120002"
        assert xattr(path, "alt_texts") == "en: A barista preparing a cafe latte; es: de prueba"
        assert xattr(path, "created") == "2026-10-01T17:22:19.00Z"
    image = asset_dir / "brand_asset_10101.png"
    assert xattr(image, "mime") == "image/png"
    assert (xattr(image, "width"), xattr(image, "height")) == ("1024", "1024")
    attrs = run("getfattr", "-d", str(asset_dir))
    assert 'user.assetfs.intent="PLACECARD_LOGO"' in attrs and 'user.assetfs.id="9467895078742654944"' in attrs
    with Image.open(image) as img:   # a real image, readable through the mount
        assert img.size == (1024, 1024)


def test_ls_find_du_cp(apple, tmp_path):
    m, root, truth = apple
    brand = root / SECOND_ORG / SECOND_BRAND
    listing = run("ls", "-lR", str(brand))
    assert "asset.json" in listing
    found = sorted(p.rsplit("/", 1)[1] for p in run("find", str(brand), "-name", "*.png", "-o", "-name", "*.jpg").split())
    expected = sorted(truth.image(SECOND_ORG, a["brandAssetDetails"]["imageId"])["filename"]
                      for a in truth.assets(SECOND_ORG, SECOND_BRAND))
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
        assert os.listdir(root) == [me["orgId"]] == [ORG]
        assert xattr(root / ORG, "legal_name") == me["legalName"]
        brands = truth.get(f"/orgs/{ORG}/brands")["data"]
        assert sorted(os.listdir(root / ORG)) == sorted(b["id"] for b in brands)
        assert xattr(root / ORG / BRAND, "display_name") == "Café Aurora"
        assert SEED_ASSET in os.listdir(root / ORG / BRAND)

        m2 = mount({"accounts": {"apple": {**account, "organizations": {SECOND_ORG: []}}}})
        assert os.listdir(m2.path / "apple") == [SECOND_ORG]
        assert os.listdir(m2.path / "apple" / SECOND_ORG) == [SECOND_BRAND]
    finally:
        truth.close()


def test_an_org_or_brand_not_in_the_config_resolves_when_named(emu, mount):
    account = emu.account("apple")
    m = mount({"accounts": {"apple": {**account, "organizations": {ORG: [BRAND]}}}})
    root = m.path / "apple"
    assert os.listdir(root) == [ORG] and os.listdir(root / ORG) == [BRAND]
    assert os.listdir(root / SECOND_ORG) == [SECOND_BRAND]
    assert len(os.listdir(root / ORG / OTHER_BRAND)) >= 3
    for missing in (root / "123456789", root / ORG / "123456789", root / ORG / "not-a-brand"):
        with pytest.raises(FileNotFoundError):
            os.listdir(missing)


def test_a_listing_of_many_pages_is_walked_to_the_end(fresh_emulator, mount):
    e = fresh_emulator("--assets", "1200")
    truth = AppleTruth(e.account("apple"))
    try:
        expected = sorted(dir_name(a) for a in truth.assets(ORG, BRAND, limit=100))
        assert len(expected) > 1200
        m = mount(e.config, accounts=["apple"])
        e.reset_requests()
        names = os.listdir(m.path / "apple" / ORG / BRAND)
        assert sorted(names) == expected and len(set(names)) == len(names)
        assert count(e, f"/brands/{BRAND}/assets") == -(-len(expected) // 100)   # one request per page of 100
        newest = truth.assets(ORG, BRAND, limit=100)[-1]
        asset_dir = m.path / "apple" / ORG / BRAND / dir_name(newest)
        image = truth.image(ORG, newest["brandAssetDetails"]["imageId"])
        assert (asset_dir / image["filename"]).read_bytes() == download(image["cdnUrl"])
    finally:
        truth.close()


def test_tokens_are_renewed_before_expiry_and_after_a_401(fresh_emulator, mount):
    e = fresh_emulator("--token-ttl", "2s")
    truth = AppleTruth(e.account("apple"))
    try:
        wanted = []   # (path in the brand, bytes), known before the mount asks for anything
        for asset in truth.assets(ORG, BRAND)[:3]:
            image = truth.image(ORG, asset["brandAssetDetails"]["imageId"])
            wanted.append((f"{dir_name(asset)}/{image['filename']}", download(image["cdnUrl"])))
        assert len(wanted) == 3
        e.reset_requests()   # from here on, only the mount asks for tokens
        m = mount(e.config, accounts=["apple"])
        brand = m.path / "apple" / ORG / BRAND
        assert (brand / wanted[0][0]).read_bytes() == wanted[0][1]
        time.sleep(3)                                   # the mount's token has expired
        assert (brand / wanted[1][0]).read_bytes() == wanted[1][1]
        assert 2 <= count(e, "/oauth2/token", "POST") <= 3   # renewed, not fetched per request
        e.set_tokens(ttl=3600)
        e.set_tokens(revoke_all=True)                   # a 401 on a token the mount thinks is good
        before = count(e, "/oauth2/token", "POST")
        assert (brand / wanted[2][0]).read_bytes() == wanted[2][1]
        assert count(e, "/oauth2/token", "POST") == before + 1   # one new token for two requests refused together
        assert "refused" not in m.log()
    finally:
        truth.close()


def test_duplicate_and_hostile_names_are_unique_and_safe(fresh_emulator, mount):
    e = fresh_emulator()
    truth = AppleTruth(e.account("apple"))
    try:
        made = {}
        for label, filename, partners_id in [("dup1", "asset.json", "dup"), ("dup2", "photo", "dup"),
                                             ("slash", "a.png", "a/b"), ("dots", "b.png", ".."),
                                             ("long", "c.png", "x" * 300), ("none", "d.png", None)]:
            image = truth.upload(SECOND_ORG, filename, png(color=(len(label) * 20, 10, 10)))
            made[label] = (truth.create(SECOND_ORG, SECOND_BRAND, image["id"], partners_id), image)
        m = mount(e.config, accounts=["apple"])
        brand = m.path / "apple" / SECOND_ORG / SECOND_BRAND
        names = os.listdir(brand)
        assert len(names) == len(set(names)) == len(truth.assets(SECOND_ORG, SECOND_BRAND))
        dup1, dup2 = made["dup1"][0]["id"], made["dup2"][0]["id"]
        assert f"dup ({dup1})" in names and f"dup ({dup2})" in names and "dup" not in names
        assert "a\u2215b" in names and "\uff0e\uff0e" in names and made["none"][0]["id"] in names
        [long] = [n for n in names if n.startswith("xxx")]
        assert len(long.encode()) <= 255
        for name in names:
            assert "/" not in name and name not in (".", "..")
            assert xattr(brand / name, "id")
        # an image uploaded as "asset.json" does not take asset.json's name; one without an
        # extension gets its type's
        assert sorted(os.listdir(brand / f"dup ({dup1})")) == ["asset.json", "dup.png"]
        assert json.loads((brand / f"dup ({dup1})" / "asset.json").read_bytes())["id"] == dup1
        assert (brand / f"dup ({dup1})" / "dup.png").read_bytes() == download(made["dup1"][1]["cdnUrl"])
        assert sorted(os.listdir(brand / f"dup ({dup2})")) == ["asset.json", "photo.png"]
        assert (brand / "a\u2215b" / "a.png").read_bytes() == download(made["slash"][1]["cdnUrl"])
        assert (brand / long / "c.png").stat().st_size == made["long"][1]["fileSize"]
    finally:
        truth.close()
