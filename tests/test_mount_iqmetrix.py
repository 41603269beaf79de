"""The iQmetrix Asset Media Service client on a real mount of the emulated API: collections,
asset directories, bytes behind /images/{id} and hrefs, asset.json, xattrs, GUID lookup,
OAuth2 token refresh; and the token logic on its own (refused refresh, one fetch at a time)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trio
from truth import download, md5

pytestmark = pytest.mark.mount
SEED_ID = "732130d2-b673-461c-812b-f2b614d6076e"
MISSING_ID = "00000000-0000-4000-8000-000000000000"


# -- the truth, straight from the emulated API ------------------------------------------------


def token(account: dict) -> str:
    form = {
        "grant_type": "password",
        "username": account["username"],
        "password": account["password"],
        "client_id": account["client_id"],
        "client_secret": account["client_secret"],
    }
    return (
        httpx.post(account["auth_url"] + "/oauth2/token", data=form, timeout=30)
        .raise_for_status()
        .json()["access_token"]
    )


def api(account: dict) -> httpx.Client:
    return httpx.Client(base_url=account["base_url"], headers={"Authorization": f"Bearer {token(account)}"}, timeout=30)


def iq_assets(account: dict, ids: list[str]) -> list[dict]:
    with api(account) as client:
        return [client.get(f"/assets/{i}").raise_for_status().json() for i in ids]


def upload(account: dict, files: list[tuple[str, bytes, str]]) -> list[dict]:
    with api(account) as client:
        return [client.post("/assets", files={"file": f}).raise_for_status().json() for f in files]


def expected_names(assets: list[dict]) -> list[str]:
    """Asset file names as DESIGN says: the asset `name`; duplicates get the GUID before the extension."""
    counts: dict[str, int] = {}
    for a in assets:
        counts[a["name"]] = counts.get(a["name"], 0) + 1
    out = []
    for a in assets:
        stem, dot, ext = a["name"].rpartition(".")
        out.append(a["name"] if counts[a["name"]] == 1 else f"{stem} ({a['id']}){dot}{ext}")
    return sorted(out)


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, f"user.assetfs.{name}").decode()


def config_with(emu, **collections) -> dict:
    return {"accounts": {"stores": {**emu.account("iqmetrix"), "collections": collections}}}


@pytest.fixture
def iq(emu, mount):
    m = mount(emu.config, accounts=["stores"])
    return m, m.path / "stores", emu.account("iqmetrix")


# -- the tree, the bytes, the metadata ----------------------------------------------------------


def test_collections_hold_asset_files_named_by_the_asset_name(iq):
    m, root, account = iq
    assert sorted(os.listdir(root)) == sorted(account["collections"])
    for collection, ids in account["collections"].items():
        files = expected_names(iq_assets(account, ids))
        assert sorted(os.listdir(root / collection)) == sorted(files + [".assets"])
        assert sorted(os.listdir(root / collection / ".assets")) == files
    assert (root / "logos" / "iqmetrix.jpg").is_file()
    assert os.listdir(root / "logos" / ".assets" / "iqmetrix.jpg") == ["asset.json"]
    logos = [n for n in os.listdir(root / "logos") if n.startswith("logo")]
    assert len(logos) == 2 and all(n.startswith("logo (") and n.endswith(").png") for n in logos)
    assert sorted(os.listdir(root / "media")) == [".assets", "floor-plan.png", "store-tour.mp4"]


def test_every_content_file_has_the_providers_bytes_and_real_size(iq):
    m, root, account = iq
    for collection, ids in account["collections"].items():
        by_id = {a["id"]: a for a in iq_assets(account, ids)}
        contents = [p for p in (root / collection).iterdir() if p.name != ".assets"]
        assert contents, f"collection {collection} lists no file"
        for content in contents:
            asset = by_id[xattr(content, "id")]
            expected = download(asset["href"])
            assert md5(expected) == asset["md5Checksum"]
            assert content.stat().st_size == len(expected)
            assert md5(content.read_bytes()) == asset["md5Checksum"]


def test_images_stream_from_the_images_route_and_videos_from_their_href(iq, emu):
    m, root, account = iq
    emu.reset_requests()
    video = root / "media" / "store-tour.mp4"
    image = root / "logos" / "wordmark.png"
    assert video.read_bytes()[4:8] == b"ftyp"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert xattr(image, "source_url") == account["base_url"] + "/images/" + xattr(image, "id")
    assert xattr(video, "source_url").split("/cdn/", 1)[0] + "/" == emu.url.rstrip("/") + "/"
    counts = emu.requests()
    assert counts.get(f"GET /iqmetrix/images/{xattr(image, 'id')}", 0) >= 1
    assert counts.get(f"GET /iqmetrix/images/{xattr(video, 'id')}", 0) == 0  # it would answer 400


def test_asset_json_is_the_providers_object(iq):
    m, root, account = iq
    for collection, ids in account["collections"].items():
        by_id = {a["id"]: a for a in iq_assets(account, ids)}
        asset_dirs = list((root / collection / ".assets").iterdir())
        assert asset_dirs, f"collection {collection} has no .assets/ entry"
        for asset_dir in asset_dirs:
            assert json.loads((asset_dir / "asset.json").read_text()) == by_id[xattr(asset_dir, "id")]


def test_xattrs_and_everyday_tools(iq, tmp_path):
    m, root, account = iq
    [seed] = iq_assets(account, [SEED_ID])
    asset_dir = root / "logos" / ".assets" / "iqmetrix.jpg"
    for path in (asset_dir, root / "logos" / "iqmetrix.jpg"):
        assert xattr(path, "id") == SEED_ID
        assert xattr(path, "mime") == "image/jpeg"
        assert xattr(path, "md5") == seed["md5Checksum"]
        assert (xattr(path, "width"), xattr(path, "height")) == ("240", "145")
        assert xattr(path, "collection") == "logos"
    video_dir = root / "media" / ".assets" / "store-tour.mp4"
    assert xattr(video_dir, "mime") == xattr(root / "media" / "store-tour.mp4", "mime") == "video/mp4"
    with pytest.raises(OSError) as e:
        xattr(video_dir, "width")  # the API gives none for a video
    assert e.value.errno == errno.ENODATA
    attrs = run("getfattr", "-d", str(root / "logos" / "iqmetrix.jpg"))
    assert f'user.assetfs.id="{SEED_ID}"' in attrs and 'user.assetfs.width="240"' in attrs
    assert run("md5sum", str(root / "logos" / "iqmetrix.jpg")).split()[0] == seed["md5Checksum"]
    found = run("find", str(root), "-name", "*.mp4", "-type", "f").splitlines()
    assert [f.rsplit("/", 1)[1] for f in found] == ["store-tour.mp4"]
    copy = tmp_path / "copy"
    run("cp", "-r", str(root / "banners"), str(copy))
    assert run("diff", "-r", str(root / "banners"), str(copy)) == ""
    assert int(run("du", "-sk", "--apparent-size", str(root / "banners")).split()[0]) > 0


# -- collections: missing ids, GUIDs typed as paths, many assets ----------------------------------


def test_an_id_that_answers_404_is_left_out_with_a_warning(emu, mount):
    m = mount(config_with(emu, logos=[SEED_ID, MISSING_ID]))
    assert os.listdir(m.path / "stores" / "logos") == ["iqmetrix.jpg", ".assets"]
    assert "WARNING" in m.log() and MISSING_ID in m.log()


def test_a_guid_typed_under_a_collection_resolves(emu, mount):
    account = emu.account("iqmetrix")
    m = mount(config_with(emu, logos=[SEED_ID]))
    logos = m.path / "stores" / "logos"
    assert os.listdir(logos) == ["iqmetrix.jpg", ".assets"]
    other_id = account["collections"]["banners"][0]
    [other] = iq_assets(account, [other_id])
    looked_up = logos / other_id
    assert sorted(os.listdir(looked_up)) == sorted(["asset.json", other["name"]])
    assert md5((looked_up / other["name"]).read_bytes()) == other["md5Checksum"]
    assert xattr(looked_up, "id") == other_id
    with pytest.raises(FileNotFoundError):
        os.listdir(logos / MISSING_ID)
    with pytest.raises(FileNotFoundError):
        os.listdir(logos / "not-a-guid")


def test_a_large_collection_is_fetched_completely_and_concurrently(fresh_emulator, mount):
    emu = fresh_emulator("--assets", "400")
    account = emu.account("iqmetrix")
    ids = account["collections"]["bulk"]
    m = mount(emu.config, accounts=["stores"])
    emu.reset_requests()
    emu.set_faults(latency=0.05, only_prefix="/iqmetrix/assets/")  # 20 s one after another
    started = time.monotonic()
    names = sorted(os.listdir(m.path / "stores" / "bulk"))
    elapsed = time.monotonic() - started
    emu.clear_faults()
    assert names == [".assets"] + [f"bulk-{i + 1:05d}.png" for i in range(400)]
    counts = emu.requests()
    assert sum(v for k, v in counts.items() if k.startswith("GET /iqmetrix/assets/")) == 400
    assert elapsed < 10
    last = m.path / "stores" / "bulk" / names[-1]
    [asset] = iq_assets(account, [ids[-1]])
    assert md5(last.read_bytes()) == asset["md5Checksum"]


def test_hostile_and_duplicate_names_are_safe_unique_and_stable(fresh_emulator, mount):
    emu = fresh_emulator()
    account = emu.account("iqmetrix")
    png = download(iq_assets(account, [account["collections"]["logos"][1]])[0]["href"])
    wanted = [
        "../escape.png",
        ".",
        "..",
        "x" * 300 + ".png",
        "same.png",
        "same.png",
        "asset.json",
        "tab\there.png",
        "no-extension",
    ]
    made = upload(account, [(name, png, "image/png") for name in wanted])
    ids = [a["id"] for a in made]
    config = config_with(emu, odd=ids)
    first = mount(config)
    names = os.listdir(first.path / "stores" / "odd")
    assert names[-1] == ".assets"
    names = names[:-1]
    assert len(set(names)) == len(ids)
    for name in names:
        assert name not in (".", "..") and "/" not in name and len(name.encode()) <= 255
        file = first.path / "stores" / "odd" / name
        assert os.listdir(file.parent / ".assets" / name) == ["asset.json"]
        assert file.read_bytes() == png
    dupes = [n for n in names if n.startswith("same (")]
    assert sorted(dupes) == sorted(f"same ({a['id']}).png" for a in made if a["name"] == "same.png")
    by_name = {a["name"]: a for a in made}
    assert by_name["asset.json"]["id"] + ".json" in names  # an asset named asset.json
    assert "no-extension.png" in names
    second = mount(config)
    assert sorted(os.listdir(second.path / "stores" / "odd")) == sorted(names + [".assets"])


# -- tokens -----------------------------------------------------------------------------------


def test_the_token_is_refreshed_during_a_mount(fresh_emulator, mount):
    emu = fresh_emulator("--token-ttl", "2s")
    account = emu.account("iqmetrix")
    m = mount(emu.config, accounts=["stores"], log_level="DEBUG")
    banners = m.path / "stores" / "banners"
    [first, second] = iq_assets(account, account["collections"]["banners"][:2])
    assert md5((banners / first["name"]).read_bytes()) == first["md5Checksum"]
    time.sleep(3)
    assert md5((banners / second["name"]).read_bytes()) == second["md5Checksum"]
    assert "refresh done" in m.log()
    # renewed before it expired, not after a refusal (no answer was a 401)
    assert "→ 401" not in m.log() and "HTTP/1.1 401" not in m.log() and ": 401, fetching" not in m.log()


def test_a_revoked_token_is_renewed_after_a_401(emu, mount):
    account = emu.account("iqmetrix")
    m = mount(emu.config, accounts=["stores"])
    root = m.path / "stores"
    banners = expected_names(iq_assets(account, account["collections"]["banners"]))
    assert sorted(os.listdir(root / "banners")) == sorted(banners + [".assets"])
    emu.set_tokens(revoke_all=True)
    logos = expected_names(iq_assets(account, account["collections"]["logos"]))
    assert sorted(os.listdir(root / "logos")) == sorted(logos + [".assets"])
    assert "401, fetching a new token" in m.log()


def test_wrong_credentials_answer_eacces_and_the_password_is_not_logged(emu, mount):
    wrong = "not-the-password-1234"
    config = {"accounts": {"stores": {**emu.account("iqmetrix"), "password": wrong}}}
    m = mount(config)
    with pytest.raises(PermissionError):
        os.listdir(m.path / "stores" / "logos")
    assert "invalid_grant" in m.log()
    assert wrong not in m.log()


class FakeTokenService:
    """A token endpoint in memory: counts grants, refuses refresh when told to."""

    def __init__(self, refuse_refresh: bool = False):
        self.grants: list[str] = []
        self.refuse_refresh = refuse_refresh

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        assert form["client_id"] == "cid" and form["client_secret"] == "csecret"
        self.grants.append(form["grant_type"])
        if form["grant_type"] == "refresh_token" and self.refuse_refresh:
            return httpx.Response(400, json={"error": "invalid_grant"})
        return httpx.Response(
            200,
            json={"access_token": f"t{len(self.grants)}", "expires_in": 43199, "refresh_token": f"r{len(self.grants)}"},
        )


def auth_with(service: FakeTokenService):
    from assetfs.providers.http import ProviderHTTP
    from assetfs.providers.iqmetrix import IQmetrixAuth

    auth = IQmetrixAuth("stores", "https://accounts.example/v1", "user", "pw", "cid", "csecret")
    http = ProviderHTTP("https://ams.example", auth, trusted_urls=("https://accounts.example/v1",))
    http.client = httpx.AsyncClient(transport=httpx.MockTransport(service))
    return auth, http


def test_concurrent_requests_share_one_sign_in_and_a_refused_refresh_signs_in_again():
    service = FakeTokenService(refuse_refresh=True)
    auth, http = auth_with(service)

    async def main():
        seen = []

        async def ask():
            seen.append((await auth.headers(http))["Authorization"])

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(ask)
        assert service.grants == ["password"] and set(seen) == {"Bearer t1"}
        auth.invalidate()
        assert (await auth.headers(http))["Authorization"] == "Bearer t3"
        assert service.grants == ["password", "refresh_token", "password"]
        await http.aclose()

    trio.run(main)


def test_a_401_renews_the_token_once_for_all_the_requests_that_used_it():
    service = FakeTokenService()
    auth, http = auth_with(service)

    async def main():
        async def fail_with_old_token(sent_before, delay):
            await auth.headers(http)  # this task sent the current token …
            await sent_before.wait()
            await trio.sleep(delay)
            auth.invalidate()  # … and got a 401 for it, maybe after another task renewed it
            return (await auth.headers(http))["Authorization"]

        first = await auth.headers(http)
        assert first == {"Authorization": "Bearer t1"}
        gate = trio.Event()
        results = []

        async def one(delay):
            results.append(await fail_with_old_token(gate, delay))

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(one, n * 0.02)
            await trio.sleep(0.05)
            gate.set()
        assert service.grants == ["password", "refresh_token"]
        assert set(results) == {"Bearer t2"}
        await http.aclose()

    trio.run(main)
