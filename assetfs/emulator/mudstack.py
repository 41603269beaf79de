"""Mudstack (PROVIDERS.md §4, seed 004): workspaces, folder paths, versioned assets, a shared trash.

Every route answers both at the prefix root and under /v1, as the docs show both. Calls carry
`Authorization: Bearer <jwt>` and `x-account-id`, plus `x-workspace-id` where the route works
inside a workspace. Uploads go through a signed URL (`PUT /upload/mudstack/…`), as with S3.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import posixpath
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from . import renditions
from .app import Emulator
from .blobs import Blob
from .mudstack_store import Account, ApiError, Workspace, build_account, content_type_for, folder_path, uid
from .provider import ProviderEmulator
from .tokens import Grant, bearer

TOKEN_TTL = 3600  # inferred: the docs give no lifetime for the JWT
UPLOAD_PREFIX = "mudstack/uploads/"
MAX_PAGE = 1000  # inferred
KEPT_PAGES = 256 << 20  # bytes of search answers kept while nothing changes


@dataclass
class _PendingUpload:
    """A signed upload URL handed out and not yet turned into an asset."""

    workspace_id: str
    name: str
    blob: Blob | None = None


class MudstackEmulator(ProviderEmulator):
    name = "mudstack"
    prefix = "/mudstack"
    account_name = "studio"

    def __init__(self, emu: Emulator):
        super().__init__(emu)
        self.account: Account = build_account(emu)
        self.pending: dict[str, _PendingUpload] = {}
        # Search answers kept as sent until a request that may change the store: a page of
        # 500 assets is 2 MB of JSON, which a real service sends faster than Python builds
        # it, so the benchmark's listings are served at the speed of the client.
        self._pages: dict[tuple, bytes | memoryview] = {}
        self._thumbnails: dict[str, dict] = {}  # workspace id → thumbnail_file_id → version

    # --- wiring --------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [Mount("/v1", routes=self._api_routes()), *self._api_routes()]

    def extra_mounts(self) -> list[BaseRoute]:
        # The signed upload URL's host (S3 in the real service); only Mudstack's keys live here.
        return [
            Mount(
                "/upload/" + UPLOAD_PREFIX.rstrip("/"), routes=[Route("/{rest:path}", self.put_upload, methods=["PUT"])]
            )
        ]

    def _api_routes(self) -> list[BaseRoute]:
        api = self._api
        assets = "/workspaces/assets"
        one = assets + "/{asset_id}"
        return [
            Route("/auth/token", self._errors(self.token), methods=["POST"]),
            Route("/workspaces", api(self.list_workspaces, scoped=False), methods=["GET"]),
            Route(assets + "/getByIds", api(self.get_by_ids), methods=["GET"]),
            Route(assets + "/search", api(self.search), methods=["GET"]),
            Route(assets + "/upload/", api(self.upload_url), methods=["POST"]),
            Route(assets + "/upload", api(self.upload_url), methods=["POST"]),
            Route(assets + "/upload/assets", api(self.create_from_upload), methods=["POST"]),
            # inferred: the single-asset paths (PROVIDERS.md §4)
            Route(one, api(self.get_asset), methods=["GET"]),
            Route(one, api(self.update_asset), methods=["PATCH"]),
            Route(one, api(self.delete_asset), methods=["DELETE"]),
            Route(one + "/restore", api(self.restore_asset), methods=["PATCH"]),
            Route(one + "/rename", api(self.rename_asset), methods=["PATCH"]),
            Route(one + "/download", api(self.download), methods=["GET"]),
            Route(one + "/versions", api(self.list_versions), methods=["GET"]),
            Route(one + "/versions", api(self.new_version), methods=["POST"]),
            Route(one + "/versions/{version_id}/download", api(self.download), methods=["GET"]),
            # inferred: "Get thumbnail" by a version's `thumbnail_file_id`, answered as Download is
            Route("/workspaces/thumbnail/{file_id}", api(self.thumbnail), methods=["GET"]),
            Route("/workspaces/folders", api(self.create_folder), methods=["POST"]),
            Route("/workspaces/folders/hierarchy", api(self.hierarchy), methods=["GET"]),
            Route("/workspaces/folders/{folder_id}", api(self.delete_folder), methods=["DELETE"]),
        ]

    def _errors(self, handler):
        """Rate limiting, then the handler; an ApiError becomes its JSON answer."""

        async def endpoint(request: Request) -> Response:
            try:
                wait = self.emu.rate_limit(self.name).hit()
                if wait is not None:
                    # inferred: body and Retry-After header of the documented 429
                    raise ApiError(429, "Too many requests, slow down", {"Retry-After": str(max(1, math.ceil(wait)))})
                return await handler(request)
            except ApiError as e:
                return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

        return endpoint

    def _api(self, handler, scoped: bool = True):
        """An authenticated route; `scoped` ones also need a workspace of this account."""

        async def authorized(request: Request) -> Response:
            self._authenticate(request)
            workspace = self._workspace(request) if scoped else None
            if request.method in ("GET", "HEAD"):
                return await handler(request, workspace)
            self._pages.clear()  # search answers kept from before this request are not sent during it
            try:
                return await handler(request, workspace)
            finally:
                self._pages.clear()  # nor after it (the answer goes out once this returns)

        return self._errors(authorized)

    # --- auth ----------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        body = await _body(request, allow_form=True)  # one public client sends a form
        fields = [str(body.get(k) or "") for k in ("account_id", "key", "secret")]
        if not all(fields):
            raise ApiError(400, "account_id, key and secret are required")  # inferred status
        expected = [self.account.id, self.account.key, self.account.secret]
        if not all(hmac.compare_digest(a.encode(), b.encode()) for a, b in zip(fields, expected)):
            raise ApiError(401, "Invalid credentials")
        opaque, grant = self.emu.tokens.issue(self.name, self.account.id, TOKEN_TTL)
        # Documented both as a bare JWT and as {token, expires_in}; we answer the object (inferred).
        return JSONResponse({"token": _jwt(opaque, grant), "expires_in": self.emu.tokens.lifetime(TOKEN_TTL)})

    def _authenticate(self, request: Request) -> None:
        jwt = bearer(request.headers.get("authorization")) or ""
        grant = self.emu.tokens.check(self.name, jwt.rsplit(".", 1)[-1]) if jwt.count(".") == 2 else None
        if grant is None:
            raise ApiError(401, "Invalid or expired token")
        account_id = request.headers.get("x-account-id")
        if not account_id:
            raise ApiError(400, "Missing x-account-id header")
        if account_id != grant.subject:
            raise ApiError(403, "The token does not belong to this account")  # inferred: mismatch is 403

    def _workspace(self, request: Request) -> Workspace:
        workspace_id = request.headers.get("x-workspace-id")
        if not workspace_id:
            raise ApiError(400, "Missing x-workspace-id header")
        ws = self.account.workspaces.get(workspace_id)
        if ws is None or ws.account_id != self.account.id:
            raise ApiError(403, "Workspace not available to this account")  # inferred: unknown is 403 too
        return ws

    # --- workspaces and assets -------------------------------------------------------
    async def list_workspaces(self, request: Request, _) -> Response:
        return JSONResponse({"workspaces": [w.json() for w in self.account.own_workspaces()]})

    async def get_by_ids(self, request: Request, ws: Workspace) -> Response:
        # inferred: `ids` comma-separated and/or repeated; unknown ids are left out
        ids = [
            i.strip()
            for raw in request.query_params.getlist("ids") + request.query_params.getlist("ids[]")
            for i in raw.split(",")
            if i.strip()
        ]
        if not ids:
            raise ApiError(400, "ids is required")
        return JSONResponse([self.account.asset_json(ws.assets[i]) for i in dict.fromkeys(ids) if i in ws.assets])

    async def search(self, request: Request, ws: Workspace) -> Response:
        key = (ws.id, *sorted(request.query_params.multi_items()))
        if key not in self._pages:
            page = self._search(request, ws)
            if sum(map(len, self._pages.values())) + len(page.body) > KEPT_PAGES:
                return page
            self._pages[key] = page.body
        return Response(self._pages[key], media_type="application/json")

    def _search(self, request: Request, ws: Workspace) -> Response:
        q = request.query_params
        # inferred: page (1-based) and limit; file_location (exact folder, or with
        # includeSubfolders=true the whole subtree); trashed=true lists the shared trash.
        page, limit = _int(q, "page", 1, 1, None), _int(q, "limit", 50, 1, MAX_PAGE)
        location = folder_path(q["file_location"]) if q.get("file_location") else None
        found = ws.search(
            q.get("query", ""),
            q.get("library", ""),
            q.get("status", ""),
            location,
            _flag(q, "includeSubfolders"),
            _flag(q, "trashed"),
        )
        # inferred (the documents are silent): sort=updated_at|created_at|name, order=asc|desc
        if q.get("sort") in ("updated_at", "created_at", "name"):
            found.sort(key=lambda a: getattr(a, q["sort"]), reverse=q.get("order", "asc").lower() == "desc")
        window = found[(page - 1) * limit : page * limit]
        return JSONResponse(
            {"assets": [self.account.asset_json(a) for a in window], "total": len(found), "page": page, "limit": limit}
        )

    async def get_asset(self, request: Request, ws: Workspace) -> Response:
        return JSONResponse(self.account.asset_json(ws.asset(request.path_params["asset_id"])))

    async def update_asset(self, request: Request, ws: Workspace) -> Response:
        asset = ws.asset(request.path_params["asset_id"])
        body = await _body(request)
        # inferred: the updatable fields; others are ignored
        if "file_location" in body:
            asset.file_location = ws.ensure_folder(folder_path(str(body["file_location"])))
            self.emu.name_used(self.name, "move", asset.file_name, asset.file_location)
        for key in ("name", "file_name"):
            if key in body:
                setattr(asset, key, _file_name(body[key]))
                self.emu.name_used(self.name, "rename", getattr(asset, key), asset.file_location)
        if "status_id" in body:
            if body["status_id"] is not None and not any(s["id"] == body["status_id"] for s in ws.statuses):
                raise ApiError(400, "Unknown status_id")
            asset.status_id = body["status_id"]
        if "locked_by_user_id" in body:
            if body["locked_by_user_id"] is not None and body["locked_by_user_id"] not in self.account.users:
                raise ApiError(400, "Unknown user")
            asset.locked_by = body["locked_by_user_id"]
        asset.updated_at = time.time()
        return JSONResponse(self.account.asset_json(asset))

    async def delete_asset(self, request: Request, ws: Workspace) -> Response:
        asset = ws.asset(request.path_params["asset_id"])
        asset.active, asset.updated_at = False, time.time()  # to the shared trash
        return JSONResponse(self.account.asset_json(asset))  # inferred: 200 with the trashed asset

    async def restore_asset(self, request: Request, ws: Workspace) -> Response:
        asset = ws.asset(request.path_params["asset_id"])
        ws.ensure_folder(asset.file_location)  # inferred: its folder comes back if it was removed
        asset.active, asset.updated_at = True, time.time()
        return JSONResponse(self.account.asset_json(asset))

    async def rename_asset(self, request: Request, ws: Workspace) -> Response:
        asset = ws.asset(request.path_params["asset_id"])
        name = _file_name((await _body(request)).get("name"))
        # inferred: the file name follows the new name and keeps its extension
        ext = posixpath.splitext(asset.file_name)[1]
        if ext and name.lower().endswith(ext.lower()) and len(name) > len(ext):
            asset.name, asset.file_name = name[: -len(ext)], name
        else:
            asset.name, asset.file_name = name, name + ext
        self.emu.name_used(self.name, "rename", asset.file_name, asset.file_location)
        asset.updated_at = time.time()
        return JSONResponse(self.account.asset_json(asset))

    async def download(self, request: Request, ws: Workspace) -> Response:
        """A signed URL of the current version's bytes (or of one version's); shape inferred."""
        asset = ws.asset(request.path_params["asset_id"])
        version_id = request.path_params.get("version_id")
        version = asset.version(version_id) if version_id else asset.current
        return JSONResponse({"url": self.emu.cdn_url(request, version.blob.key, asset.file_name)})

    async def thumbnail(self, request: Request, ws: Workspace) -> Response:
        """A signed URL of a version's thumbnail file (inferred: a PNG of at most 256 px)."""
        wanted = request.path_params["file_id"]
        known = self._thumbnails.get(ws.id, {})
        if wanted not in known:  # made since: the workspace's versions indexed again
            known = self._thumbnails[ws.id] = {
                uid(v.id, "thumbnail"): v for asset in ws.assets.values() for v in asset.versions
            }
        version = known.get(wanted)
        if version is None:
            raise ApiError(404, "Thumbnail not found")
        try:
            thumb = await run_in_threadpool(
                renditions.rendition, self.emu.blobs, version.blob, 256, 256, "max", "image/png"
            )
        except renditions.NotAnImage:
            raise ApiError(404, "This file has no thumbnail") from None
        return JSONResponse({"url": self.emu.cdn_url(request, thumb.key, "thumbnail.png")})

    # --- versions and uploads -----------------------------------------------------------
    async def list_versions(self, request: Request, ws: Workspace) -> Response:
        asset = ws.asset(request.path_params["asset_id"])
        return JSONResponse(
            [self.account.version_json(v) for v in asset.versions]
        )  # inferred: a bare array, oldest first

    async def new_version(self, request: Request, ws: Workspace) -> Response:
        asset = ws.asset(request.path_params["asset_id"])
        async with request.form(max_files=1) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "A multipart `file` part is required")
            key = f"mudstack/{asset.id}/v{len(asset.versions) + 1}-{secrets.token_hex(4)}"
            self.emu.name_used(self.name, "version", upload.filename or "", asset.file_location)
            content_type = upload.content_type or content_type_for(asset.file_name)
            blob = await run_in_threadpool(self.emu.blobs.add_stream, key, upload.file, content_type)
            version = ws.add_version(
                asset, blob, self.account.api_user, time.time(), str(form.get("description") or "")
            )
        return JSONResponse(self.account.version_json(version), status_code=201)

    async def upload_url(self, request: Request, ws: Workspace) -> Response:
        name = _file_name((await _body(request)).get("name"))
        self.emu.name_used(self.name, "upload", name)
        key = UPLOAD_PREFIX + secrets.token_hex(16)
        self.pending[key] = _PendingUpload(ws.id, name)
        return JSONResponse({"signed_url": self.emu.signed_upload_url(request, key), "key": key})

    async def put_upload(self, request: Request) -> Response:
        """The signed URL: raw bytes streamed to disk, answered as S3 answers a PUT."""
        path = request.url.path
        key = path.removeprefix("/upload/")
        if not hmac.compare_digest(request.query_params.get("sig", "").encode(), self.emu.sign(path).encode()):
            return _storage_error(403, "SignatureDoesNotMatch", "The request signature does not match.")
        pending = self.pending.get(key)
        if pending is None:
            return _storage_error(404, "NoSuchUpload", "The upload URL is unknown or already used.")
        content_type = request.headers.get("content-type") or content_type_for(pending.name)
        with tempfile.TemporaryFile(dir=self.emu.blobs.root) as spool:
            async for chunk in request.stream():
                spool.write(chunk)
            spool.seek(0)
            pending.blob = await run_in_threadpool(self.emu.blobs.add_stream, key, spool, content_type)
        return Response(status_code=200, headers={"ETag": f'"{pending.blob.md5}"'})

    async def create_from_upload(self, request: Request, ws: Workspace) -> Response:
        body = await _body(request)
        key = str(body.get("temp_file_key") or "")
        pending = self.pending.get(key)
        if pending is None or pending.workspace_id != ws.id or pending.blob is None:
            raise ApiError(400, "temp_file_key does not name a finished upload")  # inferred status
        file_name = _file_name(body.get("original_file_name") or pending.name)
        location = folder_path(str(body.get("file_location") or "/"))
        # inferred: missing folders of file_location are created; name is the file name without extension
        asset = ws.add_asset(str(uuid.uuid4()), file_name, location, pending.blob, self.account.api_user, time.time())
        self.emu.name_used(self.name, "create", file_name, location)
        del self.pending[key]
        return JSONResponse(self.account.asset_json(asset), status_code=201)  # inferred: 201

    # --- folders --------------------------------------------------------------------------
    async def create_folder(self, request: Request, ws: Workspace) -> Response:
        raw = request.query_params.get("folder")
        if raw is None and request.headers.get("content-type", "").startswith("application/json"):
            raw = (await _body(request)).get("folder")  # inferred: a JSON body is accepted too
        if not raw or folder_path(raw) == "/":
            raise ApiError(400, "folder is required")
        folder = ws.add_folder(raw)
        self.emu.name_used(self.name, "folder", folder.path.rstrip("/").rsplit("/", 1)[-1], folder.path)
        return JSONResponse(folder.json(), status_code=201)  # inferred: 201 with the folder

    async def hierarchy(self, request: Request, ws: Workspace) -> Response:
        return JSONResponse(ws.hierarchy())

    async def delete_folder(self, request: Request, ws: Workspace) -> Response:
        return JSONResponse(ws.delete_folder(request.path_params["folder_id"]).json())  # inferred: 200 with it

    # --- config -------------------------------------------------------------------------
    def account_config(self, base_url: str) -> dict:
        return {
            "provider": self.name,
            "base_url": base_url + self.prefix,
            "account_id": self.account.id,
            "key": self.account.key,
            "secret": self.account.secret,
        }

    def curl_examples(self, base_url: str) -> list[str]:
        base = base_url + self.prefix
        creds = json.dumps({"account_id": self.account.id, "key": self.account.key, "secret": self.account.secret})
        return [
            f"TOKEN=$(curl -s -X POST {base}/auth/token -H 'content-type: application/json' -d '{creds}'"
            " | python3 -c 'import sys,json; print(json.load(sys.stdin)[\"token\"])')",
            f"curl -s {base}/workspaces -H \"Authorization: Bearer $TOKEN\" -H 'x-account-id: {self.account.id}'",
        ]


def _jwt(opaque: str, grant: Grant) -> str:
    """A JWT-shaped token (inferred): readable claims, and the emulator's opaque token as its
    signature part, which is what is checked."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()

    claims = {"sub": grant.subject, "account_id": grant.subject, "iat": int(time.time()), "exp": int(grant.expires_at)}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{opaque}"


async def _body(request: Request, allow_form: bool = False) -> dict:
    if allow_form and not request.headers.get("content-type", "").startswith("application/json"):
        async with request.form() as form:
            return {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "The body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object")
    return body


def _file_name(value) -> str:
    name = str(value or "").strip()
    if not name or "/" in name or name in (".", ".."):
        raise ApiError(400, "A file name is required (without '/')")
    return name


def _int(query, key: str, default: int, low: int, high: int | None) -> int:
    try:
        value = int(query.get(key, default))
    except ValueError:
        raise ApiError(400, f"{key} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise ApiError(400, f"{key} must be between {low} and {high or 'any'}")
    return value


def _flag(query, key: str) -> bool:
    return query.get(key, "").lower() in ("1", "true", "yes")


def _storage_error(status: int, code: str, message: str) -> Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status_code=status, media_type="application/xml")
