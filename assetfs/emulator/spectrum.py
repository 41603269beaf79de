"""Spectrum Customizer: the assets saved for an organization, behind one read-only route.

The documentation's example (organization 7000000000000300322 of client "carhartt", assets
1234, 8059 and 8073) is loaded verbatim from seeds/spectrum_assets.json; only its URLs are
rewritten, per request, to the emulator's CDN so that every upload and every embroidery
output (.DST/.PNG/.PDF) can really be downloaded. Two more organizations carry generated
assets with the awkward names a mount must cope with (duplicates, a slash, non-ASCII).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import renditions, samples
from .app import SAMPLE_EPOCH, origin
from .provider import ProviderEmulator

SEED_FILE = Path(__file__).parent / "seeds" / "spectrum_assets.json"

CLIENT = "carhartt"
TOKEN = "spectrum-demo-token"
SEED_ORG = "7000000000000300322"  # the documentation's organization
TEAM_ORG = "7000000000000300418"  # generated, listed in the config
UNLISTED_ORG = "7000000000000300999"  # generated, left out of the config: found by lookup only
TOKEN_HEADER = "SPECTRUM_API_TOKEN"

NOT_FOUND = {"message": "Unable to find organzation ID."}  # (sic), as documented
# inferred: the bodies of 401, 400 and the rate-limit 403 are not documented; these are the
# wording of the ASP.NET stack Spectrum runs on, plus a plain rate-limit message.
UNAUTHORIZED = {"message": "Authorization has been denied for this request."}
BAD_REQUEST = {"message": "The request is invalid."}

# Generated organizations: (userFacingFileName, upload extension, has a production job, active).
TEAM_ASSETS = [
    ("team logo", ".png", True, True),
    ("team logo", ".jpg", False, True),  # userFacingFileName is not unique
    ("front/back logo", ".png", True, True),  # names are data, not paths
    ("Crew Neck Mascot", ".jpg", False, True),
    ("safety orange hi-vis", ".png", True, True),
    ("retired 2019 logo", ".png", False, False),  # an inactive asset is still listed
]
UNLISTED_ASSETS = [
    ("lookup demo", ".png", True, True),
    ("Café menu board", ".jpg", False, True),
]


@dataclass(frozen=True)
class Cdn:
    """A file on the emulator's CDN route; made an absolute, signed URL per request."""

    key: str
    name: str


@dataclass(frozen=True)
class ApiUrl:
    """A path on this provider's own host; made absolute per request."""

    path: str


@dataclass
class Organization:
    id: str
    client: str
    account_reference: str
    assets: list[dict] = field(default_factory=list)  # the seeded ones
    extra: int = 0  # --assets N: generated ones after them, built when listed
    extra_first_id: int = 0
    last_modification: str = ""

    @property
    def count(self) -> int:
        return len(self.assets) + self.extra


