"""Apple Business Connect: the brand assets of organizations, one directory per asset.

The tree is `<organization>/<brand>/<asset file>`: organizations by their legal name (from
`GET /api/v1/me`) and brands by their display name, IDs where the API gives no name.
Organizations and their brands come from the config; an organization without brands (or
an account without organizations, which then means the one `/me` names) has its brands
discovered. A brand's listing is the
assets list call, followed cursor by cursor; DELETED assets are not listed (the API shows
them only to a `state` filter).

An asset's file is named by `partnersAssetId` (else its id) plus its image's extension. The
image's type, size and CDN URL live in the image metadata, not in the assets list: listing a
brand asks for every image's metadata (a few at a time, within the rate limit), so each
asset shows as a file with its real extension and size. An asset directory (under `.assets/`)
listed on its own reads `GET …/assets/{id}` (a fresh asset.json and etag) and the image's
metadata at once. The asset's key carries the organization, brand, image and asset ids, so
that listing needs nothing else; the asset id comes last, as it is the suffix that tells
duplicate names apart and it never changes.

Auth is OAuth2 client credentials (no refresh token): a new token shortly before the old
one expires, and after a 401.

Writes: brands are the containers (an organization holds brands, not assets). A new file in
a brand becomes an uploaded image plus a new brand asset named by the file name without its
extension; the intent is the file's `user.assetfs.intent` xattr, else the account's
`default_intent`. New bytes for an asset's image are a new image put in the asset with
If-Match on its etag (never a blind overwrite); deleting an asset directory deletes the
asset (soft: the API keeps it 40 days, unlisted). Apple takes JPEG, PNG and HEIC images of
at most 15 MB.
"""

from __future__ import annotations

import logging
import mimetypes
import posixpath
import time
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
import trio

from ..errors import AssetfsError, AuthFailed, Gone, InvalidArgument, NotFound, NotPermitted, ProviderError
from ..names import with_extension
from ..query import DATE, SEARCH, STRING, Field, Query, search_plan
from ..query.fields import ALL, EQUALITY
from .base import (
    ASSET,
    CONTAINER,
    CONTENT,
    Content,
    Entry,
    Provider,
    Upload,
    asset_json,
    first_error,
    parse_time,
    plain_id,
    skip_malformed,
    text_field,
    with_mark,
)
from .http import NOT_TAKEN, ProviderHTTP, redact
from .token import TokenAuth

log = logging.getLogger("assetfs.apple")

API = "api/v1"
PAGE_SIZE = 100  # the emulator's (inferred) maximum; the docs give none
MAX_PAGES = 100_000  # a cursor loop guard: 10 million assets in one brand
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/heic": ".heic", "image/heif": ".heif"}
INTENTS = ("PLACECARD_LOGO", "COVER_PHOTO", "GALLERY")
INTENT_XATTR = "user.assetfs.intent"
MAX_IMAGE_BYTES = 15 * 1024 * 1024  # documented: images of at most 15 MB
IMAGES_AT_ONCE = 8  # image metadata requests in flight while listing a brand


