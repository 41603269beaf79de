"""iQmetrix Asset Media Service: named collections of assets, each asset a directory with
its file and asset.json.

The API cannot list. A collection is the list of asset GUIDs the config gives it; its
listing fetches each one (`GET /assets/{id}`, a few at a time), and a GUID typed as a path
under a collection resolves on its own. Images stream from `/images/{id}` (a 303 to the
stored file); videos, for which that route answers 400, from the asset's `href`.

Auth is an OAuth2 password grant on a host of its own (accounts.iqmetrix.net); the token
is refreshed shortly before it expires, and a refused refresh falls back to signing in again.
"""

from __future__ import annotations

import contextvars
import logging
import mimetypes
import posixpath
import re
import time
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx
import trio

from ..errors import AssetfsError, AuthFailed, NotFound, NotSupported, ProviderError
from .base import Content, Entry, Provider, asset_json
from .http import RETRY_STATUSES, Auth, ProviderHTTP, redact

log = logging.getLogger("assetfs.iqmetrix")

CONCURRENCY = 8        # assets of a collection fetched at once (there is no list route)
TOKEN_MARGIN = 60.0    # seconds before expiry when a token is renewed (at most a tenth of its life)
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REDIRECTS = (301, 302, 303, 307, 308)

# The access token the current task last sent, so that a 401 invalidates only that token:
# after one request has renewed it, the other requests that failed with the old one must
# not renew it again (a refresh revokes the token it replaces, which would fail them anew).
_sent_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("iqmetrix_sent_token", default=None)


