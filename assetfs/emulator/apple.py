"""Apple Business Connect (brand assets), emulated.

OAuth2 client credentials, organizations with brands, brand assets listed through `ql`
filters and opaque cursors, If-Match updates, soft deletes, and image uploads whose
content is served from signed CDN URLs. The two assets of the documentation's example
(seeds/apple_assets_page.json) are served exactly as documented.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import struct
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path

from PIL import Image as PILImage
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import apple_ql, samples
from .app import origin
from .provider import ProviderEmulator
from .tokens import bearer

ORG, BRAND = "9467895078742654934", "9467895078742654921"  # the documentation's example
CLIENT_ID, CLIENT_SECRET = "assetfs-demo-apple", "apple-demo-secret"
TOKEN_TTL = 3600
MAX_UPLOAD = 15 * 1024 * 1024
INTENTS = ("PLACECARD_LOGO", "COVER_PHOTO", "GALLERY")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100  # inferred: the docs give no default or maximum page size
IMAGE_STATE = "AVAILABLE"  # inferred: the docs do not list image states
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Generated assets are dated after the seed's own (late 2026), so that the documented example
# query (createdDate=gt=2024-09-30…, limit=2) answers the seed's page first; fixed, so stable.
GENERATED_FROM = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()
SEED_PAGE = Path(__file__).parent / "seeds" / "apple_assets_page.json"

# (orgId, legalName, [(brandId, displayName)]): the first organization is the one `me` belongs to.
ORGANIZATIONS = [
    (ORG, "Café Aurora LLC", [(BRAND, "Café Aurora"), ("9467895078742654922", "Aurora Roasters")]),
    ("9467895078742655101", "Northwind Bakery Ltd", [("9467895078742655111", "Northwind Bakery")]),
]
# Extra sample assets of the example brand: (state, has a partnersAssetId).
EXAMPLE_BRAND_EXTRAS = [
    ("PUBLISHED", True),
    ("PROCESSING", False),
    ("DELETED", True),
    ("REJECTED", True),
    ("PUBLISHED", True),
    ("PUBLISHED", True),
]


def _sample(intent: str) -> samples.Sample:
    """A valid image of the size each intent asks for (logo 1024×1024, cover ≥ 1600×1040)."""
    if intent == "PLACECARD_LOGO":
        return samples.png(0, (1024, 1024))
    return samples.jpeg(1, (1600, 1040)) if intent == "COVER_PHOTO" else samples.jpeg(2, (1200, 800))


def stamp(ts: float) -> str:
    """A date in the seed's form, 2026-10-01T17:22:19.00Z (cheap: --assets dates 10,000s)."""
    centis = round(ts * 100)
    day, seconds = divmod(centis // 100, 86400)
    return f"{_day(day)}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{centis % 100:02d}Z"


@lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


class ApiError(Exception):
    """An error answered in Apple's shape: {code, message, context, details}."""

    def __init__(self, status: int, code: str, message: str, context: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.context, self.headers = context or {}, headers or {}

    def response(self) -> Response:
        # inferred: `details` is documented as an object but never described; sent empty.
        body = {"code": self.code, "message": self.message, "context": self.context, "details": {}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass(slots=True)
class Image:
    org_id: str
    id: str
    key: str  # blob key
    filename: str
    width: int | None
    height: int | None
    created: str


@dataclass(slots=True)
class Asset:
    data: dict  # the JSON the API returns
    key: tuple  # (createdDate, id): the listing order, fixed for the asset's life; the dates
    # all have the seed's fixed-width form, so they sort as text


@dataclass
class Org:
    id: str
    legal_name: str
    brands: dict[str, dict] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    lazy_images: dict[str, tuple] = field(
        default_factory=dict
    )  # generated images not yet asked for: _add_image's arguments
    listing: dict[str, list[Asset]] = field(default_factory=dict)  # brandId → assets in order


class AppleEmulator(ProviderEmulator):
    name = "apple"
    prefix = "/apple"
    account_name = "apple"

    def __init__(self, emu):
        super().__init__(emu)
        self.orgs: dict[str, Org] = {}
        self._cursors: dict[str, tuple] = {}
        self._new_ids = itertools.count(9_467_895_200_000_000_000)
        self._seed()

    # ---- sample data -------------------------------------------------------------------

    def _seed(self) -> None:
        brand_numbers = itertools.count(1)
        for org_id, legal_name, brands in ORGANIZATIONS:
            org = self.orgs[org_id] = Org(org_id, legal_name)
            for brand_id, display_name in brands:
                # inferred: the brand object's fields (the docs show none).
                org.brands[brand_id] = {
                    "id": brand_id,
                    "orgId": org_id,
                    "displayName": display_name,
                    "state": "PUBLISHED",
                    "createdDate": stamp(GENERATED_FROM),
                    "updatedDate": stamp(GENERATED_FROM),
                }
                org.listing[brand_id] = []
                self._generate_brand(org, brand_id, next(brand_numbers), first_org=org_id == ORG)
        if self.emu.large_file_size > 0:
            self._add_large(self.orgs[ORG], "9467895078742654922")

    def _generate_brand(self, org: Org, brand_id: str, number: int, first_org: bool) -> None:
        if brand_id == BRAND:
            for data in json.loads(SEED_PAGE.read_text())["data"]:
                details = data["brandAssetDetails"]
                sample, mtime = _sample(details["intent"]), apple_ql.parse_date(data["createdDate"]).timestamp()
                self._add_image(
                    org,
                    details["imageId"],
                    sample,
                    details["partnersAssetId"] + sample.extension,
                    data["createdDate"],
                    mtime,
                )
                self._add_asset(org, data)
            specials = EXAMPLE_BRAND_EXTRAS
        else:
            specials = [("PUBLISHED", True)] * 3
        extra = self.emu.extra_assets if first_org else 0  # --assets N: N more in each brand of the first org
        base = 9_467_895_100_000_000_000 + number * 100_000_000
        kinds = [(intent, _sample(intent), intent.lower()) for intent in INTENTS]
        for i in range(len(specials) + extra):
            state, named = specials[i] if i < len(specials) else ("PUBLISHED", True)
            self._generate_asset(
                org, brand_id, str(base + i), i, state, f"asset_{i:05d}" if named else None, kinds[i % 3]
            )

    def _generate_asset(
        self, org: Org, brand_id: str, asset_id: str, i: int, state: str, partners_id: str | None, kind: tuple
    ) -> None:
        """One deterministic asset with its own image; cheap, as --assets makes 10,000s of them."""
        intent, sample, label = kind
        h = hashlib.sha1(asset_id.encode()).hexdigest()
        mtime = GENERATED_FROM + 600 * i
        created = stamp(mtime)
        image_id = f"{h[:8]}-{h[8:12]}-11f0-9cd2-0242ac120002"
        org.lazy_images[image_id] = (sample, f"{partners_id or asset_id}{sample.extension}", created, mtime, asset_id)
        details = {
            "imageId": image_id,
            "partnersAssetId": partners_id,
            "intent": intent,
            "altTexts": [{"text": f"{label} {i}", "locale": "en"}],
        }
        if partners_id is None:
            del details["partnersAssetId"]
        self._add_asset(
            org,
            {
                "orgId": org.id,
                "brandId": brand_id,
                "id": asset_id,
                "createdDate": created,
                "updatedDate": created,
                "state": state,
                "etag": f"{h[12:20]}-{h[20:24]}-11ec-{h[24:28]}-{h[28:40]}",
                "brandAssetDetails": details,
            },
        )

    def _add_large(self, org: Org, brand_id: str) -> None:
        """One big file for streaming tests (inferred: not an image Apple would accept)."""
        blob = self.emu.blobs.get("large/sample") or self.emu.blobs.add_large("large/sample", self.emu.large_file_size)
        created = stamp(GENERATED_FROM)
        image_id = "1a46e000-0000-11f0-9cd2-0242ac120002"
        org.images[image_id] = Image(org.id, image_id, blob.key, "large.bin", 0, 0, created)
        self._add_asset(
            org,
            {
                "orgId": org.id,
                "brandId": brand_id,
                "id": "9467895100999999999",
                "createdDate": created,
                "updatedDate": created,
                "state": "PUBLISHED",
                "etag": "1a46e000-0000-11ec-9cd2-0242ac120002",
                "brandAssetDetails": {
                    "imageId": image_id,
                    "partnersAssetId": "large",
                    "intent": "GALLERY",
                    "altTexts": [],
                },
            },
        )

    def _add_image(
        self,
        org: Org,
        image_id: str,
        sample: samples.Sample,
        filename: str,
        created: str,
        mtime: float,
        tag: str | None = None,
    ) -> None:
        key = f"apple/{org.id}/{image_id}"
        self.emu.blobs.add_generated(
            key, sample.size, sample.content_type, partial(sample.build, tag or image_id), mtime
        )
        org.images[image_id] = Image(org.id, image_id, key, filename, sample.width, sample.height, created)

    def _image(self, org: Org, image_id: str) -> Image | None:
        """An image of the organization; generated ones get their blob on first use."""
        if image_id in org.lazy_images:
            self._add_image(org, image_id, *org.lazy_images.pop(image_id))
        return org.images.get(image_id)

    def _add_asset(self, org: Org, data: dict) -> Asset:
        asset = Asset(data, (data["createdDate"], data["id"]))
        org.assets[data["id"]] = asset
        listing = org.listing[data["brandId"]]
        if listing and listing[-1].key > asset.key:
            bisect.insort(listing, asset, key=lambda a: a.key)
        else:
            listing.append(asset)  # sample data arrives in order
        return asset

    # ---- routing, auth, rate limit, request ids ---------------------------------------------

    def routes(self) -> list[BaseRoute]:
        v1 = "/api/v1"
        table = {
            f"{v1}/oauth2/token": {"POST": self.token},
            f"{v1}/me": {"GET": self.me},
            f"{v1}/orgs/{{orgId}}/brands": {"GET": self.list_brands},
            f"{v1}/orgs/{{orgId}}/brands/{{brandId}}/assets": {"GET": self.list_assets, "POST": self.create_asset},
            f"{v1}/orgs/{{orgId}}/assets/{{assetId}}": {
                "GET": self.get_asset,
                "PUT": self.update_asset,
                "DELETE": self.delete_asset,
            },
            f"{v1}/orgs/{{orgId}}/images/upload": {"POST": self.upload_image},
            f"{v1}/orgs/{{orgId}}/images/{{imageId}}/metadata": {"GET": self.image_metadata},
        }
        routes: list[BaseRoute] = [
            Route(path, self._endpoint(methods), methods=ALL_METHODS) for path, methods in table.items()
        ]
        return routes + [Route("/{path:path}", self._endpoint({}), methods=ALL_METHODS)]

    def _endpoint(self, methods: dict):
        """One path's handler: request id, rate limit, auth, method dispatch, errors in Apple's shape."""

        async def endpoint(request: Request) -> Response:
            try:
                wait = self.emu.rate_limit(self.name).hit()
                if wait is not None:
                    # inferred: 429 is not in Apple's status list; the usual answer, with Retry-After.
                    raise ApiError(
                        429,
                        "RATE_LIMIT_EXCEEDED",
                        "Too many requests.",
                        headers={"Retry-After": str(max(1, math.ceil(wait)))},
                    )
                handler = methods.get(request.method) or (methods.get("GET") if request.method == "HEAD" else None)
                if handler is None:
                    if not methods:
                        raise ApiError(404, "NOT_FOUND", f"No resource at {request.url.path}.")
                    raise ApiError(
                        405,
                        "METHOD_NOT_ALLOWED",
                        f"{request.method} is not allowed here.",
                        headers={"Allow": ", ".join(methods)},
                    )
                if handler != self.token:
                    self._authorize(request)
                response = await handler(request)
            except ApiError as e:
                response = e.response()
            response.headers["apple-request-id"] = str(uuid.uuid4())
            return response

        return endpoint

    def _authorize(self, request: Request) -> None:
        if self.emu.tokens.check(self.name, bearer(request.headers.get("authorization"))) is None:
            raise ApiError(
                401,
                "UNAUTHORIZED",
                "The access token is missing, invalid or expired.",
                headers={"WWW-Authenticate": 'Bearer realm="business"'},
            )  # inferred header

    def _org(self, request: Request) -> Org:
        org = self.orgs.get(request.path_params["orgId"])
        if org is None:  # inferred: an organization the partner cannot see is 403, not 404
            raise ApiError(403, "FORBIDDEN", "No access to this organization.", {"orgId": request.path_params["orgId"]})
        return org

    def _brand(self, request: Request) -> tuple[Org, str]:
        org, brand_id = self._org(request), request.path_params["brandId"]
        if brand_id not in org.brands:
            raise ApiError(404, "BRAND_NOT_FOUND", "No such brand.", {"brandId": brand_id})
        return org, brand_id

    def _asset(self, request: Request) -> tuple[Org, Asset]:
        org, asset_id = self._org(request), request.path_params["assetId"]
        asset = org.assets.get(asset_id)
        if asset is None:
            raise ApiError(404, "BRAND_ASSET_NOT_FOUND", "No such brand asset.", {"assetId": asset_id})
        return org, asset

    # ---- auth and account ------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        body = await _body(request, form_ok=True)  # inferred: a form-encoded body is accepted too
        if body.get("grant_type") != "client_credentials" or body.get("scope") != "business":
            raise ApiError(
                400,
                "INVALID_REQUEST",
                'grant_type must be "client_credentials" and scope "business".',
                {"grant_type": body.get("grant_type"), "scope": body.get("scope")},
            )
        if body.get("client_id") != CLIENT_ID or body.get("client_secret") != CLIENT_SECRET:
            raise ApiError(401, "UNAUTHORIZED", "Invalid client credentials.", {"client_id": body.get("client_id")})
        token, _ = self.emu.tokens.issue(self.name, CLIENT_ID, TOKEN_TTL)
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.emu.tokens.lifetime(TOKEN_TTL)}
        )

    async def me(self, request: Request) -> Response:
        org = self.orgs[ORG]
        # inferred: the fields of `user`.
        user = {
            "id": "9467895078742650001",
            "email": "partner@example.com",
            "firstName": "Demo",
            "lastName": "Partner",
            "roles": ["ADMIN"],
        }
        return JSONResponse({"user": user, "orgDetails": {"orgId": org.id, "legalName": org.legal_name}})

    async def list_brands(self, request: Request) -> Response:
        # inferred route and shape: all brands on one page, like the assets list's envelope.
        brands = list(self._org(request).brands.values())
        return JSONResponse({"data": brands, "pagination": {}, "total": len(brands)})

    # ---- brand assets ----------------------------------------------------------------------

    async def list_assets(self, request: Request) -> Response:
        org, brand_id = self._brand(request)
        params = request.query_params
        limit, ql, position = _limit(params.get("limit")), params.get("ql") or "", None
        if "after" in params:
            # inferred: a cursor carries its query (the seed's `next` link has no ql); it is
            # refused with another organization, brand or ql.
            query, position = self._cursors.get(params["after"], (None, None))
            if query is None or query[:2] != (org.id, brand_id) or ("ql" in params and ql != query[2]):
                raise ApiError(
                    400,
                    "INVALID_PARAMETER",
                    "The cursor is unknown or belongs to another query.",
                    {"after": params["after"]},
                )
            ql = query[2]
        try:
            clauses = apple_ql.parse(ql)
        except apple_ql.QlError as e:
            raise ApiError(400, "INVALID_PARAMETER", str(e), {"ql": ql}) from None
        page, more = apple_ql.page(org.listing[brand_id], clauses, position, limit)
        pagination = {}
        if more:
            cursor = self._cursor((org.id, brand_id, ql), page[-1].key)
            pagination = {
                "cursors": {"after": cursor},
                "next": f"{self.prefix}/api/v1/orgs/{org.id}/brands/{brand_id}/assets?limit={limit}&after={cursor}",
            }
        # inferred: `total` counts this page's assets; it is the only reading under which the
        # documented example (a full page of 2, total 2, and a `next`) is consistent.
        return JSONResponse({"data": [a.data for a in page], "pagination": pagination, "total": len(page)})

    def _cursor(self, query: tuple, position: tuple) -> str:
        """Opaque and stable: the same query at the same place always gives the same cursor."""
        cursor = hashlib.sha256(repr((query, position)).encode()).hexdigest()[:16]
        self._cursors[cursor] = (query, position)
        return cursor

    async def get_asset(self, request: Request) -> Response:
        _, asset = self._asset(request)  # inferred: a DELETED asset still answers, in state DELETED
        return _asset_response(asset)

    async def create_asset(self, request: Request) -> Response:
        org, brand_id = self._brand(request)
        details = _details(org, await _body(request), self._image)
        now, asset_id = stamp(time.time()), str(next(self._new_ids))
        self.emu.name_used(self.name, "create", str(details.get("partnersAssetId", "")), brand_id)
        asset = self._add_asset(
            org,
            {
                "orgId": org.id,
                "brandId": brand_id,
                "id": asset_id,
                "createdDate": now,
                "updatedDate": now,
                "state": "SUBMITTED",
                "etag": str(uuid.uuid4()),
                "brandAssetDetails": details,
            },
        )
        location = f"{origin(request)}{self.prefix}/api/v1/orgs/{org.id}/assets/{asset_id}"  # inferred: absolute
        return _asset_response(asset, 201, {"location": location})

    async def update_asset(self, request: Request) -> Response:
        org, asset = self._asset(request)
        if_match = request.headers.get("if-match")
        if if_match is None:  # inferred: 412 (428 is not among Apple's statuses)
            raise ApiError(412, "PRECONDITION_FAILED", "If-Match with the asset's etag is required.", {"etag": None})
        if if_match.strip() != "*" and if_match.strip().removeprefix("W/").strip('"') != asset.data["etag"]:
            raise ApiError(
                412, "PRECONDITION_FAILED", "The asset has changed: its etag does not match.", {"etag": if_match}
            )
        if asset.data["state"] == "DELETED":  # inferred: deletion is final (no undelete)
            raise ApiError(
                400, "BRAND_ASSET_DELETED", "A deleted asset cannot be updated.", {"assetId": asset.data["id"]}
            )
        details = _details(org, await _body(request), self._image)
        self.emu.name_used(self.name, "update", str(details.get("partnersAssetId", "")), asset.data["brandId"])
        # inferred: an update goes back to review (SUBMITTED); other top-level body fields are ignored.
        asset.data.update(
            brandAssetDetails=details, etag=str(uuid.uuid4()), state="SUBMITTED", updatedDate=stamp(time.time())
        )
        return _asset_response(asset)

    async def delete_asset(self, request: Request) -> Response:
        _, asset = self._asset(request)
        if asset.data["state"] == "DELETED":  # inferred: deleting twice is 404
            raise ApiError(404, "BRAND_ASSET_NOT_FOUND", "The asset is already deleted.", {"assetId": asset.data["id"]})
        asset.data.update(state="DELETED", etag=str(uuid.uuid4()), updatedDate=stamp(time.time()))
        return Response(status_code=204)

    # ---- images ----------------------------------------------------------------------------

    async def upload_image(self, request: Request) -> Response:
        org = self._org(request)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_UPLOAD + 64 * 1024:  # refuse before reading the body
            raise ApiError(413, "PAYLOAD_TOO_LARGE", "Images are limited to 15 MB.", {"maxBytes": str(MAX_UPLOAD)})
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Send the image as multipart/form-data, part `file`.")
        async with request.form(max_files=1) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "INVALID_REQUEST", "The multipart part `file` is missing.", {"file": None})
            if upload.size is not None and upload.size > MAX_UPLOAD:
                raise ApiError(413, "PAYLOAD_TOO_LARGE", "Images are limited to 15 MB.", {"maxBytes": str(MAX_UPLOAD)})
            content_type, extension, width, height = await run_in_threadpool(_inspect_image, upload.file)
            image_id = str(uuid.uuid1(node=0x0242AC120002))
            key = f"apple/{org.id}/{image_id}"
            await run_in_threadpool(self.emu.blobs.add_stream, key, upload.file, content_type)
            filename = (
                Path(upload.filename or "").name or image_id + extension
            )  # inferred: without a name, id + extension
            self.emu.name_used(self.name, "image", upload.filename or "")
        image = org.images[image_id] = Image(org.id, image_id, key, filename, width, height, stamp(time.time()))
        return JSONResponse(self._image_json(request, image), status_code=201)

    async def image_metadata(self, request: Request) -> Response:
        org, image_id = self._org(request), request.path_params["imageId"]
        image = self._image(org, image_id)
        if image is None:
            raise ApiError(404, "IMAGE_NOT_FOUND", "No such image.", {"imageId": image_id})
        return JSONResponse(self._image_json(request, image))

    def _image_json(self, request: Request, image: Image) -> dict:
        blob = self.emu.blobs.get(image.key)
        if blob is None:  # every image's blob is added with it
            raise ApiError(404, "IMAGE_NOT_FOUND", "No such image.", {"imageId": image.id})
        url = self.emu.cdn_url(request, image.key, image.filename)
        return {
            "orgId": image.org_id,
            "id": image.id,
            "createdDate": image.created,
            "updatedDate": image.created,
            "state": IMAGE_STATE,
            "filename": image.filename,
            "width": image.width,
            "height": image.height,
            "fileSize": blob.size,
            "contentType": blob.content_type,
            "cdnUrl": url,
            # inferred: the template's placeholders; the signature covers the path only, so a filled-in template still loads.
            "cdnTemplateUrl": url + "&size={w}x{h}",
        }

    # ---- config and tour -------------------------------------------------------------------

    def account_config(self, base_url: str) -> dict:
        return {
            "provider": self.name,
            "base_url": base_url + self.prefix,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "organizations": {org.id: list(org.brands) for org in self.orgs.values()},
        }

    def curl_examples(self, base_url: str) -> list[str]:
        api = base_url + self.prefix + "/api/v1"
        body = json.dumps(
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "client_credentials",
                "scope": "business",
            }
        )
        return [
            f"TOKEN=$(curl -s {api}/oauth2/token -H 'Content-Type: application/json' -d '{body}'"
            " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
            f"curl -s -H \"Authorization: Bearer $TOKEN\" '{api}/orgs/{ORG}/brands/{BRAND}/assets?ql=createdDate=gt=2024-09-30T00:00:00Z&limit=2'",
        ]


