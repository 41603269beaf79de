"""Mudstack: workspaces, their folder tree (from `file_location`), and versioned assets.

    <account>/<workspace>/<folder>/…/<asset name>/
        <file_name>              the current version
        asset.json               the asset object as the search route answers it
        versions/v<N>/<file_name>  every version

A workspace or folder listing is its subfolders (from `GET /workspaces/folders/hierarchy`)
and one directory per asset whose `file_location` is exactly that folder
(`GET /workspaces/assets/search?file_location=…`, every page). Everything inside an asset
directory is known from the asset object, so opening one costs no request. A content
file's URL is signed and handed out on demand (`…/versions/{version_id}/download`), once
per version. Each workspace also lists `.trash`: the workspace's trashed assets
(`search?trashed=true`, every page), which a move out of it restores.

Writes: a new file in a workspace or folder is the three-step upload (a signed URL from
`POST …/assets/upload/`, the bytes PUT to it without our credentials, then
`POST …/assets/upload/assets`); writing an asset's file adds a version (`POST …/{id}/versions`);
deleting an asset moves it to the trash; folders are made and removed by path and id;
renames and moves within a workspace are `PATCH …/{id}/rename` and `PATCH …/{id}`.

Auth: `POST /auth/token {account_id, key, secret}` gives a JWT (a bare string or
`{token, expires_in}`); it is renewed shortly before it expires and after a 401. Every
call sends `Authorization`, `x-account-id`, and `x-workspace-id` where workspace-scoped.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import math
import posixpath
import re
import time
from dataclasses import dataclass

import httpx
import trio

from ..errors import AlreadyExists, DirectoryNotEmpty, Gone, NotFound, NotPermitted, NotSupported, ProviderError
from ..query import BOOL, DATE, NUMBER, SEARCH, STRING, Field, Query, QueryError, search_plan, select
from .base import (
    ASSET,
    CONTAINER,
    CONTENT,
    TRASH,
    Content,
    Entry,
    Provider,
    Upload,
    asset_json,
    first_error,
    is_picture,
    parse_time,
    plain_id,
    skip_malformed,
    text_field,
    with_mark,
)
from .http import NOT_TAKEN, ProviderHTTP, redact
from .multipart import growing_form
from .token import TokenAuth

log = logging.getLogger("assetfs.mudstack")

PAGE_SIZE = 500  # our choice; the search route's pagination is inferred (page 1-based, limit ≤ 1000)
PAGE_CONCURRENCY = 4  # pages of one folder's search fetched at once once the total is known
MAX_PAGES = 2000  # a loop guard: a million assets in one folder
DEFAULT_TOKEN_LIFETIME = 3600.0  # inferred: the docs give the JWT no lifetime
MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
VERSIONS_KEY = re.compile(r"^ws/([^/]+)/asset/([^/]+)/versions$")  # (a folder key has "/folder/" there)
TRASH_KEY = re.compile(r"^ws/([^/]+)/trash$")
ASSET_KEY = re.compile(r"^asset/([^/]+)(/content)?$")  # an asset's directory or its content file
TRASH_NAME = ".trash"
UPLOAD_CHUNK = 1 << 20  # bytes read from the spool file per chunk of the signed-URL PUT


# -- auth -----------------------------------------------------------------------------------


class MudstackAuth(TokenAuth):
    """The account's JWT, fetched once for all concurrent requests and renewed before expiry."""

    service = "Mudstack"

    def __init__(self, account: str, token_url: str, account_id: str, key: str, secret: str):
        super().__init__(account)
        self.token_url = token_url
        self.account_id = account_id
        self._credentials = {"account_id": account_id, "key": key, "secret": secret}

    def extra_headers(self) -> dict[str, str]:
        return {"x-account-id": self.account_id}

    async def fetch(self, http: ProviderHTTP) -> tuple[str, float]:
        response = await self._post(http, self.token_url, json=self._credentials)
        status = response.status_code
        self._expect(
            response, refused=f"the account id, key or secret (HTTP {status})", answered=f"HTTP {status}", ok=(200, 201)
        )
        token, lifetime = _read_token(response)
        if not token:
            raise ProviderError(f"{self.who}: the token service's answer holds no token")
        if lifetime is None:
            lifetime = DEFAULT_TOKEN_LIFETIME
            log.debug("%s: the token's lifetime is unknown; assuming %.0f s", self.account, lifetime)
        log.debug("%s: new token, valid for %.0f s", self.account, lifetime)
        return token, lifetime


def _read_token(response: httpx.Response) -> tuple[str | None, float | None]:
    """(token, lifetime in seconds or None) from a bare JWT (JSON string or plain text) or
    `{token, expires_in}`. Without `expires_in`, the JWT's own `exp` claim is used."""
    try:
        body = response.json()
    except ValueError:
        body = response.text.strip()
    lifetime = None
    if isinstance(body, dict):
        token = body.get("token") or body.get("access_token") or body.get("jwt")
        try:
            lifetime = max(0.0, float(body["expires_in"]))
        except (KeyError, TypeError, ValueError):
            pass
    else:
        token = body
    if not isinstance(token, str) or not token.strip():
        return None, None
    token = token.strip()
    if lifetime is None:
        lifetime = _jwt_lifetime(token)
    return token, lifetime


def _jwt_lifetime(token: str) -> float | None:
    """Seconds left before the JWT's `exp` claim (read, not verified), if it has one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return max(0.0, float(claims["exp"]) - time.time())
    except (ValueError, KeyError, TypeError):
        return None


# -- content --------------------------------------------------------------------------------


@dataclass
class MudstackContent(Content):
    """A version's bytes, with what the download route needs: the tree hands `resolve` the
    Content alone (possibly read back from the disk cache), so it carries its route."""

    workspace_id: str = ""
    asset_id: str = ""
    version_id: str = ""
    thumbnail_id: str = ""  # the version's `thumbnail_file_id`

    def __reduce__(self):  # Content's own would pickle it as a Content, without its route
        return (type(self), tuple(getattr(self, f.name) for f in dataclasses.fields(self)))


@dataclass
class MudstackThumbnail(MudstackContent):
    """A version's thumbnail file ("Get thumbnail"), read by its `thumbnail_id`."""