class AppleAuth(TokenAuth):
    """Client-credentials tokens, one fetch at a time for the account."""

    service = "Apple Business Connect"

    def __init__(self, account: str, client_id: str, client_secret: str):
        super().__init__(account)
        self._body = {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "client_credentials",
            "scope": "business",
        }

    async def fetch(self, http: ProviderHTTP) -> tuple[str, float]:
        response = await self._post(http, http.url(f"{API}/oauth2/token"), json=self._body)
        status, why = response.status_code, _api_error(response)
        self._expect(response, refused=f"the client credentials (HTTP {status}{why})", answered=f"HTTP {status}{why}")
        token, lifetime, _ = self._oauth2_answer(response)
        log.debug("%s: new token, valid for %.0f s", self.account, lifetime)
        return token, lifetime


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
    # No folders (brands come from Apple) and no rename: partnersAssetId is the partner's key.
    writes = frozenset({"create", "replace", "delete"})

    # -- queries: `ql` answers what it can ----------------------------------------------------

    def query_fields(self, container: Entry) -> dict[str, Field] | None:
        parts = container.key.split("/")
        return QUERY_FIELDS if len(parts) == 4 and parts[0] == "org" and parts[2] == "brand" else None

    async def query(self, container: Entry, query: Query, listing=None) -> list[Entry]:
        """One assets list call per alternative, its `ql` holding the conditions the API
        filters on; the others (wildcards, alt texts, the name) are checked on its answer.
        As the API does, DELETED assets show only to a condition on `state`."""
        groups = self.bind_query(container, query)
        _, org, _, brand = container.key.split("/")
        found: dict[str, dict] = {}
        for group in groups:
            server, local = search_plan(group)
            local += [c for c in server if not _ql_ready(c)]
            ql = ";".join(
                f"{c.clause.field}{op}{_ql_value(value)}"
                for c in server
                if _ql_ready(c)
                for op, value in c.server_terms()
            )
            assets = await self._all_pages(
                f"{API}/orgs/{org}/brands/{brand}/assets", f"brand {org}/{brand} ql {ql!r}", {"ql": ql} if ql else None
            )
            for asset in assets:
                if all(c.matches(asset) for c in local):
                    found.setdefault(str(asset.get("id")), asset)
        return await self._asset_entries(org, brand, list(found.values()))

    # -- organizations and brands -------------------------------------------------------------

    async def list_root(self) -> list[Entry]:
        organizations = self.settings.organizations
        try:
            me = await self.http.json("GET", f"{API}/me")
        except (NotFound, ProviderError) as e:
            if not organizations:
                raise
            log.info("%s: /me did not answer (%s); organizations show by ID", self.account, e)
            me = None
        details = me.get("orgDetails") if isinstance(me, dict) else None
        details = details if isinstance(details, dict) else {}
        own = plain_id(details.get("orgId"))
        if organizations:
            return [_org_entry(org, details.get("legalName") if org == own else None) for org in organizations]
        if not own:
            raise ProviderError(
                f"Apple Business Connect account {self.account}: /me names no organization "
                "(list them under `organizations` in the config)"
            )
        return [_org_entry(own, details.get("legalName"))]

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
        if (
            len(parts) == 8
            and parts[0] == "org"
            and parts[2] == "brand"
            and parts[4] == "image"
            and parts[6] == "asset"
        ):
            return await self._list_asset(entry, parts[1], parts[3], parts[5], parts[7])
        raise ProviderError(f"Apple Business Connect: no listing for {entry.key!r}")

    async def _list_org(self, org: str) -> list[Entry]:
        configured = self.settings.organizations.get(org)
        try:
            brands = await self._brands(org)
        except (NotFound, ProviderError) as e:
            if not configured:
                raise
            log.info("%s/%s: the brands list did not answer (%s); brands show by ID", self.account, org, e)
            brands = []
        if configured:
            known = {str(b.get("id")): b for b in brands if isinstance(b, dict)}
            return [_brand_entry(org, brand, known.get(brand)) for brand in configured]
        return skip_malformed(brands, lambda b: _brand_entry(org, str(b["id"]), b), f"{self.account}/{org}")

    async def _brands(self, org: str) -> list[dict]:
        return await self._all_pages(f"{API}/orgs/{org}/brands", f"organization {org}")

    async def _all_pages(self, path: str, what: str, filters: dict | None = None) -> list[dict]:
        """Every item of a list call: `{data, pagination{cursors{after}, next}}`, page by page
        until a page has neither an `after` cursor nor a `next` link. (`total` counts only
        the page's items, so it says nothing about when to stop.) A cursor seen before, or
        a page with nothing new, is a loop: the listing stops there, with a log line."""
        items: dict[str, dict] = {}
        params: dict | None  # None once a `next` link carries them
        url, params = path, {**(filters or {}), "limit": PAGE_SIZE}
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            body = await self.http.json("GET", url, params=params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ProviderError(f"Apple Business Connect {what}: the answer has no data list")
            before = len(items)
            for item in data:
                ident = plain_id(item.get("id")) if isinstance(item, dict) else None
                if ident is None:
                    log.warning("%s: %s: left out an item without a usable id: %.120r", self.account, what, item)
                else:
                    items.setdefault(ident, item)
            pagination = body.get("pagination")
            if not isinstance(pagination, dict):
                pagination = {}
            cursors = pagination.get("cursors")
            if not isinstance(cursors, dict):
                cursors = {}
            after, link = cursors.get("after"), pagination.get("next")
            if isinstance(after, str) and after:
                url, params, mark = path, {**(filters or {}), "limit": PAGE_SIZE, "after": after}, after
            elif isinstance(link, str) and link:
                # The seed's link is a path from the host's root (/api/v1/…), carrying limit and after.
                url, params, mark = urljoin(self.http.base_url, link), None, link
                if not self.http.is_trusted(url):
                    log.warning(
                        "%s: %s: the next page is on another host (%s); stopping with the %d items listed",
                        self.account,
                        what,
                        redact(url),
                        len(items),
                    )
                    break
            else:
                break
            if mark in seen or (data and len(items) == before):
                log.warning(
                    "%s: %s: page %d %s; the cursor loops, stopping with the %d items listed",
                    self.account,
                    what,
                    page,
                    "repeats a cursor" if mark in seen else "brings nothing new",
                    len(items),
                )
                break
            seen.add(mark)
        else:
            raise ProviderError(f"Apple Business Connect {what}: more than {MAX_PAGES} pages")
        return list(items.values())

    async def change_mark(self, directory: Entry, previous: str | None, this_round: dict | None = None) -> str | None:
        """The newest `updatedDate` among the brand's assets: those updated after the last
        mark (`ql=updatedDate=gt=…`), deleted ones too (`state==DELETED`: listed only when
        asked for). The first mark is the listing's (its newest `updatedDate`), or the time
        now. An asset deleted after the newest listed one moves it once: one listing more."""
        parts = directory.key.split("/")
        if not (len(parts) == 4 and parts[0] == "org" and parts[2] == "brand"):
            return None
        if previous is None:
            return _instant(time.time())
        path, newest, answered = f"{API}/orgs/{parts[1]}/brands/{parts[3]}/assets", previous, False
        for ql in (f"updatedDate=gt={previous}", f"state==DELETED;updatedDate=gt={previous}"):
            for asset in await self._all_pages(path, f"brand {parts[1]}/{parts[3]}", {"ql": ql}):
                answered = True
                updated = asset.get("updatedDate")
                if isinstance(updated, str) and parse_time(updated) > parse_time(newest):
                    newest = updated
        if answered and newest == previous:
            # The API says something changed after the mark, in dates coarser than the mark
            # (or the same instant): still a change, and the mark moves on by a millisecond.
            newest = _instant(parse_time(previous) + 0.001)
        return newest

    # -- assets ----------------------------------------------------------------------------------

    async def _list_brand(self, org: str, brand: str) -> list[Entry]:
        """The brand's assets, with the newest `updatedDate` among them as the change mark (the
        time the listing was asked for, if it has none)."""
        asked = _instant(time.time())
        assets = await self._all_pages(f"{API}/orgs/{org}/brands/{brand}/assets", f"brand {org}/{brand}")
        dates = (a.get("updatedDate") for a in assets if isinstance(a, dict))
        newest = max((d for d in dates if isinstance(d, str) and parse_time(d)), key=parse_time, default=asked)
        return with_mark(await self._asset_entries(org, brand, assets), newest)

    async def _asset_entries(self, org: str, brand: str, assets: list[dict]) -> list[Entry]:
        """Entries for assets of a brand, each with its files (its image's metadata fetched)."""
        images = await self._images(org, {i for a in assets if (i := plain_id(_details(a).get("imageId"))) is not None})
        # Off the event loop: a huge brand takes seconds of CPU (see Spectrum's list_dir).
        return await trio.to_thread.run_sync(
            skip_malformed,
            assets,
            lambda a: _asset_entry(org, brand, a, images.get(plain_id(_details(a).get("imageId")) or "")),
            f"{self.account}/{org}/{brand}",
            abandon_on_cancel=False,
        )

    async def _images(self, org: str, image_ids: set[str]) -> dict[str, dict | None]:
        """The metadata of many images, a few requests at a time (None: the image is gone)."""
        found: dict[str, dict | None] = {}
        limiter = trio.CapacityLimiter(IMAGES_AT_ONCE)

        async def get(image_id: str) -> None:
            async with limiter:
                found[image_id] = await self._image(org, image_id)

        try:
            async with trio.open_nursery() as nursery:
                for image_id in image_ids:
                    nursery.start_soon(get, image_id)
        except ExceptionGroup as group:
            raise first_error(group) from None
        return found

    async def _list_asset(self, entry: Entry, org: str, brand: str, image_id: str, asset_id: str) -> list[Entry]:
        """The asset's image file and asset.json, from the asset and its image's metadata
        (fetched together; the image again if the asset has changed its image since)."""
        found: dict[str, Any] = {}  # "asset": the answer, "image": dict | None

        async def get_asset():
            found["asset"] = await self.http.json("GET", f"{API}/orgs/{org}/assets/{asset_id}")

        async def get_image():
            found["image"] = await self._image(org, image_id)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(get_asset)
                if image_id:
                    nursery.start_soon(get_image)
        except ExceptionGroup as group:
            raise first_error(group) from None
        asset = found["asset"]
        if not isinstance(asset, dict):
            raise ProviderError(f"Apple Business Connect asset {asset_id}: the answer is not an object")
        current = plain_id(_details(asset).get("imageId")) or ""
        image: dict | None = (
            found.get("image") if current == image_id else (await self._image(org, current) if current else None)
        )
        if current and not isinstance(image, dict):
            log.warning("%s: asset %s: its image %s is gone; showing asset.json only", self.account, asset_id, current)
        return _asset_files(entry.key, asset, image)

    async def _image(self, org: str, image_id: str) -> dict | None:
        try:
            image = await self.http.json("GET", f"{API}/orgs/{org}/images/{image_id}/metadata")
        except NotFound:
            return None
        return image if isinstance(image, dict) else None

    # -- writes ----------------------------------------------------------------------------------

    async def create_asset(self, container: Entry, upload: Upload) -> Entry:
        """A new file in a brand: `POST …/images/upload` (the file, streamed), then
        `POST …/brands/{brandId}/assets` naming that image, the file name without its
        extension as partnersAssetId, and the intent. The new asset's directory entry."""
        parts = container.key.split("/")
        if not (len(parts) == 4 and parts[0] == "org" and parts[2] == "brand"):
            raise NotPermitted(
                f"creating {upload.name!r} in {container.name!r}: Apple Business Connect assets live in a "
                "brand, so new images go in a brand directory (<orgId>/<brandId>/)"
            )
        org, brand = parts[1], parts[3]
        intent = self._intent(upload) or self.settings.default_intent
        image = await self._upload_image(org, upload)
        stem = posixpath.splitext(posixpath.basename(upload.name))[0].strip()
        details = {"imageId": image["id"], "partnersAssetId": stem, "intent": intent, "altTexts": []}
        if not stem:
            del details["partnersAssetId"]  # the API refuses an empty one; the asset is named by its id
        try:
            # Retried only when refused untaken: a POST that reached the API but lost its answer
            # would make a second asset.
            asset = await self.http.json(
                "POST",
                f"{API}/orgs/{org}/brands/{brand}/assets",
                json={"brandAssetDetails": details},
                expect=(200, 201),
                retry=NOT_TAKEN,
            )
        except AssetfsError as e:
            log.warning(
                "%s: %s: image %s was uploaded but no asset was made of it: %s",
                self.account,
                upload.name,
                image["id"],
                e,
            )
            raise
        if not isinstance(asset, dict) or not asset.get("id"):
            raise ProviderError(
                f"Apple Business Connect brand {org}/{brand}: the answer to creating an asset from "
                f"{upload.name!r} has no asset id"
            )
        log.info(
            "%s: %s → asset %s (image %s, %s) in brand %s/%s",
            self.account,
            upload.name,
            asset["id"],
            image["id"],
            intent,
            org,
            brand,
        )
        return _asset_entry(org, brand, asset, image)

    async def replace_content(self, asset: Entry, upload: Upload) -> Entry:
        """New bytes for an asset's image: upload them as a new image, read the asset for its
        current etag, and `PUT` the asset with that image under `If-Match`. An asset changed
        in between (412) is not overwritten. The asset's entry as it now is (its key names
        the new image)."""
        org, brand, asset_id = self._asset_ids(asset, f"replacing the image of {asset.name!r}")
        intent = self._intent(upload)
        image = await self._upload_image(org, upload)
        current, etag = await self._read_asset(org, asset_id)
        if current.get("state") == "DELETED":
            raise Gone(
                f"Apple Business Connect asset {asset_id} was deleted on the provider; its image was not replaced"
            )
        details = dict(_details(current))
        details["imageId"] = image["id"]
        if intent:
            details["intent"] = intent
        body = dict(current)  # the full asset as read, with the new image in it (the API takes what it may change)
        body["brandAssetDetails"] = details
        path = f"{API}/orgs/{org}/assets/{asset_id}"
        response = await self.http.request("PUT", path, json=body, headers={"If-Match": f'"{etag}"'}, expect=(200, 412))
        if response.status_code == 412:
            now, _ = await self._read_asset(org, asset_id)
            if _details(now).get("imageId") == image["id"]:  # our own PUT, retried after its answer was lost
                updated = now
            else:
                raise ProviderError(
                    f"Apple Business Connect asset {asset_id} changed on the provider since it was read (etag {etag} is now "
                    f"{now.get('etag') or '?'}, updated {now.get('updatedDate') or '?'}, state {now.get('state') or '?'}); "
                    f"not overwritten. The new image {image['id']} was uploaded but is not used; write the file again to retry"
                )
        else:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict) and answer.get("id"):
                updated = answer
            else:
                updated, _ = await self._read_asset(org, asset_id)
        log.info("%s: %s → asset %s now shows image %s", self.account, upload.name, asset_id, image["id"])
        return _asset_entry(
            org,
            str(updated.get("brandId") or brand),
            updated,
            image if _details(updated).get("imageId") == image["id"] else False,
        )

    async def delete_asset(self, asset: Entry) -> None:
        """`DELETE …/orgs/{orgId}/assets/{assetId}`: soft (the API keeps it 40 days, listed
        only to a state filter), so it leaves the listings. An asset that is already
        DELETED counts as deleted (a retried DELETE whose first answer was lost)."""
        org, _, asset_id = self._asset_ids(asset, f"deleting {asset.name!r}")
        path = f"{API}/orgs/{org}/assets/{asset_id}"
        try:
            await self.http.request("DELETE", path, expect=(200, 202, 204))
        except NotFound:
            try:
                current = await self.http.json("GET", path)
            except NotFound:
                raise NotFound(f"Apple Business Connect asset {asset_id}: no such asset on the provider") from None
            if not (isinstance(current, dict) and current.get("state") == "DELETED"):
                raise
        log.info("%s: deleted asset %s (%s)", self.account, asset_id, asset.name)

    def _asset_ids(self, asset: Entry, what: str) -> tuple[str, str, str]:
        """(orgId, brandId, assetId) of an asset directory's key."""
        parts = asset.key.split("/")
        if not (
            len(parts) == 8
            and parts[0] == "org"
            and parts[2] == "brand"
            and parts[4] == "image"
            and parts[6] == "asset"
        ):
            raise NotPermitted(f"{what}: not an Apple Business Connect asset directory")
        return parts[1], parts[3], parts[7]

    def _intent(self, upload: Upload) -> str | None:
        """The intent the writer asked for with the `user.assetfs.intent` xattr, if any."""
        raw = upload.xattrs.get(INTENT_XATTR)
        if raw is None or not str(raw).strip():
            return None
        intent = str(raw).strip().upper()
        if intent not in INTENTS:
            raise InvalidArgument(
                f"{upload.name}: {INTENT_XATTR} is {raw!r}, but Apple Business Connect takes only "
                f"{', '.join(INTENTS)}; not uploaded"
            )
        return intent

    async def _upload_image(self, org: str, upload: Upload) -> dict:
        """`POST …/orgs/{orgId}/images/upload`, the spool file streamed as the part `file`;
        the new image's metadata. Retried on network trouble and 5xx (httpx rewinds the file):
        a duplicate is only an unused image, never a second asset."""
        if upload.size > MAX_IMAGE_BYTES:
            raise ProviderError(
                f"{upload.name}: {upload.size} bytes is more than the 15 MB Apple Business Connect "
                "accepts for an image; not uploaded"
            )
        with open(upload.path, "rb") as file:  # a local spool file  # noqa: ASYNC230
            response = await self.http.request(
                "POST",
                f"{API}/orgs/{org}/images/upload",
                expect=(200, 201, 400, 413, 415),
                files={
                    "file": (
                        posixpath.basename(upload.name) or "image",
                        file,
                        upload.mime or "application/octet-stream",
                    )
                },
            )
        status = response.status_code
        if status in (400, 413, 415):
            self.http.stats.add("errors")
            reason = {
                413: "it is too large (images are limited to 15 MB)",
                415: "of its type (Apple takes JPEG, PNG and HEIC images)",
                400: "it is not a readable image",
            }[status]
            raise ProviderError(
                f"{upload.name}: Apple Business Connect refused the image because {reason} "
                f"(HTTP {status}{_api_error(response)})"
            )
        try:
            image = response.json()
        except ValueError:
            image = None
        if not isinstance(image, dict) or not isinstance(image.get("id"), str) or not image["id"]:
            raise ProviderError(f"{upload.name}: the answer to the image upload has no image id")
        stored = image.get("fileSize")
        if isinstance(stored, int) and not isinstance(stored, bool) and stored != upload.size:
            raise ProviderError(
                f"{upload.name}: the provider stored different bytes ({stored} bytes of {upload.size}); "
                f"image {image['id']} is not used"
            )
        return image

    async def _read_asset(self, org: str, asset_id: str) -> tuple[dict, str]:
        """An asset and its etag (the header, else the body's)."""
        response = await self.http.request("GET", f"{API}/orgs/{org}/assets/{asset_id}")
        try:
            asset = response.json()
        except ValueError:
            asset = None
        if not isinstance(asset, dict):
            raise ProviderError(f"Apple Business Connect asset {asset_id}: the answer is not an object")
        etag = response.headers.get("etag", "").strip().removeprefix("W/").strip('"') or str(asset.get("etag") or "")
        if not etag:
            raise ProviderError(
                f"Apple Business Connect asset {asset_id} has no etag, so it cannot be updated safely; not overwritten"
            )
        return asset, etag