class SpectrumEmulator(ProviderEmulator):
    name = "spectrum"
    prefix = "/spectrum"
    account_name = "carhartt"

    def __init__(self, emu):
        super().__init__(emu)
        seed = json.loads(SEED_FILE.read_text())
        self.api_version = seed["apiVersion"]
        self.job_template = copy.deepcopy(seed["contents"][0]["productionJobs"][0])
        self.organizations: dict[str, Organization] = {}
        # Pages kept as sent (while content URLs do not expire) until an asset changes, so a
        # listing is served at the speed of the client reading it, as a web server sends a file.
        self._pages: dict[tuple, bytes | memoryview] = {}

        orgs = [
            self._seed_organization(seed["contents"]),
            self._generated_organization(TEAM_ORG, "60533117", 9100, TEAM_ASSETS),
            self._generated_organization(UNLISTED_ORG, "60540002", 9200, UNLISTED_ASSETS),
        ]
        if emu.large_file_size > 0:
            self._add_large(orgs[1])
        for n, org in enumerate(orgs):
            org.extra, org.extra_first_id = emu.extra_assets, (n + 1) * 1_000_000
            org.last_modification = _latest(org.assets, SAMPLE_EPOCH + org.extra - 1 if org.extra else None)
            self.organizations[org.id] = org

    # -- sample data -------------------------------------------------------------------

    def _seed_organization(self, contents: list[dict]) -> Organization:
        """The documented example, its CDN and blob-storage URLs pointed at the emulator."""
        org = Organization(SEED_ORG, CLIENT, contents[0]["clientAccountReference"])
        for n, asset in enumerate(contents):
            upload_name = asset["uploadedAssetUri"].rsplit("/", 1)[-1]
            mtime = _timestamp(asset["createdDate"])
            asset["uploadedAssetUri"] = self._upload(asset["uploadedAssetId"], upload_name, n, mtime)
            # inferred: metaData.Url names a route that is not documented; it points at this
            # host like the real one does, but the emulator does not serve it.
            asset["metaData"]["Url"] = ApiUrl(f"/api/uploaded-assets/id/{asset['uploadedAssetId']}")
            for job in asset["productionJobs"] or []:
                self._attach_outputs(job, _timestamp(job["lastModification"]))
            org.assets.append(asset)
        return org

    def _generated_organization(self, org_id: str, account: str, first_id: int, specs: list) -> Organization:
        org = Organization(org_id, CLIENT, account)
        for n, (name, ext, has_job, active) in enumerate(specs):
            asset_id = first_id + n
            when = SAMPLE_EPOCH - 86400 * (len(specs) - n)
            jobs = [self._job(org, asset_id, n + 1, when)] if has_job else None
            org.assets.append(self._asset(org, asset_id, name, ext, n, when, jobs, active))
        return org

    def _extra_asset(self, org: Organization, i: int) -> dict:
        """`--assets N`: the i-th of N small PNG uploads, the same id and name on every run.
        Built when a page shows it (its file too), so 10,000 of them cost nothing at start."""
        when = SAMPLE_EPOCH + i
        return self._asset(
            org, org.extra_first_id + i, f"generated {i + 1:05d}", ".png", i, when, None, True, size=(96, 96)
        )

    def _add_large(self, org: Organization) -> None:
        """`--large-file SIZE`: one big upload (shared with the other providers, made once)."""
        blob = self.emu.blobs.get("large/sample") or self.emu.blobs.add_large("large/sample", self.emu.large_file_size)
        org.assets.append(
            self._asset(org, 9999, "large", "", 0, SAMPLE_EPOCH, None, True, upload=Cdn(blob.key, "large.bin"))
        )

    def _asset(
        self,
        org: Organization,
        asset_id: int,
        name: str,
        ext: str,
        variant: int,
        when: float,
        jobs: list | None,
        active: bool,
        size: tuple[int, int] = (320, 240),
        upload: Cdn | None = None,
    ) -> dict:
        """A saved asset in the documented shape (the seed's keys, in the seed's order)."""
        uploaded_id = 50_000_000 + asset_id
        if upload is None:
            prefix = "" if variant % 2 else "Square_"
            upload_name = f"{prefix}{uuid.uuid5(uuid.NAMESPACE_URL, f'spectrum/{org.id}/{asset_id}')}{ext}"
            upload = self._upload(uploaded_id, upload_name, variant, when, size)
        stamp = _format(when)
        return {
            "id": asset_id,
            "uploadedAssetId": uploaded_id,
            "uploadedAssetUri": upload,
            "metaData": {"Url": ApiUrl(f"/api/uploaded-assets/id/{uploaded_id}")},
            "spectrumAssetReference": jobs[0]["reference"] if jobs else None,
            "clientAccountReference": org.account_reference,
            "organizationIdentifier": org.id,
            "userFacingFileName": name,
            "productionJobs": jobs,
            "hasProductionJob": bool(jobs),
            "clientHandle": org.client,
            "active": active,
            "createdDate": stamp,
            "lastModification": stamp,
        }

    def _job(self, org: Organization, asset_id: int, n: int, when: float) -> dict:
        """An embroidery job shaped like the seed's, with its own reference and outputs."""
        reference = f"CCG{org.account_reference}{n:03d}"
        stamp = _format(when)
        job = copy.deepcopy(self.job_template)
        job.update(
            id=30_000 + asset_id,
            uploadedAssetId=50_000_000 + asset_id,
            providerReference=f"MS-{hashlib.sha1(reference.encode()).hexdigest()[:8].upper()}",
            reference=reference,
            clientReference=reference,
            productColor=("Navy", "Black", "Brown", "Gravel")[n % 4],
            createdDate=stamp,
            lastModification=stamp,
        )
        job["result"].update(id=40_000 + asset_id, receivedDate=stamp, lastModification=stamp)
        self._attach_outputs(job, when)
        return job

    def _attach_outputs(self, job: dict, mtime: float) -> None:
        """Give each output of a job a file on the CDN (<reference>R1.DST/.PNG/.PDF)."""
        reference = job["reference"]
        uris = {}
        for output in job["result"]["outputs"]:
            ext = output["assetFormat"]["extension"]
            key = f"spectrum/jobs/{job['id']}{ext}"
            self._add_blob(key, _output_sample(ext, job["id"] % 8), reference, mtime)
            output["uri"] = uris[ext] = Cdn(key, f"{reference}R1{ext.upper()}")
        job["specificationUri"] = uris[".pdf"]
        job["dstUri"] = uris[".dst"]

    def _upload(self, uploaded_id: int, name: str, variant: int, mtime: float, size=(320, 240)) -> Cdn:
        """The original upload of an asset: a real PNG or JPEG, named as on Spectrum's CDN."""
        maker = samples.jpeg if name.lower().endswith((".jpg", ".jpeg")) else samples.png
        key = f"spectrum/uploads/{uploaded_id}"
        if self.emu.blobs.get(key) is None:
            self._add_blob(key, maker(variant % 8, size), str(uploaded_id), mtime)
        return Cdn(key, name)

    def _add_blob(self, key: str, sample: samples.Sample, tag: str, mtime: float) -> None:
        self.emu.blobs.add_generated(key, sample.size, sample.content_type, lambda: sample.build(tag), mtime)

    # -- HTTP --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/api/assets/saved/client/{clientHandle}/organization/{organizationId}",
                self.list_assets,
                methods=["GET"],
            )
        ]

    def cdn_blob(self, blob, query):
        """Spectrum's image parameters (`width`/`w`, `height`/`h`, `mode`) on its CDN route:
        documented for its rendering routes, *inferred* here (PROVIDERS.md §1)."""
        width, height = _pixels(query, "width", "w"), _pixels(query, "height", "h")
        if not blob.key.startswith("spectrum/") or (width is None and height is None):
            return blob
        return renditions.rendition(self.emu.blobs, blob, width, height, query.get("mode") or "max")

    def control_routes(self) -> list[BaseRoute]:
        return [
            Route("/organization/{organizationId}/assets/{assetId}", self.change_asset, methods=["PATCH", "DELETE"])
        ]

    async def change_asset(self, request: Request) -> Response:
        """Test-only: what the Customizer's own users do (the API documents no write):
        PATCH `{"userFacingFileName": …}` renames a seeded asset, DELETE removes it. The
        organization's lastModification moves to now (inferred: it is the latest change)."""
        org = self.organizations.get(request.path_params["organizationId"])
        asset = next((a for a in org.assets if str(a["id"]) == request.path_params["assetId"]), None) if org else None
        if org is None or asset is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        now = datetime.now(UTC)
        if request.method == "DELETE":
            org.assets.remove(asset)
        else:
            asset["userFacingFileName"] = str((await request.json())["userFacingFileName"])
            asset["lastModification"] = _format(now.timestamp())
        org.last_modification = f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond:06d}0+00:00"
        self._pages.clear()
        return JSONResponse({"lastModification": org.last_modification})

    async def list_assets(self, request: Request) -> Response:
        """One page of an organization's assets; no total: the last page is the first short one."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        org = self.organizations.get(request.path_params["organizationId"])
        if org is None or org.client != request.path_params["clientHandle"]:
            return JSONResponse(NOT_FOUND, status_code=404)
        try:
            page, size = _paging(request.query_params.get("page"), request.query_params.get("pageSize"))
        except ValueError:
            return JSONResponse(BAD_REQUEST, status_code=400)
        if size is None:  # inferred: without pageSize the whole list is page 1
            start, stop = (0, org.count) if page == 1 else (0, 0)
        else:
            start, stop = (page - 1) * size, page * size
        base = origin(request) + self.prefix
        key = (org.id, start, stop, base)
        if key in self._pages:
            return Response(self._pages[key], media_type="application/json")
        answer = JSONResponse(self._page(org, self._slice(org, start, stop), request, base))
        if self.emu.url_ttl is None:
            self._pages[key] = answer.body
        return answer

    def _page(self, org: Organization, chosen: list[dict], request: Request, base: str) -> dict:
        return {
            "lastModification": org.last_modification,
            "error": None,
            "apiVersion": self.api_version,
            "hash": _hash(chosen),
            "contents": [self._render(asset, request, base) for asset in chosen],
        }

    def _slice(self, org: Organization, start: int, stop: int) -> list[dict]:
        stop = min(stop, org.count)
        seeded = len(org.assets)
        return org.assets[start:stop] + [self._extra_asset(org, i - seeded) for i in range(max(start, seeded), stop)]

    def _refuse(self, request: Request) -> Response | None:
        """The rate limit, then the API token: the answer to send instead, or None."""
        wait = self.emu.rate_limit(self.name).hit()
        if wait is not None:
            # Documented: over the limit Spectrum answers 403, not 429.
            # inferred: the body and Retry-After that tell it apart from a real 403.
            seconds = max(1, math.ceil(wait))
            return JSONResponse(
                {"message": f"Rate limit exceeded. Try again in {seconds} seconds."},
                status_code=403,
                headers={"Retry-After": str(seconds)},
            )
        token = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), TOKEN.encode()):
            return JSONResponse(UNAUTHORIZED, status_code=401)  # inferred: status and body
        return None

    def _render(self, value, request: Request, base: str):
        if isinstance(value, dict):
            return {k: self._render(v, request, base) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, request, base) for v in value]
        if isinstance(value, Cdn):
            return self.emu.cdn_url(request, value.key, value.name)
        if isinstance(value, ApiUrl):
            return base + value.path
        return value

    # -- configuration -----------------------------------------------------------------

    def account_config(self, base_url: str) -> dict:
        return {
            "provider": self.name,
            "base_url": base_url + self.prefix,
            "client": CLIENT,
            "organizations": [SEED_ORG, TEAM_ORG],
            "token": TOKEN,
        }

    def curl_examples(self, base_url: str) -> list[str]:
        url = f"{base_url}{self.prefix}/api/assets/saved/client/{CLIENT}/organization/{SEED_ORG}?page=1&pageSize=2"
        return [f"curl -H '{TOKEN_HEADER}: {TOKEN}' '{url}'"]


def _output_sample(ext: str, variant: int) -> samples.Sample:
    if ext == ".dst":
        return samples.dst()
    if ext == ".pdf":
        return samples.pdf()
    return samples.png(variant, (300, 260))


def _pixels(query, *names: str) -> int | None:
    value = next((query[n] for n in names if query.get(n)), None)
    if value is None:
        return None
    if not value.isdigit():
        raise renditions.NotAnImage(f"{names[0]} must be a number of pixels")
    return int(value)


def _paging(page: str | None, size: str | None) -> tuple[int, int | None]:
    """page (1-based, default 1) and pageSize (None: everything); ValueError if not positive."""
    # inferred: defaults, and 400 for a page or pageSize that is not a positive integer.
    p = 1 if page in (None, "") else int(page)
    s = None if size in (None, "") else int(size)
    if p < 1 or (s is not None and s < 1):
        raise ValueError("page and pageSize start at 1")
    return p, s


def _hash(contents: list[dict]) -> str:
    """inferred: `hash` looks like a base64 MD5; here it is the MD5 of the page's data."""
    text = json.dumps(contents, default=repr, sort_keys=True)
    return base64.b64encode(hashlib.md5(text.encode()).digest()).decode()


def _latest(assets: list[dict], generated: float | None) -> str:
    """inferred: the listing's lastModification is the latest change among its assets and jobs,
    in the seed's format (seven fractional digits and an offset)."""
    stamps = [a["lastModification"] for a in assets]
    for job in (j for a in assets for j in a["productionJobs"] or []):
        stamps += [job["lastModification"], job["result"]["lastModification"]]
    times = [_timestamp(s) for s in stamps] + ([generated] if generated is not None else [])
    latest = max(times, default=SAMPLE_EPOCH)
    dt = datetime.fromtimestamp(latest, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}0+00:00"


def _timestamp(stamp: str) -> float:
    """Spectrum's dates carry no zone; they are UTC."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def _format(when: float) -> str:
    """A date as Spectrum writes it: no zone, milliseconds."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