# -- keys -----------------------------------------------------------------------------------
# workspace "ws/<id>", folder "ws/<id>/folder/<path without its outer slashes>",
# asset "asset/<id>", a versions directory listed on demand "ws/<id>/asset/<id>/versions",
# a workspace's trash view "ws/<id>/trash".


def _ws_key(ws_id: str) -> str:
    return f"ws/{ws_id}"


def _folder_key(ws_id: str, path: str) -> str:
    inner = path.strip("/")
    return _ws_key(ws_id) if not inner else f"ws/{ws_id}/folder/{inner}"


def _folder_mark(total, newest: str | None, subfolders: list[dict]) -> str:
    """A folder's change mark: how many assets it holds, the newest update among them, and
    its subfolders' paths (hashed)."""
    below = "\n".join(folder["path"] for folder in subfolders)
    return f"{total}|{newest}|{hashlib.sha1(below.encode()).hexdigest()[:16]}"


def _parse_folder_key(key: str) -> tuple[str, str] | None:
    """(workspace id, folder path) of a workspace or folder key."""
    if not key.startswith("ws/"):
        return None
    ws_id, _, rest = key[3:].partition("/")
    if not rest:
        return ws_id, "/"
    if rest.startswith("folder/"):
        return ws_id, "/" + rest[len("folder/") :] + "/"
    return None


def folder_path(raw) -> str:
    """A folder path as `file_location` writes it: leading and trailing '/', root '/'."""
    parts = [p for p in str(raw or "").split("/") if p]
    return "/" + "".join(p + "/" for p in parts)


def parent_of(path: str) -> str:
    inner = path.strip("/")
    return "/" if "/" not in inner else "/" + inner.rsplit("/", 1)[0] + "/"


# -- the provider ---------------------------------------------------------------------------


