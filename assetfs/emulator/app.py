"""The emulator's shared context and the Starlette app that serves every provider."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from .blobs import BlobStore, FileBlob
from .content import blob_response
from .faults import FaultMiddleware, Faults
from .hostile import Hostile, HostileMiddleware
from .ratelimit import RateLimit
from .renditions import NotAnImage
from .tokens import TokenIssuer

#: A fixed instant for sample data, so that dates and names are the same on every run.
SAMPLE_EPOCH = 1730000000.0


@dataclass
class Emulator:
    """State shared by the provider modules: tokens, files, faults, rate limits, request log."""

    extra_assets: int = 0  # deterministic assets added per organization (--assets N)
    large_file_size: int = 0  # bytes of one large asset per provider (0: none)
    tokens: TokenIssuer = field(default_factory=TokenIssuer)
    blobs: BlobStore = field(default_factory=BlobStore)
    faults: Faults = field(default_factory=Faults)
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: os.urandom(16))
    request_counts: Counter = field(default_factory=Counter)
    request_log: list[tuple[str, str]] = field(default_factory=list)
    names: list[dict] = field(default_factory=list)  # test-only: every name a write gave the provider
    hostile: Hostile = field(default_factory=Hostile)  # test-only: see hostile.py
    url_ttl: float | None = None  # lifetime of signed content URLs (None: they never expire)
    # Benchmark/test only: link files kept on disk as <this URL>/<file in the data dir>/<name>,
    # so a plain web server over that dir (nginx, dropping the cosmetic last part) serves them.
    content_base_url: str | None = None

    def rate_limit(self, provider: str) -> RateLimit:
        return self.rate_limits.setdefault(provider, RateLimit())

    # Content URLs are capability URLs, as on a real CDN or blob store: a signature in the
    # query string authorizes the read, so no provider credential has to travel with it.
    def sign(self, path: str) -> str:
        return hmac.new(self.secret, path.encode(), hashlib.sha256).hexdigest()[:32]

    def cdn_url(self, request: Request, key: str, name: str | None = None) -> str:
        """An absolute, signed URL of the CDN route for a blob (optionally ending in a file
        name, which is cosmetic: the signature covers the blob key and the expiry only).
        With `url_ttl` set the URL expires, as presigned S3 or Azure SAS URLs do."""
        if self.content_base_url and isinstance(blob := self.blobs.on_disk(key), FileBlob):
            return f"{self.content_base_url.rstrip('/')}/{blob.path.name}" + (f"/{quote(name)}" if name else "")
        path = f"/cdn/{key}" + (f"/{quote(name)}" if name else "")
        if self.url_ttl is None:
            return f"{origin(request)}{path}?sig={self.sign(f'/cdn/{key}')}"
        expires = int(time.time() + self.url_ttl)
        return f"{origin(request)}{path}?exp={expires}&sig={self.sign(f'/cdn/{key}?exp={expires}')}"

    def cdn_signature_error(self, key: str, query) -> str | None:
        """Why a CDN request's signature is refused, or None when it is good."""
        expires = query.get("exp")
        signed = f"/cdn/{key}" + (f"?exp={expires}" if expires is not None else "")
        if not hmac.compare_digest(query.get("sig", "").encode(), self.sign(signed).encode()):
            return "Signature did not match."
        if expires is not None and (not expires.isdigit() or int(expires) < time.time()):
            return "Signed expiry time has passed."
        return None

    def signed_upload_url(self, request: Request, key: str) -> str:
        path = f"/upload/{key}"
        return f"{origin(request)}{path}?sig={self.sign(path)}"

    def name_used(self, provider: str, event: str, name: str, where: str = "") -> None:
        """Log a name a write handed to a provider (an upload, a new asset, a rename, a folder),
        so tests can prove that no temporary name ever reached it (GET /_emulator/names)."""
        self.names.append({"provider": provider, "event": event, "name": name, "where": where})

    def record(self, method: str, path: str) -> None:
        self.request_counts[f"{method} {path}"] += 1
        self.request_log.append((method, path))
        if len(self.request_log) > 100_000:
            del self.request_log[:50_000]


def origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def build_app(emu: Emulator, providers: list) -> Starlette:
    """One app: each provider under its own prefix (as if on its own host), plus the CDN,
    the signed-upload route and the emulator's control routes under /_emulator/."""

    async def cdn(request: Request) -> Response:
        key = _strip_name(request.path_params["key"], emu)
        refused = emu.cdn_signature_error(key, request.query_params)
        if refused:
            return _blob_error(403, "AuthenticationFailed", refused)
        blob = emu.blobs.get(key)
        if blob is None:
            return _blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        try:
            for provider in providers:
                blob = provider.cdn_blob(blob, request.query_params)
        except NotAnImage as e:
            return _blob_error(400, "InvalidQueryParameterValue", str(e))
        return blob_response(request, blob)

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                emu.faults.update(await request.json())
            except (ValueError, TypeError) as e:
                return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse(emu.faults.as_dict())

    async def hostile(request: Request) -> Response:
        if request.method == "POST":
            try:
                emu.hostile.update(await request.json())
            except (ValueError, TypeError) as e:
                return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse(emu.hostile.as_dict())

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            emu.request_counts.clear()
            emu.request_log.clear()
            for limit in emu.rate_limits.values():
                limit.refused = 0
            return Response(status_code=204)
        refused = {p: r.refused for p, r in emu.rate_limits.items()}  # answered with the rate-limit status
        return JSONResponse({"counts": dict(emu.request_counts), "log": emu.request_log[-1000:], "refused": refused})

    async def names(request: Request) -> Response:
        if request.method == "DELETE":
            emu.names.clear()
            return Response(status_code=204)
        return JSONResponse({"names": emu.names})

    async def rate_limits(request: Request) -> Response:
        body = await request.json()
        for provider, spec in body.items():
            limit = emu.rate_limit(provider)
            limit.limit = int(spec.get("limit", 0))
            limit.window = float(spec.get("window", 60))
        return JSONResponse({p: {"limit": r.limit, "window": r.window} for p, r in emu.rate_limits.items()})

    async def tokens(request: Request) -> Response:
        body = await request.json() if request.method == "POST" else {}
        if body.get("revoke_all"):
            emu.tokens.revoke_all()
        if "ttl" in body:
            emu.tokens.ttl = None if body["ttl"] is None else float(body["ttl"])
        if "url_ttl" in body:
            emu.url_ttl = None if body["url_ttl"] is None else float(body["url_ttl"])
        return JSONResponse({"ttl": emu.tokens.ttl, "url_ttl": emu.url_ttl, "issued": emu.tokens.issued[-10000:]})

    routes: list[BaseRoute] = [
        Route("/cdn/{key:path}", cdn, methods=["GET", "HEAD"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST"]),
        Route("/_emulator/requests", requests, methods=["GET", "DELETE"]),
        Route("/_emulator/names", names, methods=["GET", "DELETE"]),
        Route("/_emulator/rate-limits", rate_limits, methods=["POST"]),
        Route("/_emulator/tokens", tokens, methods=["GET", "POST"]),
        Route("/_emulator/hostile", hostile, methods=["GET", "POST"]),
    ]
    for provider in providers:
        if provider.control_routes():
            routes.append(Mount(f"/_emulator/{provider.name}", routes=provider.control_routes()))
        routes.append(Mount(provider.prefix, routes=provider.routes()))
        routes.extend(provider.extra_mounts())
    app = Starlette(routes=routes)
    app.add_middleware(
        HostileMiddleware, hostile=emu.hostile
    )  # innermost: faults and the request log see what was asked
    app.add_middleware(FaultMiddleware, faults=emu.faults)
    app.add_middleware(_RequestRecorder, emu=emu)
    return app


def _strip_name(key: str, emu: Emulator) -> str:
    """CDN paths may end in a file name after the blob key; find the longest known key."""
    while key and emu.blobs.get(key) is None and "/" in key:
        key = key.rsplit("/", 1)[0]
    return key


def _blob_error(status: int, code: str, message: str) -> Response:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status_code=status, media_type="application/xml")


class _RequestRecorder:
    """Counts requests per method and path, so tests can assert what reached the network."""

    def __init__(self, app, emu: Emulator):
        self.app = app
        self.emu = emu

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith("/_emulator/"):
            self.emu.record(scope["method"], scope["path"])
        await self.app(scope, receive, send)
