"""API names are data, not paths: make them safe, stable and unique within a directory."""

from __future__ import annotations

import hashlib
import unicodedata

MAX_NAME_BYTES = 255

# Look-alikes keep a name readable while taking away its meaning as a path.
_REPLACE = {"/": "\u2215", "\\": "\u29f5"}


def safe_name(raw: str | None, fallback: str) -> str:
    """One path component: no '/', NUL or control characters, never '.', '..' or empty,
    at most 255 bytes of UTF-8. Lone surrogates (JSON allows "\\udc80") become U+FFFD too:
    they cannot be encoded, so they would fail every later step."""
    name = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    if _plain(name):
        return fit(name)  # the API's own string, not a copy: a listing holds 100,000 of them
    name = "".join(_REPLACE.get(c, "\ufffd" if _unsafe(c) else c) for c in name)
    name = unicodedata.normalize("NFC", name)
    name = name.strip()
    if name in (".", ".."):
        name = name.replace(".", "\uff0e")
    elif not name:
        name = safe_name(fallback, "") if fallback else "unnamed"
    return fit(name)


def _plain(name: str) -> bool:
    """Already safe as it is: printable (no control characters, no lone surrogates), no
    slash or backslash, nothing to strip or normalize, not '.' or '..'."""
    return (
        name.isprintable()
        and "/" not in name
        and "\\" not in name
        and name not in ("", ".", "..")
        and name[0] != " "
        and name[-1] != " "
        and unicodedata.is_normalized("NFC", name)
    )


def _unsafe(c: str) -> bool:
    """Control characters (C0, DEL, C1: terminals act on them) and lone surrogates."""
    code = ord(c)
    return code < 32 or 127 <= code < 160 or 0xD800 <= code <= 0xDFFF


def fit(name: str, suffix: str = "") -> str:
    """`name` + `suffix` cut to 255 bytes, keeping the extension and a hash of what was cut."""
    if len((name + suffix).encode()) <= MAX_NAME_BYTES:
        return name + suffix
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    tail = (("." + ext) if ext else "") + suffix
    budget = max(0, MAX_NAME_BYTES - len((tag + tail).encode()))
    cut = stem.encode()[:budget].decode(errors="ignore")
    return (cut + tag + tail).encode()[:MAX_NAME_BYTES].decode(errors="ignore")


def with_extension(name: str, extension: str | None) -> str:
    """Add a file extension unless the name already ends in it (case-insensitively)."""
    if not extension:
        return name
    ext = extension if extension.startswith(".") else "." + extension
    return name if name.lower().endswith(ext.lower()) else name + ext


def unique_names(items: list[tuple[str, str]]) -> list[str]:
    """Names for (wanted name, stable id) pairs, in order, with no two alike.

    Duplicates (compared case-sensitively, as the kernel does) get " (id)" before their
    extension, so the same asset keeps the same name on every mount whatever the order.
    An id that is itself repeated gets " (id-2)", " (id-3)", …: counted on per (name, id),
    so that thousands of copies of one asset cost linear time, not quadratic.
    """
    counts: dict[str, int] = {}
    for wanted, _ in items:
        counts[wanted] = counts.get(wanted, 0) + 1
    taken: set[str] = {w for w, _ in items if counts[w] == 1}
    next_number: dict[tuple[str, str], int] = {}
    out = []
    for wanted, ident in items:
        if counts[wanted] == 1:
            out.append(wanted)
            continue
        stem, dot, ext = wanted.rpartition(".")
        if not dot or not stem:
            stem, ext = wanted, ""
        tail = ("." + ext) if ext else ""
        label = _label(ident)
        n = next_number.get((wanted, label), 1)
        candidate = fit(stem, f" ({label})" + tail) if n == 1 else fit(stem, f" ({label}-{n})" + tail)
        while candidate in taken:
            n += 1
            candidate = fit(stem, f" ({label}-{n})" + tail)
        next_number[(wanted, label)] = n + 1
        taken.add(candidate)
        out.append(candidate)
    return out


def _label(ident: str) -> str:
    """An id as a duplicate's mark: safe, and short enough to leave room for the name."""
    label = safe_name(ident, "x")
    if len(label.encode()) > 64:
        label = label.encode()[:48].decode(errors="ignore") + "~" + hashlib.sha1(label.encode()).hexdigest()[:8]
    return label


# Names that file managers and shells ask for in every directory; they never reach the network.
PROBE_NAMES = frozenset(
    {
        ".hidden",
        ".directory",
        "desktop.ini",
        "Desktop.ini",
        "autorun.inf",
        "AutoRun.inf",
        ".git",
        ".svn",
        ".hg",
        ".DS_Store",
        "._.DS_Store",
        "Thumbs.db",
        ".localized",
        ".metadata_never_index",
        ".xdg-volume-info",
        ".Spotlight-V100",
        ".fseventsd",
        ".envrc",
        ".gitignore",
        "folder.jpg",
        "Folder.jpg",
        ".nomedia",
        ".thumbnails",
        ".bzr",
        ".editorconfig",
        ".python-version",
        ".tool-versions",
        "__pycache__",
    }
)


def is_probe(name: str) -> bool:
    return name in PROBE_NAMES or name.startswith((".Trash", "._", ".directory")) or name.endswith(".icloud")