class Mudstack(Provider):
    name = "mudstack"
    writes = frozenset({"create", "replace", "delete", "mkdir", "rmdir", "move"})
    # A new version is a multipart POST, which needs no length up front; a new asset's bytes
    # go to a signed storage URL whose PUT needs its Content-Length (S3 refuses chunked PUTs).
    streams = frozenset({"replace"})

    async def _get(self, path: str, ws_id: str | None = None, **kwargs):
        headers = {"x-workspace-id": ws_id} if ws_id else None
        return await self.http.json("GET", path, headers=headers, **kwargs)

    async def list_root(self) -> list[Entry]:
        body = await self._get("workspaces")
        workspaces = body.get("workspaces") if isinstance(body, dict) else body
        if not isinstance(workspaces, list):
            raise ProviderError(f"Mudstack account {self.account}: GET /workspaces has no workspaces list")
        usable = [w for w in workspaces if isinstance(w, dict) and plain_id(w.get("id"))]
        if len(usable) < len(workspaces):
            log.warning("%s: left out %d workspaces without a usable id", self.account, len(workspaces) - len(usable))
        workspaces = usable
        wanted = [str(w) for w in (self.settings.workspaces or [])]
        if wanted:
            chosen = [w for w in workspaces if str(w["id"]) in wanted or str(w.get("name")) in wanted]
            known = {str(w["id"]) for w in workspaces} | {str(w.get("name")) for w in workspaces}
            missing = [w for w in wanted if w not in known]
            if missing:
                log.warning(
                    "%s: configured workspaces not available to this account: %s", self.account, ", ".join(missing)
                )
            workspaces = chosen
        return skip_malformed(workspaces, _workspace_entry, self.account)

    # -- queries: the search route answers free text, library and status ------------------

    def query_fields(self, container: Entry) -> dict[str, Field] | None:
        return QUERY_FIELDS if container.kind == CONTAINER and _parse_folder_key(container.key) else None

    async def query(self, container: Entry, query: Query, listing=None) -> list[Entry]:
        """Per alternative, one search of the container's folder with the parameters the route
        has (`query`, `library`, `status`); every condition is then checked on the answer too,
        as what those parameters match is inferred. An alternative the route cannot narrow is
        matched on the folder's listing."""
        groups = self.bind_query(container, query)
        folder = _parse_folder_key(container.key)
        if folder is None:  # bind_query has refused it already
            raise QueryError(f"{container.name}: queries apply to directories of assets, not here")
        ws_id, path = folder
        found: dict[str, Entry] = {}
        for group in groups:
            server, _ = search_plan(group)
            if server:
                params = {SEARCH_PARAMETERS[c.clause.field]: c.clause.value for c in server}
                assets = await self._search_all(ws_id, {"file_location": path, **params})
                entries = await select(
                    skip_malformed(assets, lambda a: _asset_entry(a, ws_id), f"{self.account}/{ws_id}{path}"), [group]
                )
            else:
                entries = await select(
                    await listing() if listing is not None else await self.list_dir(container), [group]
                )
            for entry in entries:
                found.setdefault(entry.key, entry)
        return list(found.values())

    async def list_dir(self, entry: Entry) -> list[Entry]:
        if VERSIONS_KEY.match(entry.key):
            return await self._list_versions(entry)
        trash = TRASH_KEY.match(entry.key)
        if trash:
            ws_id = trash.group(1)
            return skip_malformed(
                await self._search_all(ws_id, {"trashed": "true"}),
                lambda a: _asset_entry(a, ws_id),
                f"{self.account}/{TRASH_NAME}",
            )
        parsed = _parse_folder_key(entry.key)
        if parsed is None:
            raise NotSupported(f"Mudstack: {entry.key} is not a directory that can be listed")
        ws_id, path = parsed
        folders: list[dict] = []
        assets: list[dict] = []

        async def get_folders():
            folders.extend(await self._subfolders(ws_id, path))

        async def get_assets():
            assets.extend(await self._assets_in(ws_id, path))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(get_folders)
                nursery.start_soon(get_assets)
        except ExceptionGroup as group:
            raise first_error(group) from None
        where = f"{self.account}/{ws_id}{path}"
        # Off the event loop: a huge folder takes seconds of CPU (see Spectrum's list_dir).
        entries = skip_malformed(folders, lambda f: _folder_entry(ws_id, f), where) + await trio.to_thread.run_sync(
            skip_malformed, assets, lambda a: _asset_entry(a, ws_id), where, abandon_on_cancel=False
        )
        if path == "/":
            entries.append(_trash_entry(ws_id, entry.mtime))
        newest = max(
            (a["updated_at"] for a in assets if isinstance(a.get("updated_at"), str)), key=parse_time, default=None
        )
        return with_mark(entries, _folder_mark(len(assets), newest, folders))

    async def _hierarchy(self, ws_id: str) -> dict[str, dict]:
        """Every folder of a workspace by its path (root '/' included), from the hierarchy."""
        tree = await self._get("workspaces/folders/hierarchy", ws_id)
        found: dict[str, dict] = {}

        def walk(node, parent: str | None) -> None:
            if isinstance(node, list):
                for child in node:
                    walk(child, parent)
                return
            if not isinstance(node, dict):
                return
            raw = node.get("path")
            if isinstance(raw, str) and raw:
                here = folder_path(raw)
            elif parent is not None and node.get("name"):
                here = folder_path(parent + str(node["name"]))
            else:
                here = "/"
            found.setdefault(here, node)
            walk(node.get("children") or [], here)

        walk(tree, None)
        return found

    async def _subfolders(self, ws_id: str, path: str, known: dict[str, dict] | None = None) -> list[dict]:
        """The folders directly under `path`, from the workspace's folder hierarchy (`known`:
        one already asked)."""
        found = known if known is not None else await self._hierarchy(ws_id)
        return [{**node, "path": p} for p, node in sorted(found.items()) if p != "/" and parent_of(p) == path]

    async def change_mark(self, directory: Entry, previous: str | None, this_round: dict | None = None) -> str | None:
        """The folder's search, newest update first, one asset: its update time with the
        total; and its subfolders, from the hierarchy. An upload or a delete changes the
        total, a rename or a new version the newest update (sorting by `updated_at` is
        inferred: the documents are silent), a folder made or removed elsewhere the
        subfolders (the search does not see folders). The hierarchy is asked once a round
        per workspace, however many of its folders are watched. A listing holds all three,
        so it carries the same mark."""
        parsed = _parse_folder_key(directory.key)
        if parsed is None:
            return None
        ws_id, path = parsed
        body = await self._get(
            "workspaces/assets/search",
            ws_id,
            params={"file_location": path, "sort": "updated_at", "order": "desc", "page": 1, "limit": 1},
        )
        assets = body.get("assets") if isinstance(body, dict) else None
        if not isinstance(assets, list):
            raise ProviderError(f"Mudstack account {self.account}: the asset search has no assets list")
        newest = assets[0].get("updated_at") if assets and isinstance(assets[0], dict) else None
        this_round = {} if this_round is None else this_round
        if ws_id not in this_round:
            this_round[ws_id] = await self._hierarchy(ws_id)
        return _folder_mark(
            body.get("total"),
            newest if isinstance(newest, str) else None,
            await self._subfolders(ws_id, path, this_round[ws_id]),
        )

    async def _search_page(self, ws_id: str, filters: dict, page: int) -> tuple[list[dict], int | None, int]:
        body = await self._get("workspaces/assets/search", ws_id, params={**filters, "page": page, "limit": PAGE_SIZE})
        if isinstance(body, list):  # a bare array: no paging information
            return [a for a in body if isinstance(a, dict)], None, PAGE_SIZE
        assets = body.get("assets") if isinstance(body, dict) else None
        if not isinstance(assets, list):
            raise ProviderError(f"Mudstack account {self.account}: the asset search has no assets list")
        total = body.get("total")
        limit = body.get("limit")
        return (
            [a for a in assets if isinstance(a, dict)],
            total if isinstance(total, int) and total >= 0 else None,
            limit if isinstance(limit, int) and limit > 0 else PAGE_SIZE,
        )

    async def _assets_in(self, ws_id: str, path: str) -> list[dict]:
        """Every active asset whose file_location is `path`."""
        return await self._search_all(ws_id, {"file_location": path})

    async def _search_all(self, ws_id: str, filters: dict) -> list[dict]:
        """Every asset the search finds with these filters: the first page tells the total,
        the other pages are then fetched a few at a time; if the total is missing (or grew),
        pages are read on until a short one. A page with nothing new (an API that repeats
        itself, or whose total lies) ends the listing, with a log line; so does MAX_PAGES."""
        first, total, limit = await self._search_page(ws_id, filters, 1)
        pages: dict[int, list[dict]] = {1: first}
        ids: set[str] = {str(a.get("id")) for a in first}
        stop: list[int] = []  # pages that brought nothing new
        ended: list[int] = []  # empty pages: the total was more than there is

        def take(n: int, page: list[dict]) -> None:
            pages[n] = page
            new = {str(a.get("id")) for a in page} - ids
            ids.update(new)
            if not page:
                ended.append(n)
            elif not new:
                stop.append(n)

        if total is not None and len(first) == limit:
            last = math.ceil(total / limit)
            if last > MAX_PAGES:
                log.warning(
                    "%s: the asset search %s claims %d assets (%d pages); reading at most %d pages",
                    self.account,
                    filters,
                    total,
                    last,
                    MAX_PAGES,
                )
                last = MAX_PAGES
            numbers = iter(range(2, last + 1))  # shared by the workers: each page is fetched once

            async def worker() -> None:
                for n in numbers:
                    if stop or ended:
                        return
                    take(n, (await self._search_page(ws_id, filters, n))[0])

            try:
                async with trio.open_nursery() as nursery:
                    for _ in range(PAGE_CONCURRENCY):
                        nursery.start_soon(worker)
            except ExceptionGroup as group:
                raise first_error(group) from None
        while not stop and not ended and len(pages) < MAX_PAGES:
            n = max(pages)
            if len(pages[n]) < limit or (total is not None and len(ids) >= total):
                break
            page, total, limit = await self._search_page(ws_id, filters, n + 1)
            take(n + 1, page)
        if stop:
            log.warning(
                "%s: the asset search %s repeats itself at page %d; stopping with the %d assets listed",
                self.account,
                filters,
                min(stop),
                len(ids),
            )
        seen: dict[str, dict] = {}
        for n in sorted(pages):
            for asset in pages[n]:
                seen.setdefault(str(asset.get("id")), asset)
        return list(seen.values())

    async def _list_versions(self, entry: Entry) -> list[Entry]:
        """A versions directory whose asset object carried no usable versions[]."""
        versions_key = VERSIONS_KEY.match(entry.key)
        if versions_key is None:
            raise NotFound(f"Mudstack account {self.account}: {entry.key} is not a versions directory")
        ws_id, asset_id = versions_key.groups()
        body = await self._get(f"workspaces/assets/{asset_id}/versions", ws_id)
        versions = body.get("versions") if isinstance(body, dict) else body
        if not isinstance(versions, list):
            raise ProviderError(f"Mudstack account {self.account}: the versions of asset {asset_id} are not a list")
        file_name = entry.xattrs.get("user.assetfs.file_name") or asset_id
        return skip_malformed(
            [v for v in versions if isinstance(v, dict) and plain_id(v.get("id"))],
            lambda v: _version_entry(v, asset_id, ws_id, file_name),
            f"{self.account}/{asset_id}/versions",
        )

    def head_url(self, content: Content) -> None:
        return None  # `resolve` asks the API first

    def rendition(self, file: Entry, size: int) -> Content | None:
        """The version's thumbnail file (its size is *inferred*: at most 256 px)."""
        content = file.content
        if not isinstance(content, MudstackContent) or not content.thumbnail_id or size > 256:
            return None
        if not is_picture(file.name):
            return None
        return MudstackThumbnail(
            version=f"mudstack-thumbnail:{content.thumbnail_id}",
            mime="image/png",
            workspace_id=content.workspace_id,
            thumbnail_id=content.thumbnail_id,
        )

    async def resolve(self, content: Content) -> Content:
        """The signed URL of a version (one request per version; the tree keeps the answer),
        and its size."""
        if content.url is not None and content.size is not None:
            return content
        url = await self.locate(content)
        size = content.size
        if size is None:
            size, _ = await self.http.head(url)
        return dataclasses.replace(content, url=url, size=size)

    async def locate(self, content: Content) -> str:
        """The signed URL of a version, or of a thumbnail. The version route is used even for
        the current version: it names exactly the bytes the size and checksum describe,
        whatever was uploaded since the listing."""
        if content.url is not None:
            return content.url
        if isinstance(content, MudstackThumbnail) and content.workspace_id:
            route = f"workspaces/thumbnail/{content.thumbnail_id}"  # inferred (PROVIDERS.md §4)
        elif isinstance(content, MudstackContent) and content.asset_id and content.workspace_id:
            base = f"workspaces/assets/{content.asset_id}"
            route = f"{base}/versions/{content.version_id}/download" if content.version_id else f"{base}/download"
        else:
            raise NotSupported(f"Mudstack: no download route for {content.version}")
        body = await self._get(route, content.workspace_id)
        url = (
            body
            if isinstance(body, str)
            else (body.get("url") or body.get("signed_url"))
            if isinstance(body, dict)
            else None
        )
        if not isinstance(url, str) or not url:
            raise ProviderError(f"Mudstack account {self.account}: the answer of /{route} has no url")
        return url

    # -- writes ---------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, ws_id: str, *, expect: tuple[int, ...] = (200, 201), **kwargs
    ) -> httpx.Response:
        return await self.http.request(method, path, headers={"x-workspace-id": ws_id}, expect=expect, **kwargs)

    async def _json(self, method: str, path: str, ws_id: str, *, expect: tuple[int, ...] = (200, 201), **kwargs):
        return await self.http.json(method, path, headers={"x-workspace-id": ws_id}, expect=expect, **kwargs)

    async def _asset_call(self, method: str, path: str, ws_id: str, what: str, **kwargs) -> dict:
        """A route that answers the asset object."""
        body = await self._json(method, path, ws_id, **kwargs)
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderError(f"Mudstack account {self.account}: {what}: {method} /{path} answered no asset object")
        return body

    def _container(self, entry: Entry, what: str) -> tuple[str, str]:
        """(workspace id, folder path) of a directory that holds assets, or why not."""
        parsed = _parse_folder_key(entry.key)
        if parsed is not None:
            return parsed
        if TRASH_KEY.match(entry.key):
            raise NotPermitted(f"{what}: {entry.name} only shows deleted assets; nothing can be created there")
        raise NotPermitted(
            f"{what}: Mudstack keeps assets and folders in workspaces and their folders only, "
            f"not in {entry.name or 'the account directory'}"
        )

    def _asset_ref(self, entry: Entry, what: str) -> tuple[str, str, bool]:
        """(workspace id, asset id, whether the entry is the content file) of an asset's
        directory or content file."""
        match = ASSET_KEY.match(entry.key)
        if match is None:
            raise NotPermitted(
                f"{what}: {entry.name} is not a Mudstack asset or its current file "
                "(versions/ and asset.json cannot be changed)"
            )
        ws_id = entry.xattrs.get("user.assetfs.workspace")
        if not ws_id:
            raise ProviderError(
                f"Mudstack account {self.account}: {what}: the entry of asset {match.group(1)} "
                "does not say which workspace holds it"
            )
        return ws_id, match.group(1), match.group(2) is not None

    async def create_asset(self, container: Entry, upload: Upload) -> Entry:
        """A new asset from the three-step upload: a signed URL, the bytes PUT to it, then the
        asset made from the uploaded file in the container's folder."""
        ws_id, path = self._container(container, f"creating {upload.name}")
        where = f"Mudstack account {self.account}: uploading {upload.name} to {path} of workspace {ws_id}"
        # Asking for a signed URL again after a lost answer only leaves an unused URL: retried.
        body = await self._json("POST", "workspaces/assets/upload/", ws_id, json={"name": upload.name})
        signed_url = body.get("signed_url") if isinstance(body, dict) else None
        temp_key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(signed_url, str) or not signed_url or not isinstance(temp_key, str) or not temp_key:
            raise ProviderError(f"{where}: the upload route answered no signed_url and key")
        await self._put_signed(signed_url, upload, where)
        asset = await self._asset_call(
            "POST",
            "workspaces/assets/upload/assets",
            ws_id,
            f"creating {upload.name}",
            retry=NOT_TAKEN,
            json={"temp_file_key": temp_key, "original_file_name": upload.name, "file_location": path},
        )
        current = _current_version(asset, _versions_of(asset))
        stored = _md5(current.get("checksum")) if current else None
        if stored is not None and stored != upload.md5.lower():
            # Trashed (restorable) rather than left in place, so that a retried upload
            # does not leave a second asset with the wrong bytes next to the right one.
            try:
                await self._request("DELETE", f"workspaces/assets/{asset['id']}", ws_id, expect=(200, 202, 204))
                fate = "it was moved to the trash"
            except ProviderError as e:
                fate = f"it could not be moved to the trash ({e})"
            raise ProviderError(
                f"{where}: the provider stored different bytes (md5 {stored}, the file's is "
                f"{upload.md5}) as asset {asset['id']}; {fate}"
            )
        if stored is None:
            log.debug("%s: no md5 checksum in the answer; the upload is not verified", where)
        log.info("%s: new asset %s", where, asset["id"])
        return _asset_entry(asset, ws_id)

    async def _put_signed(self, url: str, upload: Upload, where: str) -> None:
        """The bytes to the signed URL, streamed from the spool file. The URL carries its own
        signature and is not the API: no credentials go with it. Network trouble, 429 and 5xx
        are retried by the account's policy (the same bytes to the same URL)."""
        size = (await trio.Path(upload.path).stat()).st_size
        headers = {"Content-Type": upload.mime or "application/octet-stream", "Content-Length": str(size)}
        try:
            response = await self.http.request(
                "PUT",
                url,
                expect=None,
                auth=False,
                follow=False,
                headers=headers,
                body=lambda: {"content": _chunks(upload.path)},
            )
        except ProviderError as e:
            raise ProviderError(f"{where}: {e}") from None
        status = response.status_code
        if not 200 <= status < 300:
            why = " (the signed URL was refused: expired or already used?)" if status in (401, 403, 404) else ""
            raise ProviderError(f"{where}: PUT {redact(url)} answered HTTP {status}{why}")
        etag = response.headers.get("etag", "").strip().strip('"')
        if MD5_HEX.match(etag) and etag.lower() != upload.md5.lower():
            raise ProviderError(
                f"{where}: the storage received different bytes (ETag {etag}, the file's md5 is {upload.md5})"
            )

    async def replace_content(self, asset: Entry, upload: Upload) -> Entry:
        """A new version of the asset (multipart `file`); the asset as it now is, with that
        version current and listed under versions/."""
        ws_id, asset_id, _ = self._asset_ref(asset, f"writing {upload.name}")
        if asset.xattrs.get("user.assetfs.state") == "trashed":
            raise NotPermitted(
                f"writing {upload.name}: asset {asset.name} is in the trash; move it out of "
                f"{TRASH_NAME} to restore it first"
            )
        where = f"Mudstack account {self.account}: new version of asset {asset_id} ({upload.name})"
        base = f"workspaces/assets/{asset_id}"
        if upload.growing is not None:  # still being written: sent as it grows, in one try
            body, content_type = growing_form(upload)
            version = await self.http.json(
                "POST",
                f"{base}/versions",
                expect=(200, 201),
                retry=False,
                body=lambda: {"content": body(), "headers": {"x-workspace-id": ws_id, "Content-Type": content_type}},
            )
        else:
            with open(upload.path, "rb") as f:  # httpx streams the multipart body from the file  # noqa: ASYNC230
                # Retried only when refused untaken: a retry after a lost answer would add a second version.
                version = await self._json(
                    "POST",
                    f"{base}/versions",
                    ws_id,
                    retry=NOT_TAKEN,
                    files={"file": (upload.name, f, upload.mime or "application/octet-stream")},
                )
        if isinstance(version, dict) and isinstance(version.get("version"), dict) and not version.get("checksum"):
            version = version["version"]  # a version wrapped in an object
        if not isinstance(version, dict) or not version.get("id"):
            raise ProviderError(f"{where}: POST /{base}/versions answered no version object")
        stored = _md5(version.get("checksum"))
        if stored is not None and stored != upload.md5.lower():
            raise ProviderError(
                f"{where}: the provider stored different bytes (md5 {stored}, the file's is "
                f"{upload.md5}) as version {version.get('version_number') or version['id']}"
            )
        current = await self._asset_call("GET", base, ws_id, f"reading asset {asset_id}", expect=(200,))
        log.info("%s: version %s", where, version.get("version_number") or version["id"])
        return _asset_entry(_with_current(current, version), ws_id)

    async def delete_asset(self, asset: Entry) -> None:
        """To the workspace's trash (from where a move restores it)."""
        ws_id, asset_id, _ = self._asset_ref(asset, f"deleting {asset.name}")
        if asset.xattrs.get("user.assetfs.state") == "trashed":
            raise NotPermitted(
                f"deleting {asset.name}: it is already in the trash, and the Mudstack API has no "
                "way to delete an asset for good"
            )
        await self._request("DELETE", f"workspaces/assets/{asset_id}", ws_id, expect=(200, 202, 204))
        log.info("Mudstack account %s: asset %s moved to the trash", self.account, asset_id)

    async def make_container(self, parent: Entry, name: str) -> Entry:
        """One folder level (`POST /workspaces/folders?folder=/a/b`)."""
        ws_id, path = self._container(parent, f"creating folder {name}")
        if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
            raise NotPermitted(
                f"creating folder {name!r}: Mudstack folder paths cannot hold that name ('/' and '\\' separate folders)"
            )
        if path == "/" and name == TRASH_NAME:
            raise NotPermitted(f"creating folder {name}: that is the name of the workspace's trash view")
        new_path = folder_path(path + name)
        response = await self._request(
            "POST", "workspaces/folders", ws_id, params={"folder": new_path}, expect=(200, 201, 409), retry=NOT_TAKEN
        )
        if response.status_code == 409:
            # EEXIST would be the right answer; errors.py has no such error yet.
            raise AlreadyExists(f"creating folder {new_path} in workspace {ws_id}: it already exists (HTTP 409)")
        try:
            folder = response.json()
        except ValueError:
            folder = None
        if not isinstance(folder, dict) or not folder.get("id"):
            folder = (await self._hierarchy(ws_id)).get(new_path)
            if folder is None:
                raise ProviderError(
                    f"Mudstack account {self.account}: folder {new_path} was created but the hierarchy does not show it"
                )
        log.info("Mudstack account %s: folder %s created in workspace %s", self.account, new_path, ws_id)
        return _folder_entry(ws_id, {**folder, "path": folder_path(folder.get("path") or new_path)})

    async def delete_container(self, container: Entry) -> None:
        """An empty folder (`DELETE /workspaces/folders/{id}`, the id from the hierarchy)."""
        if TRASH_KEY.match(container.key):
            raise NotPermitted(f"removing {container.name}: it is the workspace's trash view, not a folder")
        parsed = _parse_folder_key(container.key)
        if parsed is None:
            raise NotPermitted(f"removing {container.name}: it is not a Mudstack folder")
        ws_id, path = parsed
        if path == "/":
            raise NotPermitted(
                f"removing workspace {container.name}: the Mudstack API documents no way to delete a workspace"
            )
        folder = (await self._hierarchy(ws_id)).get(path)
        if folder is None or not folder.get("id"):
            raise Gone(f"Mudstack account {self.account}: folder {path} of workspace {ws_id} no longer exists")
        response = await self._request(
            "DELETE", f"workspaces/folders/{folder['id']}", ws_id, expect=(200, 202, 204, 404, 409)
        )
        if response.status_code == 409:
            # ENOTEMPTY would be the right answer; errors.py has no such error yet.
            raise DirectoryNotEmpty(
                f"removing folder {path} of workspace {ws_id}: it is not empty (it still holds folders or assets)"
            )
        if response.status_code == 404:  # gone since the hierarchy was read (or a retried DELETE)
            log.debug("Mudstack account %s: folder %s was already gone", self.account, path)
        log.info("Mudstack account %s: folder %s removed from workspace %s", self.account, path, ws_id)

    async def move_asset(self, asset: Entry, container: Entry, name: str | None) -> Entry:
        """Rename (`PATCH …/{id}/rename`, or the update's `name` and `file_name`) and/or move
        (`PATCH …/{id}` with file_location) within a workspace; out of the trash view,
        restore first (`PATCH …/{id}/restore`); into it, delete. The file name becomes
        exactly `name`; None keeps it."""
        what = f"moving {asset.name} to {container.name}/{name or asset.name}"
        ws_id, asset_id, is_content = self._asset_ref(asset, what)
        if is_content:
            raise NotPermitted(f"{what}: an asset's file is named after the asset; rename the asset's directory")
        trash = TRASH_KEY.match(container.key)
        if trash:
            target_ws, target = trash.group(1), None
        else:
            target_ws, target = self._container(container, what)
        if target_ws != ws_id:
            raise NotPermitted(f"{what}: moving between workspaces is not an API operation")
        base = f"workspaces/assets/{asset_id}"
        trashed = asset.xattrs.get("user.assetfs.state") == "trashed"
        current: dict | None = None
        if target is not None and trashed:
            current = await self._asset_call("PATCH", f"{base}/restore", ws_id, what)
        file_name = text_field((current or {}).get("file_name")) or _file_name_of(asset)
        if name is not None and name != file_name:
            stem, extension = posixpath.splitext(name)
            # The rename names the asset and keeps the file's extension: the stem gives `name`,
            # unless the stem ends with it too (`b.jpg.jpg`), which the rename takes as whole.
            doubled = extension and stem.lower().endswith(extension.lower())
            if extension == posixpath.splitext(file_name)[1] and not doubled:
                current = await self._asset_call("PATCH", f"{base}/rename", ws_id, what, json={"name": stem})
            else:
                # Another extension, or none (`scene.blend` → `scene.blend1`, `notes.txt` →
                # `notes`), which the rename would keep: the update sets the file name as it is.
                fields = {"name": stem, "file_name": name}
                current = await self._asset_call("PATCH", base, ws_id, what, json=fields)
        if target is not None:
            location = current.get("file_location") if current else asset.xattrs.get("user.assetfs.file_location")
            if folder_path(location) != target:
                current = await self._asset_call("PATCH", base, ws_id, what, json={"file_location": target})
        elif not trashed:
            response = await self._request("DELETE", base, ws_id, expect=(200, 202, 204))
            try:
                body = response.json()
            except ValueError:
                body = None
            current = body if isinstance(body, dict) and body.get("id") else None
        if current is None:
            current = await self._asset_call("GET", base, ws_id, what, expect=(200,))
        if target is not None and current.get("isActive") is False:  # the entry said active, the API says trashed
            current = await self._asset_call("PATCH", f"{base}/restore", ws_id, what)
        log.info(
            "Mudstack account %s: asset %s is now %r in %s",
            self.account,
            asset_id,
            current.get("name"),
            current.get("file_location") if current.get("isActive", True) else TRASH_NAME,
        )
        return _asset_entry(current, ws_id)