class IQmetrixAuth(Auth):
    """OAuth2 password grant with refresh; one token request at a time for the account."""

    def __init__(self, account: str, auth_url: str, username: str, password: str, client_id: str, client_secret: str):
        self.account = account
        self.token_url = auth_url.rstrip("/") + "/oauth2/token"
        self._username = username
        self._password = password
        self._client = {"client_id": client_id, "client_secret": client_secret}
        self._lock = trio.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = 0.0  # time.monotonic() after which the access token is renewed

    def _current(self) -> str | None:
        if self._access is not None and time.monotonic() < self._renew_at:
            return self._access
        return None

    async def headers(self, http: ProviderHTTP) -> dict[str, str]:
        token = self._current()
        if token is None:
            async with self._lock:
                token = self._current() or await self._fetch(http)
        _sent_token.set(token)
        return {"Authorization": f"Bearer {token}"}

    def invalidate(self) -> None:
        sent = _sent_token.get()
        if sent is None or sent == self._access:
            self._access = None  # the refresh token is kept: the next request refreshes

    async def _fetch(self, http: ProviderHTTP) -> str:
        if self._refresh is not None:
            try:
                return await self._grant(http, "refresh", {"grant_type": "refresh_token", "refresh_token": self._refresh})
            except AuthFailed as e:
                log.info("%s: %s; signing in again", self.account, e)
                self._refresh = None
        return await self._grant(http, "sign-in", {"grant_type": "password", "username": self._username,
                                                   "password": self._password})

    async def _grant(self, http: ProviderHTTP, what: str, form: dict[str, str]) -> str:
        response = await self._post(http, {**form, **self._client})
        if response.status_code in (400, 401, 403):
            raise AuthFailed(f"iQmetrix account {self.account}: the token service refused the {what} "
                             f"(HTTP {response.status_code} {_oauth_error(response)})")
        if response.status_code != 200:
            raise ProviderError(f"iQmetrix account {self.account}: the token service answered the {what} "
                                f"with HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise ProviderError(f"iQmetrix account {self.account}: the token service's answer has no access_token")
        try:
            lifetime = max(0.0, float(body.get("expires_in")))
        except (TypeError, ValueError):
            lifetime = 3600.0  # not given: assume an hour, a 401 renews it sooner if need be
        refresh = body.get("refresh_token")
        self._access = access
        self._refresh = refresh if isinstance(refresh, str) and refresh else None
        self._renew_at = time.monotonic() + lifetime - min(TOKEN_MARGIN, lifetime / 10)
        log.debug("%s: %s done, token valid for %.0f s", self.account, what, lifetime)
        return access

    async def _post(self, http: ProviderHTTP, form: dict[str, str]) -> httpx.Response:
        """POST to the token URL with the raw client (no auth headers: no recursion), retrying
        network trouble, 5xx and 429 with backoff within the account's timeout."""
        deadline = time.monotonic() + http.timeout
        delay = 0.25
        for attempt in range(1, max(1, http.retries) + 1):
            try:
                response = await http.client.post(self.token_url, data=form)
            except httpx.TransportError as e:
                http.stats.add("errors")
                problem = f"{type(e).__name__}: {e or 'connection failed'}"
            else:
                http.stats.add("requests")
                if response.status_code not in RETRY_STATUSES:
                    return response
                http.stats.add("errors")
                problem = f"HTTP {response.status_code}"
            if attempt >= http.retries or time.monotonic() + delay > deadline:
                break
            await trio.sleep(delay)
            delay = min(8.0, delay * 2)
        raise ProviderError(f"iQmetrix account {self.account}: the token service {redact(self.token_url)} "
                            f"failed: {problem}")


def _oauth_error(response: httpx.Response) -> str:
    """The OAuth2 error code of a refusal (invalid_grant, invalid_client, …), never the body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return error if isinstance(error, str) and re.fullmatch(r"[A-Za-z_]{1,64}", error) else "no error code"


class IQmetrix(Provider):
    name = "iqmetrix"

    def __init__(self, account: str, settings, http: ProviderHTTP):
        super().__init__(account, settings, http)
        # content version → the stored file's URL (the asset's href): sizing an image with
        # one HEAD there instead of following /images/{id} first.
        self._hrefs: dict[str, str] = {}

    async def list_root(self) -> list[Entry]:
        return [Entry(name, f"collection/{name}", True, xattrs={"user.assetfs.collection": name})
                for name in self.settings.collections]

    async def list_dir(self, entry: Entry) -> list[Entry]:
        if not entry.key.startswith("collection/"):
            raise NotFound(entry.key)
        collection = entry.key.removeprefix("collection/")
        ids = self._configured_ids(collection)
        assets: list[dict | None] = [None] * len(ids)
        failures: list[AssetfsError] = []
        limiter = trio.CapacityLimiter(CONCURRENCY)

        async def fetch(index: int, asset_id: str) -> None:
            async with limiter:
                try:
                    assets[index] = await self._get_asset(asset_id)
                except NotFound:
                    log.warning("%s/%s: asset %s was not found (404); it is left out", self.account, collection, asset_id)
                except AssetfsError as e:
                    failures.append(e)
                    nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for index, asset_id in enumerate(ids):
                nursery.start_soon(fetch, index, asset_id)
        if failures:
            raise failures[0]
        return [self._asset_entry(a, collection) for a in assets if a is not None]

    def _configured_ids(self, collection: str) -> list[str]:
        ids, seen = [], set()
        for raw in self.settings.collections.get(collection, []):
            asset_id = str(raw).strip()
            if not GUID.match(asset_id):
                log.warning("%s/%s: %r is not an asset GUID; it is left out", self.account, collection, asset_id)
            elif asset_id.lower() not in seen:
                seen.add(asset_id.lower())
                ids.append(asset_id)
        return ids

    async def lookup(self, parent: Entry, name: str) -> Entry | None:
        """An asset GUID typed as a path under a collection: the asset, under that name."""
        if not parent.key.startswith("collection/") or not GUID.match(name):
            return None
        try:
            asset = await self._get_asset(name)
        except NotFound:
            return None
        entry = self._asset_entry(asset, parent.key.removeprefix("collection/"))
        entry.name = name  # the name the kernel asked for, so that it stays the same node's name
        return entry

    async def _get_asset(self, asset_id: str) -> dict:
        body = await self.http.json("GET", f"assets/{quote(asset_id, safe='')}")
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderError(f"iQmetrix asset {asset_id}: the answer is not an asset object")
        return body

    def _asset_entry(self, asset: dict, collection: str) -> Entry:
        ident = str(asset["id"])
        name = asset.get("name") if isinstance(asset.get("name"), str) and asset.get("name") else ident
        mime = asset.get("mimeType") if isinstance(asset.get("mimeType"), str) else None
        md5 = asset.get("md5Checksum") if isinstance(asset.get("md5Checksum"), str) and asset.get("md5Checksum") else None
        href = asset.get("href") if isinstance(asset.get("href"), str) and asset.get("href") else None
        xattrs = {
            "user.assetfs.id": ident,
            "user.assetfs.mime": mime or "",
            "user.assetfs.md5": md5 or "",
            "user.assetfs.width": "" if asset.get("width") is None else str(asset.get("width")),
            "user.assetfs.height": "" if asset.get("height") is None else str(asset.get("height")),
            "user.assetfs.collection": collection,
        }
        xattrs = {k: v for k, v in xattrs.items() if v}
        children = [Entry("asset.json", f"asset/{ident}/asset.json", False, inline=asset_json(asset))]
        # Images come from the documented content route (303 to the stored file); any
        # other type (videos: /images answers 400) from the href, the stored file itself.
        is_image = (mime or "").lower().startswith("image/")
        url = self.http.url(f"images/{quote(ident, safe='')}") if is_image else href
        if url is not None:
            version = f"iqmetrix:{ident}:{md5}" if md5 else f"iqmetrix:{ident}"
            if href is not None:
                self._hrefs[version] = href
            content = Content(version, url=url, md5=md5, mime=mime)
            children.insert(0, Entry(_file_name(name, ident, mime, href), f"asset/{ident}/content", False,
                                     content=content, xattrs=dict(xattrs)))
        return Entry(name, f"asset/{ident}", True, children=children, xattrs=xattrs)

    async def resolve(self, content: Content) -> Content:
        """The size, from one HEAD of the stored file (found via /images/{id} when the href
        is not at hand, e.g. for a listing read back from the disk cache)."""
        if content.url is None:
            raise NotSupported(f"no URL for {content.version}")
        if content.size is not None:
            return content
        target = self._hrefs.get(content.version)
        if target is None:
            target = content.url
            if target.startswith(self.http.url("images/")):
                response = await self.http.request("GET", target, follow=False, expect=REDIRECTS)
                if "location" not in response.headers:
                    raise ProviderError(f"GET {redact(target)}: a redirect without a Location")
                target = urljoin(target, response.headers["location"])
        size, _ = await self.http.head(target)
        return Content(content.version, content.url, size, content.md5, content.mime)


def _file_name(name: str, ident: str, mime: str | None, href: str | None) -> str:
    """The content file's name: the asset's name, with an extension when it has none."""
    if not posixpath.splitext(name)[1]:
        ext = posixpath.splitext(unquote(urlsplit(href or "").path))[1] or mimetypes.guess_extension(mime or "") or ""
        name += ext
    if name.strip() == "asset.json":  # keep the metadata file's name for the metadata
        name = ident + ".json"
    return name


def create(account: str, settings, config, stats, timeout: float) -> IQmetrix:
    auth = IQmetrixAuth(account, settings.auth_url, config.secret(account, "username"),
                        config.secret(account, "password"), config.secret(account, "client_id"),
                        config.secret(account, "client_secret"))
    http = ProviderHTTP(settings.base_url, auth, timeout=timeout, stats=stats, trusted_urls=(settings.auth_url,))
    return IQmetrix(account, settings, http)
