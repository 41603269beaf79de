"""Mudstack's data model: an account's workspaces, their folder paths, assets and versions,
rendered in the shape of the documented getByIds element (seeds/mudstack_asset.json).

Kept apart from the HTTP layer (mudstack.py) so the routes read as the API and this module
reads as the data. Sample data lives at the end of the file.
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus

from .app import SAMPLE_EPOCH, Emulator
from .blobs import Blob
from .samples import Sample, jpeg, pdf, png

_NS = uuid.UUID("6f3d2a9e-0b7c-4e51-8f2a-d1c0b3a4e5f6").bytes


def uid(*parts: str) -> str:
    """A stable UUID for a name, so ids are the same on every run: uuid5(_NS, name), formatted
    by hand because uuid.uuid5 is the bulk of the start-up time with --assets 10000."""
    h = hashlib.sha1(_NS + "/".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(t * 1000) % 1000:03d}Z"


class ApiError(Exception):
    """An error answer; the body shape is inferred (the docs show status codes only)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        # inferred: NestJS-style error body {statusCode, message, error}
        return {"statusCode": self.status, "message": self.message, "error": HTTPStatus(self.status).phrase}


def folder_path(raw: str | None) -> str:
    """A folder path as Mudstack writes `file_location`: leading and trailing '/', root is '/'."""
    parts = [p for p in (raw or "").replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ApiError(400, f"Invalid folder path: {raw!r}")
    return "/" + "".join(p + "/" for p in parts)


def parent_of(path: str) -> str:
    return "/" if path == "/" else posixpath.dirname(path.rstrip("/")).rstrip("/") + "/"


# inferred: asset types by extension (the docs name the fields, not the catalogue)
ASSET_TYPES = [
    (
        "Image",
        "image",
        "#3A86FF",
        False,
        [".png", ".jpg", ".jpeg", ".gif", ".tga", ".psd", ".tif", ".tiff", ".webp", ".bmp", ".exr"],
    ),
    ("Document", "document", "#E63946", False, [".pdf", ".txt", ".md", ".doc", ".docx"]),
    ("3D Model", "model", "#2A9D8F", False, [".fbx", ".obj", ".blend", ".gltf", ".glb", ".ma", ".mb", ".max"]),
    ("Audio", "audio", "#F4A261", False, [".wav", ".mp3", ".ogg", ".flac"]),
    ("Other", "generic", "#8D99AE", True, []),
]
ASSET_TYPE_JSON = {
    uid("asset-type", name): {
        "id": uid("asset-type", name),
        "name": name,
        "displayType": display,
        "color": color,
        "generic": generic,
        "knownExtensions": exts,
    }
    for name, display, color, generic, exts in ASSET_TYPES
}
_TYPE_BY_EXT = {ext: uid("asset-type", name) for name, _, _, _, exts in ASSET_TYPES for ext in exts}


def asset_type_for(file_name: str) -> str:
    return _TYPE_BY_EXT.get(posixpath.splitext(file_name)[1].lower(), uid("asset-type", "Other"))


def content_type_for(file_name: str) -> str:
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


@dataclass(slots=True)
class Version:
    asset_id: str
    number: int
    blob: Blob
    created_by: str
    created_at: float
    description: str = ""

    # Ids follow from the asset and the number: stable across runs, and free to store.
    @property
    def id(self) -> str:
        return uid(self.asset_id, f"v{self.number}")

    @property
    def parent_id(self) -> str | None:
        return uid(self.asset_id, f"v{self.number - 1}") if self.number > 1 else None


@dataclass(slots=True)
class ReviewRequest:
    id: str
    version: Version
    requestor_id: str
    user_id: str
    status: str
    content: str
    attachment: str


@dataclass(slots=True)
class Asset:
    id: str
    workspace_id: str
    name: str
    file_name: str
    file_location: str
    status_id: str | None
    created_by: str
    created_at: float
    sequence: int
    versions: list[Version] = field(default_factory=list)
    updated_at: float = 0.0
    active: bool = True
    locked_by: str | None = None
    favorited: bool = False
    # Replaced, never appended to: an empty tuple keeps 20,000 bulk assets cheap.
    tags: Sequence[dict] = ()
    libraries: Sequence[dict] = ()
    collaborators: Sequence[str] = ()
    review_requests: Sequence[ReviewRequest] = ()

    @property
    def current(self) -> Version:
        return self.versions[-1]

    def version(self, version_id: str) -> Version:
        for v in self.versions:
            if v.id == version_id:
                return v
        raise ApiError(404, "Version not found")


@dataclass(slots=True)
class Folder:
    id: str
    workspace_id: str
    path: str
    created_at: float

    def json(self) -> dict:
        # inferred: folder object shape
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "path": self.path,
            "name": self.path.rstrip("/").rsplit("/", 1)[-1],
            "parent_id": None if self.path == "/" else uid(self.workspace_id, "folder", parent_of(self.path)),
            "created_at": iso(self.created_at),
        }