async def _chunks(path):
    """A spool file's bytes, a chunk at a time (never the whole file in memory)."""
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(UPLOAD_CHUNK):
            yield chunk


# -- queries --------------------------------------------------------------------------------


def _libraries(asset: dict) -> list:
    return [
        v for lib in asset.get("libraries") or [] if isinstance(lib, dict) for v in (lib.get("id"), lib.get("name"))
    ]


def _statuses(asset: dict) -> list:
    """The asset's status (id and name) and its reviews' statuses: what `status` matches (inferred)."""
    status = asset.get("assetStatus")
    if not isinstance(status, dict):
        status = {}
    reviews = [r.get("review") for r in asset.get("reviewRequests") or [] if isinstance(r, dict)]
    return [status.get("id"), status.get("name"), *(r.get("status") for r in reviews if isinstance(r, dict))]


SEARCH_PARAMETERS = {"text": "query", "library": "library", "status": "status"}
QUERY_FIELDS = {
    "text": Field(SEARCH, get=lambda a: [a.get("name"), a.get("file_name")], server=frozenset({"=="}), once=True),
    "library": Field(STRING, get=_libraries, fold=True, server=frozenset({"=="}), once=True),
    "status": Field(STRING, get=_statuses, fold=True, server=frozenset({"=="}), once=True),
    "name": Field(STRING, get=lambda a: [text_field(a.get("name")) or text_field(a.get("file_name")) or a.get("id")]),
    "id": Field(STRING, "id"),
    "file_name": Field(STRING, "file_name"),
    "file_location": Field(STRING, "file_location"),
    "created_at": Field(DATE, "created_at"),
    "updated_at": Field(DATE, "updated_at"),
    "tags.name": Field(STRING, "tags.name"),
    "assetType.name": Field(STRING, "assetType.name"),
    "assetStatus.name": Field(STRING, "assetStatus.name"),
    "currentVersion.size": Field(NUMBER, "currentVersion.size"),
    "currentVersion.version_number": Field(NUMBER, "currentVersion.version_number"),
    "locked_by_user_id": Field(STRING, "locked_by_user_id"),
    "favorited": Field(BOOL, "favorited"),
}

