"""The Thumbnail Managing Standard (freedesktop.org): a file's thumbnail is a PNG named by the
md5 of the file's URI, in `normal/` (128 px) or `large/` (256 px) of the thumbnail cache,
and says which file it shows and which version (`Thumb::URI`, `Thumb::MTime`): a file
manager (GLib's, Qt's) uses it only when both match, and otherwise reads the file."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

from PIL import Image, PngImagePlugin

SIZES = {"normal": 128, "large": 256}
LARGEST = max(SIZES.values())
# A rendition larger than this is no rendition: refused before it is decoded.
MAX_PICTURE_BYTES = 32 << 20
MAX_PICTURE_PIXELS = 64 << 20
# zlib's fastest level: a rendition of a photo (grain) hardly compresses at any level, and
# the default one costs five times the CPU (50 ms per 256 px thumbnail, 200 of them per
# folder opened); a thumbnail is read from a local disk, where its size does not matter.
COMPRESS_LEVEL = 1
# Modes a PNG holds as they are; any other (palette, CMYK, 16-bit…) is made RGBA first.
PNG_MODES = ("RGB", "RGBA", "L", "LA")

# What GLib's g_filename_to_uri leaves unescaped in a path: the name must be the md5 of
# exactly the URI the file manager makes (Python's own as_uri escapes "(", "!", "&", …).
_URI_SAFE = "/!$&'()*+,-.:=@_~"


def file_uri(path: str | os.PathLike) -> str:
    """The file:// URI of an absolute path, percent-encoded as file managers make it."""
    return "file://" + quote(os.fsencode(path), safe=_URI_SAFE)


def thumbnail_name(uri: str) -> str:
    return hashlib.md5(uri.encode()).hexdigest() + ".png"


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/thumbnails` of the user running this, where file managers look."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "thumbnails"


class NotAPicture(ValueError):
    """What the provider sent cannot be read as a picture (or is far too large to be one)."""


class ThumbnailCache:
    """One thumbnail cache directory (the base holding normal/ and large/). `owner`: the
    (uid, gid) its new files and directories are given (a mount run by root for a user)."""

    def __init__(self, base: Path, owner: tuple[int, int] | None = None):
        self.base = Path(base)
        self.owner = owner

    def path(self, flavor: str, uri: str) -> Path:
        return self.base / flavor / thumbnail_name(uri)

    def current(self, uri: str, mtime: int) -> bool:
        """Whether every size is there, made for this URI and this version of the file."""
        for flavor in SIZES:
            try:
                with Image.open(self.path(flavor, uri)) as image:
                    text = image.info
            except (OSError, ValueError):
                return False
            if text.get("Thumb::URI") != uri or text.get("Thumb::MTime") != str(mtime):
                return False
        return True

    def store(self, uri: str, mtime: int, size: int | None, picture: bytes) -> None:
        """Write normal/ and large/ from one picture (scaled down, never up), each atomically:
        a file manager sees a whole thumbnail or none. NotAPicture: nothing is written."""
        if len(picture) > MAX_PICTURE_BYTES:
            raise NotAPicture(f"{len(picture)} bytes is no thumbnail")
        try:
            with Image.open(io.BytesIO(picture)) as image:
                if image.width * image.height > MAX_PICTURE_PIXELS:
                    raise NotAPicture(f"{image.width}×{image.height} is no thumbnail")
                image.load()
                # as it is where PNG holds it (an alpha channel added to a photo is a third
                # more to compress for nothing)
                original = image.copy() if image.mode in PNG_MODES else image.convert("RGBA")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise NotAPicture(f"not a readable picture: {e}") from None
        info = PngImagePlugin.PngInfo()
        info.add_text("Thumb::URI", uri)
        info.add_text("Thumb::MTime", str(mtime))
        if size is not None:
            info.add_text("Thumb::Size", str(size))
        info.add_text("Software", "assetfs")
        for flavor, px in SIZES.items():
            scaled = original.copy()
            scaled.thumbnail((px, px), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            scaled.save(out, "PNG", pnginfo=info, compress_level=COMPRESS_LEVEL)
            self._write_atomically(self.path(flavor, uri), out.getvalue())

    def _write_atomically(self, path: Path, data: bytes) -> None:
        """A temporary file beside it, renamed over it; private, as the standard asks (0700/0600)."""
        for directory in (path.parent.parent, path.parent):
            if not directory.is_dir():
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                if self.owner is not None:
                    os.chown(directory, *self.owner)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".assetfs-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as f:
                if self.owner is not None:
                    os.fchown(f.fileno(), *self.owner)
                f.write(data)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
