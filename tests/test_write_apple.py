"""Apple Business Connect writes, the provider driven directly (no FUSE) against a private
emulator over real HTTP: new assets in a brand, a new image for an existing asset under
If-Match, deletion, entry kinds, and the refusals (wrong place, intent, size, type, conflict)."""

from __future__ import annotations

import errno
import hashlib
import io
import random
from pathlib import Path

import httpx
import pytest
import trio
from conftest import emulator_fixture
from PIL import Image
from truth import download, md5

from assetfs.config import parse_config
from assetfs.errors import InvalidArgument, NotFound, NotPermitted, ProviderError, errno_of
from assetfs.providers import apple
from assetfs.providers.base import ASSET, CONTAINER, CONTENT, Entry, Upload
from assetfs.providers.registry import build_provider
from assetfs.stats import Stats

ACCOUNT = "apple"
ORG, BRAND = "9467895078742654934", "9467895078742654922"
SECOND_ORG, SECOND_BRAND = "9467895078742655101", "9467895078742655111"


emu = emulator_fixture("emu")  # this module's own: these tests add and delete assets


@pytest.fixture(scope="module")
def truth(emu):
    """A direct client of the emulated API (not through the provider)."""
    account = emu.account("apple")
    client = httpx.Client(base_url=account["base_url"] + "/api/v1", timeout=30)
    body = {
        "client_id": account["client_id"],
        "client_secret": account["client_secret"],
        "grant_type": "client_credentials",
        "scope": "business",
    }
    token = client.post("/oauth2/token", json=body).raise_for_status().json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    yield client
    client.close()


def with_provider(emu, fn, **settings):
    """Run `fn(provider)` under trio with a provider built from the emulator's config."""
    account = {**emu.account("apple"), **settings}

    async def main():
        provider = build_provider(ACCOUNT, parse_config({"accounts": {ACCOUNT: account}}), Stats(), 30)
        try:
            return await fn(provider)
        finally:
            await provider.close()

    return trio.run(main)


def spool(tmp_path: Path, name: str, data: bytes, mime: str = "image/png", **xattrs) -> Upload:
    path = tmp_path / f"spool-{random.getrandbits(32):08x}"
    path.write_bytes(data)
    return Upload(path, name, len(data), hashlib.md5(data).hexdigest(), mime, dict(xattrs))


