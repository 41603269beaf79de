"""Entries as the providers make them from a listing: pickled into the metadata cache, dates
and file names read from every asset (fast paths that must agree with the careful ones)."""

from __future__ import annotations

import pickle
import posixpath
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetfs.kinds import Kind
from assetfs.providers.base import ASSET, NO_XATTRS, Content, Entry, _parse_odd_time, parse_time
from assetfs.providers.spectrum import _file_name


def test_entries_pickle_as_arguments_and_older_forms_still_load():
    """A stored listing holds the fields as a tuple (no slot names per object); a cache
    written by an older version (slot state, or a __dict__ from before __slots__) loads."""
    content = Content("v1", "http://h/f.png", 12, "0" * 32, "image/png")
    entry = Entry(
        "a",
        "asset/1",
        True,
        3.5,
        children=[Entry("f.png", "asset/1/content", False, 3.5, content=content)],
        xattrs={"user.assetfs.id": "1"},
        kind="asset",
    )
    dumped = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
    assert b"xattrs" not in dumped and pickle.loads(dumped) == entry
    assert pickle.loads(dumped).children[0].content.size == 12  # not compared, still kept
    old = Entry.__new__(Entry)
    old.__setstate__((None, {"name": "b", "key": "k", "is_dir": False, "content": content}))
    assert old == Entry("b", "k", False, content=content) and old.xattrs == {}
    older = Content.__new__(Content)
    older.__setstate__({"version": "v2", "url": None})
    assert older == Content("v2")


def test_an_entry_without_xattrs_shares_one_mapping_that_refuses_changes():
    entry = Entry("a", "k", False)
    assert entry.xattrs is NO_XATTRS and entry == Entry("a", "k", False, xattrs={})
    assert pickle.loads(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)).xattrs is NO_XATTRS
    with pytest.raises(TypeError):
        entry.xattrs["user.assetfs.x"] = "1"
    assert dict(entry.xattrs) == {} and Entry("b", "k", False).xattrs is NO_XATTRS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2022-04-05T15:06:58.69", datetime(2022, 4, 5, 15, 6, 58, 690000, UTC)),
        ("2022-04-05T15:06:58.6912345Z", datetime(2022, 4, 5, 15, 6, 58, 691234, UTC)),
        ("2024-01-02T03:04:05+01:00", datetime(2024, 1, 2, 2, 4, 5, tzinfo=UTC)),
        (" 2024-01-02T03:04:05Z ", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.1234567890 ", datetime(2024, 1, 2, 3, 4, 5, 123456, UTC)),
    ],
)
def test_api_dates(text, expected):
    assert parse_time(text) == expected.timestamp()


@pytest.mark.parametrize("junk", [None, "", "yesterday", 1700000000, "2024-13-45T00:00:00Z", ["2024-01-02"]])
def test_an_unreadable_date_is_zero(junk):
    assert parse_time(junk) == 0.0


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    st.sampled_from(["", "Z", "+00:00", "-05:30"]),
    st.integers(0, 9),
)
def test_the_fast_date_path_agrees_with_the_careful_one(moment, zone, digits):
    text = (
        moment.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{moment.microsecond:06d}{'7' * 3}"[: digits + 1] if digits else "")
        + zone
    )
    careful = _parse_odd_time(text)
    careful = careful if careful is None or careful.tzinfo else careful.replace(tzinfo=UTC)
    assert parse_time(text) == (careful.timestamp() if careful is not None else 0.0)


_URL_PIECES = st.sampled_from(
    [
        "http://",
        "https://",
        "//",
        "ftp://",
        "h",
        "/",
        "a",
        "é",
        "%41",
        "%2F",
        "?",
        "#",
        "q=1",
        " ",
        "\t",
        "\n",
        "\x00",
        ".",
        "..",
        ":",
        "@",
        "x.png",
        "\x7f",
    ]
)


@given(st.lists(_URL_PIECES, max_size=12).map("".join))
def test_a_file_name_is_the_one_urlsplit_gives(url):
    assert _file_name(url) == unquote(posixpath.basename(urlsplit(url).path))


def test_file_names_from_urls():
    assert _file_name("https://cdn.example/a/b/Hello%20World.png?sig=1#x") == "Hello World.png"
    assert _file_name("http://host") == "" and _file_name(None) == "" and _file_name(" http://h/a/b.png") == "b.png"


def test_kinds_are_stored_as_their_plain_strings():
    """An entry carries its kind as the Kind's value: a stored listing names no enum, and
    one stored before the enum existed compares equal to its members."""
    dumped = pickle.dumps(Entry("a", "asset/1", True, kind=ASSET), protocol=pickle.HIGHEST_PROTOCOL)
    assert b"Kind" not in dumped and type(pickle.loads(dumped).kind) is str
    assert pickle.loads(dumped).kind == Kind.ASSET and Entry("b", "k", False).kind == Kind.NONE
