"""The Mudstack emulator over real HTTP: auth and headers, the documented asset shape,
search and its folder/trash filters, downloads with Range, uploads and versions, folders."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time

import httpx
import pytest
from conftest import seed_json

from assetfs.emulator.mudstack_store import uid

NULLABLE = {"commit_parent_id", "locked_by_user_id", "status_id"}
EXTRA_FIELDS = {"created_at", "updated_at"}  # inferred additions to the documented asset and version


class Mud:
    """A logged-in client of the emulated Mudstack API."""

    def __init__(self, emulator):
        self.cfg = emulator.account("mudstack")
        self.http = httpx.Client(base_url=self.cfg["base_url"], timeout=30)
        self.token = self.login().json()["token"]
        self.workspaces = {w["name"]: w["id"] for w in self.call("GET", "/workspaces", ws=None).json()["workspaces"]}
        self.ws = self.workspaces["Game Art"]

    def creds(self) -> dict:
        return {k: self.cfg[k] for k in ("account_id", "key", "secret")}

    def login(self, **override) -> httpx.Response:
        return self.http.post("/auth/token", json={**self.creds(), **override})

    def headers(self, ws: str | None = "", token: str | None = None) -> dict:
        h = {"Authorization": f"Bearer {token or self.token}", "x-account-id": self.cfg["account_id"]}
        if ws is not None:
            h["x-workspace-id"] = ws or self.ws
        return h

    def call(self, method: str, path: str, ws: str | None = "", **kw) -> httpx.Response:
        return self.http.request(method, path, headers=self.headers(ws), **kw)

    def search(self, **params) -> dict:
        r = self.call("GET", "/workspaces/assets/search", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def find(self, file_name: str, **params) -> dict:
        return next(a for a in self.search(query=file_name, **params)["assets"] if a["file_name"] == file_name)

    def fetch(self, download_path: str, **kw) -> httpx.Response:
        url = self.call("GET", download_path).json()["url"]
        return httpx.get(url, timeout=30, **kw)

    def upload(self, data: bytes, file_name: str, location: str) -> dict:
        r = self.call("POST", "/workspaces/assets/upload/", json={"name": file_name})
        assert r.status_code == 200 and set(r.json()) == {"signed_url", "key"}
        ticket = r.json()
        put = httpx.put(ticket["signed_url"], content=data, headers={"content-type": "application/octet-stream"})
        assert put.status_code == 200 and put.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
        r = self.call(
            "POST",
            "/workspaces/assets/upload/assets",
            json={"temp_file_key": ticket["key"], "original_file_name": file_name, "file_location": location},
        )
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture(scope="module")
def mud(emulator):
    client = Mud(emulator)
    yield client
    client.http.close()


def assert_shape(seed, real, path="$"):
    """`real` has the seed example's keys and value types, with real values (no placeholders)."""
    if isinstance(seed, dict):
        assert isinstance(real, dict), path
        if seed:  # {} in the docs is a free-form object
            assert not seed.keys() - real.keys(), f"{path}: missing {seed.keys() - real.keys()}"
            assert not real.keys() - seed.keys() - EXTRA_FIELDS, f"{path}: extra {real.keys() - seed.keys()}"
        for key in seed:
            if real[key] is None and key in NULLABLE:
                continue
            assert_shape(seed[key], real[key], f"{path}.{key}")
    elif isinstance(seed, list):
        assert isinstance(real, list) and real, f"{path}: expected a non-empty list"
        for i, item in enumerate(real):
            assert_shape(seed[0], item, f"{path}[{i}]")
    else:
        assert type(real) is type(seed), f"{path}: {real!r} is not a {type(seed).__name__}"
        if isinstance(seed, str):
            assert real and real != "<string>", f"{path}: placeholder {real!r}"


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- auth and headers -----------------------------------------------------------------


