"""The iQmetrix Asset Media Service emulator over real HTTP, checked against the documented example."""

from __future__ import annotations

import hashlib
import io
import os
import ssl
import time
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import seed_json
from PIL import Image

SEED = seed_json("iqmetrix_asset.json")
SEED_ID = SEED["id"]
NOT_FOUND = "Asset Media Service Error: Resource not found"

# One TLS context for every client (building one per client costs 0.1 s), one client for
# the token route and the absolute CDN URLs.
TLS = ssl.create_default_context()
WEB = httpx.Client(timeout=30, verify=TLS)


@pytest.fixture(scope="module", autouse=True)
def _close_web():
    yield
    WEB.close()


def credentials(account: dict, **override) -> dict:
    form = {
        "grant_type": "password",
        "username": account["username"],
        "password": account["password"],
        "client_id": account["client_id"],
        "client_secret": account["client_secret"],
    }
    return {**form, **override}


def get_token(account: dict, **override) -> httpx.Response:
    return WEB.post(account["auth_url"] + "/oauth2/token", data=credentials(account, **override))


def refresh(account: dict, refresh_token: str) -> httpx.Response:
    return WEB.post(
        account["auth_url"] + "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
    )


def client(account: dict) -> httpx.Client:
    token = get_token(account).json()["access_token"]
    return httpx.Client(
        base_url=account["base_url"], headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=TLS
    )


@pytest.fixture
def account(emu):
    return emu.account("iqmetrix")


@pytest.fixture
def api(account):
    with client(account) as c:
        yield c


