"""The Apple Business Connect emulator over real HTTP: the OAuth2 token, the documented
list shape and its ql filters and cursors, If-Match updates, soft deletes, image uploads
and their CDN content (Range), error bodies, token expiry, rate limiting and --assets."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import uuid

import httpx
import pytest
from conftest import seed_json
from PIL import Image

ORG, BRAND = "9467895078742654934", "9467895078742654921"
SECOND_ORG = "9467895078742655101"
DOC_QUERY = "createdDate=gt=2024-09-30T00:00:00Z"
ERROR_KEYS = {"code": str, "message": str, "context": dict, "details": dict}
METADATA_KEYS = {
    "orgId",
    "id",
    "createdDate",
    "updatedDate",
    "state",
    "filename",
    "width",
    "height",
    "fileSize",
    "contentType",
    "cdnUrl",
    "cdnTemplateUrl",
}


class Apple:
    """A client of the emulated API holding a current token."""

    def __init__(self, emulator):
        self.cfg = emulator.account("apple")
        self.http = httpx.Client(base_url=self.cfg["base_url"], timeout=30)
        self.origin = emulator.url
        self.token = self.get_token().json()["access_token"]

    def get_token(self, **override) -> httpx.Response:
        body = {
            "client_id": self.cfg["client_id"],
            "client_secret": self.cfg["client_secret"],
            "grant_type": "client_credentials",
            "scope": "business",
            **override,
        }
        return self.http.post("/api/v1/oauth2/token", json=body)

    def call(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        return self.http.request(method, "/api/v1" + path, headers=headers, **kw)

    def assets(self, ql: str | None = None, brand: str = BRAND, org: str = ORG, **params) -> httpx.Response:
        if ql is not None:
            params["ql"] = ql
        return self.call("GET", f"/orgs/{org}/brands/{brand}/assets", params=params)

    def walk(self, ql: str | None = None, limit: int = 7, brand: str = BRAND, org: str = ORG) -> list[dict]:
        """Every asset of a query, following `after` cursors to the last page."""
        found, after = [], None
        while True:
            params = {"limit": limit, **({"after": after} if after else {})}
            r = self.assets(ql, brand=brand, org=org, **params)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["total"] == len(body["data"]) <= limit
            found += body["data"]
            if not body["pagination"]:
                return found
            after = body["pagination"]["cursors"]["after"]
            assert body["pagination"]["next"].endswith(f"?limit={limit}&after={after}")

    def metadata(self, image_id: str, org: str = ORG) -> dict:
        r = self.call("GET", f"/orgs/{org}/images/{image_id}/metadata")
        assert r.status_code == 200, r.text
        return r.json()

    def upload(self, data: bytes, filename: str, content_type: str = "image/png", org: str = ORG) -> httpx.Response:
        return self.call("POST", f"/orgs/{org}/images/upload", files={"file": (filename, data, content_type)})


@pytest.fixture
def apple(emu):
    client = Apple(emu)
    yield client
    client.http.close()


def assert_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    uuid.UUID(r.headers["apple-request-id"])
    body = r.json()
    assert {k: type(v) for k, v in body.items()} == ERROR_KEYS
    return body


def shape(value):
    """Keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def png_bytes(size=(64, 48), color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


# ---- auth ---------------------------------------------------------------------------------


def test_token_is_a_bearer_for_an_hour_without_refresh_token(apple):
    r = apple.get_token()
    assert r.status_code == 200
    uuid.UUID(r.headers["apple-request-id"])
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["access_token"]


def test_token_refuses_bad_credentials_and_grants(apple):
    body = assert_error(apple.get_token(client_secret="wrong"), 401)
    assert body["code"] == "UNAUTHORIZED"
    assert_error(apple.get_token(client_id="someone-else"), 401)
    assert_error(apple.get_token(grant_type="password"), 400)
    assert_error(apple.get_token(scope="other"), 400)
    assert_error(apple.http.post("/api/v1/oauth2/token", content=b"not json"), 400)


def test_every_route_needs_a_valid_token(apple):
    for method, path in [
        ("GET", "/me"),
        ("GET", f"/orgs/{ORG}/brands"),
        ("GET", f"/orgs/{ORG}/brands/{BRAND}/assets"),
        ("GET", f"/orgs/{ORG}/assets/9467895078742654944"),
        ("DELETE", f"/orgs/{ORG}/assets/9467895078742654944"),
        ("GET", f"/orgs/{ORG}/images/1e863dc0-0980-11f0-9cd2-0242ac120002/metadata"),
    ]:
        r = apple.http.request(method, "/api/v1" + path)
        assert assert_error(r, 401)["code"] == "UNAUTHORIZED"
        assert "Bearer" in r.headers["www-authenticate"]
        assert_error(apple.call(method, path, token="forged"), 401)
    # the seed asset was not deleted by the refused DELETE
    assert apple.call("GET", f"/orgs/{ORG}/assets/9467895078742654944").json()["state"] == "SUBMITTED"


def test_token_expires_and_a_new_one_is_fetched(emu, apple):
    emu.set_tokens(ttl=1)
    r = apple.get_token()
    assert r.json()["expires_in"] == 1
    short = r.json()["access_token"]
    assert apple.call("GET", "/me", token=short).status_code == 200
    time.sleep(1.2)
    assert_error(apple.call("GET", "/me", token=short), 401)
    emu.set_tokens(ttl=None)
    fresh = apple.get_token().json()
    assert fresh["expires_in"] == 3600
    assert apple.call("GET", "/me", token=fresh["access_token"]).status_code == 200


# ---- account, organizations, brands ------------------------------------------------------------


def test_account_config_names_the_example_org_and_brands(emu):
    cfg = emu.account("apple")
    assert cfg["base_url"] == emu.url + "/apple"
    assert cfg["client_id"] and cfg["client_secret"]
    assert BRAND in cfg["organizations"][ORG] and len(cfg["organizations"][ORG]) >= 2
    assert SECOND_ORG in cfg["organizations"]


def test_me_names_the_first_organization(apple):
    r = apple.call("GET", "/me")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"user", "orgDetails"} and isinstance(body["user"], dict)
    assert body["orgDetails"]["orgId"] == ORG and isinstance(body["orgDetails"]["legalName"], str)


