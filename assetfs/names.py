"""API names are data, not paths: make them safe, stable and unique within a directory."""

from __future__ import annotations

import hashlib
import unicodedata

MAX_NAME_BYTES = 255

# Look-alikes keep a name readable while taking away its meaning as a path.
_REPLACE = {"/": "\u2215", "\\": "\u29f5"}


def safe_name(raw: str | None, fallback: str) -> str:
    """One path component: no '/', NUL or control characters, never '.', '..' or empty,
    at most 255 bytes of UTF-8."""
    name = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    name = unicodedata.normalize("NFC", name)
    name = "".join(_REPLACE.get(c, "\ufffd" if (ord(c) < 32 or ord(c) == 127) else c) for c in name)
    name = name.strip()
    if name in (".", ".."):
        name = name.replace(".", "\uff0e")
    elif not name:
        name = safe_name(fallback, "") if fallback else "unnamed"
    return fit(name)


def fit(name: str, suffix: str = "") -> str:
    """`name` + `suffix` cut to 255 bytes, keeping the extension and a hash of what was cut."""
    if len((name + suffix).encode()) <= MAX_NAME_BYTES:
        return name + suffix
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    tail = (("." + ext) if ext else "") + suffix
    budget = MAX_NAME_BYTES - len((tag + tail).encode())
    cut = stem.encode()[:budget].decode(errors="ignore")
    return cut + tag + tail


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
    """
    counts: dict[str, int] = {}
    for wanted, _ in items:
        counts[wanted] = counts.get(wanted, 0) + 1
    taken: set[str] = {w for w, _ in items if counts[w] == 1}
    out = []
    for wanted, ident in items:
        if counts[wanted] == 1:
            out.append(wanted)
            continue
        stem, dot, ext = wanted.rpartition(".")
        if not dot or not stem:
            stem, ext = wanted, ""
        candidate = fit(stem, f" ({safe_name(ident, 'x')})" + (("." + ext) if ext else ""))
        n = 2
        while candidate in taken:
            candidate = fit(stem, f" ({safe_name(ident, 'x')}-{n})" + (("." + ext) if ext else ""))
            n += 1
        taken.add(candidate)
        out.append(candidate)
    return out


# Names that file managers and shells ask for in every directory; they never reach the network.
PROBE_NAMES = frozenset({
    ".hidden", ".directory", "desktop.ini", "Desktop.ini", "autorun.inf", "AutoRun.inf", ".git", ".svn", ".hg",
    ".DS_Store", "._.DS_Store", "Thumbs.db", ".localized", ".metadata_never_index", ".xdg-volume-info",
    ".Spotlight-V100", ".fseventsd", ".envrc", ".gitignore", "folder.jpg", "Folder.jpg", ".nomedia",
    ".thumbnails", ".bzr", ".editorconfig", ".python-version", ".tool-versions", "__pycache__",
})


def is_probe(name: str) -> bool:
    return name in PROBE_NAMES or name.startswith((".Trash", "._", ".directory")) or name.endswith(".icloud")