# -- entries --------------------------------------------------------------------------------


def _workspace_entry(ws: dict) -> Entry:
    ws_id = str(ws["id"])
    xattrs = {
        "user.assetfs.id": ws_id,
        "user.assetfs.workspace": ws_id,
        "user.assetfs.created": str(ws.get("created_at") or ""),
    }
    return Entry(
        str(ws.get("name") or ws_id),
        _ws_key(ws_id),
        True,
        parse_time(ws.get("updated_at") or ws.get("created_at")),
        xattrs={k: v for k, v in xattrs.items() if v},
        kind=CONTAINER,
    )


def _folder_entry(ws_id: str, folder: dict) -> Entry:
    path = folder["path"]
    name = folder.get("name") or path.strip("/").rsplit("/", 1)[-1]
    xattrs = {
        "user.assetfs.id": str(folder.get("id") or ""),
        "user.assetfs.file_location": path,
        "user.assetfs.workspace": ws_id,
        "user.assetfs.created": str(folder.get("created_at") or ""),
    }
    return Entry(
        str(name),
        _folder_key(ws_id, path),
        True,
        parse_time(folder.get("created_at")),
        xattrs={k: v for k, v in xattrs.items() if v},
        kind=CONTAINER,
    )


def _trash_entry(ws_id: str, mtime: float) -> Entry:
    """A workspace's trash view: its trashed assets, listed when opened."""
    return Entry(
        TRASH_NAME,
        f"ws/{ws_id}/trash",
        True,
        mtime,
        xattrs={"user.assetfs.workspace": ws_id, "user.assetfs.state": "trashed"},
        kind=TRASH,
    )


