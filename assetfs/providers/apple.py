"""Apple Business Connect: the brand assets of organizations, one directory per asset.

The tree is `<orgId>/<brandId>/<asset>/`. Organizations and their brands come from the
config; an organization without brands (or an account without organizations, which then
means the one `GET /api/v1/me` names) has its brands discovered. A brand's listing is the
assets list call, followed cursor by cursor; DELETED assets are not listed (the API shows
them only to a `state` filter).

An asset directory is named by `partnersAssetId`, else by its id. Its files are not known
from the listing: the image's file name, type and size live in the image metadata, one
request per image. Fetching that for every asset of a brand would make `ls brand/` cost a
request per asset, so the asset directory is listed on its own, when somebody opens it:
`GET …/assets/{id}` (a fresh asset.json and etag) and `GET …/images/{imageId}/metadata`
(the image file: name, size, type, CDN URL), both at once. The asset directory's key carries
the organization, brand, image and asset ids, so that listing needs nothing else; the asset
id comes last, as it is the suffix that tells duplicate names apart and it never changes.

Auth is OAuth2 client credentials (no refresh token): a new token shortly before the old
one expires, and after a 401.
"""

from __future__ import annotations

import contextvars
import logging
import mimetypes
import posixpath
import time
from urllib.parse import urljoin

import httpx
import trio

from ..errors import AuthFailed, NotFound, ProviderError
from .base import Content, Entry, Provider, asset_json, parse_time
from .http import RETRY_STATUSES, Auth, ProviderHTTP, redact

log = logging.getLogger("assetfs.apple")

API = "api/v1"
PAGE_SIZE = 100        # the emulator's (inferred) maximum; the docs give none
MAX_PAGES = 100_000    # a cursor loop guard: 10 million assets in one brand
TOKEN_MARGIN = 60.0    # seconds before expiry when a token is renewed (at most a tenth of its life)
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/heic": ".heic", "image/heif": ".heif"}

# The token the current task last sent: a 401 invalidates only that token, so requests that
# failed together with an old token do not each fetch a new one.
_sent_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("apple_sent_token", default=None)


class AppleAuth(Auth):
    """Client-credentials tokens, one fetch at a time for the account."""

    def __init__(self, account: str, client_id: str, client_secret: str):
        self.account = account
        self._body = {"client_id": client_id, "client_secret": client_secret,
                      "grant_type": "client_credentials", "scope": "business"}
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
        return {"Authorization": f"Bearer {token}"}

    def invalidate(self) -> None:
        sent = _sent_token.get()
        if sent is None or sent == self._token:
            self._token = None

    async def _fetch(self, http: ProviderHTTP) -> str:
        url = http.url(f"{API}/oauth2/token")
        response = await self._post(http, url)
        if response.status_code in (400, 401, 403):
            raise AuthFailed(f"Apple Business Connect account {self.account}: the token service refused the "
                             f"client credentials (HTTP {response.status_code}{_api_error(response)})")
        if response.status_code != 200:
            raise ProviderError(f"Apple Business Connect account {self.account}: the token service answered "
                                f"HTTP {response.status_code}{_api_error(response)}")
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError(f"Apple Business Connect account {self.account}: the token service's answer has no access_token")
        try:
            lifetime = max(0.0, float(body.get("expires_in")))
        except (TypeError, ValueError):
            lifetime = 3600.0  # as documented; a 401 renews it sooner if need be
        self._token = token
        self._renew_at = time.monotonic() + lifetime - min(TOKEN_MARGIN, lifetime / 10)
        log.debug("%s: new token, valid for %.0f s", self.account, lifetime)
        return token

    async def _post(self, http: ProviderHTTP, url: str) -> httpx.Response:
        """POST the credentials with the raw client (no auth headers, so no recursion),
        retrying network trouble, 5xx and 429 with backoff within the account's timeout."""
        deadline = time.monotonic() + http.timeout
        delay = 0.25
        for attempt in range(1, max(1, http.retries) + 1):
            try:
                response = await http.client.post(url, json=self._body)
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
        raise ProviderError(f"Apple Business Connect account {self.account}: the token service {redact(url)} failed: {problem}")


