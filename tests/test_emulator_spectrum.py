"""The Spectrum Customizer emulator over real HTTP, checked against the documented example."""

from __future__ import annotations

import base64
import copy
import io
import ssl
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import seed_json
from PIL import Image

SEED = seed_json("spectrum_assets.json")
SEED_ORG = "7000000000000300322"
TEAM_ORG = "7000000000000300418"
UNLISTED_ORG = "7000000000000300999"
NOT_FOUND = {"message": "Unable to find organzation ID."}

# One TLS context for every client (building one per client costs 0.1 s), one client for
# the absolute CDN URLs.
TLS = ssl.create_default_context()
WEB = httpx.Client(timeout=30, verify=TLS)


@pytest.fixture(scope="module", autouse=True)
def _close_web():
    yield
    WEB.close()


def spectrum_client(account: dict) -> httpx.Client:
    return httpx.Client(
        base_url=account["base_url"], headers={"SPECTRUM_API_TOKEN": account["token"]}, timeout=60, verify=TLS
    )


def listing_path(org: str, client: str = "carhartt") -> str:
    return f"/api/assets/saved/client/{client}/organization/{org}"


@pytest.fixture
def api(emu):
    account = emu.account("spectrum")
    with spectrum_client(account) as c:
        yield c


def without_urls(asset: dict) -> dict:
    """An asset with the URLs the emulator rewrites blanked out, the rest untouched."""
    asset = copy.deepcopy(asset)
    asset["uploadedAssetUri"] = asset["metaData"]["Url"] = None
    for job in asset["productionJobs"] or []:
        job["specificationUri"] = job["dstUri"] = None
        for output in job["result"]["outputs"]:
            output["uri"] = None
    return asset


def walk(api: httpx.Client, org: str, size: int) -> tuple[list[dict], int]:
    """Every asset of an organization, page by page until the first short page; (assets, pages)."""
    assets, page = [], 1
    while True:
        r = api.get(listing_path(org), params={"page": page, "pageSize": size})
        assert r.status_code == 200
        contents = r.json()["contents"]
        assets += contents
        if len(contents) < size:
            return assets, page
        page += 1


def test_seed_organization_is_the_documented_example(api):
    r = api.get(listing_path(SEED_ORG))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == list(SEED)
    assert body["error"] is None and body["apiVersion"] == SEED["apiVersion"]
    assert isinstance(body["lastModification"], str) and body["lastModification"].endswith("+00:00")
    assert len(base64.b64decode(body["hash"])) == 16  # a base64 MD5, like the seed's
    assert [a["id"] for a in body["contents"]] == [1234, 8059, 8073]
    # Everything but the rewritten URLs is the documentation's data, key order included.
    assert [without_urls(a) for a in body["contents"]] == [without_urls(a) for a in SEED["contents"]]
    assert [list(a) for a in body["contents"]] == [list(a) for a in SEED["contents"]]


def test_urls_point_at_the_emulator_and_end_in_the_file_name(emu, api):
    asset = api.get(listing_path(SEED_ORG)).json()["contents"][0]
    seeded = SEED["contents"][0]
    assert asset["uploadedAssetUri"].startswith(emu.url + "/cdn/")
    assert urlsplit(asset["uploadedAssetUri"]).path.endswith("/b8873e1d-944f-490a-b0d8-0608f8039a37.png")
    assert asset["metaData"]["Url"] == emu.account("spectrum")["base_url"] + "/api/uploaded-assets/id/19695342"
    for job, seeded_job in zip(asset["productionJobs"], seeded["productionJobs"]):
        outputs = {o["assetFormat"]["extension"]: o["uri"] for o in job["result"]["outputs"]}
        for ext, uri in outputs.items():
            assert uri.startswith(emu.url + "/cdn/")
            assert urlsplit(uri).path.endswith(f"/{job['reference']}R1{ext.upper()}")
        assert job["specificationUri"] == outputs[".pdf"]
        assert job["dstUri"] == outputs[".dst"]
        assert urlsplit(job["dstUri"]).path.rsplit("/", 1)[1] == seeded_job["dstUri"].rsplit("/", 1)[1]


