"""Spectrum Customizer: saved assets of organizations, with their production outputs.

Read-only (the API documents no upload). Organizations come from the config (by ID, or
named there); any other organization ID resolves when looked up by name.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
from collections import deque
from urllib.parse import unquote, urlencode, urlsplit

import outcome
import trio

from ..errors import NotFound, ProviderError
from ..query import BOOL, DATE, NUMBER, SEARCH, STRING, Field
from .base import (
    ASSET,
    CONTAINER,
    CONTENT,
    Content,
    Entry,
    Provider,
    asset_json,
    is_picture,
    parse_time,
    plain_id,
    skip_malformed,
    text_field,
    with_mark,
)
from .http import Auth, ProviderHTTP

PAGE_SIZE = 500  # our choice: fewer pages keeps a 10,000-asset listing under the 100-requests/min limit
MAX_PAGES = 2000  # a loop guard: a million assets in one organization
# Pages asked for before the one being read arrives: at a 40 ms round trip, one page after
# another made the 20 pages of 10,000 assets take 1.4 s, 4 at once 0.8 s (what is left is
# CPU); a listing's end costs at most 4 requests past it (of Spectrum's 100 a minute).
PAGES_AHEAD = 4

log = logging.getLogger("assetfs.spectrum")


class SpectrumToken(Auth):
    def __init__(self, token: str):
        self._headers = {"SPECTRUM_API_TOKEN": token}

    async def headers(self, http):
        return self._headers


def rate_limited(response) -> bool:
    """Spectrum answers 403 when over its rate limit; tell that from a real refusal."""
    if "retry-after" in response.headers:
        return True
    try:
        return "rate" in response.text.lower()
    except Exception:
        return False


def _asset_name(asset: dict) -> str:
    return text_field(asset.get("userFacingFileName")) or str(asset.get("id", ""))


# What a query can ask of an organization's assets: the API has no filter, so every field is
# matched on the cached listing.
QUERY_FIELDS = {
    "name": Field(STRING, get=lambda a: [_asset_name(a)]),
    "text": Field(SEARCH, get=lambda a: [_asset_name(a)]),
    "id": Field(NUMBER, "id"),
    "uploadedAssetId": Field(NUMBER, "uploadedAssetId"),
    "userFacingFileName": Field(STRING, "userFacingFileName"),
    "spectrumAssetReference": Field(STRING, "spectrumAssetReference"),
    "clientAccountReference": Field(STRING, "clientAccountReference"),
    "organizationIdentifier": Field(STRING, "organizationIdentifier"),
    "active": Field(BOOL, "active"),
    "createdDate": Field(DATE, "createdDate"),
    "lastModification": Field(DATE, "lastModification"),
    "productionJobs.status": Field(STRING, "productionJobs.status"),
    "productionJobs.reference": Field(STRING, "productionJobs.reference"),
    "productionJobs.embellishmentType": Field(STRING, "productionJobs.embellishmentType"),
}


class Spectrum(Provider):
    name = "spectrum"
    read_only_reason = "Spectrum Customizer documents no upload endpoint: it is read-only"

    def query_fields(self, container: Entry) -> dict[str, Field] | None:
        return QUERY_FIELDS if container.kind == CONTAINER else None

    def _org_path(self, org: str) -> str:
        return f"api/assets/saved/client/{self.settings.client}/organization/{org}"

    async def list_root(self) -> list[Entry]:
        organizations = self.settings.organizations
        if isinstance(organizations, dict):
            return [_org_entry(org, name) for name, org in organizations.items()]
        return [_org_entry(org) for org in organizations]

    async def lookup(self, parent: Entry, name: str) -> Entry | None:
        if parent.key != "" or not name.isdigit():
            return None
        try:
            await self.http.json("GET", self._org_path(name), params={"page": 1, "pageSize": 1})
        except NotFound:
            return None
        return _org_entry(name)

    async def list_dir(self, entry: Entry) -> list[Entry]:
        """Every page until a short one. The API has no total, so a page that brings no
        asset not seen before (an API that ignores `page`) also ends the listing. Once a
        page comes full, the next PAGES_AHEAD are asked for at once (paced by the account's
        rate limit like any request); those past the end are dropped, not waited for."""
        org = entry.key.removeprefix("org/")
        where = f"{self.account}/{org}"
        seen: set[str] = set()
        entries: list[Entry] = []
        mark: str | None = None
        failed: BaseException | None = None
        async with trio.open_nursery() as nursery:
            pages = _Pages(nursery, self.http, self._org_path(org))
            try:
                for page in range(1, MAX_PAGES + 1):
                    body = await pages.next_body()
                    contents = body.get("contents") if isinstance(body, dict) else None
                    if not isinstance(contents, list):
                        raise ProviderError(f"Spectrum organization {org}: the answer has no contents list")
                    if page == 1:  # the first page's: a change while later pages come shows at the first poll
                        mark = _last_modification(body)
                    page_size = len(contents)
                    if page_size == PAGE_SIZE:  # (a page bigger than asked for: one page at a time)
                        pages.ask_ahead(PAGES_AHEAD)
                    assets = []
                    for asset in contents:
                        if (plain_id(asset.get("id")) if isinstance(asset, dict) else None) is None:
                            log.warning(
                                "%s: page %d: left out an entry that is not an asset with an id: %.120r",
                                where,
                                page,
                                asset,
                            )
                        else:
                            assets.append(asset)
                    del body, contents  # a page at a time: 100,000 raw assets would take more memory than their entries
                    # In a worker thread: thousands of assets take CPU time during which the event loop
                    # would serve no other syscall. Not abandoned on the timeout: the work is bounded by
                    # the page, and a listing thrown away would be thrown away on every retry.
                    parsed = await trio.to_thread.run_sync(
                        skip_malformed, assets, _asset_entry, where, abandon_on_cancel=False
                    )
                    del assets
                    # Seen by their keys: strings the entries hold anyway, not a copy of every id.
                    new = 0
                    for listed in parsed:
                        if listed.key not in seen:
                            seen.add(listed.key)
                            entries.append(listed)
                            new += 1
                    if page_size < PAGE_SIZE:
                        break
                    if not new:
                        log.warning(
                            "%s: page %d brings no asset not seen before (the API repeats itself); "
                            "stopping with the %d assets listed",
                            where,
                            page,
                            len(seen),
                        )
                        break
                    pages.ask_ahead(1)
                else:
                    raise ProviderError(
                        f"Spectrum organization {org}: more than {MAX_PAGES} pages; the API does not stop"
                    )
            except Exception as e:  # raised below, outside the nursery (not as an exception group)
                failed = e
            nursery.cancel_scope.cancel()  # pages asked ahead past the end: not needed
        if failed is not None:
            raise failed
        return with_mark(entries, mark)

    async def change_mark(self, directory: Entry, previous: str | None, this_round: dict | None = None) -> str | None:
        """The organization listing's top-level `lastModification` (the latest change of any of
        its assets), read from a one-asset page."""
        if not directory.key.startswith("org/"):
            return None
        body = await self.http.json(
            "GET", self._org_path(directory.key.removeprefix("org/")), params={"page": 1, "pageSize": 1}
        )
        mark = _last_modification(body)
        if mark is None:
            raise ProviderError(f"Spectrum organization {directory.key}: the listing has no lastModification")
        return mark

    def rendition(self, file: Entry, size: int) -> Content | None:
        """The picture scaled on the CDN by Spectrum's image parameters (documented for its
        rendering routes; on the CDN route of an upload *inferred*): fit into size×size."""
        content = file.content
        if content is None or not content.url or not is_picture(file.name):
            return None
        query = urlencode({"width": size, "height": size, "mode": "max"})
        url = content.url + ("&" if "?" in content.url else "?") + query
        return Content(version=f"{content.version}@{size}", url=url, mime=content.mime)


def _last_modification(body) -> str | None:
    """An organization page's `lastModification`: its change mark."""
    mark = body.get("lastModification") if isinstance(body, dict) else None
    return mark if isinstance(mark, str) and mark else None