# ---- entries ------------------------------------------------------------------------------------


def _org_entry(org: str, legal_name=None) -> Entry:
    """An organization, named by its legal name where the API gave it."""
    xattrs = {"user.assetfs.id": org}
    name = text_field(legal_name)
    if name:
        xattrs["user.assetfs.legal_name"] = name
    return Entry(name or org, f"org/{org}", True, xattrs=xattrs)


def _brand_entry(org: str, brand: str, meta: dict | None = None) -> Entry:
    meta = meta or {}
    xattrs = {
        "user.assetfs.id": brand,
        "user.assetfs.org_id": org,
        "user.assetfs.display_name": str(meta.get("displayName") or ""),
        "user.assetfs.state": str(meta.get("state") or ""),
    }
    return Entry(
        text_field(meta.get("displayName")) or brand,
        f"org/{org}/brand/{brand}",
        True,
        parse_time(meta.get("updatedDate") or meta.get("createdDate")),
        xattrs={k: v for k, v in xattrs.items() if v},
        kind=CONTAINER,
    )


def _details(asset: dict) -> dict:
    details = asset.get("brandAssetDetails")
    return details if isinstance(details, dict) else {}


def _asset_name(asset: dict) -> str:
    return text_field(_details(asset).get("partnersAssetId")) or str(asset.get("id"))


