"""Smaller pictures of stored images, as the providers' image services make them: Spectrum's
image routes scale by `width`/`height`/`mode` (documented for its rendering routes; on its
CDN route *inferred*), Mudstack keeps one thumbnail file per version (`thumbnail_file_id`;
its size and format *inferred*: at most 256 px, PNG). A rendition is made once and kept as
a blob of its own, so the CDN serves it with ranges and HEAD like any file.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from .blobs import Blob, BlobStore

MODES = ("max", "pad", "crop", "stretch")  # ImageResizer's; `max` (fit inside) when none is named
LARGEST = 4096  # px: a bigger width or height is refused, as a resizer caps its work
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}


class NotAnImage(ValueError):
    """The blob is not a picture the emulator can scale (or the sizes asked are not sizes)."""


def rendition(
    blobs: BlobStore, blob: Blob, width: int | None, height: int | None, mode: str = "max", as_type: str = ""
) -> Blob:
    """The blob scaled into width×height by `mode`, in its own format or `as_type` (a picture
    already smaller keeps its size under `max`)."""
    if mode not in MODES:
        raise NotAnImage(f"mode must be one of {', '.join(MODES)}")
    if not width and not height:
        raise NotAnImage("width or height is needed")
    if any(v is not None and not 0 < v <= LARGEST for v in (width, height)):
        raise NotAnImage(f"width and height must be 1 to {LARGEST}")
    key = f"renditions/{blob.key}/{width or 0}x{height or 0}-{mode}" + (f"-{as_type.split('/')[-1]}" if as_type else "")
    made = blobs.get(key)
    if made is not None:
        return made
    if blob.content_type not in FORMATS:
        raise NotAnImage(f"{blob.content_type} is not an image the resizer reads")
    content_type = as_type or blob.content_type
    fmt = FORMATS[content_type]
    try:
        with Image.open(io.BytesIO(b"".join(blob.chunks(0, blob.size)))) as original:
            picture = _scaled(original.convert("RGBA" if fmt != "JPEG" else "RGB"), width, height, mode)
    except (UnidentifiedImageError, OSError) as e:
        raise NotAnImage(f"not a readable image: {e}") from None
    out = io.BytesIO()
    picture.save(out, fmt)
    return blobs.add_bytes(key, out.getvalue(), content_type)


def _scaled(picture: Image.Image, width: int | None, height: int | None, mode: str) -> Image.Image:
    w, h = picture.size
    box = (width or round(w * (height or h) / h), height or round(h * (width or w) / w))
    if mode == "stretch":
        return picture.resize(box, Image.Resampling.LANCZOS)
    if mode == "crop":
        return ImageOps.fit(picture, box, Image.Resampling.LANCZOS)
    if mode == "pad":
        return ImageOps.pad(picture, box, Image.Resampling.LANCZOS)
    picture.thumbnail(box, Image.Resampling.LANCZOS)  # max: inside the box, never larger
    return picture
