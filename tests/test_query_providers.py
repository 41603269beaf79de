"""Queries through each provider against the emulator over HTTP, without a kernel: what a query
answers equals what the emulator's own data says should match, computed here from that data
(straight from its API) with plain Python, not with the code under test."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import trio
from truth import spectrum_assets

from assetfs.config import parse_config
from assetfs.providers.base import CONTAINER, Entry
from assetfs.providers.registry import build_provider
from assetfs.query import QueryError, parse
from assetfs.stats import Stats

APPLE_ORG, APPLE_BRAND = "9467895078742654934", "9467895078742654921"
SPECTRUM_ORG = "7000000000000300418"


def when(text: str) -> datetime:
    found = datetime.fromisoformat(text)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


class Spy:
    """The GET requests a provider sends (path and params), recorded on its own HTTP client."""

    def __init__(self, provider):
        self.sent: list[tuple[str, dict]] = []
        real = provider.http.json

        async def json(method, path, **kwargs):
            self.sent.append((path, dict(kwargs.get("params") or {})))
            return await real(method, path, **kwargs)

        provider.http.json = json


def run_query(emulator, account: str, container: Entry, expression: str, spy: list | None = None) -> list[Entry]:
    config = parse_config({"accounts": {account: emulator.config["accounts"][account]}})

    async def main():
        provider = build_provider(account, config, Stats(), 30)
        if spy is not None:
            spy.append(Spy(provider))
        try:
            return await provider.query(container, parse(expression))
        finally:
            await provider.close()

    return trio.run(main)


def ids(entries: list[Entry]) -> set[str]:
    return {e.xattrs["user.assetfs.id"] for e in entries}


def median(values: list[str]) -> str:
    return sorted(values)[len(values) // 2]


# ---- Spectrum: everything on the listing --------------------------------------------------------


@pytest.fixture(scope="module")
def spectrum(emulator):
    return spectrum_assets(emulator.config["accounts"]["carhartt"], SPECTRUM_ORG)


def spectrum_name(a: dict) -> str:
    return a["userFacingFileName"] if (a.get("userFacingFileName") or "").strip() else str(a["id"])


SPECTRUM_CASES = [
    ("active==true", lambda a, m: a["active"] is True),
    ("active==false", lambda a, m: a["active"] is False),
    ("createdDate=gt={mid}", lambda a, m: when(a["createdDate"]) > when(m)),
    ("createdDate=le={mid};active==true", lambda a, m: when(a["createdDate"]) <= when(m) and a["active"] is True),
    ("productionJobs.status==*", lambda a, m: bool(a.get("productionJobs"))),
    ("productionJobs.status!=*", lambda a, m: not a.get("productionJobs")),
    ("name==team*", lambda a, m: spectrum_name(a).startswith("team")),
    ("LOGO", lambda a, m: "logo" in spectrum_name(a).lower()),
    ("id=ge={mid_id}", lambda a, m: a["id"] >= int(m)),
]


@pytest.mark.parametrize("expression, expected", SPECTRUM_CASES, ids=[c[0] for c in SPECTRUM_CASES])
def test_spectrum_queries_match_the_data(emulator, spectrum, expression, expected):
    mid = (
        median([a["createdDate"] for a in spectrum])
        if "{mid}" in expression
        else str(median([str(a["id"]) for a in spectrum]))
    )
    text = expression.replace("{mid}", mid).replace("{mid_id}", mid)
    org = Entry(SPECTRUM_ORG, f"org/{SPECTRUM_ORG}", True, kind=CONTAINER)
    want = {str(a["id"]) for a in spectrum if expected(a, mid)}
    assert 0 < len(want) < len(spectrum)
    assert ids(run_query(emulator, "carhartt", org, text)) == want


# ---- iQmetrix: everything on the listing --------------------------------------------------------


@pytest.fixture(scope="module")
def iqmetrix(emulator):
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
    with httpx.Client(base_url=account["base_url"], headers={"Authorization": f"Bearer {token['access_token']}"}) as c:
        return {
            name: [c.get(f"/assets/{i}").raise_for_status().json() for i in guids]
            for name, guids in account["collections"].items()
        }


IQMETRIX_CASES = [
    ("mimeType==image/*", lambda a: a["mimeType"].startswith("image/")),
    ("mimeType!=image/*", lambda a: not a["mimeType"].startswith("image/")),
    ("width=gt=300", lambda a: a.get("width") is not None and a["width"] > 300),
    ("width=le=300,mimeType==video/mp4", lambda a: (a.get("width") or 10**9) <= 300 or a["mimeType"] == "video/mp4"),
    ("name==*.png", lambda a: a["name"].endswith(".png")),
    ("JPG", lambda a: "jpg" in a["name"].lower()),
]


@pytest.mark.parametrize("expression, expected", IQMETRIX_CASES, ids=[c[0] for c in IQMETRIX_CASES])
def test_iqmetrix_queries_match_the_data(emulator, iqmetrix, expression, expected):
    everything = [a for assets in iqmetrix.values() for a in assets]
    assert 0 < sum(map(expected, everything)) < len(everything)
    for collection, assets in iqmetrix.items():
        entry = Entry(collection, f"collection/{collection}", True, kind=CONTAINER)
        assert ids(run_query(emulator, "stores", entry, expression)) == {a["id"] for a in assets if expected(a)}


# ---- Apple: ql where it can ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def apple(emulator):
    """Every asset of the brand, DELETED ones too (the API shows those to a state filter)."""
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
        found = []
        for ql in ("", "state==DELETED"):
            found += (
                c.get(
                    f"/orgs/{APPLE_ORG}/brands/{APPLE_BRAND}/assets",
                    params={"limit": 100, **({"ql": ql} if ql else {})},
                )
                .raise_for_status()
                .json()["data"]
            )
        return found


def details(a: dict) -> dict:
    return a["brandAssetDetails"]


def listed(a: dict) -> bool:
    return a["state"] != "DELETED"


APPLE_CASES = [
    ("brandAssetDetails.intent==COVER_PHOTO", True, lambda a, m: listed(a) and details(a)["intent"] == "COVER_PHOTO"),
    ("state==PUBLISHED", True, lambda a, m: a["state"] == "PUBLISHED"),
    ("state==DELETED", True, lambda a, m: a["state"] == "DELETED"),
    (
        "createdDate=gt={mid};brandAssetDetails.intent!=GALLERY",
        True,
        lambda a, m: listed(a) and when(a["createdDate"]) > when(m) and details(a)["intent"] != "GALLERY",
    ),
    (
        "brandAssetDetails.intent==COVER_PHOTO,brandAssetDetails.intent==PLACECARD_LOGO",
        True,
        lambda a, m: listed(a) and details(a)["intent"] in ("COVER_PHOTO", "PLACECARD_LOGO"),
    ),
    (
        "state==PUBLISHED;brandAssetDetails.partnersAssetId==asset_*",
        True,
        lambda a, m: a["state"] == "PUBLISHED" and details(a).get("partnersAssetId", "").startswith("asset_"),
    ),
    (
        "brandAssetDetails.altTexts.text==gallery*",
        False,
        lambda a, m: listed(a) and any(t["text"].startswith("gallery") for t in details(a).get("altTexts", [])),
    ),
]


@pytest.mark.parametrize("expression, sends_ql, expected", APPLE_CASES, ids=[c[0] for c in APPLE_CASES])
def test_apple_queries_match_the_data(emulator, apple, expression, sends_ql, expected):
    mid = median([a["createdDate"] for a in apple])
    brand = Entry(APPLE_BRAND, f"org/{APPLE_ORG}/brand/{APPLE_BRAND}", True, kind=CONTAINER)
    want = {a["id"] for a in apple if expected(a, mid)}
    assert 0 < len(want) < len(apple)
    spies: list[Spy] = []
    assert ids(run_query(emulator, "apple", brand, expression.replace("{mid}", mid), spies)) == want
    sent = [params.get("ql") for path, params in spies[0].sent if path.endswith("/assets")]
    assert sent
    assert all(sent) if sends_ql else not any(sent)


def test_apple_sends_a_day_as_a_range(emulator, apple):
    day = apple[0]["createdDate"][:10]
    brand = Entry(APPLE_BRAND, f"org/{APPLE_ORG}/brand/{APPLE_BRAND}", True, kind=CONTAINER)
    spies: list[Spy] = []
    found = run_query(emulator, "apple", brand, f"createdDate=={day}", spies)
    assert ids(found) == {a["id"] for a in apple if listed(a) and a["createdDate"].startswith(day)} != set()
    next_day = datetime.fromtimestamp(when(day).timestamp() + 86400, UTC).date().isoformat()
    assert spies[0].sent[0][1]["ql"] == f"createdDate=ge={day}T00:00:00Z;createdDate=lt={next_day}T00:00:00Z"


def test_apple_queries_apply_to_brands_only(emulator):
    org = Entry(APPLE_ORG, f"org/{APPLE_ORG}", True)
    with pytest.raises(QueryError, match="apply to directories of assets"):
        run_query(emulator, "apple", org, "state==PUBLISHED")


# ---- Mudstack: its search route where it can ----------------------------------------------------


@pytest.fixture(scope="module")
def mudstack(emulator):
    account = emulator.config["accounts"]["studio"]
    creds = {k: account[k] for k in ("account_id", "key", "secret")}
    with httpx.Client(base_url=account["base_url"], timeout=30) as c:
        token = c.post("/auth/token", json=creds).raise_for_status().json()["token"]
        headers = {"Authorization": f"Bearer {token}", "x-account-id": account["account_id"]}
        workspaces = c.get("/workspaces", headers=headers).json()["workspaces"]
        ws = next(w["id"] for w in workspaces if w["name"] == "Game Art")
        found = c.get(
            "/workspaces/assets/search",
            headers={**headers, "x-workspace-id": ws},
            params={"includeSubfolders": "true", "file_location": "/", "limit": 1000},
        ).json()["assets"]
    return ws, [a for a in found if not a["file_location"].startswith("/bulk/")]


def statuses(a: dict) -> set[str]:
    named = a.get("assetStatus") or {}
    return {s.lower() for s in (named.get("name"), named.get("id")) if s} | {
        r["review"]["status"].lower() for r in a.get("reviewRequests") or []
    }


MUDSTACK_CASES = [
    ("knight", {"query": "knight"}, lambda a: "knight" in (a["name"] + " " + a["file_name"]).lower()),
    ("text==PNG", {"query": "PNG"}, lambda a: "png" in (a["name"] + " " + a["file_name"]).lower()),
    (
        "library==characters",
        {"library": "characters"},
        lambda a: any(lib["name"].lower() == "characters" for lib in a["libraries"]),
    ),
    ("status==Approved", {"status": "Approved"}, lambda a: "approved" in statuses(a)),
    (
        "library==characters;text==a",
        {"library": "characters", "query": "a"},
        lambda a: (
            any(lib["name"].lower() == "characters" for lib in a["libraries"])
            and "a" in (a["name"] + a["file_name"]).lower()
        ),
    ),
    ("currentVersion.version_number=ge=2", {}, lambda a: a["currentVersion"]["version_number"] >= 2),
    (
        "tags.name==hero,file_name==*.pdf",
        {},
        lambda a: any(t["name"] == "hero" for t in a["tags"]) or a["file_name"].endswith(".pdf"),
    ),
]


@pytest.mark.parametrize("expression, params, expected", MUDSTACK_CASES, ids=[c[0] for c in MUDSTACK_CASES])
def test_mudstack_queries_match_the_data(emulator, mudstack, expression, params, expected):
    ws, assets = mudstack
    folders = sorted({a["file_location"] for a in assets})
    assert sum(map(expected, assets)) > 0
    for folder in folders:
        key = f"ws/{ws}" if folder == "/" else f"ws/{ws}/folder/{folder.strip('/')}"
        spies: list[Spy] = []
        found = run_query(emulator, "studio", Entry(folder, key, True, kind=CONTAINER), expression, spies)
        active = [a for a in assets if a["file_location"] == folder and a["isActive"]]
        assert ids(found) == {a["id"] for a in active if expected(a)}, folder
        searches = [p for path, p in spies[0].sent if path.endswith("assets/search")]
        assert all({**params, "file_location": folder}.items() <= p.items() for p in searches)


# ---- errors come before any request ---------------------------------------------------------------


@pytest.mark.parametrize(
    "account, key, expression, message",
    [
        (
            "apple",
            f"org/{APPLE_ORG}/brand/{APPLE_BRAND}",
            "brandAssetDetails.intnet==COVER_PHOTO",
            "did you mean brandAssetDetails.intent",
        ),
        ("apple", f"org/{APPLE_ORG}/brand/{APPLE_BRAND}", "createdDate=gt=last week", "is not a date"),
        ("carhartt", f"org/{SPECTRUM_ORG}", "name=gt=a", "=gt= does not apply to text"),
        ("studio", "ws/x", "library=lt=3", "does not apply to text"),
        ("stores", "collection/logos", "size==3", "unknown field 'size'"),
    ],
)
def test_bad_queries_fail_before_any_request(emulator, account, key, expression, message):
    spies: list[Spy] = []
    with pytest.raises(QueryError, match=message):
        run_query(emulator, account, Entry("c", key, True, kind=CONTAINER), expression, spies)
    assert spies[0].sent == []
