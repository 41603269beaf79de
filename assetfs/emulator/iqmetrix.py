"""iQmetrix Asset Media Service: upload a file, get its metadata, be redirected to its image.

The API has no list route, so the emulator's config names the seeded assets per collection
(`collections = {logos = [...], ...}`). The OAuth2 password grant lives on a host of its own
(accounts.iqmetrix.net), emulated under /iqmetrix-accounts beside the AMS under /iqmetrix.
The documented example asset (732130d2-…, "iqmetrix.jpg", 240×145) is served as a real JPEG.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import mimetypes
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from . import samples
from .app import SAMPLE_EPOCH
from .blobs import Blob, FileBlob
from .provider import ProviderEmulator
from .tokens import bearer

SEED_ID = "732130d2-b673-461c-812b-f2b614d6076e"
TOKEN_TTL = 43199  # seconds, as documented (expires_in)
ACCOUNTS_PREFIX = "/iqmetrix-accounts"  # stands in for https://accounts.iqmetrix.net

USERNAME = "demo@assetfs.example"
PASSWORD = "iqmetrix-demo-password"
CLIENT_ID = "assetfs-demo"
CLIENT_SECRET = "iqmetrix-demo-secret"

NOT_FOUND = "Asset Media Service Error: Resource not found"

# Seeded collections: (name, maker, variant, size). The seed asset comes first in "logos".
_Seed = tuple[str, Callable[[int, tuple[int, int]], samples.Sample] | None, int, tuple[int, int] | None]
COLLECTIONS: dict[str, list[_Seed]] = {
    "logos": [
        ("logo.png", samples.png, 1, (256, 256)),
        ("logo.png", samples.png, 2, (512, 512)),  # names are not unique
        ("wordmark.png", samples.png, 3, (600, 200)),
    ],
    "banners": [
        ("spring-banner.jpg", samples.jpeg, 4, (1200, 400)),
        ("summer-banner.jpg", samples.jpeg, 5, (1200, 400)),
        ("in-store display.jpg", samples.jpeg, 6, (800, 1200)),
    ],
    "media": [
        ("floor-plan.png", samples.png, 7, (640, 480)),
        ("store-tour.mp4", None, 0, None),  # a video: /images answers 400 for it
    ],
}


@dataclass
class Asset:
    id: str
    name: str
    mime_type: str
    width: int | None
    height: int | None
    blob: Blob

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")

    @property
    def stored_name(self) -> str:
        """The file name in storage, as in the documented href: <id><extension>."""
        ext = PurePosixPath(self.name).suffix.lower() or mimetypes.guess_extension(self.mime_type) or ""
        return f"{self.id}{ext}"


class IQmetrixEmulator(ProviderEmulator):
    name = "iqmetrix"
    prefix = "/iqmetrix"
    account_name = "stores"

    def __init__(self, emu):
        super().__init__(emu)
        self.assets: dict[str, Asset] = {}
        self.collections: dict[str, list[str]] = {}
        seed = samples.jpeg(0, (240, 145))
        self.collections["logos"] = [self._add_sample(SEED_ID, "iqmetrix.jpg", seed)]
        for collection, entries in COLLECTIONS.items():
            ids = self.collections.setdefault(collection, [])
            for n, (name, maker, variant, size) in enumerate(entries):
                asset_id = _guid(f"{collection}/{n}")
                if maker is None or size is None:
                    ids.append(self._add_video(asset_id, name))
                else:
                    ids.append(self._add_sample(asset_id, name, maker(variant, size)))
        if emu.large_file_size > 0:
            blob = emu.blobs.get("large/sample") or emu.blobs.add_large("large/sample", emu.large_file_size)
            large = Asset(_guid("large"), "large.bin", blob.content_type, None, None, blob)
            self.assets[large.id] = large
            self.collections["media"].append(large.id)
        if emu.extra_assets:
            # --assets N: N small images in a "bulk" collection, the same GUIDs on every run.
            self.collections["bulk"] = [
                self._add_sample(
                    _guid(f"bulk/{i}"), f"bulk-{i + 1:05d}.png", samples.png(i % 8, (64, 48)), SAMPLE_EPOCH + i
                )
                for i in range(emu.extra_assets)
            ]

    # -- sample data -------------------------------------------------------------------

    def _add_sample(self, asset_id: str, name: str, sample: samples.Sample, mtime: float = SAMPLE_EPOCH) -> str:
        blob = self.emu.blobs.add_generated(
            f"iqmetrix/assets/{asset_id}", sample.size, sample.content_type, lambda: sample.build(asset_id), mtime
        )
        self.assets[asset_id] = Asset(asset_id, name, sample.content_type, sample.width, sample.height, blob)
        return asset_id

    def _add_video(self, asset_id: str, name: str) -> str:
        data = _mp4(asset_id)
        blob = self.emu.blobs.add_generated(
            f"iqmetrix/assets/{asset_id}", len(data), "video/mp4", lambda: data, SAMPLE_EPOCH
        )
        # inferred: width and height of a video are not documented; the emulator gives null.
        self.assets[asset_id] = Asset(asset_id, name, "video/mp4", None, None, blob)
        return asset_id

    # -- HTTP --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for root in ("", "/v1"):  # older documentation puts the API under /v1: accept both
            routes += [
                Route(f"{root}/assets", self._guarded(self.create_asset), methods=["POST"]),
                Route(f"{root}/assets/{{asset_id}}", self._guarded(self.get_asset), methods=["GET"]),
                Route(f"{root}/images/{{asset_id}}", self._guarded(self.image), methods=["GET"]),
            ]
        return routes

    def control_routes(self) -> list[BaseRoute]:
        return [Route("/assets/{asset_id}", self.change_asset, methods=["PATCH", "DELETE"])]

    async def change_asset(self, request: Request) -> Response:
        """Test-only (the API has no update or delete): PATCH `{"name": …}` renames an asset
        as another tool of the tenant would; DELETE removes it (its GET answers 404 after)."""
        key = request.path_params["asset_id"].lower()
        asset = self.assets.get(key)
        if asset is None:
            return _not_found()
        if request.method == "DELETE":
            del self.assets[key]
        else:
            asset.name = str((await request.json())["name"])
        return Response(status_code=204)

    def extra_mounts(self) -> list[BaseRoute]:
        return [Mount(ACCOUNTS_PREFIX, routes=[Route("/v1/oauth2/token", self.token, methods=["POST"])])]

    def _guarded(self, handler):
        """A route behind the rate limit and a bearer token."""

        async def guarded(request: Request) -> Response:
            limiter = self.emu.rate_limit(self.name)
            wait = limiter.hit()
            if wait is not None:
                return _rate_limited(limiter.limit, wait)
            if self.emu.tokens.check(self.name, bearer(request.headers.get("authorization"))) is None:
                # inferred: the 401 body; the header is what OAuth2 resource servers send.
                return PlainTextResponse(
                    "Authorization has been denied for this request.",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await handler(request)

        return guarded

    async def token(self, request: Request) -> Response:
        """OAuth2 token endpoint: password grant, and refresh (which revokes the old token)."""
        form = await request.form()
        grant_type = form.get("grant_type")
        if grant_type not in ("password", "refresh_token"):
            return _oauth_error("unsupported_grant_type")
        # inferred: the client credentials are checked on both grants (sent on refresh too).
        if not (_same(form.get("client_id"), CLIENT_ID) and _same(form.get("client_secret"), CLIENT_SECRET)):
            return _oauth_error("invalid_client")
        if grant_type == "password":
            if not (_same(form.get("username"), USERNAME) and _same(form.get("password"), PASSWORD)):
                return _oauth_error("invalid_grant")
            subject = USERNAME
        else:
            grant = self.emu.tokens.redeem_refresh(self.name, str(form.get("refresh_token") or ""))
            if grant is None:
                return _oauth_error("invalid_grant")
            subject = grant.subject
        access, grant = self.emu.tokens.issue(self.name, subject, TOKEN_TTL, with_refresh=True)
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": self.emu.tokens.lifetime(TOKEN_TTL),
                "refresh_token": grant.refresh_token,
            }
        )

    async def create_asset(self, request: Request) -> Response:
        """Multipart upload of exactly one file, streamed to disk; 201 with the new asset."""
        form = await request.form()
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if len(files) != 1:
                # inferred: the 400 bodies (the documentation gives only the reasons).
                reason = (
                    "Ensure file was attached to request"
                    if not files
                    else "Ensure you are only uploading one Asset at a time"
                )
                return PlainTextResponse(f"Bad Request: {reason}", status_code=400)
            asset = await run_in_threadpool(self._store_upload, files[0])
        finally:
            await form.close()
        return JSONResponse({**self._describe(asset, request), "success": True}, status_code=201)

    def _store_upload(self, upload: UploadFile) -> Asset:
        asset_id = str(uuid.uuid4())
        name = upload.filename or "upload"  # inferred: a part without a file name
        self.emu.name_used(self.name, "create", upload.filename or "", asset_id)
        declared = upload.content_type or ""
        if declared in ("", "application/octet-stream"):
            declared = mimetypes.guess_type(name)[0] or "application/octet-stream"
        blob = self.emu.blobs.add_stream(f"iqmetrix/assets/{asset_id}", upload.file, declared)
        mime_type, width, height = _measure(blob, declared)
        if mime_type != declared:
            blob.content_type = mime_type
        asset = Asset(asset_id, name, mime_type, width, height, blob)
        self.assets[asset_id] = asset
        return asset

    async def get_asset(self, request: Request) -> Response:
        asset = self._find(request)
        if asset is None:
            return _not_found()
        return JSONResponse(self._describe(asset, request))

    async def image(self, request: Request) -> Response:
        """303 to the stored file; only for images."""
        asset = self._find(request)
        if asset is None:
            return _not_found()
        if not asset.is_image:
            return PlainTextResponse(
                "Bad Request: Ensure the Asset is of the correct type for the action", status_code=400
            )
        # The documented answer's odd Content-Type, kept as documented.
        return Response(
            status_code=303,
            headers={"Location": self._href(asset, request)},
            media_type="application/x-www-form-urlencoded",
        )

    def _find(self, request: Request) -> Asset | None:
        # inferred: GUIDs match whatever their letter case.
        return self.assets.get(request.path_params["asset_id"].lower())

    def _href(self, asset: Asset, request: Request) -> str:
        return self.emu.cdn_url(request, asset.blob.key, asset.stored_name)

    def _describe(self, asset: Asset, request: Request) -> dict:
        """The asset object, keys in the documented order. md5Checksum is the MD5 of the
        bytes served (necessarily: the documentation's literal is not the example file's)."""
        return {
            "id": asset.id,
            "name": asset.name,
            "height": asset.height,
            "href": self._href(asset, request),
            "md5Checksum": asset.blob.md5,
            "mimeType": asset.mime_type,
            "width": asset.width,
        }

    # -- configuration -----------------------------------------------------------------

    def account_config(self, base_url: str) -> dict:
        return {
            "provider": self.name,
            "base_url": base_url + self.prefix,
            "auth_url": base_url + ACCOUNTS_PREFIX + "/v1",
            "username": USERNAME,
            "password": PASSWORD,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "collections": self.collections,
        }

    def curl_examples(self, base_url: str) -> list[str]:
        return [
            f"curl -d grant_type=password -d username={USERNAME} -d password={PASSWORD} "
            f"-d client_id={CLIENT_ID} -d client_secret={CLIENT_SECRET} {base_url}{ACCOUNTS_PREFIX}/v1/oauth2/token",
            f"curl -H 'Authorization: Bearer <access_token>' {base_url}{self.prefix}/assets/{SEED_ID}",
        ]


def _guid(name: str) -> str:
    """A GUID that is the same on every run (a name-based, version 5 one: uuid5's result,
    formatted by hand because uuid.UUID is too slow for 10,000 of them at start)."""
    h = hashlib.sha1(_GUID_NAMESPACE + f"iqmetrix/{name}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


_GUID_NAMESPACE = uuid.NAMESPACE_URL.bytes


def _same(given, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _oauth_error(error: str) -> Response:
    return JSONResponse({"error": error}, status_code=400)


def _not_found() -> Response:
    # inferred: sent as text/plain; the documentation gives the text, not the media type.
    return PlainTextResponse(NOT_FOUND, status_code=404)


def _rate_limited(limit: int, wait: float) -> Response:
    seconds = max(1, math.ceil(wait))
    reset = datetime.fromtimestamp(time.time() + seconds, UTC)
    return PlainTextResponse(
        "rate limit exceeded",
        status_code=429,
        headers={
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            # inferred: the format of "UTC time" (ISO 8601 with a Z).
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "X-RateLimit-ResetSeconds": str(seconds),
        },
    )


def _measure(blob: Blob, declared: str) -> tuple[str, int | None, int | None]:
    """(mimeType, width, height): what Pillow sees in an uploaded image (it reads the header
    only); other files keep their declared type and have no size."""
    if isinstance(blob, FileBlob):
        try:
            with Image.open(blob.path) as img:
                return Image.MIME.get(img.format or "", declared), img.width, img.height
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError):
            pass
    # inferred: non-image uploads (videos) are accepted, with width and height null.
    return declared, None, None


def _mp4(tag: str) -> bytes:
    """A small ISO-BMFF file: `ftyp`, a `free` box carrying the tag, an `mdat` of filler.
    Recognised as MP4 by file(1); enough to stand for a video asset, not to play."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    return ftyp + box(b"free", tag.encode()) + box(b"mdat", bytes(range(256)) * 16)