def test_config_section_has_plain_credentials(emu):
    cfg = emu.account("mudstack")
    assert cfg["base_url"] == emu.url + "/mudstack"
    assert set(cfg) == {"provider", "base_url", "account_id", "key", "secret"}
    assert all(isinstance(cfg[k], str) and cfg[k] for k in ("account_id", "key", "secret"))
    assert [n for n, a in emu.config["accounts"].items() if a["provider"] == "mudstack"] == ["studio"]


def test_token_from_json_or_form_at_root_and_v1(emu, mud):
    r = mud.login()
    assert r.status_code == 200 and set(r.json()) == {"token", "expires_in"}
    assert r.json()["expires_in"] == 3600
    claims = jwt_claims(r.json()["token"])
    assert claims["account_id"] == mud.cfg["account_id"] and claims["exp"] - claims["iat"] == 3600
    form = mud.http.post("/v1/auth/token", data=mud.creds())
    assert form.status_code == 200 and form.json()["token"].count(".") == 2
    listed = mud.http.get("/v1/workspaces", headers=mud.headers(None, token=form.json()["token"]))
    assert listed.status_code == 200 and len(listed.json()["workspaces"]) == 2


def test_bad_credentials(emu, mud):
    r = mud.login(secret="wrong")
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "Invalid credentials", "error": "Unauthorized"}
    assert mud.http.post("/auth/token", json={"account_id": mud.cfg["account_id"]}).status_code == 400


@pytest.mark.parametrize("authorization", [None, "Bearer nonsense", "Bearer a.b.c", "Basic abc"])
def test_calls_without_a_valid_token_get_401(emu, mud, authorization):
    headers = {k: v for k, v in mud.headers().items() if k != "Authorization"}
    if authorization:
        headers["Authorization"] = authorization
    r = mud.http.get("/workspaces/assets/search", headers=headers)
    assert r.status_code == 401 and r.json()["statusCode"] == 401


def test_account_and_workspace_headers(emu, mud):
    search = "/workspaces/assets/search"
    no_account = {k: v for k, v in mud.headers().items() if k != "x-account-id"}
    assert mud.http.get(search, headers=no_account).status_code == 400
    assert mud.http.get(search, headers={**mud.headers(), "x-account-id": uid("account", "partner")}).status_code == 403
    r = mud.http.get(search, headers=mud.headers(None))
    assert r.status_code == 400 and "x-workspace-id" in r.json()["message"]
    assert mud.call("GET", search, ws=uid("workspace", "Partner Studio")).status_code == 403
    assert mud.call("GET", search, ws="no-such-workspace").status_code == 403


def test_workspaces(emu, mud):
    r = mud.call("GET", "/workspaces", ws=None)
    assert r.status_code == 200
    workspaces = r.json()["workspaces"]
    assert [w["name"] for w in workspaces] == ["Game Art", "Marketing"]
    for w in workspaces:
        assert {"account_id", "id", "name", "created_at"} <= set(w)
        assert w["account_id"] == mud.cfg["account_id"] and w["created_at"].endswith("Z")


def test_token_expiry(emu, mud):
    emu.set_tokens(ttl=1)
    r = mud.login()
    assert r.json()["expires_in"] == 1
    short = r.json()["token"]
    assert mud.http.get("/workspaces", headers=mud.headers(None, token=short)).status_code == 200
    time.sleep(1.3)
    expired = mud.http.get("/workspaces", headers=mud.headers(None, token=short))
    assert expired.status_code == 401 and expired.json()["message"] == "Invalid or expired token"
    emu.set_tokens(ttl=None)
    fresh = mud.login().json()["token"]
    assert mud.http.get("/workspaces", headers=mud.headers(None, token=fresh)).status_code == 200


def test_rate_limit_answers_429(emu, mud):
    emu.set_rate_limit("mudstack", 2, 60)
    try:
        answers = [mud.call("GET", "/workspaces", ws=None) for _ in range(3)]
    finally:
        emu.set_rate_limit("mudstack", 0)
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["statusCode"] == 429 and int(answers[2].headers["retry-after"]) >= 1
    assert mud.call("GET", "/workspaces", ws=None).status_code == 200


# --- assets -------------------------------------------------------------------------------