def test_brands_of_each_organization(apple):
    for org, brands in apple.cfg["organizations"].items():
        body = apple.call("GET", f"/orgs/{org}/brands").json()
        assert [b["id"] for b in body["data"]] == brands
        assert all(b["orgId"] == org and b["displayName"] for b in body["data"])
        assert body["total"] == len(brands) and body["pagination"] == {}
    assert_error(apple.call("GET", "/orgs/1234/brands"), 403)
    assert_error(apple.assets(brand="1234"), 404)


# ---- listing -------------------------------------------------------------------------------


def test_documented_query_answers_the_seed_page(apple):
    seed = seed_json("apple_assets_page.json")
    r = apple.assets(DOC_QUERY, limit=2)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    uuid.UUID(r.headers["apple-request-id"])
    body = r.json()
    assert body["data"] == seed["data"]
    assert body["total"] == seed["total"]
    assert shape(body["pagination"]) == shape(seed["pagination"])
    after = body["pagination"]["cursors"]["after"]
    assert body["pagination"]["next"] == f"/apple/api/v1/orgs/{ORG}/brands/{BRAND}/assets?limit=2&after={after}"
    # the next link (a path, as in the seed) carries the query in its cursor
    following = apple.http.get(
        apple.origin + body["pagination"]["next"], headers={"Authorization": f"Bearer {apple.token}"}
    )
    assert following.status_code == 200
    second = following.json()["data"]
    assert len(second) == 2 and not {a["id"] for a in second} & {a["id"] for a in seed["data"]}
    assert all(a["createdDate"] > seed["data"][-1]["createdDate"] for a in second)
    # every asset of the listing has the seed's shape
    assert all(set(a) == set(seed["data"][0]) for a in second)


