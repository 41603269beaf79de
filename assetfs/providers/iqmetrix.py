"""iQmetrix Asset Media Service: named collections of assets, each asset a directory with
its file and asset.json.

The API cannot list. A collection is the list of asset GUIDs the config gives it; its
listing fetches each one (`GET /assets/{id}`, a few at a time), and a GUID typed as a path
under a collection resolves on its own. Images stream from `/images/{id}` (a 303 to the
stored file); videos, for which that route answers 400, from the asset's `href`.

Writes: a file created in a collection is uploaded (`POST /assets`, one multipart file
part) and becomes a new asset; since the API cannot list, the collection remembers the new
GUID in the account's persistent memory and lists it after the configured ones from then
on. The API has no update or delete: an asset's file cannot be replaced, nor an asset removed.

Auth is an OAuth2 password grant on a host of its own (accounts.iqmetrix.net); the token
is refreshed shortly before it expires, and a refused refresh falls back to signing in again.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import posixpath
import re
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx
import trio

from ..errors import AssetfsError, AuthFailed, NotFound, NotPermitted, NotSupported, ProviderError
from ..logs import register_secret
from ..query import NUMBER, SEARCH, STRING, Field
from .base import ASSET, CONTAINER, CONTENT, Content, Entry, Provider, Upload, asset_json, skip_malformed, with_mark
from .http import NOT_TAKEN, ProviderHTTP, redact
from .multipart import growing_form
from .token import TokenAuth

log = logging.getLogger("assetfs.iqmetrix")

CONCURRENCY = 8  # assets of a collection fetched at once (there is no list route)
POLLED_AT_MOST = 50  # a collection of more assets is not polled for changes (a GET each)
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REDIRECTS = (301, 302, 303, 307, 308)
NO_UPDATE = "the Asset Media Service API has no update or delete"


class IQmetrixAuth(TokenAuth):
    """OAuth2 password grant with refresh; one token request at a time for the account.

    A 401 drops the access token only: the next request refreshes it with the refresh token."""

    service = "iQmetrix"

    def __init__(self, account: str, auth_url: str, username: str, password: str, client_id: str, client_secret: str):
        super().__init__(account)
        self.token_url = auth_url.rstrip("/") + "/oauth2/token"
        self._username = username
        self._password = password
        self._client = {"client_id": client_id, "client_secret": client_secret}
        self._refresh: str | None = None

    async def fetch(self, http: ProviderHTTP) -> tuple[str, float]:
        if self._refresh is not None:
            try:
                return await self._grant(
                    http, "refresh", {"grant_type": "refresh_token", "refresh_token": self._refresh}
                )
            except AuthFailed as e:
                log.info("%s: %s; signing in again", self.account, e)
                self._refresh = None
        return await self._grant(
            http, "sign-in", {"grant_type": "password", "username": self._username, "password": self._password}
        )

    async def _grant(self, http: ProviderHTTP, what: str, form: dict[str, str]) -> tuple[str, float]:
        response = await self._post(http, self.token_url, data={**form, **self._client})
        status = response.status_code
        self._expect(
            response,
            refused=f"the {what} (HTTP {status} {_oauth_error(response)})",
            answered=f"the {what} with HTTP {status}",
        )
        access, lifetime, body = self._oauth2_answer(response)
        refresh = body.get("refresh_token")
        self._refresh = refresh if isinstance(refresh, str) and refresh else None
        if self._refresh:
            register_secret(self._refresh)
        log.debug("%s: %s done, token valid for %.0f s", self.account, what, lifetime)
        return access, lifetime


class MalformedAsset(ProviderError):
    """The API answered for an asset, but not with an asset object."""


def _oauth_error(response: httpx.Response) -> str:
    """The OAuth2 error code of a refusal (invalid_grant, invalid_client, …), never the body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return error if isinstance(error, str) and re.fullmatch(r"[A-Za-z_]{1,64}", error) else "no error code"


def _asset_name(asset: dict) -> str:
    name = asset.get("name")
    return name if isinstance(name, str) and name else str(asset["id"])


# What a query can ask of a collection's assets: the API cannot list, let alone filter, so
# every field is matched on the cached listing.
QUERY_FIELDS = {
    "name": Field(STRING, get=lambda a: [_asset_name(a)]),
    "text": Field(SEARCH, get=lambda a: [_asset_name(a)]),
    "id": Field(STRING, "id", fold=True),  # a GUID, in any case
    "mimeType": Field(STRING, "mimeType"),
    "md5Checksum": Field(STRING, "md5Checksum", fold=True),
    "width": Field(NUMBER, "width"),
    "height": Field(NUMBER, "height"),
}


def _collection_mark(assets: dict[str, dict | None]) -> str:
    """A collection's change mark: each asset's name, stored file (not its signature) and
    checksum, by id; None for one that is gone."""
    seen = {}
    for asset_id, asset in assets.items():
        href = asset.get("href") if asset is not None else None
        stored = href.split("?", 1)[0] if isinstance(href, str) else None
        seen[asset_id] = "gone" if asset is None else repr([asset.get("name"), stored, asset.get("md5Checksum")])
    return hashlib.sha1(repr(sorted(seen.items())).encode()).hexdigest()