def test_get_by_ids_has_the_documented_shape(emu, mud):
    knight = mud.find("knight.png")
    r = mud.call("GET", "/workspaces/assets/getByIds", params={"ids": knight["id"]})
    assert r.status_code == 200 and len(r.json()) == 1
    asset = r.json()[0]
    assert_shape(seed_json("mudstack_asset.json"), asset)
    assert "<string>" not in json.dumps(asset)
    assert asset["file_location"] == "/characters/heroes/" and asset["name"] == "knight"
    assert [v["version_number"] for v in asset["versions"]] == [1, 2, 3]
    assert asset["currentVersion"] == asset["version"] == asset["versions"][-1]
    assert asset["current_version_id"] == asset["currentVersion"]["id"]
    parents = [v["commit_parent_id"] for v in asset["versions"]]
    assert parents == [None, asset["versions"][0]["id"], asset["versions"][1]["id"]]
    assert asset["assetType"]["name"] == "Image" and ".png" in asset["assetType"]["knownExtensions"]
    assert asset["reviewRequests"][0]["review"]["status"] == "approved"


def test_get_by_ids_comma_separated_and_repeated(emu, mud):
    ids = [a["id"] for a in mud.search(file_location="/environments/")["assets"]]
    assert len(ids) == 2
    comma = mud.call("GET", "/workspaces/assets/getByIds", params={"ids": ",".join(ids)})
    repeated = mud.call(
        "GET", "/workspaces/assets/getByIds", params=[("ids", ids[0]), ("ids", ids[1]), ("ids", "unknown")]
    )
    assert [a["id"] for a in comma.json()] == [a["id"] for a in repeated.json()] == ids
    assert mud.call("GET", "/workspaces/assets/getByIds").status_code == 400
    # Another workspace's asset is not found through this one.
    other = mud.call("GET", "/workspaces/assets/getByIds", ws=mud.workspaces["Marketing"], params={"ids": ids[0]})
    assert other.status_code == 200 and other.json() == []


def test_single_asset_route_and_404(emu, mud):
    knight = mud.find("knight.png")
    r = mud.call("GET", f"/v1/workspaces/assets/{knight['id']}")
    assert r.status_code == 200 and r.json()["id"] == knight["id"]
    missing = mud.call("GET", "/workspaces/assets/no-such-asset")
    assert missing.status_code == 404
    assert missing.json() == {"statusCode": 404, "message": "Asset not found", "error": "Not Found"}


def test_search_by_folder_query_library_status(emu, mud):
    def names(**params):
        return sorted(a["file_name"] for a in mud.search(**params)["assets"])

    assert names(file_location="/characters/heroes/") == ["archer.png", "knight.png"]
    assert names(file_location="characters") == ["concept-sheet.pdf"]  # normalized to /characters/
    assert names(file_location="/characters/", includeSubfolders="true") == [
        "archer.png",
        "concept-sheet.pdf",
        "dragon.jpg",
        "knight.png",
    ]
    assert names(file_location="/") == ["style-guide.pdf"]
    assert names(query="FOREST") == ["forest.jpg"]
    assert names(library="Environments") == ["castle.png", "forest.jpg"]
    assert names(status="approved") == ["knight.png"]
    marketing = mud.call(
        "GET", "/workspaces/assets/search", ws=mud.workspaces["Marketing"], params={"file_location": "/"}
    )
    assert [a["file_name"] for a in marketing.json()["assets"]] == ["brand-guidelines.pdf"]