def test_uploads_and_production_outputs_are_real_files(api):
    asset = api.get(listing_path(SEED_ORG)).json()["contents"][0]
    upload = WEB.get(asset["uploadedAssetUri"])
    assert upload.status_code == 200 and upload.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(upload.content)).format == "PNG"
    magic = {".dst": b"LA:", ".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}
    for output in asset["productionJobs"][0]["result"]["outputs"]:
        r = WEB.get(output["uri"])
        assert r.status_code == 200
        assert r.headers["content-type"] == output["assetFormat"]["mimeType"]
        assert r.content.startswith(magic[output["assetFormat"]["extension"]])
        assert int(r.headers["content-length"]) == len(r.content)
    # Each asset's files are distinct: the two jobs' DSTs differ.
    dsts = [WEB.get(j["dstUri"]).content for j in asset["productionJobs"]]
    assert dsts[0] != dsts[1] and len(dsts[0]) == len(dsts[1])


def test_content_supports_ranges(api):
    uri = api.get(listing_path(SEED_ORG)).json()["contents"][1]["uploadedAssetUri"]
    whole = WEB.get(uri).content
    part = WEB.get(uri, headers={"Range": "bytes=10-29"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-29/{len(whole)}"
    assert part.content == whole[10:30]
    beyond = WEB.get(uri, headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(whole)}"
    assert WEB.get(uri.replace("sig=", "sig=0")).status_code == 403  # the signature is checked


def test_pagination_walks_to_the_first_short_page(api):
    everything = api.get(listing_path(TEAM_ORG)).json()["contents"]
    assert len(everything) == 6
    assets, pages = walk(api, TEAM_ORG, 4)
    assert pages == 2
    assert [a["id"] for a in assets] == [a["id"] for a in everything]
    exact, pages = walk(api, TEAM_ORG, 3)  # a full last page: the next one is empty
    assert pages == 3 and [a["id"] for a in exact] == [a["id"] for a in everything]
    assert api.get(listing_path(TEAM_ORG), params={"page": 2}).json()["contents"] == []


def test_generated_organizations_carry_awkward_names_and_jobs(api):
    assets = api.get(listing_path(TEAM_ORG)).json()["contents"]
    names = [a["userFacingFileName"] for a in assets]
    assert len(names) != len(set(names))  # a duplicate name
    assert any("/" in n for n in names)
    assert any(not a["active"] for a in assets)
    for asset in assets:
        assert list(asset) == list(SEED["contents"][0])
        assert asset["organizationIdentifier"] == TEAM_ORG
        assert asset["hasProductionJob"] == bool(asset["productionJobs"])
        for job in asset["productionJobs"] or []:
            assert list(job) == list(SEED["contents"][0]["productionJobs"][0])
            assert asset["spectrumAssetReference"] == asset["productionJobs"][0]["reference"]
            assert WEB.get(job["dstUri"]).content.startswith(b"LA:")
    jpeg = next(a for a in assets if a["uploadedAssetUri"].split("?")[0].endswith(".jpg"))
    assert WEB.get(jpeg["uploadedAssetUri"]).headers["content-type"] == "image/jpeg"


def test_a_kept_page_never_outlives_a_change(fresh_emulator):
    """Pages are kept as sent until an asset changes: the same page asked again right
    after a rename or a removal shows it."""
    emu = fresh_emulator()
    with spectrum_client(emu.account("spectrum")) as api:

        def names() -> dict[int, str]:
            r = api.get(listing_path(SEED_ORG), params={"page": 1, "pageSize": 50})
            assert r.status_code == 200
            return {a["id"]: a["userFacingFileName"] for a in r.json()["contents"]}

        before = names()
        assert names() == before and len(before) >= 2
        renamed, removed = list(before)[:2]
        emu.control.patch(
            f"/_emulator/spectrum/organization/{SEED_ORG}/assets/{renamed}",
            json={"userFacingFileName": "renamed elsewhere"},
        ).raise_for_status()
        assert names()[renamed] == "renamed elsewhere"
        emu.control.delete(f"/_emulator/spectrum/organization/{SEED_ORG}/assets/{removed}").raise_for_status()
        assert removed not in names()


def test_unlisted_organization_is_found_by_id(emu, api):
    assert UNLISTED_ORG not in emu.account("spectrum")["organizations"]
    r = api.get(listing_path(UNLISTED_ORG))
    assert r.status_code == 200
    assert {a["organizationIdentifier"] for a in r.json()["contents"]} == {UNLISTED_ORG}
    assert any(not a["userFacingFileName"].isascii() for a in r.json()["contents"])


def test_unknown_organization_or_client_is_404(api):
    for path in (listing_path("7000000000000000001"), listing_path(SEED_ORG, client="someone-else")):
        r = api.get(path)
        assert r.status_code == 404
        assert r.json() == NOT_FOUND


def test_bad_paging_is_400(api):
    for params in ({"page": 0}, {"page": "x"}, {"pageSize": 0}, {"pageSize": -5}):
        assert api.get(listing_path(SEED_ORG), params=params).status_code == 400


def test_token_is_required(emu):
    base = emu.account("spectrum")["base_url"]
    for headers in ({}, {"SPECTRUM_API_TOKEN": "wrong"}, {"Authorization": "Bearer spectrum-demo-token"}):
        r = WEB.get(base + listing_path(SEED_ORG), headers=headers)
        assert r.status_code == 401
        assert "message" in r.json()


def test_rate_limit_answers_403_with_retry_after(emu, api):
    emu.set_rate_limit("spectrum", 2, 60)
    try:
        assert api.get(listing_path(SEED_ORG)).status_code == 200
        assert api.get(listing_path(SEED_ORG)).status_code == 200
        r = api.get(listing_path(SEED_ORG))
        assert r.status_code == 403
        assert "Rate limit exceeded" in r.json()["message"]
        assert 1 <= int(r.headers["retry-after"]) <= 60
    finally:
        emu.set_rate_limit("spectrum", 0)
    assert api.get(listing_path(SEED_ORG)).status_code == 200


def test_account_config(emu):
    account = emu.account("spectrum")
    assert account["base_url"] == emu.url + "/spectrum"
    assert account["client"] == "carhartt"
    assert account["organizations"][0] == SEED_ORG and TEAM_ORG in account["organizations"]
    assert isinstance(account["token"], str)


def test_extra_assets_and_large_file(fresh_emulator):
    big = fresh_emulator("--assets", "10000", "--large-file", "2MiB")
    account = big.account("spectrum")
    with spectrum_client(account) as api:
        assets, pages = walk(api, SEED_ORG, 1000)
        assert len(assets) == 10003 and pages == 11
        assert len({a["id"] for a in assets}) == 10003
        assert [a["id"] for a in assets[:3]] == [1234, 8059, 8073]
        assert assets[3]["userFacingFileName"] == "generated 00001"
        assert assets[-1]["userFacingFileName"] == "generated 10000"
        last = WEB.get(assets[-1]["uploadedAssetUri"])
        assert last.status_code == 200 and last.content.startswith(b"\x89PNG")

        team = api.get(listing_path(TEAM_ORG), params={"pageSize": 10}).json()["contents"]
        large = next(a for a in team if a["userFacingFileName"] == "large")
        assert urlsplit(large["uploadedAssetUri"]).path.endswith("/large.bin")
        head = WEB.head(large["uploadedAssetUri"])
        assert head.status_code == 200 and int(head.headers["content-length"]) == 2 * 1024 * 1024

    # The same ids and names on another run.
    again = fresh_emulator("--assets", "5")
    account = again.account("spectrum")
    with spectrum_client(account) as api:
        rerun = api.get(listing_path(SEED_ORG)).json()["contents"]
    assert [without_urls(a) for a in rerun] == [without_urls(a) for a in assets[:8]]


def test_content_base_url_links_files_on_disk_for_a_web_server_to_serve(fresh_emulator, tmp_path):
    """Benchmark option: a file's URL names its file in the data dir under the given base (a
    web server over that dir serves it): the large file, and each generated one, written out
    the first time its URL is given."""
    emu = fresh_emulator("--large-file", "1MiB", "--content-base-url", "http://127.0.0.1:9/static/")
    account = emu.account("spectrum")
    with spectrum_client(account) as client:
        assets = client.get(listing_path(account["organizations"][1])).raise_for_status().json()["contents"]
    data = tmp_path / "emu0" / "emulator-data"
    large = next(a["uploadedAssetUri"] for a in assets if a["userFacingFileName"] == "large")
    base, stored, name = large.rsplit("/", 2)
    assert base == "http://127.0.0.1:9/static" and name == "large.bin"
    assert (data / stored).stat().st_size == 1 << 20
    others = [a["uploadedAssetUri"] for a in assets if a["userFacingFileName"] != "large"]
    assert others and all(url.startswith(base + "/") for url in others)
    pngs = [data / url.rsplit("/", 2)[1] for url in others if url.endswith(".png")]
    assert pngs and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