# ---- helpers ---------------------------------------------------------------------------------


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "INVALID_PARAMETER", "limit must be a positive integer.", {"limit": raw})
    return min(int(raw), MAX_LIMIT)  # inferred: a larger limit is clamped, not refused


def _asset_response(asset: Asset, status: int = 200, headers: dict | None = None) -> Response:
    # inferred: the etag header is quoted, as HTTP has it; If-Match takes the same form.
    return JSONResponse(asset.data, status_code=status, headers={"etag": f'"{asset.data["etag"]}"', **(headers or {})})


async def _body(request: Request, form_ok: bool = False) -> dict:
    if form_ok and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return dict(await request.form())
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST", "The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "The body must be a JSON object.")
    return body


def _details(org: Org, body: dict, image_finder) -> dict:
    """A validated brandAssetDetails, its keys in the documented order; `image_finder(org, id)`
    tells whether the organization has that image."""
    details = body.get("brandAssetDetails")
    if not isinstance(details, dict):
        raise ApiError(400, "INVALID_REQUEST", "brandAssetDetails is required.", {"brandAssetDetails": None})
    image_id, intent = details.get("imageId"), details.get("intent")
    if not isinstance(image_id, str) or image_finder(org, image_id) is None:
        raise ApiError(
            400, "INVALID_PARAMETER", "imageId does not name an image of this organization.", {"imageId": image_id}
        )
    if intent not in INTENTS:
        raise ApiError(400, "INVALID_PARAMETER", f"intent must be one of {', '.join(INTENTS)}.", {"intent": intent})
    partners_id, alt_texts = details.get("partnersAssetId"), details.get("altTexts", [])
    if partners_id is not None and not (isinstance(partners_id, str) and partners_id):
        raise ApiError(
            400, "INVALID_PARAMETER", "partnersAssetId must be a non-empty string.", {"partnersAssetId": partners_id}
        )
    if not isinstance(alt_texts, list) or not all(
        isinstance(t, dict) and isinstance(t.get("text"), str) and isinstance(t.get("locale"), str) for t in alt_texts
    ):
        raise ApiError(400, "INVALID_PARAMETER", "altTexts must be a list of {text, locale}.", {"altTexts": None})
    out = {
        "imageId": image_id,
        "partnersAssetId": partners_id,
        "intent": intent,
        "altTexts": [{"text": t["text"], "locale": t["locale"]} for t in alt_texts],
    }
    if partners_id is None:
        del out["partnersAssetId"]
    return out


def _inspect_image(file) -> tuple[str, str, int, int]:
    """(content type, extension, width, height) from the bytes, whatever the part claims."""
    head = file.read(64 * 1024)
    file.seek(0)
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"):
        at = head.find(b"ispe")  # HEIF's image spatial extents: version/flags, width, height
        if at < 0 or len(head) < at + 16:
            raise ApiError(400, "INVALID_PARAMETER", "The HEIC image has no dimensions.", {"file": None})
        width, height = struct.unpack(">II", head[at + 8 : at + 16])
        return "image/heic", ".heic", width, height
    kinds = {b"\x89PNG\r\n\x1a\n": ("image/png", ".png"), b"\xff\xd8\xff": ("image/jpeg", ".jpg")}
    kind = next((v for magic, v in kinds.items() if head.startswith(magic)), None)
    if kind is None:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Images must be JPEG, PNG or HEIC.", {"file": None})
    try:
        with PILImage.open(file) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 - any decoder complaint means a broken image
        raise ApiError(400, "INVALID_PARAMETER", "The image cannot be read.", {"file": None}) from None
    finally:
        file.seek(0)
    return *kind, width, height