def png(seed: int, size=(96, 64)) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg(seed: int, size=(80, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (seed % 256, 90, 200)).save(buf, "JPEG")
    return buf.getvalue()


def brand_entry(org=ORG, brand=BRAND) -> Entry:
    return apple._brand_entry(org, brand)


def listed(truth, org=ORG, brand=BRAND) -> list[dict]:
    out, after = [], None
    while True:
        body = (
            truth.get(
                f"/orgs/{org}/brands/{brand}/assets", params={"limit": 100, **({"after": after} if after else {})}
            )
            .raise_for_status()
            .json()
        )
        out += body["data"]
        after = body["pagination"].get("cursors", {}).get("after")
        if not after:
            return out


def uploads(emu) -> int:
    return sum(n for k, n in emu.requests().items() if k.startswith("POST ") and k.endswith("/images/upload"))


def stored_bytes(truth, org: str, asset_id: str) -> tuple[dict, dict, bytes]:
    asset = truth.get(f"/orgs/{org}/assets/{asset_id}").raise_for_status().json()
    image = truth.get(f"/orgs/{org}/images/{asset['brandAssetDetails']['imageId']}/metadata").raise_for_status().json()
    return asset, image, download(image["cdnUrl"])


# ---- kinds ---------------------------------------------------------------------------------------


def test_entries_carry_their_kinds(emu):
    async def walk(p):
        [org] = [o for o in await p.list_root() if o.key == f"org/{ORG}"]
        brands = await p.list_dir(org)
        [brand] = [b for b in brands if b.key == f"org/{ORG}/brand/{BRAND}"]
        assets = await p.list_dir(brand)
        supported = {op for op in ("create", "replace", "delete", "mkdir", "rmdir", "move") if p.supports(op)}
        return supported, org, brands, assets, await p.list_dir(assets[0])

    supported, org, brands, assets, files = with_provider(emu, walk)
    assert supported == {"create", "replace", "delete"}  # no folders, no renames
    assert org.kind == ""  # an organization holds brands, not assets
    assert brands and all(b.kind == CONTAINER for b in brands)
    assert assets and all(a.kind == ASSET for a in assets)
    kinds = {f.name: f.kind for f in files}
    assert kinds.pop("asset.json") == ""
    assert list(kinds.values()) == [CONTENT]


# ---- create --------------------------------------------------------------------------------------


def test_a_new_file_in_a_brand_becomes_an_image_and_an_asset(emu, truth, tmp_path):
    data = png(1)
    upload = spool(tmp_path, "storefront-night.png", data)
    before = {a["id"] for a in listed(truth)}

    async def create(p):
        entry = await p.create_asset(brand_entry(), upload)
        return entry, await p.list_dir(brand_entry()), await p.list_dir(entry)

    entry, brand_listing, files = with_provider(emu, create)
    assert entry.is_dir and entry.kind == ASSET and entry.name == "storefront-night"
    asset_id = entry.xattrs["user.assetfs.id"]
    assert asset_id not in before
    # the API has it: partnersAssetId from the name, the default intent, no alt texts, these bytes
    asset, image, content = stored_bytes(truth, ORG, asset_id)
    assert asset["brandId"] == BRAND and asset["state"] == "SUBMITTED"
    assert asset["brandAssetDetails"] == {
        "imageId": image["id"],
        "partnersAssetId": "storefront-night",
        "intent": "GALLERY",
        "altTexts": [],
    }
    assert md5(content) == upload.md5 and image["fileSize"] == len(data)
    assert image["filename"] == "storefront-night.png" and image["contentType"] == "image/png"
    # listed exactly as returned, and its directory holds the image under its file name
    assert [e for e in brand_listing if e.key == entry.key] == [entry]
    content_file = next(f for f in files if f.kind == CONTENT)
    assert content_file.name == "storefront-night.png" and content_file.size == len(data)
    assert md5(download(content_file.content.url)) == upload.md5


def test_the_intent_xattr_picks_the_intent_else_the_account_default(emu, truth, tmp_path):
    cover = spool(tmp_path, "cover.jpg", jpeg(3), "image/jpeg", **{"user.assetfs.intent": "cover_photo"})
    plain = spool(tmp_path, "logo.png", png(4))

    entry = with_provider(emu, lambda p: p.create_asset(brand_entry(SECOND_ORG, SECOND_BRAND), cover))
    asset = truth.get(f"/orgs/{SECOND_ORG}/assets/{entry.xattrs['user.assetfs.id']}").json()
    assert (
        asset["brandAssetDetails"]["intent"] == "COVER_PHOTO" and entry.xattrs["user.assetfs.intent"] == "COVER_PHOTO"
    )

    entry = with_provider(
        emu, lambda p: p.create_asset(brand_entry(SECOND_ORG, SECOND_BRAND), plain), default_intent="PLACECARD_LOGO"
    )
    asset = truth.get(f"/orgs/{SECOND_ORG}/assets/{entry.xattrs['user.assetfs.id']}").json()
    assert asset["brandAssetDetails"]["intent"] == "PLACECARD_LOGO"
    assert asset["brandAssetDetails"]["partnersAssetId"] == "logo"


def test_an_unknown_intent_is_refused_before_anything_is_uploaded(emu, truth, tmp_path):
    upload = spool(tmp_path, "banner.png", png(5), **{"user.assetfs.intent": "BANNER"})
    before, sent = len(listed(truth)), uploads(emu)
    with pytest.raises(InvalidArgument, match="BANNER.*PLACECARD_LOGO, COVER_PHOTO, GALLERY") as caught:
        with_provider(emu, lambda p: p.create_asset(brand_entry(), upload))
    assert errno_of(caught.value) == errno.EINVAL and uploads(emu) == sent and len(listed(truth)) == before


def test_an_organization_directory_is_not_a_place_for_files(emu, tmp_path):
    upload = spool(tmp_path, "stray.png", png(6))
    sent = uploads(emu)
    with pytest.raises(NotPermitted, match="brand directory") as caught:
        with_provider(emu, lambda p: p.create_asset(apple._org_entry(ORG), upload))
    assert errno_of(caught.value) == errno.EPERM and uploads(emu) == sent


def test_images_over_15_mb_are_refused_clearly(emu, truth, tmp_path, monkeypatch):
    data = png(7) + b"\0" * (15 * 1024 * 1024 + 1)  # a PNG head, 15 MB and a byte more
    upload = spool(tmp_path, "huge.png", data)
    before, sent = len(listed(truth)), uploads(emu)
    with pytest.raises(ProviderError, match="more than the 15 MB"):  # refused before sending
        with_provider(emu, lambda p: p.create_asset(brand_entry(), upload))
    assert uploads(emu) == sent
    monkeypatch.setattr(apple, "MAX_IMAGE_BYTES", 10**9)  # the API's own 413, streamed to it
    with pytest.raises(ProviderError, match=r"too large .*HTTP 413") as caught:
        with_provider(emu, lambda p: p.create_asset(brand_entry(), upload))
    assert errno_of(caught.value) == errno.EIO
    assert uploads(emu) == sent + 1 and len(listed(truth)) == before


def test_files_that_are_not_jpeg_png_or_heic_are_refused_clearly(emu, truth, tmp_path):
    upload = spool(tmp_path, "notes.txt", b"not an image at all\n" * 50, "text/plain")
    before = len(listed(truth))
    with pytest.raises(ProviderError, match=r"type \(Apple takes JPEG, PNG and HEIC images\) \(HTTP 415"):
        with_provider(emu, lambda p: p.create_asset(brand_entry(), upload))
    assert len(listed(truth)) == before


# ---- replace -------------------------------------------------------------------------------------


def test_writing_an_assets_image_puts_a_new_image_in_it_under_if_match(emu, truth, tmp_path):
    first, second = spool(tmp_path, "menu.png", png(8)), spool(tmp_path, "menu.png", png(9, (120, 90)))
    entry = with_provider(emu, lambda p: p.create_asset(brand_entry(), first))
    asset_id = entry.xattrs["user.assetfs.id"]
    # somebody adds an alt text through the API: the replacement keeps it
    asset = truth.get(f"/orgs/{ORG}/assets/{asset_id}").json()
    details = {**asset["brandAssetDetails"], "altTexts": [{"text": "The menu board", "locale": "en-US"}]}
    truth.put(
        f"/orgs/{ORG}/assets/{asset_id}",
        json={"brandAssetDetails": details},
        headers={"If-Match": f'"{asset["etag"]}"'},
    ).raise_for_status()
    old = truth.get(f"/orgs/{ORG}/assets/{asset_id}").json()

    async def replace(p):
        updated = await p.replace_content(entry, second)
        return updated, await p.list_dir(brand_entry()), await p.list_dir(updated)

    updated, brand_listing, files = with_provider(emu, replace)
    now, image, content = stored_bytes(truth, ORG, asset_id)
    assert md5(content) == second.md5 != first.md5
    assert now["etag"] != old["etag"] and now["brandAssetDetails"]["imageId"] != old["brandAssetDetails"]["imageId"]
    assert {k: v for k, v in now["brandAssetDetails"].items() if k != "imageId"} == {
        k: v for k, v in old["brandAssetDetails"].items() if k != "imageId"
    }
    assert updated.kind == ASSET and updated.name == "menu"
    assert updated.xattrs["user.assetfs.image_id"] == image["id"] and updated.xattrs["user.assetfs.etag"] == now["etag"]
    assert [e for e in brand_listing if e.xattrs.get("user.assetfs.id") == asset_id] == [updated]
    content_file = next(f for f in files if f.kind == CONTENT)
    assert content_file.size == second.size and md5(download(content_file.content.url)) == second.md5


def test_an_asset_changed_in_between_is_not_overwritten(emu, truth, tmp_path):
    first, second = spool(tmp_path, "door.png", png(10)), spool(tmp_path, "door.png", png(11))
    entry = with_provider(emu, lambda p: p.create_asset(brand_entry(), first))
    asset_id = entry.xattrs["user.assetfs.id"]
    theirs = [{"text": "Front door", "locale": "fr-FR"}]

    async def replace(p):
        read = p._read_asset

        async def read_then_someone_writes(org, aid):
            asset, etag = await read(org, aid)  # the provider's read …
            details = {**asset["brandAssetDetails"], "altTexts": theirs}
            truth.put(
                f"/orgs/{org}/assets/{aid}",
                json={"brandAssetDetails": details},  # … another writer's update
                headers={"If-Match": f'"{etag}"'},
            ).raise_for_status()
            p._read_asset = read
            return asset, etag

        p._read_asset = read_then_someone_writes
        return await p.replace_content(entry, second)

    with pytest.raises(ProviderError, match="changed on the provider since it was read.*not overwritten") as caught:
        with_provider(emu, replace)
    assert errno_of(caught.value) == errno.EIO
    asset, _, content = stored_bytes(truth, ORG, asset_id)
    assert asset["brandAssetDetails"]["altTexts"] == theirs and md5(content) == first.md5


def test_a_deleted_asset_gets_no_new_image(emu, truth, tmp_path):
    entry = with_provider(emu, lambda p: p.create_asset(brand_entry(), spool(tmp_path, "gone.png", png(12))))
    truth.delete(f"/orgs/{ORG}/assets/{entry.xattrs['user.assetfs.id']}").raise_for_status()
    with pytest.raises(NotFound, match="deleted"):
        with_provider(emu, lambda p: p.replace_content(entry, spool(tmp_path, "gone.png", png(13))))


# ---- delete --------------------------------------------------------------------------------------


def test_deleting_an_asset_directory_deletes_the_asset(emu, truth, tmp_path):
    entry = with_provider(emu, lambda p: p.create_asset(brand_entry(), spool(tmp_path, "old-sign.png", png(14))))
    asset_id = entry.xattrs["user.assetfs.id"]

    async def delete(p):
        await p.delete_asset(entry)
        await p.delete_asset(entry)  # already deleted (a retry whose first answer was lost): fine
        return await p.list_dir(brand_entry())

    brand_listing = with_provider(emu, delete)
    assert truth.get(f"/orgs/{ORG}/assets/{asset_id}").json()["state"] == "DELETED"
    assert asset_id not in {e.xattrs.get("user.assetfs.id") for e in brand_listing}
    assert asset_id not in {a["id"] for a in listed(truth)}


def test_deleting_an_unknown_asset_is_not_found_and_non_assets_are_refused(emu):
    ghost = Entry("ghost", f"org/{ORG}/brand/{BRAND}/image/x/asset/1", True, kind=ASSET)
    with pytest.raises(NotFound) as caught:
        with_provider(emu, lambda p: p.delete_asset(ghost))
    assert errno_of(caught.value) == errno.ENOENT
    with pytest.raises(NotPermitted):
        with_provider(emu, lambda p: p.delete_asset(brand_entry()))