class _Page:
    """One page of an organization's listing, asked for now and read later."""

    def __init__(self, nursery: trio.Nursery, http: ProviderHTTP, path: str, page: int):
        self._done = trio.Event()
        self._result: outcome.Outcome | None = None
        nursery.start_soon(self._fetch, http, path, page)

    async def _fetch(self, http: ProviderHTTP, path: str, page: int) -> None:
        self._result = await outcome.acapture(http.json, "GET", path, params={"page": page, "pageSize": PAGE_SIZE})
        self._done.set()

    async def body(self):
        await self._done.wait()
        assert self._result is not None  # set before _done
        return self._result.unwrap()


class _Pages:
    """An organization's pages in order, some asked for before they are read: the API
    numbers its pages, so page k+1 can be asked before page k arrives."""

    def __init__(self, nursery: trio.Nursery, http: ProviderHTTP, path: str):
        self._nursery, self._http, self._path = nursery, http, path
        self._asked: deque[_Page] = deque()
        self._next = 1  # the number of the next page to ask for
        self.ask_ahead(1)

    def ask_ahead(self, count: int) -> None:
        """Have `count` pages past the one being read asked for (none past MAX_PAGES)."""
        while len(self._asked) < count and self._next <= MAX_PAGES:
            self._asked.append(_Page(self._nursery, self._http, self._path, self._next))
            self._next += 1

    async def next_body(self):
        """The next page's answer (it raises what the request raised)."""
        return await self._asked.popleft().body()