# What a query can ask of a brand's assets. `ql` filters on the documented fields (== and
# =gt= documented; != =ge= =lt= =le= inferred, ordering on dates only); the rest is matched
# on the API's answer.
QUERY_FIELDS = {
    "id": Field(STRING, "id", server=EQUALITY),
    "state": Field(STRING, "state", server=EQUALITY),
    "createdDate": Field(DATE, "createdDate", server=ALL),
    "updatedDate": Field(DATE, "updatedDate", server=ALL),
    "brandAssetDetails.partnersAssetId": Field(STRING, "brandAssetDetails.partnersAssetId", server=EQUALITY),
    "brandAssetDetails.imageId": Field(STRING, "brandAssetDetails.imageId", server=EQUALITY),
    "brandAssetDetails.intent": Field(STRING, "brandAssetDetails.intent", server=EQUALITY),
    "brandAssetDetails.altTexts.text": Field(STRING, "brandAssetDetails.altTexts.text"),
    "brandAssetDetails.altTexts.locale": Field(STRING, "brandAssetDetails.altTexts.locale"),
    "name": Field(STRING, get=lambda a: [_asset_name(a)]),
    "text": Field(SEARCH, get=lambda a: [_asset_name(a)]),
}


def _ql_ready(condition) -> bool:
    """Whether a condition can be written into `ql` (whose clauses are split at ; and ,)."""
    return not (isinstance(condition.value, str) and any(c in condition.value for c in ";,"))