def _md5(checksum) -> str | None:
    """The checksum as an md5 for the reader to verify — only if it looks like one."""
    return checksum.lower() if isinstance(checksum, str) and MD5_HEX.match(checksum) else None


def _content(version: dict, asset_id: str, ws_id: str) -> MudstackContent:
    version_id = plain_id(version.get("id")) or ""
    size = version.get("size")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    return MudstackContent(
        version=f"mudstack:{version_id}",
        size=size,
        md5=_md5(version.get("checksum")),
        workspace_id=ws_id,
        asset_id=asset_id,
        version_id=version_id,
        thumbnail_id=plain_id(version.get("thumbnail_file_id")) or "",
    )


def _version_xattrs(version: dict, asset_id: str) -> dict[str, str]:
    return {
        "user.assetfs.id": asset_id,
        "user.assetfs.version": str(version.get("version_number") or ""),
        "user.assetfs.version_id": str(version.get("id") or ""),
        "user.assetfs.checksum": str(version.get("checksum") or ""),
        "user.assetfs.md5": _md5(version.get("checksum")) or "",
        "user.assetfs.created": str(version.get("created_at") or ""),
    }


def _version_entry(version: dict, asset_id: str, ws_id: str, file_name: str) -> Entry:
    version_id = str(version["id"])
    number = version.get("version_number") or version.get("sequence")
    mtime = parse_time(version.get("created_at") or version.get("updated_at"))
    # Versions carry no file name of their own in the documented shape; one that does keeps it.
    name = version.get("file_name") or version.get("original_file_name") or file_name
    xattrs = {k: v for k, v in _version_xattrs(version, asset_id).items() if v}
    file = Entry(
        str(name),
        f"asset/{asset_id}/versions/{version_id}/file",
        False,
        mtime,
        content=_content(version, asset_id, ws_id),
        xattrs=xattrs,
    )
    dir_xattrs = {**xattrs, "user.assetfs.id": version_id}
    dir_xattrs.pop("user.assetfs.version_id", None)
    return Entry(
        f"v{number}" if number is not None else str(version.get("name") or version_id),
        f"asset/{asset_id}/versions/{version_id}",
        True,
        mtime,
        children=[file],
        xattrs=dir_xattrs,
    )