@dataclass
class Workspace:
    id: str
    account_id: str
    name: str
    created_by: str
    created_at: float
    folders: dict[str, Folder] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)  # in sequence order
    statuses: list[dict] = field(default_factory=list)
    tags: list[dict] = field(default_factory=list)
    libraries: list[dict] = field(default_factory=list)
    sequence: int = 0

    def __post_init__(self):
        self.folders["/"] = Folder(uid(self.id, "folder", "/"), self.id, "/", self.created_at)

    def json(self) -> dict:
        return {
            "account_id": self.account_id,
            "id": self.id,
            "name": self.name,
            # inferred: fields beyond account_id, id, name, created_at
            "description": f"{self.name} workspace",
            "created_by_user_id": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at),
        }

    # --- folders -----------------------------------------------------------------
    def add_folder(self, raw: str, when: float | None = None) -> Folder:
        """Create one level, as POST /workspaces/folders does."""
        path = folder_path(raw)
        if path in self.folders:
            raise ApiError(409, f"Folder {path} already exists")  # inferred status
        if parent_of(path) not in self.folders:
            raise ApiError(400, f"Parent folder {parent_of(path)} does not exist")  # inferred status
        folder = Folder(uid(self.id, "folder", path), self.id, path, time.time() if when is None else when)
        self.folders[path] = folder
        return folder

    def ensure_folder(self, path: str, when: float | None = None) -> str:
        """Create a folder and its missing parents (assets may name any path)."""
        if path not in self.folders:
            self.ensure_folder(parent_of(path), when)
            self.add_folder(path, when)
        return path

    def folder(self, folder_id: str) -> Folder:
        for folder in self.folders.values():
            if folder.id == folder_id:
                return folder
        raise ApiError(404, "Folder not found")

    def delete_folder(self, folder_id: str) -> Folder:
        folder = self.folder(folder_id)
        if folder.path == "/":
            raise ApiError(400, "The root folder cannot be deleted")
        # inferred: only an empty folder may go; trashed assets do not keep it (restore recreates it)
        if any(p != folder.path and p.startswith(folder.path) for p in self.folders) or any(
            a.active and a.file_location.startswith(folder.path) for a in self.assets.values()
        ):
            raise ApiError(409, f"Folder {folder.path} is not empty")
        del self.folders[folder.path]
        return folder

    def hierarchy(self) -> dict:
        # inferred: a nested tree of folder objects with `children`, from the root
        nodes = {path: {**f.json(), "children": []} for path, f in self.folders.items()}
        for path in sorted(nodes):
            if path != "/":
                nodes[parent_of(path)]["children"].append(nodes[path])
        return nodes["/"]

    # --- assets ------------------------------------------------------------------
    def asset(self, asset_id: str) -> Asset:
        asset = self.assets.get(asset_id)
        if asset is None:
            raise ApiError(404, "Asset not found")
        return asset

    def add_asset(
        self, asset_id: str, file_name: str, location: str, blob: Blob, user: str, when: float, name: str | None = None
    ) -> Asset:
        self.sequence += 1
        asset = Asset(
            asset_id,
            self.id,
            name or posixpath.splitext(file_name)[0],
            file_name,
            self.ensure_folder(location, when),
            self.statuses[0]["id"],
            user,
            when,
            self.sequence,
            updated_at=when,
        )
        self.assets[asset_id] = asset
        self.add_version(asset, blob, user, when)
        return asset

    def add_version(self, asset: Asset, blob: Blob, user: str, when: float, description: str = "") -> Version:
        version = Version(asset.id, len(asset.versions) + 1, blob, user, when, description)
        asset.versions.append(version)
        asset.updated_at = when
        return version

    def search(
        self,
        query: str = "",
        library: str = "",
        status: str = "",
        location: str | None = None,
        subfolders: bool = False,
        trashed: bool = False,
    ) -> list[Asset]:
        # The filters are documented (query, library, review status), what they match is not.
        # inferred: `query` is part of the name or file name, `library` a library's id or name,
        # `status` see _has_status; all without case.
        query, library, status = query.lower(), library.lower(), status.lower()
        found = []
        for a in self.assets.values():
            if a.active == trashed:
                continue
            if location is not None and not (
                a.file_location.startswith(location) if subfolders else a.file_location == location
            ):
                continue
            if query and query not in a.name.lower() and query not in a.file_name.lower():
                continue
            if library and not any(library in (lib["id"].lower(), lib["name"].lower()) for lib in a.libraries):
                continue
            if status and not self._has_status(a, status):
                continue
            found.append(a)
        return found

    def _has_status(self, asset: Asset, status: str) -> bool:
        # inferred: `status` matches the asset status (id or name) or a review's status
        named = next((s for s in self.statuses if s["id"] == asset.status_id), None)
        return (named is not None and status in (named["id"].lower(), named["name"].lower())) or any(
            r.status == status for r in asset.review_requests
        )