def _ql_value(value) -> str:
    if isinstance(value, float):  # a date, as epoch seconds
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return str(value)


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


def _asset_entry(org: str, brand: str, asset: dict, image: dict | None | Literal[False] = False) -> Entry:
    """An asset, with its files when its image's metadata is at hand (None: the image is
    gone; False: not asked, the files are listed when the asset's directory is opened)."""
    asset_id, image_id = plain_id(asset.get("id")), plain_id(_details(asset).get("imageId")) or ""
    if asset_id is None:
        raise ValueError("the asset has no usable id")
    key = f"org/{org}/brand/{brand}/image/{image_id}/asset/{asset_id}"
    return Entry(
        _asset_name(asset),
        key,
        True,
        parse_time(asset.get("updatedDate") or asset.get("createdDate")),
        children=None if image is False else _asset_files(key, asset, image),
        xattrs=_asset_xattrs(asset),
        kind=ASSET,
    )


def _asset_files(key: str, asset: dict, image: dict | None) -> list[Entry]:
    """An asset's files: its image (when it has one) and asset.json."""
    mtime = parse_time(asset.get("updatedDate") or asset.get("createdDate"))
    children = [Entry("asset.json", f"{key}/asset.json", False, mtime, inline=asset_json(asset))]
    content_file = _image_entry(key, asset, image) if isinstance(image, dict) else None
    if content_file is not None:
        children.insert(0, content_file)
    return children