def _api_error(response: httpx.Response) -> str:
    """Apple's error code and message ({code, message, …}); they never echo the secret."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("code", "message") if isinstance(body.get(k), str) and body[k]]
    return (": " + " ".join(parts)) if parts else ""


class Apple(Provider):
    name = "apple"

    # -- organizations and brands -------------------------------------------------------------

    async def list_root(self) -> list[Entry]:
        organizations = self.settings.organizations
        if organizations:
            return [_org_entry(org) for org in organizations]
        me = await self.http.json("GET", f"{API}/me")
        details = me.get("orgDetails") if isinstance(me, dict) else None
        org = details.get("orgId") if isinstance(details, dict) else None
        if not org:
            raise ProviderError(f"Apple Business Connect account {self.account}: /me names no organization "
                                "(list them under `organizations` in the config)")
        return [_org_entry(str(org), details.get("legalName"))]

    async def lookup(self, parent: Entry, name: str) -> Entry | None:
        """An organization or brand ID typed as a path, when the API knows it."""
        if not name.isdigit():
            return None
        if parent.key == "":
            try:
                await self._brands(name)
            except (NotFound, AuthFailed):  # the API answers 403 for an organization we cannot see
                return None
            return _org_entry(name)
        parts = parent.key.split("/")
        if len(parts) == 2 and parts[0] == "org":
            try:
                await self.http.json("GET", f"{API}/orgs/{parts[1]}/brands/{name}/assets", params={"limit": 1})
            except NotFound:
                return None
            return _brand_entry(parts[1], name)
        return None

    async def list_dir(self, entry: Entry) -> list[Entry]:
        parts = entry.key.split("/")
        if len(parts) == 2 and parts[0] == "org":
            return await self._list_org(parts[1])
        if len(parts) == 4 and parts[0] == "org" and parts[2] == "brand":
            return await self._list_brand(parts[1], parts[3])
        if len(parts) == 8 and parts[0] == "org" and parts[2] == "brand" and parts[4] == "image" and parts[6] == "asset":
            return await self._list_asset(entry, parts[1], parts[3], parts[5], parts[7])
        raise ProviderError(f"Apple Business Connect: no listing for {entry.key!r}")

    async def _list_org(self, org: str) -> list[Entry]:
        configured = self.settings.organizations.get(org)
        if configured:
            return [_brand_entry(org, brand) for brand in configured]
        return [_brand_entry(org, str(b["id"]), b) for b in await self._brands(org) if b.get("id")]

    async def _brands(self, org: str) -> list[dict]:
        return await self._all_pages(f"{API}/orgs/{org}/brands", f"organization {org}")

    async def _all_pages(self, path: str, what: str) -> list[dict]:
        """Every item of a list call: `{data, pagination{cursors{after}, next}}`, page by page
        until a page has neither an `after` cursor nor a `next` link. (`total` counts only
        the page's items, so it says nothing about when to stop.)"""
        items: list[dict] = []
        url, params = path, {"limit": PAGE_SIZE}
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body = await self.http.json("GET", url, params=params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ProviderError(f"Apple Business Connect {what}: the answer has no data list")
            items.extend(item for item in data if isinstance(item, dict))
            pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
            cursors = pagination.get("cursors") if isinstance(pagination.get("cursors"), dict) else {}
            after, link = cursors.get("after"), pagination.get("next")
            if isinstance(after, str) and after:
                url, params, mark = path, {"limit": PAGE_SIZE, "after": after}, after
            elif isinstance(link, str) and link:
                # The seed's link is a path from the host's root (/api/v1/…), carrying limit and after.
                url, params, mark = urljoin(self.http.base_url, link), None, link
            else:
                return items
            if mark in seen:
                raise ProviderError(f"Apple Business Connect {what}: the API sent the same cursor twice")
            seen.add(mark)
        raise ProviderError(f"Apple Business Connect {what}: more than {MAX_PAGES} pages")

    # -- assets ----------------------------------------------------------------------------------

    async def _list_brand(self, org: str, brand: str) -> list[Entry]:
        assets = await self._all_pages(f"{API}/orgs/{org}/brands/{brand}/assets", f"brand {org}/{brand}")
        return [_asset_entry(org, brand, a) for a in assets if a.get("id")]

    async def _list_asset(self, entry: Entry, org: str, brand: str, image_id: str, asset_id: str) -> list[Entry]:
        """The asset's image file and asset.json, from the asset and its image's metadata
        (fetched together; the image again if the asset has changed its image since)."""
        found: dict[str, object] = {}

        async def get_asset():
            found["asset"] = await self.http.json("GET", f"{API}/orgs/{org}/assets/{asset_id}")

        async def get_image():
            found["image"] = await self._image(org, image_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get_asset)
            if image_id:
                nursery.start_soon(get_image)
        asset = found["asset"]
        if not isinstance(asset, dict):
            raise ProviderError(f"Apple Business Connect asset {asset_id}: the answer is not an object")
        details = _details(asset)
        current = str(details.get("imageId") or "")
        image = found.get("image") if current == image_id else (await self._image(org, current) if current else None)
        mtime = parse_time(asset.get("updatedDate") or asset.get("createdDate"))
        children = [Entry("asset.json", f"{entry.key}/asset.json", False, mtime, inline=asset_json(asset))]
        if isinstance(image, dict):
            content_file = _image_entry(entry.key, asset, image)
            if content_file is not None:
                children.insert(0, content_file)
        elif current:
            log.warning("%s: asset %s: its image %s is gone; showing asset.json only", self.account, asset_id, current)
        return children

    async def _image(self, org: str, image_id: str) -> dict | None:
        try:
            image = await self.http.json("GET", f"{API}/orgs/{org}/images/{image_id}/metadata")
        except NotFound:
            return None
        return image if isinstance(image, dict) else None


# ---- entries ------------------------------------------------------------------------------------


def _org_entry(org: str, legal_name=None) -> Entry:
    xattrs = {"user.assetfs.id": org}
    if isinstance(legal_name, str) and legal_name:
        xattrs["user.assetfs.legal_name"] = legal_name
    return Entry(org, f"org/{org}", True, xattrs=xattrs)


def _brand_entry(org: str, brand: str, meta: dict | None = None) -> Entry:
    meta = meta or {}
    xattrs = {"user.assetfs.id": brand, "user.assetfs.org_id": org,
              "user.assetfs.display_name": str(meta.get("displayName") or ""),
              "user.assetfs.state": str(meta.get("state") or "")}
    return Entry(brand, f"org/{org}/brand/{brand}", True, parse_time(meta.get("updatedDate") or meta.get("createdDate")),
                 xattrs={k: v for k, v in xattrs.items() if v})


def _details(asset: dict) -> dict:
    details = asset.get("brandAssetDetails")
    return details if isinstance(details, dict) else {}


def _asset_name(asset: dict) -> str:
    return str(_details(asset).get("partnersAssetId") or asset.get("id"))


def _alt_texts(details: dict) -> str:
    texts = details.get("altTexts")
    if not isinstance(texts, list):
        return ""
    return "; ".join(f"{t.get('locale') or '?'}: {t.get('text') or ''}" for t in texts if isinstance(t, dict))


def _asset_xattrs(asset: dict) -> dict[str, str]:
    details = _details(asset)
    xattrs = {
        "user.assetfs.id": str(asset.get("id") or ""),
        "user.assetfs.state": str(asset.get("state") or ""),
        "user.assetfs.etag": str(asset.get("etag") or ""),
        "user.assetfs.intent": str(details.get("intent") or ""),
        "user.assetfs.partners_asset_id": str(details.get("partnersAssetId") or ""),
        "user.assetfs.image_id": str(details.get("imageId") or ""),
        "user.assetfs.alt_texts": _alt_texts(details),
        "user.assetfs.created": str(asset.get("createdDate") or ""),
    }
    return {k: v for k, v in xattrs.items() if v}


def _asset_entry(org: str, brand: str, asset: dict) -> Entry:
    asset_id, image_id = str(asset["id"]), str(_details(asset).get("imageId") or "")
    key = f"org/{org}/brand/{brand}/image/{image_id}/asset/{asset_id}"
    return Entry(_asset_name(asset), key, True, parse_time(asset.get("updatedDate") or asset.get("createdDate")),
                 xattrs=_asset_xattrs(asset))


def _extension(mime) -> str:
    if not isinstance(mime, str) or not mime:
        return ""
    mime = mime.split(";", 1)[0].strip().lower()
    return EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ""


def _image_entry(asset_key: str, asset: dict, image: dict) -> Entry | None:
    """The content file: named by the image's `filename` (with an extension from its type
    when it has none), else by the asset's name plus that extension."""
    image_id = str(image.get("id") or _details(asset).get("imageId") or "")
    url = image.get("cdnUrl")
    if not image_id or not isinstance(url, str) or not url:
        log.warning("asset %s: the image metadata has no cdnUrl; no content file", asset.get("id"))
        return None
    mime = image.get("contentType") if isinstance(image.get("contentType"), str) else None
    ext = _extension(mime)
    filename = image.get("filename")
    name = posixpath.basename(filename) if isinstance(filename, str) else ""
    if not name.strip() or name == "asset.json":  # the latter would push asset.json off its name
        name = _asset_name(asset) + ext
    elif ext and not posixpath.splitext(name)[1]:
        name += ext
    size = image.get("fileSize")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    xattrs = _asset_xattrs(asset)
    xattrs.update({
        "user.assetfs.image_id": image_id,
        "user.assetfs.mime": mime or "",
        "user.assetfs.width": str(image.get("width") or ""),
        "user.assetfs.height": str(image.get("height") or ""),
        "user.assetfs.image_state": str(image.get("state") or ""),
        "user.assetfs.image_created": str(image.get("createdDate") or ""),
    })
    mtime = parse_time(image.get("updatedDate") or image.get("createdDate") or asset.get("updatedDate"))
    content = Content(version=f"apple:image:{image_id}", url=url, size=size, mime=mime)
    return Entry(name, f"{asset_key}/content", False, mtime, content=content,
                 xattrs={k: v for k, v in xattrs.items() if v})


def create(account: str, settings, config, stats, timeout: float) -> Apple:
    auth = AppleAuth(account, config.secret(account, "client_id"), config.secret(account, "client_secret"))
    http = ProviderHTTP(settings.base_url, auth, timeout=timeout, stats=stats)
    return Apple(account, settings, http)