def test_search_pagination_walk(emu, mud):
    seen, page = [], 1
    while True:
        body = mud.search(limit=3, page=page)
        assert body["page"] == page and body["limit"] == 3 and len(body["assets"]) <= 3
        if not body["assets"]:
            break
        seen += [a["id"] for a in body["assets"]]
        page += 1
    assert len(seen) == len(set(seen)) == body["total"] >= 7
    assert page == -(-body["total"] // 3) + 1
    for bad in ({"limit": 0}, {"limit": 1001}, {"page": 0}, {"page": "x"}):
        assert mud.call("GET", "/workspaces/assets/search", params=bad).status_code == 400


def test_download_with_range_and_md5(emu, mud):
    knight = mud.find("knight.png")
    r = mud.call("GET", f"/workspaces/assets/{knight['id']}/download")
    assert r.status_code == 200 and set(r.json()) == {"url"} and r.json()["url"].split("?")[0].endswith("/knight.png")
    whole = httpx.get(r.json()["url"])
    assert whole.status_code == 200 and whole.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(whole.content) == knight["currentVersion"]["size"]
    assert hashlib.md5(whole.content).hexdigest() == knight["currentVersion"]["checksum"]
    part = httpx.get(r.json()["url"], headers={"Range": "bytes=8-23"})
    assert part.status_code == 206 and part.content == whole.content[8:24]
    assert part.headers["content-range"] == f"bytes 8-23/{len(whole.content)}"
    beyond = httpx.get(r.json()["url"], headers={"Range": f"bytes={len(whole.content)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(whole.content)}"
    tampered = httpx.get(r.json()["url"].replace("sig=", "sig=0"))
    assert tampered.status_code == 403


def test_each_version_has_its_own_bytes(emu, mud):
    dragon = mud.find("dragon.jpg")
    r = mud.call("GET", f"/workspaces/assets/{dragon['id']}/versions")
    assert r.status_code == 200 and r.json() == dragon["versions"]
    sums = []
    for v in r.json():
        data = mud.fetch(f"/workspaces/assets/{dragon['id']}/versions/{v['id']}/download").content
        assert data.startswith(b"\xff\xd8") and len(data) == v["size"]
        assert hashlib.md5(data).hexdigest() == v["checksum"]
        sums.append(v["checksum"])
    assert len(set(sums)) == 2
    assert mud.call("GET", f"/workspaces/assets/{dragon['id']}/versions/nope/download").status_code == 404


# --- uploads, versions, trash, folders ----------------------------------------------------


def test_upload_round_trip(emu, mud):
    data = secrets.token_bytes(300_000)
    folder = f"/uploads-{secrets.token_hex(3)}/deep/"
    asset = mud.upload(data, "sculpt.fbx", folder)
    assert (asset["name"], asset["file_name"], asset["file_location"]) == ("sculpt", "sculpt.fbx", folder)
    assert asset["isActive"] is True and asset["assetType"]["name"] == "3D Model"
    v = asset["currentVersion"]
    assert v["version_number"] == 1 and v["size"] == len(data) and v["checksum"] == hashlib.md5(data).hexdigest()
    assert mud.fetch(f"/workspaces/assets/{asset['id']}/download").content == data
    assert [a["id"] for a in mud.search(file_location=folder)["assets"]] == [asset["id"]]
    hierarchy = json.dumps(mud.call("GET", "/workspaces/folders/hierarchy").json())
    assert f'"path": "{folder}"' in hierarchy  # missing folders were created


def test_upload_url_is_signed_and_single_use(emu, mud):
    ticket = mud.call("POST", "/workspaces/assets/upload", json={"name": "a.png"}).json()
    assert httpx.put(ticket["signed_url"].replace("sig=", "sig=x"), content=b"x").status_code == 403
    unfinished = mud.call(
        "POST",
        "/workspaces/assets/upload/assets",
        json={"temp_file_key": ticket["key"], "original_file_name": "a.png", "file_location": "/"},
    )
    assert unfinished.status_code == 400
    assert httpx.put(ticket["signed_url"], content=b"png?").status_code == 200
    done = mud.call(
        "POST",
        "/workspaces/assets/upload/assets",
        json={"temp_file_key": ticket["key"], "original_file_name": "a.png", "file_location": "/"},
    )
    assert done.status_code == 201
    assert httpx.put(ticket["signed_url"], content=b"again").status_code == 404
    assert mud.call("DELETE", f"/workspaces/assets/{done.json()['id']}").status_code == 200


def test_new_version_multipart(emu, mud):
    first, second = b"first version" * 1000, secrets.token_bytes(200_000)
    asset = mud.upload(first, "notes.txt", f"/versions-{secrets.token_hex(3)}/")
    r = mud.call(
        "POST", f"/workspaces/assets/{asset['id']}/versions", files={"file": ("notes.txt", second, "text/plain")}
    )
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["version_number"] == 2 and v["commit_parent_id"] == asset["current_version_id"]
    assert v["checksum"] == hashlib.md5(second).hexdigest() and v["size"] == len(second)
    now = mud.call("GET", f"/workspaces/assets/{asset['id']}").json()
    assert now["current_version_id"] == v["id"] and len(now["versions"]) == 2
    assert mud.fetch(f"/workspaces/assets/{asset['id']}/download").content == second
    assert (
        mud.fetch(f"/workspaces/assets/{asset['id']}/versions/{asset['current_version_id']}/download").content == first
    )
    assert mud.call("POST", f"/workspaces/assets/{asset['id']}/versions", data={"x": "1"}).status_code == 400


def test_trash_and_restore(emu, mud):
    folder = f"/trash-{secrets.token_hex(3)}/"
    asset = mud.upload(b"%PDF-1.4 bin", "draft.pdf", folder)
    gone = mud.call("DELETE", f"/workspaces/assets/{asset['id']}")
    assert gone.status_code == 200 and gone.json()["isActive"] is False
    assert mud.search(file_location=folder)["total"] == 0
    assert [a["id"] for a in mud.search(file_location=folder, trashed="true")["assets"]] == [asset["id"]]
    # Only a trashed asset in it: the folder may go, and restoring brings it back.
    folder_id = mud.call("GET", "/workspaces/folders/hierarchy").json()
    folder_id = next(c["id"] for c in folder_id["children"] if c["path"] == folder)
    assert mud.call("DELETE", f"/workspaces/folders/{folder_id}").status_code == 200
    back = mud.call("PATCH", f"/workspaces/assets/{asset['id']}/restore")
    assert back.status_code == 200 and back.json()["isActive"] is True
    assert [a["id"] for a in mud.search(file_location=folder)["assets"]] == [asset["id"]]
    assert any(c["path"] == folder for c in mud.call("GET", "/workspaces/folders/hierarchy").json()["children"])
    marketing = mud.call("GET", "/workspaces/assets/search", ws=mud.workspaces["Marketing"], params={"trashed": "true"})
    assert [a["file_name"] for a in marketing.json()["assets"]] == ["old-logo.png"]


def test_rename_and_move(emu, mud):
    asset = mud.upload(b"\x89PNG fake", "logo.png", f"/rename-{secrets.token_hex(3)}/")
    path = f"/workspaces/assets/{asset['id']}"
    r = mud.call("PATCH", path + "/rename", json={"name": "emblem"})
    assert r.status_code == 200 and (r.json()["name"], r.json()["file_name"]) == ("emblem", "emblem.png")
    r = mud.call("PATCH", path + "/rename", json={"name": "crest.PNG"})
    assert (r.json()["name"], r.json()["file_name"]) == ("crest", "crest.PNG")
    assert mud.call("PATCH", path + "/rename", json={"name": "a/b"}).status_code == 400
    target = f"/moved-{secrets.token_hex(3)}/"
    moved = mud.call("PATCH", path, json={"file_location": target.strip("/")})
    assert moved.status_code == 200 and moved.json()["file_location"] == target
    assert [a["id"] for a in mud.search(file_location=target)["assets"]] == [asset["id"]]
    assert mud.call("PATCH", path, json={"status_id": "nope"}).status_code == 400
    assert mud.call("PATCH", "/workspaces/assets/missing/rename", json={"name": "x"}).status_code == 404


def test_a_kept_search_answer_never_outlives_a_change(emu, mud):
    """Search answers are kept as sent until a request that may change the store: the same
    search asked again right after an upload, a rename or a removal sees it."""
    folder = f"/kept-{secrets.token_hex(3)}/"

    def names() -> list[str]:
        return [a["file_name"] for a in mud.search(file_location=folder, limit=10)["assets"]]

    assert names() == [] and names() == []
    asset = mud.upload(b"\x89PNG kept", "kept.png", folder)
    assert names() == ["kept.png"]
    assert mud.call("PATCH", f"/workspaces/assets/{asset['id']}/rename", json={"name": "renamed"}).status_code == 200
    assert names() == ["renamed.png"]
    assert mud.call("DELETE", f"/workspaces/assets/{asset['id']}").status_code == 200
    assert names() == []


def test_folders(emu, mud):
    top = f"/art-{secrets.token_hex(3)}/"
    r = mud.call("POST", "/workspaces/folders", params={"folder": top})
    assert r.status_code == 201
    folder = r.json()
    assert (folder["path"], folder["name"], folder["workspace_id"]) == (top, top.strip("/"), mud.ws)
    assert mud.call("POST", "/workspaces/folders", params={"folder": top}).status_code == 409
    assert mud.call("POST", "/workspaces/folders", params={"folder": f"/missing-{top[1:]}child"}).status_code == 400
    child = mud.call("POST", "/workspaces/folders", params={"folder": top + "sub"}).json()
    assert child["path"] == top + "sub/" and child["parent_id"] == folder["id"]
    tree = mud.call("GET", "/workspaces/folders/hierarchy").json()
    assert tree["path"] == "/"
    node = next(c for c in tree["children"] if c["id"] == folder["id"])
    assert [c["path"] for c in node["children"]] == [top + "sub/"]
    assert mud.call("DELETE", f"/workspaces/folders/{folder['id']}").status_code == 409
    assert mud.call("DELETE", f"/workspaces/folders/{child['id']}").status_code == 200
    assert mud.call("DELETE", f"/workspaces/folders/{folder['id']}").json()["path"] == top
    assert mud.call("DELETE", f"/workspaces/folders/{tree['id']}").status_code == 400
    assert mud.call("DELETE", "/workspaces/folders/unknown").status_code == 404
    heroes = next(c for c in tree["children"] if c["path"] == "/characters/")
    assert mud.call("DELETE", f"/workspaces/folders/{heroes['id']}").status_code == 409


# --- generated data ---------------------------------------------------------------------


def test_bulk_assets_and_large_file(fresh_emulator):
    started = time.monotonic()
    emulator = fresh_emulator("--assets", "10000", "--large-file", "3MiB")
    assert time.monotonic() - started < 10
    mud = Mud(emulator)
    try:
        ids, names, page = [], [], 1
        while body := mud.search(file_location="/bulk/", limit=1000, page=page)["assets"]:
            ids += [a["id"] for a in body]
            names += [a["file_name"] for a in body]
            page += 1
        assert len(set(ids)) == 10_000 and ids[0] == uid(mud.ws, "bulk", "0")
        assert names[:4] == ["bulk-00000.png", "bulk-00001.jpg", "bulk-00002.pdf", "bulk-00003.png"]
        marketing = mud.call(
            "GET",
            "/workspaces/assets/search",
            ws=mud.workspaces["Marketing"],
            params={"file_location": "/bulk/", "limit": 1},
        )
        assert marketing.json()["total"] == 10_000
        sample = mud.find("bulk-00002.pdf", file_location="/bulk/")
        data = mud.fetch(f"/workspaces/assets/{sample['id']}/download").content
        assert data.startswith(b"%PDF") and hashlib.md5(data).hexdigest() == sample["currentVersion"]["checksum"]

        large = mud.find("large.bin", file_location="/")
        assert large["currentVersion"]["size"] == 3 * 1024 * 1024
        tail = mud.fetch(f"/workspaces/assets/{large['id']}/download", headers={"Range": "bytes=-1000"})
        assert tail.status_code == 206 and len(tail.content) == 1000
        assert (
            tail.headers["content-range"] == f"bytes {3 * 1024 * 1024 - 1000}-{3 * 1024 * 1024 - 1}/{3 * 1024 * 1024}"
        )
    finally:
        mud.http.close()