def _extension(mime) -> str:
    if not isinstance(mime, str) or not mime:
        return ""
    mime = mime.split(";", 1)[0].strip().lower()
    return EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ""


def _image_entry(asset_key: str, asset: dict, image: dict) -> Entry | None:
    """The content file: named by the asset's name (partnersAssetId, else its id) plus the
    image's extension (from its type, else from its file name)."""
    image_id = str(image.get("id") or _details(asset).get("imageId") or "")
    url = image.get("cdnUrl")
    if not image_id or not isinstance(url, str) or not url:
        log.warning("asset %s: the image metadata has no cdnUrl; no content file", asset.get("id"))
        return None
    mime = image.get("contentType") if isinstance(image.get("contentType"), str) else None
    filename = image.get("filename")
    ext = _extension(mime) or (posixpath.splitext(filename)[1] if isinstance(filename, str) else "")
    name = with_extension(_asset_name(asset), ext)
    size = image.get("fileSize")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    xattrs = _asset_xattrs(asset)
    xattrs.update(
        {
            "user.assetfs.image_id": image_id,
            "user.assetfs.mime": mime or "",
            "user.assetfs.width": str(image.get("width") or ""),
            "user.assetfs.height": str(image.get("height") or ""),
            "user.assetfs.image_state": str(image.get("state") or ""),
            "user.assetfs.image_created": str(image.get("createdDate") or ""),
        }
    )
    mtime = parse_time(image.get("updatedDate") or image.get("createdDate") or asset.get("updatedDate"))
    content = Content(version=f"apple:image:{image_id}", url=url, size=size, mime=mime)
    return Entry(
        name,
        f"{asset_key}/content",
        False,
        mtime,
        content=content,
        xattrs={k: v for k, v in xattrs.items() if v},
        kind=CONTENT,
    )


def create(account: str, settings, config, stats, timeout: float) -> Apple:
    auth = AppleAuth(account, config.secret(account, "client_id"), config.secret(account, "client_secret"))
    http = ProviderHTTP(settings.base_url, auth, timeout=timeout, stats=stats)
    return Apple(account, settings, http)


def _instant(seconds: float) -> str:
    """An instant as the API's `ql` takes it: UTC, milliseconds, `Z`."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