@dataclass
class Account:
    """The one emulated account with credentials, its users and workspaces (plus a foreign one)."""

    id: str
    key: str
    secret: str
    users: dict[str, dict] = field(default_factory=dict)
    workspaces: dict[str, Workspace] = field(default_factory=dict)

    @property
    def api_user(self) -> str:
        """The user the API key acts as (inferred: the account's first user)."""
        return next(iter(self.users))

    def own_workspaces(self) -> list[Workspace]:
        return [w for w in self.workspaces.values() if w.account_id == self.id]

    # --- JSON in the shape of the getByIds element ---------------------------------
    def version_json(self, v: Version) -> dict:
        return {
            "id": v.id,
            "asset_id": v.asset_id,
            "commit_parent_id": v.parent_id,
            "created_by_user_id": v.created_by,
            "thumbnail_file_id": uid(v.id, "thumbnail"),
            "name": f"v{v.number}",
            "description": v.description or f"Version {v.number}",
            "key": v.blob.key,
            "size": v.blob.size,
            "version_number": v.number,
            "sequence": v.number,
            "checksum": v.blob.md5,  # inferred: md5 hex of the bytes
            "user": self.users[v.created_by],
            "created_at": iso(v.created_at),
            "updated_at": iso(v.created_at),
        }  # inferred fields

    def asset_json(self, a: Asset) -> dict:
        ws = self.workspaces[a.workspace_id]
        current = self.version_json(a.current)
        type_id = asset_type_for(a.file_name)
        return {
            "id": a.id,
            "workspace_id": a.workspace_id,
            "name": a.name,
            "asset_type_id": type_id,
            "status_id": a.status_id,
            "isActive": a.active,
            "created_by_user_id": a.created_by,
            "locked_by_user_id": a.locked_by,
            "file_name": a.file_name,
            "file_location": a.file_location,
            "current_version_id": a.current.id,
            "sequence": a.sequence,
            "currentVersion": current,
            "version": current,
            "versions": [current if v is a.current else self.version_json(v) for v in a.versions],
            "collaborators": [self.users[u] for u in a.collaborators],
            "favorited": a.favorited,
            "tags": a.tags,
            "libraries": a.libraries,
            "reviewRequests": [self._review_request_json(a, r) for r in a.review_requests],
            "assetType": ASSET_TYPE_JSON[type_id],
            "assetStatus": next((s for s in ws.statuses if s["id"] == a.status_id), None),
            "created_at": iso(a.created_at),
            "updated_at": iso(a.updated_at),  # inferred fields
        }

    def _review_request_json(self, a: Asset, r: ReviewRequest) -> dict:
        version = self.version_json(r.version)
        review_id = uid(r.id, "review")
        user, requestor = self.users[r.user_id], self.users[r.requestor_id]
        attachment = {
            "id": uid(r.id, "attachment"),
            "asset_id": a.id,
            "created_by_user_id": r.user_id,
            "file_id": uid(r.id, "attachment-file"),
            "thumbnail_file_id": uid(r.id, "attachment-thumb"),
            "review_id": review_id,
            "comment_id": uid(r.id, "comment"),
            "name": r.attachment,
            "description": "Markup on the review frame",
            "user": user,
        }
        review = {
            "id": review_id,
            "asset_id": a.id,
            "asset_version_id": r.version.id,
            "user_id": r.user_id,
            "assigned_user_id": r.user_id,
            "status": r.status,
            "content": r.content,
            "mentions": [requestor["username"]],
            "viewer_metadata": {},
            "attachments": [attachment],
            "version": version,
            "user": user,
            "assignee": user,
            "workspace_id": a.workspace_id,
        }
        return {
            "workspace_id": a.workspace_id,
            "asset_id": a.id,
            "asset_version_id": r.version.id,
            "requestor_id": r.requestor_id,
            "user_id": r.user_id,
            "review_id": review_id,
            "user": user,
            "requestor": requestor,
            "asset": {},
            "version": version,
            "review": review,
        }


