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
per version. Trashed assets are not shown here (the trash view is a later issue).

Auth: `POST /auth/token {account_id, key, secret}` gives a JWT (a bare string or
`{token, expires_in}`); it is renewed shortly before it expires and after a 401. Every
call sends `Authorization`, `x-account-id`, and `x-workspace-id` where workspace-scoped.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import json
import logging
import math
import re
import time
from dataclasses import dataclass

import httpx
import trio

from ..errors import AuthFailed, NotSupported, ProviderError
from .base import Content, Entry, Provider, asset_json, parse_time
from .http import RETRY_STATUSES, Auth, ProviderHTTP, redact

log = logging.getLogger("assetfs.mudstack")

PAGE_SIZE = 500          # our choice; the search route's pagination is inferred (page 1-based, limit ≤ 1000)
PAGE_CONCURRENCY = 4     # pages of one folder's search fetched at once once the total is known
DEFAULT_TOKEN_LIFETIME = 3600.0  # inferred: the docs give the JWT no lifetime
TOKEN_MARGIN = 60.0      # seconds before expiry when the token is renewed (at most a tenth of its life)
MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
VERSIONS_KEY = re.compile(r"^ws/([^/]+)/asset/([^/]+)/versions$")  # (a folder key has "/folder/" there)

# The token the current task last sent, so that a 401 invalidates that token only (after
# one request has renewed it, the others that failed with the old one need not renew again).
_sent_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("mudstack_sent_token", default=None)


# -- auth -----------------------------------------------------------------------------------

class MudstackAuth(Auth):
    """The account's JWT, fetched once for all concurrent requests and renewed before expiry."""

    def __init__(self, account: str, token_url: str, account_id: str, key: str, secret: str):
        self.account = account
        self.token_url = token_url
        self.account_id = account_id
        self._credentials = {"account_id": account_id, "key": key, "secret": secret}
        self._lock = trio.Lock()
        self._token: str | None = None
        self._renew_at = 0.0  # time.monotonic() after which the token is renewed

    def _current(self) -> str | None:
        if self._token is not None and time.monotonic() < self._renew_at:
            return self._token
        return None

    async def headers(self, http: ProviderHTTP) -> dict[str, str]:
        token = self._current()
        if token is None:
            async with self._lock:
                token = self._current() or await self._fetch(http)
        _sent_token.set(token)
        return {"Authorization": f"Bearer {token}", "x-account-id": self.account_id}

    def invalidate(self) -> None:
        sent = _sent_token.get()
        if sent is None or sent == self._token:
            self._token = None

    async def _fetch(self, http: ProviderHTTP) -> str:
        response = await self._post(http)
        if response.status_code in (400, 401, 403):
            raise AuthFailed(f"Mudstack account {self.account}: the token service refused the account id, "
                             f"key or secret (HTTP {response.status_code})")
        if response.status_code not in (200, 201):
            raise ProviderError(f"Mudstack account {self.account}: the token service answered "
                                f"HTTP {response.status_code}")
        token, lifetime = _read_token(response)
        if not token:
            raise ProviderError(f"Mudstack account {self.account}: the token service's answer holds no token")
        if lifetime is None:
            lifetime = DEFAULT_TOKEN_LIFETIME
            log.debug("%s: the token's lifetime is unknown; assuming %.0f s", self.account, lifetime)
        self._token = token
        self._renew_at = time.monotonic() + lifetime - min(TOKEN_MARGIN, lifetime / 10)
        log.debug("%s: new token, valid for %.0f s", self.account, lifetime)
        return token

    async def _post(self, http: ProviderHTTP) -> httpx.Response:
        """POST the credentials with the raw client (the token URL is on the trusted origin:
        going through `http.request` would ask this object for headers again), retrying
        network trouble, 429 and 5xx with backoff within the account's timeout."""
        deadline = time.monotonic() + http.timeout
        delay = 0.25
        problem = "no attempt"
        for attempt in range(1, max(1, http.retries) + 1):
            wait = delay
            try:
                response = await http.client.post(self.token_url, json=self._credentials)
            except httpx.TransportError as e:
                http.stats.add("errors")
                problem = f"{type(e).__name__}: {e or 'connection failed'}"
            else:
                http.stats.add("requests")
                if response.status_code not in RETRY_STATUSES:
                    return response
                http.stats.add("errors")
                problem = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    wait = max(wait, float(retry_after))
            if attempt >= http.retries or time.monotonic() + wait > deadline:
                break
            await trio.sleep(wait)
            delay = min(8.0, delay * 2)
        raise ProviderError(f"Mudstack account {self.account}: the token service {redact(self.token_url)} "
                            f"failed: {problem}")


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


