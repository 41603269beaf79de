"""iQmetrix writes, driven on the provider object against the emulated API over real HTTP
(no FUSE): a new file in a collection becomes an asset (one multipart POST, md5 checked),
the collection remembers it across remounts, and what the API cannot do is refused."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import httpx
import pytest
import trio
from PIL import Image
from truth import download, md5

from assetfs.config import parse_config
from assetfs.errors import NotFound, NotPermitted, ProviderError
from assetfs.providers.base import ASSET, CONTAINER, CONTENT, Entry, Upload
from assetfs.providers.registry import build_provider
from assetfs.stats import Stats

ACCOUNT = "stores"
SEED_ID = "732130d2-b673-461c-812b-f2b614d6076e"


# -- helpers ------------------------------------------------------------------------------------


def provider(emu, memory: dict | None = None):
    config = parse_config({"accounts": {ACCOUNT: emu.account("iqmetrix")}})
    p = build_provider(ACCOUNT, config, Stats(), 30)
    if memory is not None:
        p.memory = memory
    return p


def api(emu) -> httpx.Client:
    """A client of the emulated API itself, signed in."""
    account = emu.account("iqmetrix")
    form = {
        "grant_type": "password",
        "username": account["username"],
        "password": account["password"],
        "client_id": account["client_id"],
        "client_secret": account["client_secret"],
    }
    token = (
        httpx.post(account["auth_url"] + "/oauth2/token", data=form, timeout=30)
        .raise_for_status()
        .json()["access_token"]
    )
    return httpx.Client(
        base_url=account["base_url"], headers={"Authorization": f"Bearer {token}"}, timeout=30, follow_redirects=True
    )


def api_asset(emu, asset_id: str) -> dict:
    """The asset as the emulated API itself describes it."""
    with api(emu) as c:
        return c.get(f"/assets/{asset_id}").raise_for_status().json()


def fetch(emu, url: str) -> bytes:
    """A content URL's bytes (/images/{id} wants the token, then redirects to the stored file)."""
    with api(emu) as c:
        return c.get(url).raise_for_status().content