def test_empty_result_is_the_seed_empty_body(apple):
    r = apple.assets("id==1")
    assert r.status_code == 200 and r.json() == seed_json("apple_assets_empty.json")


def test_walk_to_the_end_in_creation_order(apple):
    everything = apple.walk(limit=3)
    one_page = apple.assets(limit=100).json()
    assert one_page["pagination"] == {} and [a["id"] for a in one_page["data"]] == [a["id"] for a in everything]
    ids = [a["id"] for a in everything]
    assert len(ids) == len(set(ids)) >= 6
    assert [(a["createdDate"], a["id"]) for a in everything] == sorted((a["createdDate"], a["id"]) for a in everything)
    states = {a["state"] for a in everything}
    assert "DELETED" not in states and {"SUBMITTED", "PUBLISHED"} <= states
    # an asset without partnersAssetId is listed (the mount then names it by id)
    assert any("partnersAssetId" not in a["brandAssetDetails"] for a in everything)
    for a in everything:
        details = a["brandAssetDetails"]
        assert details["intent"] in ("PLACECARD_LOGO", "COVER_PHOTO", "GALLERY")
        assert all(set(t) == {"text", "locale"} for t in details["altTexts"])


def test_deleted_assets_show_only_when_asked_by_state(apple):
    deleted = apple.walk("state==DELETED")
    assert deleted and all(a["state"] == "DELETED" for a in deleted)
    everything = {a["id"] for a in apple.walk("state!=NONE")}
    default = {a["id"] for a in apple.walk()}
    assert everything == default | {a["id"] for a in deleted} and not default & {a["id"] for a in deleted}


@pytest.mark.parametrize(
    "ql, check",
    [
        ("id==9467895078742654944", lambda a: a["id"] == "9467895078742654944"),
        ("id!=9467895078742654944", lambda a: a["id"] != "9467895078742654944"),
        ("id=gt=9467895078742654900", lambda a: int(a["id"]) > 9467895078742654900),
        ("state==SUBMITTED", lambda a: a["state"] == "SUBMITTED"),
        ("brandAssetDetails.intent==COVER_PHOTO", lambda a: a["brandAssetDetails"]["intent"] == "COVER_PHOTO"),
        (
            "brandAssetDetails.partnersAssetId==brand_asset_20202",
            lambda a: a["brandAssetDetails"].get("partnersAssetId") == "brand_asset_20202",
        ),
        (
            "brandAssetDetails.imageId==1e863dc0-0980-11f0-9cd2-0242ac120002",
            lambda a: a["brandAssetDetails"]["imageId"] == "1e863dc0-0980-11f0-9cd2-0242ac120002",
        ),
        ("createdDate=lt=2026-11-01T17:22:19Z", lambda a: a["createdDate"] < "2026-11-01T17:22:19.00Z"),
        ("createdDate=le=2026-11-01T17:22:19Z", lambda a: a["createdDate"] <= "2026-11-01T17:22:19.00Z"),
        ("createdDate=ge=2026-11-01T17:22:19.00Z", lambda a: a["createdDate"] >= "2026-11-01T17:22:19.00Z"),
        ("updatedDate=gt=2026-11-01T18:22:19+01:00", lambda a: a["updatedDate"] > "2026-11-01T17:22:19.00Z"),
        (
            "createdDate=gt=2024-09-30T00:00:00Z;brandAssetDetails.intent!=GALLERY",
            lambda a: a["brandAssetDetails"]["intent"] != "GALLERY",
        ),
    ],
)
def test_ql_filters(apple, ql, check):
    everything = apple.walk("state!=DELETED")
    expected = [a["id"] for a in everything if check(a)]
    assert expected, "the sample data should exercise this filter"
    assert [a["id"] for a in apple.walk(ql, limit=4)] == expected


@pytest.mark.parametrize(
    "ql",
    [
        "nonsense",
        "color==red",
        "id~=1",
        "createdDate=gt=yesterday",
        "brandAssetDetails.intent=gt=GALLERY",
        "id==1;",
        "state==",
    ],
)
def test_invalid_ql_is_400(apple, ql):
    body = assert_error(apple.assets(ql), 400)
    assert body["context"]["ql"] == ql


