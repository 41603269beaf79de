"""Sample files that open in real viewers: PNG, JPEG, PDF and Tajima DST.

Each file is a per-variant template with a fixed-width slot for a unique tag (the asset
id), so its size is known without building it and every asset has distinct bytes and md5.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw

TAG_WIDTH = 40
PALETTE = [
    (230, 57, 70),
    (29, 53, 87),
    (69, 123, 157),
    (244, 162, 97),
    (42, 157, 143),
    (131, 56, 236),
    (255, 190, 11),
    (58, 134, 255),
]


@dataclass(frozen=True)
class Sample:
    extension: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    template: bytes
    slot: int  # offset of the tag slot inside the template

    def build(self, tag: str) -> bytes:
        raw = _tag(tag)
        data = self.template[: self.slot] + raw + self.template[self.slot + TAG_WIDTH :]
        if self.extension == ".png":  # the tag sits in a tEXt chunk whose CRC must be redone
            return _fix_png_text_crc(data, self.slot)
        return data


def _tag(tag: str) -> bytes:
    return tag.encode("ascii", "replace")[:TAG_WIDTH].ljust(TAG_WIDTH, b" ")


def _picture(variant: int, size: tuple[int, int]) -> Image.Image:
    w, h = size
    a, b = PALETTE[variant % len(PALETTE)], PALETTE[(variant + 3) % len(PALETTE)]
    img = Image.new("RGB", size, a)
    draw = ImageDraw.Draw(img)
    for y in range(0, h, 4):
        t = y / h
        draw.rectangle([0, y, w, y + 3], fill=tuple(int(a[i] * (1 - t) + b[i] * t) for i in range(3)))
    draw.ellipse([w // 4, h // 4, 3 * w // 4, 3 * h // 4], outline=(255, 255, 255), width=max(2, w // 40))
    return img


@lru_cache(maxsize=64)
def png(variant: int = 0, size: tuple[int, int] = (256, 256)) -> Sample:
    buf = io.BytesIO()
    _picture(variant, size).save(buf, "PNG", optimize=False)
    body = buf.getvalue()
    text = b"Comment\x00" + b" " * TAG_WIDTH
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    at = 8 + 25  # after the signature and the IHDR chunk
    template = body[:at] + chunk + body[at:]
    slot = at + 8 + len(b"Comment\x00")
    return Sample(".png", "image/png", len(template), size[0], size[1], template, slot)


def _fix_png_text_crc(data: bytes, slot: int) -> bytes:
    start = slot - len(b"Comment\x00") - 4  # the chunk type
    end = slot + TAG_WIDTH
    crc = struct.pack(">I", zlib.crc32(data[start:end]))
    return data[:end] + crc + data[end + 4 :]


@lru_cache(maxsize=64)
def jpeg(variant: int = 0, size: tuple[int, int] = (320, 240)) -> Sample:
    buf = io.BytesIO()
    _picture(variant, size).save(buf, "JPEG", quality=85)
    body = buf.getvalue()
    comment = b"\xff\xfe" + struct.pack(">H", TAG_WIDTH + 2) + b" " * TAG_WIDTH
    template = body[:2] + comment + body[2:]
    return Sample(".jpg", "image/jpeg", len(template), size[0], size[1], template, 2 + 4)


@lru_cache(maxsize=1)
def pdf() -> Sample:
    stream = b"BT /F1 18 Tf 72 720 Td (" + b" " * TAG_WIDTH + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    template = bytes(out)
    slot = template.index(b"(" + b" " * TAG_WIDTH) + 1
    return Sample(".pdf", "application/pdf", len(template), None, None, template, slot)


@lru_cache(maxsize=1)
def dst() -> Sample:
    """A Tajima DST embroidery file: 512-byte header, a square of stitches, end of pattern."""
    stitches = bytearray()
    for dx, dy in [(10, 0)] * 8 + [(0, 10)] * 8 + [(-10, 0)] * 8 + [(0, -10)] * 8:
        stitches += _dst_stitch(dx, dy)
    stitches += b"\x00\x00\xf3"
    n = len(stitches) // 3
    header = (
        b"LA:"
        + b" " * 16
        + b"\r"
        + f"ST:{n:7d}\rCO:  0\r+X:  400\r-X:    0\r+Y:  400\r-Y:    0\rAX:+    0\rAY:+    0\rMX:+    0\rMY:+    0\rPD:******\r".encode()
    )
    header += b"\x1a"
    comment_at = len(header)
    header += b" " * TAG_WIDTH
    header = header.ljust(512, b" ")
    return Sample(
        ".dst", "application/octet-stream", 512 + len(stitches), None, None, header + bytes(stitches), comment_at
    )


def _dst_stitch(dx: int, dy: int) -> bytes:
    """Encode one relative stitch (|dx|,|dy| ≤ 121) as DST's balanced-ternary three bytes."""
    b = [0, 0, 0x03]
    bits = {  # value: (byte, bit) for +x, -x, +y, -y
        1: ((0, 0), (0, 1), (0, 7), (0, 6)),
        9: ((0, 2), (0, 3), (0, 5), (0, 4)),
        3: ((1, 0), (1, 1), (1, 7), (1, 6)),
        27: ((1, 2), (1, 3), (1, 5), (1, 4)),
        81: ((2, 2), (2, 3), (2, 5), (2, 4)),
    }
    for value, axis in ((dx, 0), (dy, 2)):
        digits = _balanced_ternary(value)
        for weight, digit in digits.items():
            if digit:
                byte, bit = bits[weight][axis + (0 if digit > 0 else 1)]
                b[byte] |= 1 << bit
    return bytes(b)


def _balanced_ternary(value: int) -> dict[int, int]:
    digits, weight = {}, 1
    while value and weight <= 81:
        r = value % 3
        if r == 2:
            r = -1
        digits[weight] = r
        value = (value - r) // 3
        weight *= 3
    return digits