# -- keys -----------------------------------------------------------------------------------
# workspace "ws/<id>", folder "ws/<id>/folder/<path without its outer slashes>",
# asset "asset/<id>", a versions directory listed on demand "ws/<id>/asset/<id>/versions".

def _ws_key(ws_id: str) -> str:
    return f"ws/{ws_id}"


def _folder_key(ws_id: str, path: str) -> str:
    inner = path.strip("/")
    return _ws_key(ws_id) if not inner else f"ws/{ws_id}/folder/{inner}"


def _parse_folder_key(key: str) -> tuple[str, str] | None:
    """(workspace id, folder path) of a workspace or folder key."""
    if not key.startswith("ws/"):
        return None
    ws_id, _, rest = key[3:].partition("/")
    if not rest:
        return ws_id, "/"
    if rest.startswith("folder/"):
        return ws_id, "/" + rest[len("folder/"):] + "/"
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

    async def _get(self, path: str, ws_id: str | None = None, **kwargs):
        headers = {"x-workspace-id": ws_id} if ws_id else None
        return await self.http.json("GET", path, headers=headers, **kwargs)

    async def list_root(self) -> list[Entry]:
        body = await self._get("workspaces")
        workspaces = body.get("workspaces") if isinstance(body, dict) else body
        if not isinstance(workspaces, list):
            raise ProviderError(f"Mudstack account {self.account}: GET /workspaces has no workspaces list")
        workspaces = [w for w in workspaces if isinstance(w, dict) and w.get("id")]
        wanted = [str(w) for w in (self.settings.workspaces or [])]
        if wanted:
            chosen = [w for w in workspaces if str(w["id"]) in wanted or str(w.get("name")) in wanted]
            known = {str(w["id"]) for w in workspaces} | {str(w.get("name")) for w in workspaces}
            missing = [w for w in wanted if w not in known]
            if missing:
                log.warning("%s: configured workspaces not available to this account: %s",
                            self.account, ", ".join(missing))
            workspaces = chosen
        return [_workspace_entry(w) for w in workspaces]

    async def list_dir(self, entry: Entry) -> list[Entry]:
        if VERSIONS_KEY.match(entry.key):
            return await self._list_versions(entry)
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

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get_folders)
            nursery.start_soon(get_assets)
        return [_folder_entry(ws_id, f) for f in folders] + [_asset_entry(a, ws_id) for a in assets]

    async def _subfolders(self, ws_id: str, path: str) -> list[dict]:
        """The folders directly under `path`, from the workspace's folder hierarchy."""
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
        return [{**node, "path": p} for p, node in sorted(found.items()) if p != "/" and parent_of(p) == path]

    async def _search_page(self, ws_id: str, path: str, page: int) -> tuple[list[dict], int | None, int]:
        body = await self._get("workspaces/assets/search", ws_id,
                               params={"file_location": path, "page": page, "limit": PAGE_SIZE})
        if isinstance(body, list):  # a bare array: no paging information
            return [a for a in body if isinstance(a, dict)], None, PAGE_SIZE
        assets = body.get("assets") if isinstance(body, dict) else None
        if not isinstance(assets, list):
            raise ProviderError(f"Mudstack account {self.account}: the asset search has no assets list")
        total = body.get("total")
        limit = body.get("limit")
        return ([a for a in assets if isinstance(a, dict)],
                total if isinstance(total, int) and total >= 0 else None,
                limit if isinstance(limit, int) and limit > 0 else PAGE_SIZE)

    async def _assets_in(self, ws_id: str, path: str) -> list[dict]:
        """Every active asset whose file_location is `path`: the first page tells the total,
        the other pages are then fetched a few at a time; if the total is missing (or grew),
        pages are read on until a short one."""
        first, total, limit = await self._search_page(ws_id, path, 1)
        pages: dict[int, list[dict]] = {1: first}
        if total is not None and len(first) == limit:
            last = math.ceil(total / limit)
            limiter = trio.CapacityLimiter(PAGE_CONCURRENCY)

            async def fetch(n: int) -> None:
                async with limiter:
                    pages[n] = (await self._search_page(ws_id, path, n))[0]

            async with trio.open_nursery() as nursery:
                for n in range(2, last + 1):
                    nursery.start_soon(fetch, n)
        seen: dict[str, dict] = {}
        for n in sorted(pages):
            for asset in pages[n]:
                seen.setdefault(str(asset.get("id")), asset)
        while True:
            n = max(pages)
            if len(pages[n]) < limit or (total is not None and len(seen) >= total):
                break
            pages[n + 1], total, limit = await self._search_page(ws_id, path, n + 1)
            before = len(seen)
            for asset in pages[n + 1]:
                seen.setdefault(str(asset.get("id")), asset)
            if len(seen) == before:  # a page with nothing new: the route does not page as we think
                log.warning("%s: the asset search of %s repeats itself at page %d; stopping there",
                            self.account, path, n + 1)
                break
        return list(seen.values())

    async def _list_versions(self, entry: Entry) -> list[Entry]:
        """A versions directory whose asset object carried no usable versions[]."""
        ws_id, asset_id = VERSIONS_KEY.match(entry.key).groups()
        body = await self._get(f"workspaces/assets/{asset_id}/versions", ws_id)
        versions = body.get("versions") if isinstance(body, dict) else body
        if not isinstance(versions, list):
            raise ProviderError(f"Mudstack account {self.account}: the versions of asset {asset_id} are not a list")
        file_name = entry.xattrs.get("user.assetfs.file_name") or asset_id
        return [_version_entry(v, asset_id, ws_id, file_name) for v in versions if isinstance(v, dict) and v.get("id")]

    async def resolve(self, content: Content) -> Content:
        """The signed URL of a version (one request per version; the tree keeps the answer).
        The version route is used even for the current version: it names exactly the bytes
        the size and checksum describe, whatever was uploaded since the listing."""
        if content.url is not None and content.size is not None:
            return content
        if not isinstance(content, MudstackContent) or not content.asset_id or not content.workspace_id:
            raise NotSupported(f"Mudstack: no download route for {content.version}")
        base = f"workspaces/assets/{content.asset_id}"
        route = f"{base}/versions/{content.version_id}/download" if content.version_id else f"{base}/download"
        body = await self._get(route, content.workspace_id)
        url = body if isinstance(body, str) else (body.get("url") or body.get("signed_url")) if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderError(f"Mudstack account {self.account}: the download answer for asset "
                                f"{content.asset_id} has no url")
        size = content.size
        if size is None:
            size, _ = await self.http.head(url)
        return dataclasses.replace(content, url=url, size=size)