def test_invalid_limit_is_400(apple):
    for limit in ("0", "-1", "many"):
        assert_error(apple.assets(limit=limit), 400)


def test_cursors_are_stable_and_bound_to_their_query(apple):
    first = apple.assets(DOC_QUERY, limit=2).json()["pagination"]["cursors"]["after"]
    assert apple.assets(DOC_QUERY, limit=2).json()["pagination"]["cursors"]["after"] == first
    assert apple.assets(DOC_QUERY, limit=3, after=first).status_code == 200  # same query, other page size
    assert apple.assets(DOC_QUERY, after=first).status_code == 200  # ql repeated: fine
    assert_error(apple.assets("state==PUBLISHED", after=first), 400)  # another query
    assert_error(apple.assets(DOC_QUERY, after=first, brand="9467895078742654922"), 400)
    assert_error(apple.assets(after="6t78a61d9b495109"), 400)  # the seed's: not ours


# ---- one asset --------------------------------------------------------------------------------


def test_get_asset_returns_its_etag(apple):
    seed = seed_json("apple_assets_page.json")["data"][1]
    r = apple.call("GET", f"/orgs/{ORG}/assets/{seed['id']}")
    assert r.status_code == 200 and r.json() == seed
    assert r.headers["etag"] == f'"{seed["etag"]}"'
    assert assert_error(apple.call("GET", f"/orgs/{ORG}/assets/1"), 404)["context"] == {"assetId": "1"}
    assert_error(apple.call("GET", f"/orgs/{SECOND_ORG}/assets/{seed['id']}"), 404)  # another org's asset


def test_unknown_paths_and_methods_answer_in_the_error_shape(apple):
    assert_error(apple.call("GET", "/nothing/here"), 404)
    r = apple.call("DELETE", f"/orgs/{ORG}/images/upload")
    assert assert_error(r, 405)["code"] == "METHOD_NOT_ALLOWED" and r.headers["allow"] == "POST"


# ---- images and content ----------------------------------------------------------------------


def test_seed_images_are_real_pictures_served_with_range(apple):
    seed = seed_json("apple_assets_page.json")["data"]
    logo = apple.metadata(seed[0]["brandAssetDetails"]["imageId"])
    assert set(logo) == METADATA_KEYS and logo["orgId"] == ORG
    assert (logo["width"], logo["height"], logo["contentType"]) == (1024, 1024, "image/png")
    r = httpx.get(logo["cdnUrl"])
    assert r.status_code == 200 and len(r.content) == logo["fileSize"] == int(r.headers["content-length"])
    assert Image.open(io.BytesIO(r.content)).size == (1024, 1024)
    part = httpx.get(logo["cdnUrl"], headers={"Range": "bytes=8-15"})
    assert part.status_code == 206 and part.content == r.content[8:16]
    assert part.headers["content-range"] == f"bytes 8-15/{logo['fileSize']}"
    assert httpx.get(logo["cdnUrl"], headers={"Range": f"bytes={logo['fileSize']}-"}).status_code == 416
    filled = logo["cdnTemplateUrl"].replace("{w}", "512").replace("{h}", "512")
    assert httpx.get(filled).content == r.content
    cover = apple.metadata(seed[1]["brandAssetDetails"]["imageId"])
    assert cover["contentType"] == "image/jpeg" and cover["width"] >= 1600 and cover["height"] >= 1040
    assert httpx.get(cover["cdnUrl"]).content[:3] == b"\xff\xd8\xff"
    assert_error(apple.call("GET", f"/orgs/{ORG}/images/00000000-0000-0000-0000-000000000000/metadata"), 404)