def png_bytes(color: tuple[int, int, int], size=(97, 61)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def spool(tmp_path: Path, name: str, data: bytes, mime: str, md5_hex: str | None = None) -> Upload:
    path = tmp_path / f"spool-{len(list(tmp_path.glob('spool-*')))}"
    path.write_bytes(data)
    return Upload(path=path, name=name, size=len(data), md5=md5_hex or md5(data), mime=mime)


def collection(p, name: str) -> Entry:
    return next(e for e in trio.run(p.list_root) if e.name == name)


def run(p, fn, *args):
    """Call one provider coroutine under trio and close the provider's client after."""

    async def main():
        try:
            return await fn(*args)
        finally:
            await p.close()

    return trio.run(main)


def ids_of(entries: list[Entry]) -> list[str]:
    return [e.key.removeprefix("asset/") for e in entries]


# -- creating an asset ----------------------------------------------------------------------------


def test_new_file_in_a_collection_becomes_an_asset_listed_at_once(emu, tmp_path):
    data = png_bytes((200, 30, 90))
    upload = spool(tmp_path, "new-logo.png", data, "image/png")
    memory: dict = {}
    p = provider(emu, memory)
    logos = collection(p, "logos")

    async def main():
        try:
            created = await p.create_asset(logos, upload)
            listed = await p.list_dir(logos)
            return created, listed
        finally:
            await p.close()

    created, listed = trio.run(main)
    asset_id = created.key.removeprefix("asset/")

    # The API has it, with exactly the bytes written.
    truth = api_asset(emu, asset_id)
    assert truth["name"] == "new-logo.png"
    assert truth["md5Checksum"] == md5(data)
    assert (truth["width"], truth["height"]) == (97, 61)
    assert download(truth["href"]) == data

    # The entry is the asset directory as a listing builds it: content file and asset.json.
    assert created.kind == ASSET and created.is_dir and created.name == "new-logo.png"
    content, meta = created.children
    assert content.kind == CONTENT and content.name == "new-logo.png"
    assert content.content.md5 == md5(data) and content.content.mime == "image/png"
    assert fetch(emu, content.content.url) == data  # /images/{id} → 303 → the stored file
    assert meta.name == "asset.json" and meta.kind == ""
    assert b'"success"' not in meta.inline  # the asset object as GET /assets/{id} gives it

    # The collection remembers it and lists it after the configured assets, built the same way.
    assert memory == {"collection:logos": [asset_id]}
    configured = emu.account("iqmetrix")["collections"]["logos"]
    assert ids_of(listed) == [*configured, asset_id]
    again = listed[-1]
    assert (again.name, again.kind, again.xattrs) == (created.name, created.kind, created.xattrs)
    assert [(c.name, c.key, c.kind, c.content, c.inline) for c in again.children] == [
        (c.name, c.key, c.kind, c.content, c.inline) for c in created.children
    ]


def test_a_remembered_asset_survives_a_remount(emu, tmp_path):
    memory: dict = {}
    first = provider(emu, memory)
    banners = collection(first, "banners")
    data = png_bytes((10, 120, 250), (300, 100))
    created = run(first, first.create_asset, banners, spool(tmp_path, "autumn-banner.png", data, "image/png"))
    asset_id = created.key.removeprefix("asset/")

    # A new provider object (a remount) with the same memory lists it; one without does not.
    second = provider(emu, memory)
    listed = run(second, second.list_dir, collection(second, "banners"))
    assert asset_id in ids_of(listed)
    entry = next(e for e in listed if e.key == created.key)
    assert entry.name == "autumn-banner.png" and entry.kind == ASSET
    assert fetch(emu, entry.children[0].content.url) == data

    forgetful = provider(emu, {})
    assert asset_id not in ids_of(run(forgetful, forgetful.list_dir, collection(forgetful, "banners")))
    # Other collections are unaffected.
    third = provider(emu, memory)
    assert asset_id not in ids_of(run(third, third.list_dir, collection(third, "logos")))


def test_memory_is_assigned_whole_and_keeps_ids_once(emu, tmp_path):
    class Store(dict):
        """Records assignments, as a disk store saves on assignment only."""

        assigned: list

        def __setitem__(self, key, value):
            self.assigned.append((key, list(value)))
            super().__setitem__(key, value)

    memory = Store()
    memory.assigned = []
    p = provider(emu, memory)
    media = collection(p, "media")
    one = spool(tmp_path, "one.png", png_bytes((1, 2, 3)), "image/png")
    two = spool(tmp_path, "two.png", png_bytes((4, 5, 6)), "image/png")

    async def main():
        try:
            a = await p.create_asset(media, one)
            before = memory["collection:media"]
            b = await p.create_asset(media, two)
            return a, before, b, await p.list_dir(media)
        finally:
            await p.close()

    a, before, b, listed = trio.run(main)
    a_id, b_id = a.key.removeprefix("asset/"), b.key.removeprefix("asset/")
    assert memory.assigned == [("collection:media", [a_id]), ("collection:media", [a_id, b_id])]
    assert before == [a_id]  # the list handed out earlier was not changed in place
    # A remembered GUID that is also configured (or remembered twice) is listed once.
    memory["collection:media"] = [a_id, b_id, a_id.upper(), SEED_ID]
    config = parse_config({"accounts": {ACCOUNT: {**emu.account("iqmetrix"), "collections": {"media": [SEED_ID]}}}})
    p2 = build_provider(ACCOUNT, config, Stats(), 30)
    p2.memory = memory
    assert ids_of(run(p2, p2.list_dir, collection(p2, "media"))) == [SEED_ID, a_id, b_id]
    assert ids_of(listed)[-2:] == [a_id, b_id]


def test_a_non_image_file_streams_up_and_reads_back_from_its_href(emu, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    upload = spool(tmp_path, "walkthrough.mp4", data, "video/mp4")
    p = provider(emu, {})
    created = run(p, p.create_asset, collection(p, "media"), upload)
    truth = api_asset(emu, created.key.removeprefix("asset/"))
    assert truth["mimeType"] == "video/mp4" and truth["md5Checksum"] == hashlib.md5(data).hexdigest()
    content = created.children[0]
    assert content.kind == CONTENT and content.name == "walkthrough.mp4"
    assert content.content.url == truth["href"]
    assert fetch(emu, content.content.url) == data


def test_one_post_with_one_file_part(emu, tmp_path):
    emu.reset_requests()
    p = provider(emu, {})
    run(p, p.create_asset, collection(p, "logos"), spool(tmp_path, "x.png", png_bytes((9, 9, 9)), "image/png"))
    assert emu.requests().get("POST /iqmetrix/assets") == 1


# -- failures and refusals ------------------------------------------------------------------------


def test_an_md5_mismatch_is_an_error_and_nothing_is_remembered(emu, tmp_path):
    data = png_bytes((0, 255, 0))
    wrong = md5(data + b"not what was written")
    memory: dict = {}
    p = provider(emu, memory)
    logos = collection(p, "logos")
    with pytest.raises(ProviderError, match="stored different bytes") as caught:
        run(p, p.create_asset, logos, spool(tmp_path, "bad.png", data, "image/png", wrong))
    assert caught.value.errno == errno.EIO
    assert memory == {}
    p2 = provider(emu, memory)
    assert ids_of(run(p2, p2.list_dir, collection(p2, "logos"))) == emu.account("iqmetrix")["collections"]["logos"]


def test_a_failed_upload_is_not_retried_blindly(emu, tmp_path):
    emu.reset_requests()
    emu.set_faults(fail_status=500, fail_count=1, only_prefix="/iqmetrix/assets")
    memory: dict = {}
    p = provider(emu, memory)
    logos = collection(p, "logos")
    with pytest.raises(ProviderError, match="HTTP 500"):
        run(p, p.create_asset, logos, spool(tmp_path, "y.png", png_bytes((1, 1, 1)), "image/png"))
    assert emu.requests().get("POST /iqmetrix/assets") == 1  # a retry could make a second asset
    assert memory == {}


def test_a_rate_limited_upload_waits_and_goes_through_once(fresh_emulator, tmp_path):
    emu = fresh_emulator()
    p = provider(emu, {})
    logos = collection(p, "logos")
    emu.set_rate_limit("iqmetrix", 1, window=2)
    api_asset(emu, SEED_ID)  # takes the one request the window allows
    emu.reset_requests()
    data = png_bytes((7, 77, 177))
    created = run(p, p.create_asset, logos, spool(tmp_path, "later.png", data, "image/png"))
    assert emu.requests().get("POST /iqmetrix/assets") == 2  # one 429, one 201
    emu.set_rate_limit("iqmetrix", 0)
    assert api_asset(emu, created.key.removeprefix("asset/"))["md5Checksum"] == md5(data)


def test_replacing_or_deleting_an_asset_is_refused_with_the_reason(emu, tmp_path):
    p = provider(emu, {})
    logos = collection(p, "logos")
    asset = run(p, p.lookup, logos, SEED_ID)
    upload = spool(tmp_path, "iqmetrix.jpg", b"new bytes", "image/jpeg")
    for call in (lambda: p.replace_content(asset, upload), lambda: p.delete_asset(asset)):
        with pytest.raises(NotPermitted, match="the Asset Media Service API has no update or delete") as caught:
            trio.run(call)
        assert caught.value.errno == errno.EPERM
    assert api_asset(emu, SEED_ID)["md5Checksum"] == asset.children[0].content.md5  # untouched
    with pytest.raises(NotPermitted) as caught:
        trio.run(p.make_container, Entry(ACCOUNT, "", True), "new-collection")
    assert caught.value.errno == errno.EPERM


def test_files_go_only_in_a_configured_collection(emu, tmp_path):
    emu.reset_requests()
    p = provider(emu, {})
    logos = collection(p, "logos")
    asset = run(p, p.lookup, logos, SEED_ID)
    upload = spool(tmp_path, "z.png", png_bytes((3, 3, 3)), "image/png")
    with pytest.raises(NotPermitted) as caught:
        trio.run(p.create_asset, asset, upload)
    assert caught.value.errno == errno.EPERM
    with pytest.raises(NotFound):
        trio.run(p.create_asset, Entry("gone", "collection/gone", True, kind=CONTAINER), upload)
    assert "POST /iqmetrix/assets" not in emu.requests()


# -- kinds on the read path -----------------------------------------------------------------------


def test_entries_carry_their_kinds(emu):
    p = provider(emu, {})
    roots = trio.run(p.list_root)
    assert roots and all(e.kind == CONTAINER for e in roots)

    async def main():
        try:
            return await p.list_dir(next(e for e in roots if e.name == "media")), await p.lookup(
                next(e for e in roots if e.name == "logos"), SEED_ID
            )
        finally:
            await p.close()

    listed, looked_up = trio.run(main)
    for asset in [*listed, looked_up]:
        assert asset.kind == ASSET
        kinds = {c.name: c.kind for c in asset.children}
        assert kinds.pop("asset.json") == ""
        assert list(kinds.values()) == [CONTENT]