# --- sample data -----------------------------------------------------------------------

ACCOUNT_ID = uid("account", "studio")
KEY = "mk_demo_studio"
SECRET = "ms_demo_secret_not_a_secret"

_USERS = [
    ("ada", "Ada", "Lovelace", "Art Director", "London", "Greater London", "UK", "EC1A 1BB"),
    ("grace", "Grace", "Hopper", "Technical Artist", "Arlington", "VA", "US", "22201"),
    ("alan", "Alan", "Turing", "Producer", "Manchester", "Greater Manchester", "UK", "M1 1AE"),
]


def _user(username, first, last, occupation, city, state, country, zip_code) -> dict:
    user_id = uid("user", username)
    return {
        "id": user_id,
        "auth0UserID": "auth0|" + user_id.replace("-", "")[:24],
        "username": username,
        "email": f"{username}@studio.example",
        "firstName": first,
        "lastName": last,
        "avatar_file_id": uid("avatar", username),
        "defaultAvatar": len(username) % 8,
        "industry": "Games",
        "occupation": occupation,
        "company": "Studio Example",
        "emailVerified": True,
        "isActive": True,
        "city": city,
        "state": state,
        "country": country,
        "zipCode": zip_code,
        "invited_by_user": {},
    }


# (folder, file name, kind, variant, number of versions); the first Game Art asset carries every
# optional part of the documented shape (tags, libraries, collaborators, a lock, a review request).
_SAMPLES = {
    "Game Art": (
        [
            ("/characters/heroes/", "knight.png", "png", 1, 3),
            ("/characters/heroes/", "archer.png", "png", 2, 1),
            ("/characters/villains/", "dragon.jpg", "jpeg", 3, 2),
            ("/characters/", "concept-sheet.pdf", "pdf", 0, 1),
            ("/environments/", "forest.jpg", "jpeg", 4, 2),
            ("/environments/", "castle.png", "png", 5, 1),
            ("/", "style-guide.pdf", "pdf", 0, 1),
        ],
        ["/environments/props/", "/ui/"],
        ["Characters", "Environments"],
        ["hero", "wip", "final"],
    ),
    "Marketing": (
        [
            ("/campaigns/launch/", "banner.png", "png", 6, 2),
            ("/campaigns/launch/", "poster.pdf", "pdf", 0, 1),
            ("/campaigns/", "old-logo.png", "png", 7, 1),
            ("/social/", "instagram-post.jpg", "jpeg", 0, 1),
            ("/", "brand-guidelines.pdf", "pdf", 0, 1),
        ],
        ["/press/"],
        ["Campaigns"],
        ["social", "print"],
    ),
}
_TRASHED = {"old-logo.png"}
_STATUSES = [("In Progress", "#3A86FF"), ("Needs Review", "#FFBE0B"), ("Approved", "#2A9D8F")]


def _sample(kind: str, variant: int, version: int) -> Sample:
    if kind == "pdf":
        return pdf()
    size = (256 + 32 * (version - 1), 256 if kind == "png" else 192)
    return png(variant, size) if kind == "png" else jpeg(variant, size)


def _generated(emu: Emulator, key: str, sample: Sample, tag: str, when: float) -> Blob:
    return emu.blobs.add_generated(key, sample.size, sample.content_type, partial(sample.build, tag), when)