def _org_entry(org: str, name: str | None = None) -> Entry:
    return Entry(name or org, f"org/{org}", True, xattrs={"user.assetfs.id": org}, kind=CONTAINER)


# An http(s) URL with nothing urlsplit would clean up (blanks, control characters): its path
# is read with a regex, five times faster; anything else goes through urlsplit.
_PLAIN_URL = re.compile(r"https?://[^/?#\x00-\x20\x7f]*(/[^?#\x00-\x20\x7f]*)?(?:[?#][^\x00-\x20\x7f]*)?")


def _file_name(url: str | None) -> str:
    """The last part of the URL's path, unquoted (it is read for every asset of a listing)."""
    plain = _PLAIN_URL.fullmatch(url or "")
    path = (plain.group(1) or "") if plain else urlsplit(url or "").path
    return unquote(posixpath.basename(path))


def _content(url: str | None, mime: str | None = None) -> Content | None:
    if not url or not isinstance(url, str):
        return None
    plain = url.split("?", 1)[0]
    return Content(version="spectrum:" + hashlib.sha1(plain.encode()).hexdigest(), url=url, mime=mime)


def _asset_entry(asset: dict) -> Entry:
    ident = str(asset.get("id", ""))
    name = _asset_name(asset)
    mtime = parse_time(asset.get("lastModification") or asset.get("createdDate"))
    uri = asset.get("uploadedAssetUri") if isinstance(asset.get("uploadedAssetUri"), str) else None
    ext = posixpath.splitext(_file_name(uri))[1]
    children = [Entry("asset.json", f"asset/{ident}/asset.json", False, mtime, inline=asset_json(asset))]
    content = _content(uri)
    if content:
        children.insert(
            0, Entry(f"{name}{ext}", f"asset/{ident}/content", False, mtime, content=content, kind=CONTENT)
        )  # its xattrs are the asset's
    raw_jobs = asset.get("productionJobs")
    jobs = [j for j in raw_jobs if isinstance(j, dict)] if isinstance(raw_jobs, list) else []
    if jobs:
        children.append(
            Entry("production", f"asset/{ident}/production", True, mtime, children=[_job_entry(ident, j) for j in jobs])
        )
    xattrs = {
        "user.assetfs.id": ident,
        "user.assetfs.state": "active" if asset.get("active") else "inactive",
        "user.assetfs.created": str(asset.get("createdDate") or ""),
        "user.assetfs.reference": str(asset.get("spectrumAssetReference") or ""),
    }
    return Entry(
        name,
        f"asset/{ident}",
        True,
        mtime,
        children=children,
        xattrs={k: v for k, v in xattrs.items() if v},
        kind=ASSET,
    )


def _job_entry(asset_id: str, job: dict) -> Entry:
    reference = str(job.get("reference") or job.get("id") or "job")
    mtime = parse_time(job.get("lastModification") or job.get("createdDate"))
    outputs = job["result"].get("outputs") if isinstance(job.get("result"), dict) else None
    files = []
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict):
            continue
        fmt = output.get("assetFormat")
        if not isinstance(fmt, dict):
            fmt = {}
        content = _content(output.get("uri"), fmt.get("mimeType") if isinstance(fmt.get("mimeType"), str) else None)
        if content:
            files.append(
                Entry(
                    _file_name(output.get("uri")),
                    f"job/{reference}/{content.version}",
                    False,
                    mtime,
                    content=content,
                    xattrs={"user.assetfs.format": str(fmt.get("name", ""))},
                )
            )
    xattrs = {"user.assetfs.id": str(job.get("id", "")), "user.assetfs.state": str(job.get("status", ""))}
    return Entry(reference, f"asset/{asset_id}/production/{reference}", True, mtime, children=files, xattrs=xattrs)


def create(account: str, settings, config, stats, timeout: float) -> Spectrum:
    http = ProviderHTTP(
        settings.base_url,
        SpectrumToken(config.secret(account, "token")),
        timeout=timeout,
        rate_limited_403=rate_limited,
        stats=stats,
    )
    return Spectrum(account, settings, http)