# -- entries --------------------------------------------------------------------------------

def _workspace_entry(ws: dict) -> Entry:
    ws_id = str(ws["id"])
    xattrs = {"user.assetfs.id": ws_id, "user.assetfs.workspace": ws_id,
              "user.assetfs.created": str(ws.get("created_at") or "")}
    return Entry(str(ws.get("name") or ws_id), _ws_key(ws_id), True,
                 parse_time(ws.get("updated_at") or ws.get("created_at")),
                 xattrs={k: v for k, v in xattrs.items() if v})


def _folder_entry(ws_id: str, folder: dict) -> Entry:
    path = folder["path"]
    name = folder.get("name") or path.strip("/").rsplit("/", 1)[-1]
    xattrs = {"user.assetfs.id": str(folder.get("id") or ""), "user.assetfs.file_location": path,
              "user.assetfs.workspace": ws_id, "user.assetfs.created": str(folder.get("created_at") or "")}
    return Entry(str(name), _folder_key(ws_id, path), True, parse_time(folder.get("created_at")),
                 xattrs={k: v for k, v in xattrs.items() if v})


def _md5(checksum) -> str | None:
    """The checksum as an md5 for the reader to verify — only if it looks like one."""
    return checksum.lower() if isinstance(checksum, str) and MD5_HEX.match(checksum) else None


