"""Hostile provider behaviour, on demand. TEST-ONLY SWITCHES: no real provider is known to
do any of this on purpose; they exist so that tests can prove the mount survives it.

Switched at run time with `POST /_emulator/hostile` (JSON; `{"mode": ""}` switches off,
`GET` shows the state):

    {"mode": "...", "provider": "spectrum" | "iqmetrix" | "apple" | "mudstack", ...}

modes (each rewrites that provider's *listing* answers — Spectrum's organization page,
iQmetrix's `GET /assets/{id}`, Apple's brand-assets page and image metadata, Mudstack's
asset search — and leaves every other route alone):

    hostile_names       names (Spectrum userFacingFileName, iQmetrix name, Apple
                        partnersAssetId and image filename, Mudstack name/file_name) become
                        `names` (default: HOSTILE_NAMES: '../x', 'a/b', NUL, '.', '..', over
                        255 bytes, control characters, empty, a lone surrogate, …); the list
                        is padded with copies of its first asset so that every name shows
    duplicates          `size` assets (default 2000), all named `name` (default "same"); with
                        `same_id`, all with one id too
    huge_page           one page of `size` assets (default 50,000), copies of the first one
                        made slim (no production jobs / versions / alt texts)
    malformed_json      the JSON body cut in half
    wrong_types         every item but the first gets fields of the wrong type
    wrong_envelope      the list itself (contents / data / assets, or iQmetrix's asset
                        object) is of the wrong type
    missing_fields      every item but the first loses its id, name, content or versions fields
    looping_cursor      Apple: every page is page 1 with a cursor (`fresh`: a new one each
                        time, else always the same one); Mudstack: every page is page 1, full,
                        with a `total` of 10 million; Spectrum: every page is page 1 padded to
                        the pageSize asked for (`fresh`: with new ids each time, an endless API)
    redirect_elsewhere  any request whose path contains `path_contains` (default: the
                        provider's prefix) answers `status` (302) with a Location on `target`
                        (another host) + the same path and query

Copies made to pad a list get ids of their own; requests for a copy (Apple's asset, Mudstack's
download and versions routes) are answered as for its original, under the copy's id and name.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from dataclasses import asdict, dataclass, field, fields
from urllib.parse import parse_qsl, urlencode

# Every name a path must survive. Each is a path component's worst case, not a path.
HOSTILE_NAMES = [
    "../x",
    "a/b",
    "nul\x00byte",
    ".",
    "..",
    "",
    "   ",
    "/",
    "//",
    "./.",
    "../../../../etc/passwd",
    "ctl\x01\x07\x1b[31mred\x1b[0m\nline\ttab\x7f",
    "x" * 300 + ".png",
    "é" * 200 + ".jpg",
    "\udc80lone surrogate",
    "back\\slash",
    "x",
    "-rf",
    "~",
    ".hidden",
    "trailing ",
    "日本語の名前",
]

MODES = (
    "",
    "hostile_names",
    "duplicates",
    "huge_page",
    "malformed_json",
    "wrong_types",
    "wrong_envelope",
    "missing_fields",
    "looping_cursor",
    "redirect_elsewhere",
)

PREFIXES = {"spectrum": "/spectrum", "iqmetrix": "/iqmetrix", "apple": "/apple", "mudstack": "/mudstack"}

# Listing answers: (provider, kind) by path.
_LISTINGS = [
    ("spectrum", "page", re.compile(r"^/spectrum/api/assets/saved/client/[^/]+/organization/[^/]+$")),
    ("iqmetrix", "object", re.compile(r"^/iqmetrix(?:/v1)?/assets/[^/]+$")),
    ("apple", "page", re.compile(r"^/apple/api/v1/orgs/[^/]+/brands/[^/]+/assets$")),
    ("apple", "image", re.compile(r"^/apple/api/v1/orgs/[^/]+/images/[^/]+/metadata$")),
    ("mudstack", "page", re.compile(r"^/mudstack(?:/v1)?/workspaces/assets/search$")),
]
# Routes of one asset whose id may be a padded copy's: group 2 is the id.
_ONE_ASSET = [
    re.compile(r"^(/apple/api/v1/orgs/[^/]+/assets/)([^/]+)()$"),
    re.compile(r"^(/mudstack(?:/v1)?/workspaces/assets/)([^/]+)(/.*)?$"),
]
_LIST_KEY = {"spectrum": "contents", "apple": "data", "mudstack": "assets"}


@dataclass
class Hostile:
    mode: str = ""
    provider: str = ""
    names: list = field(default_factory=lambda: list(HOSTILE_NAMES))
    name: str = "same"  # duplicates: the one name
    size: int = 0  # duplicates / huge_page: how many (0: the mode's default)
    same_id: bool = False  # duplicates: the copies keep the first asset's id too
    fresh: bool = False  # looping_cursor: a new cursor (Apple) or new ids (Spectrum) each page
    total: int = 10_000_000  # looping_cursor, Mudstack: the total claimed
    target: str = ""  # redirect_elsewhere: the other host's base URL
    path_contains: str = ""  # redirect_elsewhere: which requests (default: the provider's prefix)
    status: int = 302  # redirect_elsewhere: the status
    answered: int = 0  # how many answers were rewritten (read-only)

    def update(self, values: dict) -> None:
        known = {f.name for f in fields(self)} - {"answered"}
        for key in values:
            if key not in known:
                raise ValueError(f"unknown hostile switch {key!r}; known: {', '.join(sorted(known))}")
        fresh = Hostile()  # every POST starts from the defaults: no switch lingers from a former test
        for key in known:
            setattr(self, key, getattr(fresh, key))
        for key, value in values.items():
            setattr(self, key, value)
        if self.mode not in MODES:
            raise ValueError(f"unknown hostile mode {self.mode!r}; known: {', '.join(m for m in MODES if m)}")
        if self.mode and self.mode != "redirect_elsewhere" and self.provider not in PREFIXES:
            raise ValueError(f"provider must be one of {', '.join(PREFIXES)}")
        if self.mode == "redirect_elsewhere" and not self.target:
            raise ValueError("redirect_elsewhere needs a target (another host's base URL)")
        _COPIES.clear()
        _picked.clear()

    def as_dict(self) -> dict:
        out = asdict(self)
        out["names"] = [json.dumps(n) for n in self.names]  # readable, whatever is in them
        return out


# padded copy's id → (original id, its name or None), for the routes of one asset
_COPIES: dict[str, tuple[str, str | None]] = {}
_counter = itertools.count(1)


class HostileMiddleware:
    """ASGI middleware applying the current `Hostile` switch to provider answers."""

    def __init__(self, app, hostile: Hostile):
        self.app = app
        self.hostile = hostile

    async def __call__(self, scope, receive, send):
        h = self.hostile
        path = scope.get("path", "")
        if scope["type"] != "http" or not h.mode or path.startswith("/_emulator/"):
            return await self.app(scope, receive, send)
        if h.mode == "redirect_elsewhere":
            if h.path_contains not in path or (
                not h.path_contains and not path.startswith(PREFIXES.get(h.provider, "/"))
            ):
                return await self.app(scope, receive, send)
            query = scope.get("query_string", b"").decode("latin-1")
            location = h.target.rstrip("/") + path + (f"?{query}" if query else "")
            h.answered += 1
            return await _send(send, h.status, b"", [(b"location", location.encode())])
        if not path.startswith(PREFIXES[h.provider]):
            return await self.app(scope, receive, send)
        listing = next(((kind, rx) for p, kind, rx in _LISTINGS if p == h.provider and rx.match(path)), None)
        copy_of = None
        if listing is None:
            scope, copy_of = _unpad(scope)
            if copy_of is None:
                return await self.app(scope, receive, send)
        elif h.mode == "looping_cursor":
            scope = _loop_request(scope, h)
        status, headers, body = await _capture(self.app, scope, receive)
        if status == 200 and body:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if doc is not None:
                if copy_of is not None:
                    doc = _as_copy(doc, h.provider, *copy_of)
                elif listing is not None:
                    doc = _rewrite(h, listing[0], doc, scope)
                body = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=True).encode()
                h.answered += 1
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        await _send(send, status, body, headers)


async def _capture(app, scope, receive):
    """The whole answer of the app: (status, headers, body)."""
    started: dict = {}
    chunks: list[bytes] = []

    async def capture(message):
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    return started.get("status", 500), list(started.get("headers", [])), b"".join(chunks)


async def _send(send, status: int, body: bytes, headers: list) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- request side ------------------------------------------------------------------------------


def _with_query(scope, params: list[tuple[str, str]]):
    return {**scope, "query_string": urlencode(params).encode()}


def _query(scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _loop_request(scope, h: Hostile):
    """Looping: every page asked for is answered with page 1."""
    params = _query(scope)
    if h.provider == "apple":
        params = [(k, v) for k, v in params if not (k == "after" and v.startswith("loop-"))]
    elif h.provider in ("mudstack", "spectrum"):
        params = [(k, "1" if k == "page" else v) for k, v in params]
    return _with_query(scope, params)


def _unpad(scope):
    """A request for one padded copy goes to its original."""
    for rx in _ONE_ASSET:
        m = rx.match(scope["path"])
        if m and m.group(2) in _COPIES:
            original, name = _COPIES[m.group(2)]
            path = m.group(1) + original + (m.group(3) or "")
            return {**scope, "path": path, "raw_path": path.encode()}, (m.group(2), name)
    return scope, None


def _as_copy(doc, provider: str, copy_id: str, name: str | None):
    if isinstance(doc, dict) and str(doc.get("id")) in {v[0] for v in _COPIES.values()}:
        doc["id"] = copy_id
        if name is not None:
            _set_name(provider, doc, name)
    return doc


# -- answer side -------------------------------------------------------------------------------


def _rewrite(h: Hostile, kind: str, doc, scope):
    if h.mode == "malformed_json":
        text = json.dumps(doc).encode()
        return text[: max(1, len(text) // 2)]
    if kind == "object":  # iQmetrix: one asset per answer
        return _rewrite_object(h, doc)
    if kind == "image":  # Apple image metadata: its filename
        if h.mode == "hostile_names" and isinstance(doc, dict):
            doc["filename"] = _pick(h.names, str(doc.get("id")))
        elif h.mode == "wrong_types" and isinstance(doc, dict):
            doc.update(fileSize="big", filename=["a"], width={"w": 1})
        elif h.mode == "missing_fields" and isinstance(doc, dict):
            for key in ("filename", "contentType", "fileSize"):
                doc.pop(key, None)
        return doc
    key = _LIST_KEY[h.provider]
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return doc
    if h.mode == "wrong_envelope":
        doc[key] = {"not": "a list"} if h.provider != "mudstack" else 5
    elif h.mode == "hostile_names":
        doc[key] = _named(h.provider, _padded(h.provider, items, len(h.names)), h.names)
    elif h.mode == "duplicates":
        doc[key] = _named(h.provider, _padded(h.provider, items, h.size or 2000), [h.name] * (h.size or 2000))
        if h.same_id:
            for item in doc[key]:
                item["id"] = items[0].get("id")
    elif h.mode == "huge_page":
        page = dict(_query(scope)).get("page", "1")
        if page == "1" and "after" not in dict(_query(scope)):
            size = h.size or 50_000
            doc[key] = _padded(h.provider, items, size, slim=True, register=False)
            doc[key][len(items) :] = _named(
                h.provider, doc[key][len(items) :], [f"huge {n:06d}" for n in range(size - len(items))]
            )
    elif h.mode == "wrong_types":
        doc[key] = items[:1] + [_WRONG[h.provider](i, item) for i, item in enumerate(items[1:])]
    elif h.mode == "missing_fields":
        doc[key] = items[:1] + [_MISSING[h.provider](item) for item in items[1:]]
    elif h.mode == "looping_cursor":
        _loop_answer(h, doc, items, scope)
    return doc


def _rewrite_object(h: Hostile, doc):
    if not isinstance(doc, dict):
        return doc
    ident = str(doc.get("id"))
    if h.mode == "wrong_envelope":
        return [doc]
    if h.mode == "hostile_names":
        doc["name"] = _pick(h.names, ident)
    elif h.mode == "duplicates":
        doc["name"] = h.name
    elif h.mode == "wrong_types":
        doc.update(name=42, mimeType=["image/png"], href={"u": 1}, md5Checksum=123, width="wide", height=[1])
    elif h.mode == "missing_fields":
        for key in ("name", "mimeType", "href", "md5Checksum"):
            doc.pop(key, None)
    return doc


_picked: dict[str, int] = {}


def _pick(names: list, ident: str):
    """The same hostile name for the same id every time, the names taken in turn."""
    if ident not in _picked:
        _picked[ident] = len(_picked)
    return names[_picked[ident] % len(names)]


def _copy_id(provider: str, original, n: int):
    if provider == "spectrum":
        return 90_000_000 + n
    if provider == "apple":
        return f"77{n:017d}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hostile/{original}/{n}"))


def _padded(provider: str, items: list, size: int, slim: bool = False, register: bool = True) -> list:
    """`items` with copies of the first appended up to `size` entries."""
    if not items or len(items) >= size:
        return items
    template = copy.deepcopy(items[0])
    if slim:
        for key in ("productionJobs", "metaData", "versions", "version"):
            template.pop(key, None)
        if isinstance(template.get("brandAssetDetails"), dict):
            template["brandAssetDetails"].pop("altTexts", None)
        if isinstance(template.get("currentVersion"), dict):
            template["currentVersion"].pop("user", None)
    text = json.dumps(template)
    out = list(items)
    for n in range(size - len(items)):
        item = json.loads(text)
        item["id"] = _copy_id(provider, template.get("id"), n)
        if register and provider in ("apple", "mudstack"):
            _COPIES[str(item["id"])] = (str(template.get("id")), None)
        out.append(item)
    return out


def _named(provider: str, items: list, names: list) -> list:
    for item, name in zip(items, names):
        if isinstance(item, dict):
            _set_name(provider, item, name)
            if str(item.get("id")) in _COPIES:
                _COPIES[str(item["id"])] = (_COPIES[str(item["id"])][0], name)
    return items


def _set_name(provider: str, item: dict, name: str) -> None:
    if provider == "spectrum":
        item["userFacingFileName"] = name
    elif provider == "apple":
        details = item.get("brandAssetDetails")
        if not isinstance(details, dict):
            details = item["brandAssetDetails"] = {}
        details["partnersAssetId"] = name
    elif provider == "mudstack":
        item["name"] = name
        item["file_name"] = name
    else:
        item["name"] = name


def _loop_answer(h: Hostile, doc: dict, items: list, scope) -> None:
    if h.provider == "apple":
        cursor = f"loop-{next(_counter)}" if h.fresh else "loop-1"
        doc["pagination"] = {"cursors": {"after": cursor}, "next": f"{scope['path']}?limit=100&after={cursor}"}
    elif h.provider == "mudstack":
        doc.update(total=h.total, limit=max(1, len(items)), page=int(dict(_query(scope)).get("page", "1")))
    elif h.provider == "spectrum":
        size = int(dict(_query(scope)).get("pageSize", "500") or 500)
        padded = _padded(h.provider, items, size, slim=True, register=False)
        if h.fresh:
            base = next(_counter) * 1_000_000
            for n, item in enumerate(padded[len(items) :]):
                item["id"] = 100_000_000 + base + n
        doc["contents"] = padded


# Wrong types, one kind per item in turn.
def _wrong_spectrum(i: int, item: dict):
    variants = [
        lambda a: a.update(id={"nested": [1]}, userFacingFileName=12345, productionJobs=7, createdDate=[1]),
        lambda a: a.update(
            productionJobs=[{"reference": {"a": 1}, "result": {"outputs": [{"uri": 5, "assetFormat": "png"}]}}],
            uploadedAssetUri=["x"],
            lastModification=1e308,
        ),
        lambda a: a.update(userFacingFileName=None, active="yes", productionJobs="abc", spectrumAssetReference=[]),
    ]
    if i % 4 == 3:
        return "not an asset"
    variants[i % 4](item)
    return item


def _wrong_apple(i: int, item: dict):
    variants = [
        lambda a: a.update(brandAssetDetails="x", createdDate={}),
        lambda a: a.update(id=12345, brandAssetDetails={"partnersAssetId": 17, "imageId": ["i"], "altTexts": "none"}),
        lambda a: a.update(
            brandAssetDetails={"partnersAssetId": {"a": 1}, "imageId": None, "altTexts": [1, None]}, updatedDate=5
        ),
    ]
    if i % 4 == 3:
        return ["not", "an", "asset"]
    variants[i % 4](item)
    return item


def _wrong_mudstack(i: int, item: dict):
    def mixed_versions(a):
        versions = a.get("versions") if isinstance(a.get("versions"), list) else []
        a["versions"] = [{**v, "version_number": "2"} for v in versions[:1]] + [
            {"id": "v-int", "version_number": 1, "size": "615"}
        ]
        a.pop("current_version_id", None)
        a.pop("currentVersion", None)
        a.pop("version", None)

    variants = [
        mixed_versions,
        lambda a: a.update(versions="abc", currentVersion=7, name={"a": 1}, file_location=3),
        lambda a: a.update(id=123, isActive="no", versions=[None, 1, "x"], created_at=[]),
    ]
    if i % 4 == 3:
        return 17
    variants[i % 4](item)
    return item


def _missing_spectrum(item: dict) -> dict:
    for key in ("id", "userFacingFileName", "uploadedAssetUri", "productionJobs"):
        item.pop(key, None)
    return item


def _missing_apple(item: dict) -> dict:
    item.pop("brandAssetDetails", None)
    if int(str(item.get("id", "0"))[-1:] or 0) % 2:
        item.pop("id", None)
    return item


def _missing_mudstack(item: dict) -> dict:
    for key in ("id", "name", "file_name", "currentVersion", "version", "current_version_id", "versions"):
        item.pop(key, None)
    return item


_WRONG = {"spectrum": _wrong_spectrum, "apple": _wrong_apple, "mudstack": _wrong_mudstack}
_MISSING = {"spectrum": _missing_spectrum, "apple": _missing_apple, "mudstack": _missing_mudstack}