def png_bytes(size=(37, 23)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_password_grant_answers_the_documented_token(account):
    r = get_token(account)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token"}
    assert body["expires_in"] == 43199
    assert body["access_token"] != body["refresh_token"]


@pytest.mark.parametrize(
    "override, error",
    [
        ({"password": "wrong"}, "invalid_grant"),
        ({"username": "nobody@example.com"}, "invalid_grant"),
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ],
)
def test_token_errors(account, override, error):
    r = get_token(account, **override)
    assert r.status_code == 400
    assert r.json() == {"error": error}


def test_refresh_gives_a_new_pair_and_revokes_the_old_token(account):
    first = get_token(account).json()
    url = account["base_url"] + f"/assets/{SEED_ID}"
    assert WEB.get(url, headers={"Authorization": f"Bearer {first['access_token']}"}).status_code == 200
    r = refresh(account, first["refresh_token"])
    assert r.status_code == 200
    second = r.json()
    assert set(second) == {"access_token", "expires_in", "refresh_token"}
    assert second["access_token"] != first["access_token"] and second["refresh_token"] != first["refresh_token"]
    assert WEB.get(url, headers={"Authorization": f"Bearer {first['access_token']}"}).status_code == 401
    assert WEB.get(url, headers={"Authorization": f"Bearer {second['access_token']}"}).status_code == 200
    again = refresh(account, first["refresh_token"])  # a refresh token is spent once
    assert again.status_code == 400 and again.json() == {"error": "invalid_grant"}


def test_tokens_expire(emu, account):
    emu.set_tokens(ttl=1)
    body = get_token(account).json()
    assert body["expires_in"] == 1
    url = account["base_url"] + f"/assets/{SEED_ID}"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert WEB.get(url, headers=headers).status_code == 200
    time.sleep(1.2)
    assert WEB.get(url, headers=headers).status_code == 401
    renewed = refresh(account, body["refresh_token"]).json()
    assert WEB.get(url, headers={"Authorization": f"Bearer {renewed['access_token']}"}).status_code == 200


def test_revoked_tokens_are_refused(emu, account, api):
    assert api.get(f"/assets/{SEED_ID}").status_code == 200
    emu.set_tokens(revoke_all=True)
    assert api.get(f"/assets/{SEED_ID}").status_code == 401


def test_a_token_is_required(account):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
        for path in (f"/assets/{SEED_ID}", f"/images/{SEED_ID}"):
            r = WEB.get(account["base_url"] + path, headers=headers)
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == "Bearer"
        assert (
            WEB.post(
                account["base_url"] + "/assets", headers=headers, files={"file": ("a.png", png_bytes())}
            ).status_code
            == 401
        )


def test_seed_asset_matches_the_documented_example(api):
    r = api.get(f"/assets/{SEED_ID}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    asset = r.json()
    assert list(asset) == list(SEED)
    for key in ("id", "name", "height", "width", "mimeType"):
        assert asset[key] == SEED[key]
    assert urlsplit(asset["href"]).path.endswith(f"/{SEED_ID}.jpg")
    content = WEB.get(asset["href"])
    assert content.status_code == 200 and content.headers["content-type"] == "image/jpeg"
    # md5Checksum is the MD5 of the bytes served (the documentation's literal belongs to another file).
    assert asset["md5Checksum"] == hashlib.md5(content.content).hexdigest()
    assert Image.open(io.BytesIO(content.content)).size == (240, 145)


def test_v1_prefix_is_accepted(api):
    plain, v1 = api.get(f"/assets/{SEED_ID}").json(), api.get(f"/v1/assets/{SEED_ID}").json()
    assert plain["md5Checksum"] == v1["md5Checksum"] and plain["id"] == v1["id"]
    assert api.get(f"/v1/images/{SEED_ID}").status_code == 303


def test_unknown_asset_is_404(api):
    for path in (
        "/assets/00000000-0000-0000-0000-000000000000",
        "/images/00000000-0000-0000-0000-000000000000",
        "/assets/not-a-guid",
    ):
        r = api.get(path)
        assert r.status_code == 404
        assert r.text == NOT_FOUND


def test_images_redirect_303_to_the_file(api):
    asset = api.get(f"/assets/{SEED_ID}").json()
    r = api.get(f"/images/{SEED_ID}")
    assert r.status_code == 303
    assert r.headers["location"] == asset["href"]
    followed = api.get(f"/images/{SEED_ID}", follow_redirects=True)
    assert followed.status_code == 200
    assert hashlib.md5(followed.content).hexdigest() == asset["md5Checksum"]


def test_images_refuses_a_video_with_400(account, api):
    video = [i for i in account["collections"]["media"] if api.get(f"/assets/{i}").json()["mimeType"] == "video/mp4"]
    assert video
    asset = api.get(f"/assets/{video[0]}").json()
    assert asset["width"] is None and asset["height"] is None
    assert api.get(f"/images/{video[0]}").status_code == 400
    content = WEB.get(asset["href"]).content
    assert content[4:8] == b"ftyp" and hashlib.md5(content).hexdigest() == asset["md5Checksum"]


def test_collections_resolve_and_hold_real_images(account, api):
    collections = account["collections"]
    assert SEED_ID in collections["logos"]
    assert {"logos", "banners", "media"} <= set(collections)
    names = []
    for ids in collections.values():
        for asset_id in ids:
            asset = api.get(f"/assets/{asset_id}").json()
            assert list(asset) == list(SEED)
            names.append(asset["name"])
            if asset["mimeType"].startswith("image/"):
                img = Image.open(io.BytesIO(WEB.get(asset["href"]).content))
                assert img.size == (asset["width"], asset["height"])
                assert Image.MIME[img.format] == asset["mimeType"]
    assert len(names) != len(set(names))  # names are not unique


def test_content_supports_ranges(api):
    href = api.get(f"/assets/{SEED_ID}").json()["href"]
    whole = WEB.get(href).content
    part = WEB.get(href, headers={"Range": "bytes=-100"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes {len(whole) - 100}-{len(whole) - 1}/{len(whole)}"
    assert part.content == whole[-100:]
    beyond = WEB.get(href, headers={"Range": f"bytes={len(whole) + 5}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(whole)}"


def test_upload_then_fetch_round_trip(api):
    data = png_bytes((37, 23))
    r = api.post("/assets", files={"file": ("shelf tag.png", data, "image/png")})
    assert r.status_code == 201
    created = r.json()
    assert list(created) == list(SEED) + ["success"]
    assert created["success"] is True
    assert created["name"] == "shelf tag.png"
    assert (created["width"], created["height"]) == (37, 23)
    assert created["mimeType"] == "image/png"
    assert created["md5Checksum"] == hashlib.md5(data).hexdigest()
    fetched = api.get(f"/assets/{created['id']}").json()
    assert fetched == {k: v for k, v in created.items() if k != "success"}
    assert WEB.get(fetched["href"]).content == data
    assert api.get(f"/v1/images/{created['id']}").headers["location"] == fetched["href"]


def test_large_upload_is_streamed_and_checksummed(api):
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = api.post("/v1/assets", files={"file": ("clip.mp4", data, "video/mp4")})
    assert r.status_code == 201
    created = r.json()
    assert created["mimeType"] == "video/mp4" and created["width"] is None
    assert created["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert api.get(f"/images/{created['id']}").status_code == 400
    part = WEB.get(created["href"], headers={"Range": "bytes=1048576-1048585"})
    assert part.status_code == 206 and part.content == data[1048576:1048586]


def test_upload_needs_exactly_one_file(api):
    assert api.post("/assets", data={"note": "no file here"}).status_code == 400
    assert api.post("/assets").status_code == 400
    two = [("file", ("a.png", png_bytes(), "image/png")), ("other", ("b.png", png_bytes(), "image/png"))]
    assert api.post("/assets", files=two).status_code == 400


def test_rate_limit_answers_429_with_its_headers(emu, api):
    emu.set_rate_limit("iqmetrix", 2, 60)
    try:
        assert api.get(f"/assets/{SEED_ID}").status_code == 200
        assert api.get(f"/assets/{SEED_ID}").status_code == 200
        r = api.get(f"/assets/{SEED_ID}")
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text == "rate limit exceeded"
        assert r.headers["x-ratelimit-limit"] == "2"
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(r.headers["x-ratelimit-resetseconds"]) <= 60
        assert datetime.fromisoformat(r.headers["x-ratelimit-reset"].replace("Z", "+00:00")).tzinfo is not None
    finally:
        emu.set_rate_limit("iqmetrix", 0)
    assert api.get(f"/assets/{SEED_ID}").status_code == 200


def test_account_config(emu, account):
    assert account["base_url"] == emu.url + "/iqmetrix"
    assert account["auth_url"] == emu.url + "/iqmetrix-accounts/v1"
    for field in ("username", "password", "client_id", "client_secret"):
        assert isinstance(account[field], str) and account[field]
    assert "bulk" not in account["collections"]


def test_extra_assets_go_to_a_bulk_collection(fresh_emulator):
    first = fresh_emulator("--assets", "300", "--large-file", "1MiB")
    account = first.account("iqmetrix")
    bulk = account["collections"]["bulk"]
    assert len(bulk) == len(set(bulk)) == 300
    with client(account) as api:
        checked = [api.get(f"/assets/{i}").json() for i in bulk[::50]]
        assert all(a["mimeType"] == "image/png" and a["name"].startswith("bulk-") for a in checked)
        sample = WEB.get(checked[-1]["href"]).content
        assert hashlib.md5(sample).hexdigest() == checked[-1]["md5Checksum"]
        large = [api.get(f"/assets/{i}").json() for i in account["collections"]["media"]]
        large = next(a for a in large if a["name"] == "large.bin")
        assert int(WEB.head(large["href"]).headers["content-length"]) == 1024 * 1024
    again = fresh_emulator("--assets", "300")
    assert again.account("iqmetrix")["collections"]["bulk"] == bulk  # the same GUIDs on every run