def _current_version(asset: dict, versions: list[dict]) -> dict | None:
    current_id = asset.get("current_version_id")
    for candidate in (asset.get("currentVersion"), asset.get("version")):
        if isinstance(candidate, dict) and candidate.get("id") and (not current_id or candidate["id"] == current_id):
            return candidate
    for v in versions:
        if v.get("id") == current_id:
            return v
    return max(versions, key=_version_number) if versions else None


def _version_number(version: dict) -> int:
    """A version's number for ordering; 0 when it has none (or not a number)."""
    number = version.get("version_number")
    if isinstance(number, str) and number.isdigit():
        return int(number)
    return number if isinstance(number, int) and not isinstance(number, bool) else 0


def _versions_of(asset: dict) -> list[dict]:
    raw = asset.get("versions")
    return [v for v in raw if isinstance(v, dict)] if isinstance(raw, list) else []


def _with_current(asset: dict, version: dict) -> dict:
    """The asset object with `version` as its current version (when the asset read back
    after an upload does not show it yet)."""
    if asset.get("current_version_id") == version["id"]:
        return asset
    versions = [v for v in _versions_of(asset) if v.get("id") != version["id"]] + [version]
    return {
        **asset,
        "current_version_id": version["id"],
        "currentVersion": version,
        "version": version,
        "versions": versions,
    }


