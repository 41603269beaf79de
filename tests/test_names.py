"""Names from an API made safe (names.py), for any text hypothesis can think of."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from assetfs.names import safe_name


def _is_safe(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and len(name.encode()) <= 255
        and not any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) <= 0xDFFF for c in name)
        and name == name.strip()
        and unicodedata.is_normalized("NFC", name)
    )


@given(st.text(max_size=300))
def test_any_text_becomes_a_safe_name_that_stays_as_it_is(raw):
    name = safe_name(raw, "fallback-id")
    assert _is_safe(name)
    assert safe_name(name, "fallback-id") == name


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=100))
def test_a_name_already_safe_is_kept_as_the_same_string(raw):
    if not _is_safe(raw) or not raw.isprintable() or "\\" in raw:  # a backslash becomes a look-alike
        return
    assert safe_name(raw, "x") is raw  # not a copy: a big listing holds one per asset


def test_the_unsafe_parts_are_replaced():
    assert safe_name("../etc/passwd", "x") == "..\u2215etc\u2215passwd"
    assert safe_name("a\0b\x1b[31m", "x") == "a\ufffdb\ufffd[31m"
    assert safe_name("  ..  ", "x") == "\uff0e\uff0e"
    assert safe_name("", "the-id") == "the-id"
    assert safe_name("e\u0301.png", "x") == "\u00e9.png"  # NFC