def build_account(emu: Emulator) -> Account:
    account = Account(ACCOUNT_ID, KEY, SECRET)
    account.users = {u["id"]: u for u in (_user(*row) for row in _USERS)}
    users = list(account.users)
    for n, (ws_name, (assets, folders, libraries, tags)) in enumerate(_SAMPLES.items()):
        ws = _workspace(account, ws_name, users[n % len(users)], SAMPLE_EPOCH + n * 86400, libraries, tags)
        for folder in folders:
            ws.ensure_folder(folder, ws.created_at)
        for i, (location, file_name, kind, variant, count) in enumerate(assets):
            when = ws.created_at + 3600 * (i + 1)
            asset_id = uid(ws.id, "asset", location + file_name)
            for number in range(1, count + 1):
                key = f"mudstack/{asset_id}/v{number}"
                blob = _generated(emu, key, _sample(kind, variant, number), uid(asset_id, f"v{number}"), when)
                if number == 1:
                    asset = ws.add_asset(asset_id, file_name, location, blob, users[i % len(users)], when)
                else:
                    ws.add_version(asset, blob, users[number % len(users)], when)
                when += 86400
            asset.active = file_name not in _TRASHED
            asset.libraries = [lib for lib in ws.libraries if lib["name"].lower() in location]
        _decorate(next(iter(ws.assets.values())), ws, users)
        _add_bulk(emu, ws, users[0])
    if emu.large_file_size > 0:
        ws = account.own_workspaces()[0]
        blob = emu.blobs.get("large/sample") or emu.blobs.add_large("large/sample", emu.large_file_size)
        ws.add_asset(uid(ws.id, "asset", "/large.bin"), "large.bin", "/", blob, users[0], SAMPLE_EPOCH, name="large")
    # A workspace of another account: visible to no one here, answered with 403.
    _workspace(account, "Partner Studio", users[0], SAMPLE_EPOCH, [], [], account_id=uid("account", "partner"))
    return account


def _workspace(
    account: Account,
    name: str,
    owner: str,
    when: float,
    libraries: list[str],
    tags: list[str],
    account_id: str | None = None,
) -> Workspace:
    ws = Workspace(uid("workspace", name), account_id or account.id, name, owner, when)
    ws.statuses = [
        {
            "id": uid(ws.id, "status", s),
            "workspace_id": ws.id,
            "name": s,
            "color": c,
            "rank": str(r),
            "created_by_user_id": owner,
        }
        for r, (s, c) in enumerate(_STATUSES, 1)
    ]
    ws.libraries = [
        {
            "id": uid(ws.id, "library", lib),
            "workspace_id": ws.id,
            "name": lib,
            "description": f"{lib} assets",
            "thumbnail_file_id": uid(ws.id, "library-thumb", lib),
            "defaultAvatar": i,
            "created_by_user_id": owner,
            "sequence": i,
        }
        for i, lib in enumerate(libraries, 1)
    ]
    ws.tags = [
        {
            "id": uid(ws.id, "tag", t),
            "workspace_id": ws.id,
            "name": t,
            "color": _STATUSES[i % 3][1],
            "created_by_user_id": owner,
            "sequence": i,
        }
        for i, t in enumerate(tags, 1)
    ]
    account.workspaces[ws.id] = ws
    return ws


def _decorate(asset: Asset, ws: Workspace, users: list[str]) -> None:
    """Fill every optional part of the documented shape on one asset."""
    asset.tags = ws.tags[:2]
    asset.libraries = ws.libraries[:1]
    asset.collaborators = users[1:]
    asset.locked_by = users[1]
    asset.favorited = True
    asset.status_id = ws.statuses[2]["id"]
    asset.review_requests = [
        ReviewRequest(
            uid(asset.id, "review-request"),
            asset.current,
            users[0],
            users[1],
            "approved",
            "Silhouette reads well; approved for rigging.",
            "markup.png",
        )
    ]


def _add_bulk(emu: Emulator, ws: Workspace, user: str) -> None:
    """emu.extra_assets deterministic assets in /bulk/: metadata now, bytes when read."""
    kinds = [png(0), jpeg(1), pdf(), png(2)]
    for i in range(emu.extra_assets):
        sample = kinds[i % len(kinds)]
        asset_id = uid(ws.id, "bulk", str(i))
        when = SAMPLE_EPOCH + i
        blob = _generated(emu, f"mudstack/{asset_id}/v1", sample, asset_id, when)
        name = f"bulk-{i:05d}"
        ws.add_asset(asset_id, name + sample.extension, "/bulk/", blob, user, when, name=name)