def _content(version: dict, asset_id: str, ws_id: str) -> MudstackContent:
    version_id = str(version.get("id") or "")
    size = version.get("size")
    return MudstackContent(version=f"mudstack:{version_id}", size=size if isinstance(size, int) and size >= 0 else None,
                           md5=_md5(version.get("checksum")), workspace_id=ws_id, asset_id=asset_id,
                           version_id=version_id)


def _version_xattrs(version: dict, asset_id: str) -> dict[str, str]:
    return {"user.assetfs.id": asset_id, "user.assetfs.version": str(version.get("version_number") or ""),
            "user.assetfs.version_id": str(version.get("id") or ""),
            "user.assetfs.checksum": str(version.get("checksum") or ""),
            "user.assetfs.md5": _md5(version.get("checksum")) or "",
            "user.assetfs.created": str(version.get("created_at") or "")}


def _version_entry(version: dict, asset_id: str, ws_id: str, file_name: str) -> Entry:
    version_id = str(version["id"])
    number = version.get("version_number") or version.get("sequence")
    mtime = parse_time(version.get("created_at") or version.get("updated_at"))
    # Versions carry no file name of their own in the documented shape; one that does keeps it.
    name = version.get("file_name") or version.get("original_file_name") or file_name
    xattrs = {k: v for k, v in _version_xattrs(version, asset_id).items() if v}
    file = Entry(str(name), f"asset/{asset_id}/versions/{version_id}/file", False, mtime,
                 content=_content(version, asset_id, ws_id), xattrs=xattrs)
    dir_xattrs = {**xattrs, "user.assetfs.id": version_id}
    dir_xattrs.pop("user.assetfs.version_id", None)
    return Entry(f"v{number}" if number is not None else str(version.get("name") or version_id),
                 f"asset/{asset_id}/versions/{version_id}", True, mtime, children=[file], xattrs=dir_xattrs)


def _current_version(asset: dict, versions: list[dict]) -> dict | None:
    current_id = asset.get("current_version_id")
    for candidate in (asset.get("currentVersion"), asset.get("version")):
        if isinstance(candidate, dict) and candidate.get("id") and (not current_id or candidate["id"] == current_id):
            return candidate
    for v in versions:
        if v.get("id") == current_id:
            return v
    return max(versions, key=lambda v: v.get("version_number") or 0) if versions else None


def _asset_entry(asset: dict, ws_id: str) -> Entry:
    asset_id = str(asset.get("id") or "")
    ws_id = str(asset.get("workspace_id") or ws_id)
    file_name = str(asset.get("file_name") or asset.get("name") or asset_id)
    mtime = parse_time(asset.get("updated_at") or asset.get("created_at"))
    raw_versions = asset.get("versions")
    versions = [v for v in raw_versions if isinstance(v, dict)] if isinstance(raw_versions, list) else []
    complete = bool(versions) and all(v.get("id") for v in versions)
    current = _current_version(asset, versions)
    asset_type = asset.get("assetType") if isinstance(asset.get("assetType"), dict) else {}

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
    if current is not None and current.get("id"):
        children.append(Entry(file_name, f"asset/{asset_id}/content", False, mtime,
                              content=_content(current, asset_id, ws_id), xattrs=dict(xattrs)))
    children.append(Entry("asset.json", f"asset/{asset_id}/asset.json", False, mtime, inline=asset_json(asset)))
    if complete:
        children.append(Entry("versions", f"asset/{asset_id}/versions", True, mtime,
                              children=[_version_entry(v, asset_id, ws_id, file_name) for v in versions]))
    else:
        # The asset object came without usable versions[]: list them when the directory is opened.
        children.append(Entry("versions", f"ws/{ws_id}/asset/{asset_id}/versions", True, mtime,
                              xattrs={"user.assetfs.id": asset_id, "user.assetfs.file_name": file_name}))
    return Entry(str(asset.get("name") or file_name), f"asset/{asset_id}", True, mtime, children=children, xattrs=xattrs)


def create(account: str, settings, config, stats, timeout: float) -> Mudstack:
    base_url = settings.base_url.rstrip("/")
    auth = MudstackAuth(account, base_url + "/auth/token", config.secret(account, "account_id"),
                        config.secret(account, "key"), config.secret(account, "secret"))
    http = ProviderHTTP(settings.base_url, auth, timeout=timeout, stats=stats)
    return Mudstack(account, settings, http)