def _file_name_of(asset: Entry) -> str:
    """The file name an asset's entry shows (its content file's), or its name without one."""
    return next((c.name for c in asset.children or () if c.kind == CONTENT), asset.name)


def _asset_entry(asset: dict, ws_id: str) -> Entry:
    asset_id = plain_id(asset.get("id"))
    if asset_id is None:
        raise ValueError("the asset has no usable id")
    ws_id = plain_id(asset.get("workspace_id")) or ws_id
    file_name = text_field(asset.get("file_name")) or text_field(asset.get("name")) or asset_id
    mtime = parse_time(asset.get("updated_at") or asset.get("created_at"))
    raw_versions = asset.get("versions")
    versions = [v for v in raw_versions if isinstance(v, dict)] if isinstance(raw_versions, list) else []
    complete = bool(versions) and all(plain_id(v.get("id")) for v in versions)
    current = _current_version(asset, versions)
    asset_type = asset.get("assetType")
    if not isinstance(asset_type, dict):
        asset_type = {}

    xattrs = {
        "user.assetfs.id": asset_id,
        "user.assetfs.state": "active" if asset.get("isActive", True) else "trashed",
        "user.assetfs.workspace": ws_id,
        "user.assetfs.file_location": str(asset.get("file_location") or ""),
        "user.assetfs.created": str(asset.get("created_at") or ""),
        "user.assetfs.type": str(asset_type.get("name") or ""),
    }
    if current is not None:
        xattrs.update({k: v for k, v in _version_xattrs(current, asset_id).items() if k != "user.assetfs.created"})
    xattrs = {k: v for k, v in xattrs.items() if v}

    children = []
    if current is not None and plain_id(current.get("id")):
        children.append(
            Entry(
                file_name,
                f"asset/{asset_id}/content",
                False,
                mtime,
                content=_content(current, asset_id, ws_id),
                xattrs=dict(xattrs),
                kind=CONTENT,
            )
        )
    children.append(Entry("asset.json", f"asset/{asset_id}/asset.json", False, mtime, inline=asset_json(asset)))
    if complete:
        children.append(
            Entry(
                "versions",
                f"asset/{asset_id}/versions",
                True,
                mtime,
                children=[_version_entry(v, asset_id, ws_id, file_name) for v in versions],
            )
        )
    else:
        # The asset object came without usable versions[]: list them when the directory is opened.
        children.append(
            Entry(
                "versions",
                f"ws/{ws_id}/asset/{asset_id}/versions",
                True,
                mtime,
                xattrs={"user.assetfs.id": asset_id, "user.assetfs.file_name": file_name},
            )
        )
    return Entry(
        text_field(asset.get("name")) or file_name,
        f"asset/{asset_id}",
        True,
        mtime,
        children=children,
        xattrs=xattrs,
        kind=ASSET,
    )


def create(account: str, settings, config, stats, timeout: float) -> Mudstack:
    base_url = settings.base_url.rstrip("/")
    auth = MudstackAuth(
        account,
        base_url + "/auth/token",
        config.secret(account, "account_id"),
        config.secret(account, "key"),
        config.secret(account, "secret"),
    )
    http = ProviderHTTP(settings.base_url, auth, timeout=timeout, stats=stats)
    return Mudstack(account, settings, http)
