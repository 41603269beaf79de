"""A listing as it travels through Redis: sealed, so that Redis never holds a secret.

Entries can carry signed content URLs (Spectrum's CDN links, a capability to read the file
until they expire) and the names and metadata of a company's assets. Leaving the signed
URLs out would not do: Spectrum has no other way to a file's bytes than the URL its
listing gave. So the whole listing is encrypted (AES-GCM) with a key derived from the
account's own credentials, which every mount of the account has and Redis never sees.
A mount with other credentials (a rotated secret) cannot open it and fetches its own.

Entries become JSON, never pickle: what comes out of Redis is rebuilt as our dataclasses
only, field by field."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import zlib
from dataclasses import fields

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..providers.base import Content, Entry

MAX_SEALED = 64 << 20  # a listing larger than this (compressed) is not shared


def listing_key(secrets: list[str], namespace: str) -> bytes:
    """The account's sealing key: an HMAC of its credentials, bound to its namespace."""
    material = "\0".join(secrets).encode()
    return hmac.new(material, b"assetfs shared listings v1 " + namespace.encode(), hashlib.sha256).digest()


def seal(entries: list[Entry], key: bytes, where: str) -> bytes | None:
    """The entries as an encrypted blob bound to the Redis key `where`; None if too large."""
    packed = zlib.compress(json.dumps([_plain(e) for e in entries], separators=(",", ":")).encode(), 3)
    if len(packed) > MAX_SEALED:
        return None
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, packed, where.encode())


def unseal(blob: bytes, key: bytes, where: str) -> list[Entry] | None:
    """The entries of a blob `seal` made with the same key for the same place; None if not."""
    try:
        packed = AESGCM(key).decrypt(blob[:12], blob[12:], where.encode())
        types = _types()
        return [_build(item, types) for item in json.loads(zlib.decompress(packed))]
    except (InvalidTag, ValueError, TypeError, KeyError, zlib.error):
        return None


def _types() -> dict[str, type]:
    """The dataclasses a listing may hold: Entry, Content and the providers' kinds of Content."""
    found, todo = {}, [Entry, Content]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def _plain(value):
    if isinstance(value, (Entry, Content)):
        return {"@": type(value).__name__, **{f.name: _plain(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, bytes):
        return {"@": "bytes", "b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {"@": "dict", "items": {k: _plain(v) for k, v in value.items()}}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _build(value, types: dict[str, type]):
    if isinstance(value, list):
        return [_build(v, types) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value["@"]
    if kind == "bytes":
        return base64.b64decode(value["b64"])
    if kind == "dict":
        return {k: _build(v, types) for k, v in value["items"].items()}
    cls = types[kind]
    return cls(**{f.name: _build(value[f.name], types) for f in fields(cls) if f.name in value})