def test_generated_images_are_distinct_files(apple):
    images = [a["brandAssetDetails"]["imageId"] for a in apple.walk(brand="9467895078742654922")]
    bodies = [httpx.get(apple.metadata(i)["cdnUrl"]).content for i in images]
    assert len({hashlib.md5(b).hexdigest() for b in bodies}) == len(images) >= 3
    assert all(b[:4] in (b"\x89PNG", b"\xff\xd8\xff\xfe") for b in bodies)


def test_upload_checks_type_and_size(apple):
    body = assert_error(apple.upload(b"%PDF-1.4 not an image", "doc.pdf", "application/pdf"), 415)
    assert body["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert_error(apple.upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * (15 * 1024 * 1024 + 1), "huge.png"), 413)
    assert_error(apple.call("POST", f"/orgs/{ORG}/images/upload", files={"other": ("a.png", png_bytes())}), 400)


def test_uploaded_file_name_with_a_space_is_served(apple):
    data = png_bytes()
    image = apple.upload(data, "new logo.png").json()
    assert image["filename"] == "new logo.png"
    assert httpx.get(image["cdnUrl"]).content == data


def test_upload_heic_reads_its_dimensions(apple):
    ispe = struct.pack(">I4sIII", 20, b"ispe", 0, 4032, 3024)
    heic = struct.pack(">I4s4sI4s", 20, b"ftyp", b"heic", 0, b"mif1") + ispe
    r = apple.upload(heic, "photo.heic", "image/heic")
    assert r.status_code == 201, r.text
    meta = r.json()
    assert (meta["contentType"], meta["width"], meta["height"]) == ("image/heic", 4032, 3024)


# ---- writes: upload, create, update, delete (a private emulator) ----------------------------------


def test_upload_create_update_delete_round_trip(fresh_emulator):
    apple = Apple(fresh_emulator())
    data = png_bytes((1024, 1024))
    r = apple.upload(data, "new-logo.png")
    assert r.status_code == 201, r.text
    image = r.json()
    assert set(image) == METADATA_KEYS and image["filename"] == "new-logo.png"
    assert (image["width"], image["height"], image["fileSize"]) == (1024, 1024, len(data))
    assert apple.metadata(image["id"]) == image
    content = httpx.get(image["cdnUrl"])
    assert hashlib.md5(content.content).hexdigest() == hashlib.md5(data).hexdigest()

    details = {
        "imageId": image["id"],
        "partnersAssetId": "logo_new",
        "intent": "PLACECARD_LOGO",
        "altTexts": [{"text": "A new logo", "locale": "en"}],
    }
    r = apple.call("POST", f"/orgs/{ORG}/brands/{BRAND}/assets", json={"brandAssetDetails": details})
    assert r.status_code == 201, r.text
    asset = r.json()
    assert asset["state"] == "SUBMITTED" and asset["brandAssetDetails"] == details
    assert asset["orgId"] == ORG and asset["brandId"] == BRAND and asset["createdDate"] == asset["updatedDate"]
    assert r.headers["etag"] == f'"{asset["etag"]}"'
    assert httpx.get(r.headers["location"], headers={"Authorization": f"Bearer {apple.token}"}).json() == asset
    assert apple.walk("brandAssetDetails.partnersAssetId==logo_new") == [asset]

    path = f"/orgs/{ORG}/assets/{asset['id']}"
    changed = {**details, "altTexts": [{"text": "Ein neues Logo", "locale": "de"}]}
    assert_error(apple.call("PUT", path, json={"brandAssetDetails": changed}), 412)  # no If-Match
    assert_error(apple.call("PUT", path, json={"brandAssetDetails": changed}, headers={"If-Match": '"stale"'}), 412)
    time.sleep(0.02)
    r = apple.call(
        "PUT", path, json={**asset, "brandAssetDetails": changed}, headers={"If-Match": f'"{asset["etag"]}"'}
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["brandAssetDetails"] == changed and updated["etag"] != asset["etag"]
    assert updated["updatedDate"] > asset["updatedDate"] and updated["createdDate"] == asset["createdDate"]
    assert r.headers["etag"] == f'"{updated["etag"]}"'
    assert_error(
        apple.call("PUT", path, json={"brandAssetDetails": details}, headers={"If-Match": f'"{asset["etag"]}"'}), 412
    )
    r = apple.call("PUT", path, json={"brandAssetDetails": details}, headers={"If-Match": updated["etag"]})  # unquoted
    assert r.status_code == 200 and r.json()["brandAssetDetails"] == details

    assert apple.call("DELETE", path).status_code == 204
    gone = apple.call("GET", path).json()
    assert gone["state"] == "DELETED"
    assert asset["id"] not in {a["id"] for a in apple.walk()}
    assert asset["id"] in {a["id"] for a in apple.walk("state==DELETED")}
    assert_error(apple.call("DELETE", path), 404)
    assert_error(apple.call("PUT", path, json={"brandAssetDetails": details}, headers={"If-Match": gone["etag"]}), 400)


def test_create_validates_the_details(apple):
    path = f"/orgs/{ORG}/brands/{BRAND}/assets"
    image = "1e863dc0-0980-11f0-9cd2-0242ac120002"
    for details, field in [
        ({"imageId": image, "intent": "BANNER"}, "intent"),
        ({"imageId": "not-an-image", "intent": "GALLERY"}, "imageId"),
        ({"imageId": image, "intent": "GALLERY", "altTexts": "hello"}, "altTexts"),
        ({"imageId": image, "intent": "GALLERY", "partnersAssetId": 7}, "partnersAssetId"),
    ]:
        body = assert_error(apple.call("POST", path, json={"brandAssetDetails": details}), 400)
        assert field in body["context"]
    assert_error(apple.call("POST", path, json={}), 400)
    assert_error(apple.call("POST", path, content=b"[1, 2]"), 400)
    assert_error(
        apple.call(
            "POST",
            f"/orgs/{SECOND_ORG}/brands/9467895078742655111/assets",
            json={"brandAssetDetails": {"imageId": image, "intent": "GALLERY"}},
        ),
        400,
    )  # another org's image


# ---- rate limiting, scale -----------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(emu, apple):
    emu.set_rate_limit("apple", 2, 60)
    try:
        assert apple.call("GET", "/me").status_code == 200
        assert apple.call("GET", "/me").status_code == 200
        r = apple.call("GET", "/me")
        assert assert_error(r, 429)["code"] == "RATE_LIMIT_EXCEEDED"
        assert 1 <= int(r.headers["retry-after"]) <= 60
    finally:
        emu.set_rate_limit("apple", 0)
    assert apple.call("GET", "/me").status_code == 200


def test_extra_assets_and_large_file(fresh_emulator):
    apple = Apple(fresh_emulator("--assets", "10000", "--large-file", "3MiB"))
    assets = apple.walk(limit=100)
    assert len(assets) >= 10_000 and len({a["id"] for a in assets}) == len(assets)
    names = {a["brandAssetDetails"].get("partnersAssetId") for a in assets}
    assert {"asset_00000", "asset_10005"} <= names  # stable names: the same on every run
    other_brand = "9467895078742654922"
    [last] = apple.walk("brandAssetDetails.partnersAssetId==asset_10002", brand=other_brand)
    assert apple.metadata(last["brandAssetDetails"]["imageId"])["fileSize"] > 0
    [large] = apple.walk("brandAssetDetails.partnersAssetId==large", brand=other_brand)
    meta = apple.metadata(large["brandAssetDetails"]["imageId"])
    assert meta["fileSize"] == 3 * 1024 * 1024
    tail = httpx.get(meta["cdnUrl"], headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and len(tail.content) == 100
    assert len(apple.walk(org=SECOND_ORG, brand="9467895078742655111")) < 100  # --assets adds to the first org only


def test_ten_thousand_assets_are_built():
    """Start-up time is measured, not asserted (`assetfs emulator` prints it); here: every asset is built."""
    from assetfs.emulator.app import Emulator
    from assetfs.emulator.apple import AppleEmulator

    provider = AppleEmulator(Emulator(extra_assets=10_000))
    assert sum(len(org.assets) for org in provider.orgs.values()) > 20_000