class IQmetrix(Provider):
    name = "iqmetrix"
    writes = frozenset({"create"})
    streams = frozenset({"create"})  # a multipart POST needs no length up front
    missing_writes_reason = "the Asset Media Service API has no update or delete, and no folders"

    def __init__(self, account: str, settings, http: ProviderHTTP):
        super().__init__(account, settings, http)
        # content version → the stored file's URL (the asset's href): sizing an image with
        # one HEAD there instead of following /images/{id} first.
        self._hrefs: dict[str, str] = {}

    def query_fields(self, container: Entry) -> dict[str, Field] | None:
        return QUERY_FIELDS if container.kind == CONTAINER else None

    async def list_root(self) -> list[Entry]:
        return [
            Entry(name, f"collection/{name}", True, xattrs={"user.assetfs.collection": name}, kind=CONTAINER)
            for name in self.settings.collections
        ]

    async def list_dir(self, entry: Entry) -> list[Entry]:
        if not entry.key.startswith("collection/"):
            raise NotFound(entry.key)
        collection = entry.key.removeprefix("collection/")
        ids = self._collection_ids(collection)
        assets: list[dict | None] = [None] * len(ids)
        failures: list[AssetfsError] = []
        limiter = trio.CapacityLimiter(CONCURRENCY)

        async def fetch(index: int, asset_id: str) -> None:
            async with limiter:
                try:
                    assets[index] = await self._get_asset(asset_id)
                except NotFound:
                    log.warning(
                        "%s/%s: asset %s was not found (404); it is left out", self.account, collection, asset_id
                    )
                except MalformedAsset as e:
                    log.warning("%s/%s: %s; it is left out", self.account, collection, e)
                except AssetfsError as e:
                    failures.append(e)
                    nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for index, asset_id in enumerate(ids):
                nursery.start_soon(fetch, index, asset_id)
        if failures:
            raise failures[0]
        entries = skip_malformed(
            [a for a in assets if a is not None],
            lambda a: self._asset_entry(a, collection),
            f"{self.account}/{collection}",
        )
        return with_mark(entries, _collection_mark(dict(zip(ids, assets))) if len(ids) <= POLLED_AT_MOST else None)

    async def change_mark(self, directory: Entry, previous: str | None, this_round: dict | None = None) -> str | None:
        """The API cannot list or search: a GET of each of the collection's assets, whose
        name, file and checksum make the mark; a gone one counts as gone. Only for a few:
        a big collection would cost a whole listing per question (it waits out metadata_ttl).
        A listing fetches the same, so it carries the same mark."""
        if not directory.key.startswith("collection/"):
            return None
        ids = self._collection_ids(directory.key.removeprefix("collection/"))
        if len(ids) > POLLED_AT_MOST:
            return None
        found: dict[str, dict | None] = {}
        limiter = trio.CapacityLimiter(CONCURRENCY)

        async def fetch(asset_id: str) -> None:
            async with limiter:
                try:
                    found[asset_id] = await self._get_asset(asset_id)
                except (NotFound, MalformedAsset):
                    found[asset_id] = None

        async with trio.open_nursery() as nursery:
            for asset_id in ids:
                nursery.start_soon(fetch, asset_id)
        return _collection_mark(found)

    def _collection_ids(self, collection: str) -> list[str]:
        """The configured GUIDs, then those the collection gained through the mount; once each."""
        ids, seen = [], set()
        for raw in [*self.settings.collections.get(collection, []), *self._remembered(collection)]:
            asset_id = str(raw).strip()
            if not GUID.match(asset_id):
                log.warning("%s/%s: %r is not an asset GUID; it is left out", self.account, collection, asset_id)
            elif asset_id.lower() not in seen:
                seen.add(asset_id.lower())
                ids.append(asset_id)
        return ids

    def _remembered(self, collection: str) -> list[str]:
        ids = self.memory.get(_memory_key(collection))
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

    def _remember(self, collection: str, asset_id: str) -> None:
        """Add a GUID to the collection's memory: a whole new list is assigned (a disk store
        saves on assignment, not on a change made inside the value it handed out)."""
        ids = self._remembered(collection)
        if asset_id.lower() not in {i.lower() for i in ids}:
            self.memory[_memory_key(collection)] = [*ids, asset_id]

    # -- writes ------------------------------------------------------------------------------

    async def create_asset(self, container: Entry, upload: Upload) -> Entry:
        """`POST /assets` with the spool file as the one file part (streamed from disk), the
        answer's md5Checksum checked against the bytes written, the new GUID remembered in
        the collection."""
        if not container.key.startswith("collection/"):
            raise NotPermitted(f"creating an asset: new files go in a collection directory, not in {container.key}")
        collection = container.key.removeprefix("collection/")
        if collection not in self.settings.collections:
            raise NotFound(f"iQmetrix collection {collection}: not in the configuration of account {self.account}")
        body = await self._upload(upload)
        asset_id = body.get("id")
        if not isinstance(asset_id, str) or not GUID.match(asset_id):
            raise ProviderError(f"iQmetrix upload of {upload.name!r}: the answer has no asset GUID")
        if body.get("success") is False:
            raise ProviderError(
                f"iQmetrix upload of {upload.name!r}: the answer says it did not succeed (asset {asset_id})"
            )
        body.pop("success", None)  # not part of the asset object that GET /assets/{id} answers
        stored = body.get("md5Checksum")
        if not isinstance(stored, str) or not stored:
            # Documented in the answer; should it be missing, the asset's own metadata has it.
            body = await self._get_asset(asset_id)
            stored = body.get("md5Checksum")
        if isinstance(stored, str) and stored:
            if stored.strip().lower() != upload.md5.lower():
                raise ProviderError(
                    f"iQmetrix upload of {upload.name!r}: the provider stored different bytes "
                    f"(md5 {stored}, written {upload.md5}); asset {asset_id} is left out of "
                    f"collection {collection} (the API cannot delete it)"
                )
        else:
            log.warning(
                "%s/%s: asset %s has no md5Checksum; the upload of %r could not be verified",
                self.account,
                collection,
                asset_id,
                upload.name,
            )
        self._remember(collection, asset_id)
        log.info(
            "%s/%s: uploaded %r as asset %s (%d bytes)", self.account, collection, upload.name, asset_id, upload.size
        )
        return self._asset_entry(body, collection)

    async def _upload(self, upload: Upload) -> dict:
        """One multipart POST. Not retried blindly (a retry after a lost answer would make a
        second asset, which cannot be deleted): only what the service refused before taking
        the upload (a 429, until its X-RateLimit-ResetSeconds) is tried again, within the
        timeout. A file still being written goes out as it grows, in one try."""
        if upload.growing is not None:
            body, content_type = growing_form(upload)
            response = await self.http.request(
                "POST",
                "assets",
                expect=(201,),
                retry=False,
                body=lambda: {"content": body(), "headers": {"Content-Type": content_type}},
            )
        else:
            with open(upload.path, "rb") as spool:  # httpx rewinds it for each try  # noqa: ASYNC230
                files = {"file": (upload.name, spool, upload.mime or "application/octet-stream")}
                response = await self.http.request("POST", "assets", expect=(201,), retry=NOT_TAKEN, files=files)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ProviderError(f"iQmetrix upload of {upload.name!r}: the answer (HTTP 201) is not an asset object")
        return answer

    async def replace_content(self, asset: Entry, upload: Upload) -> Entry:
        raise NotPermitted(f"replacing an asset's file: {NO_UPDATE}")

    async def delete_asset(self, asset: Entry) -> None:
        raise NotPermitted(f"deleting an asset: {NO_UPDATE}")

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
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            raise MalformedAsset(f"iQmetrix asset {asset_id}: the answer is not an asset object")
        return body

    def _asset_entry(self, asset: dict, collection: str) -> Entry:
        ident = str(asset["id"])
        name = _asset_name(asset)
        mime = asset.get("mimeType") if isinstance(asset.get("mimeType"), str) else None
        md5 = (
            asset.get("md5Checksum") if isinstance(asset.get("md5Checksum"), str) and asset.get("md5Checksum") else None
        )
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
            children.insert(
                0,
                Entry(
                    _file_name(name, ident, mime, href),
                    f"asset/{ident}/content",
                    False,
                    content=content,
                    xattrs=dict(xattrs),
                    kind=CONTENT,
                ),
            )
        return Entry(name, f"asset/{ident}", True, children=children, xattrs=xattrs, kind=ASSET)

    def head_url(self, content: Content) -> None:
        return None  # `resolve` asks the API first

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


def _memory_key(collection: str) -> str:
    return f"collection:{collection}"


def _file_name(name: str, ident: str, mime: str | None, href: str | None) -> str:
    """The content file's name: the asset's name, with an extension when it has none."""
    if not posixpath.splitext(name)[1]:
        ext = posixpath.splitext(unquote(urlsplit(href or "").path))[1] or mimetypes.guess_extension(mime or "") or ""
        name += ext
    if name.strip() == "asset.json":  # keep the metadata file's name for the metadata
        name = ident + ".json"
    return name


def create(account: str, settings, config, stats, timeout: float) -> IQmetrix:
    auth = IQmetrixAuth(
        account,
        settings.auth_url,
        config.secret(account, "username"),
        config.secret(account, "password"),
        config.secret(account, "client_id"),
        config.secret(account, "client_secret"),
    )
    http = ProviderHTTP(settings.base_url, auth, timeout=timeout, stats=stats, trusted_urls=(settings.auth_url,))
    return IQmetrix(account, settings, http)
