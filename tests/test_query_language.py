"""The query language without a provider: parsing, its errors, binding to fields, matching."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assetfs.errors import NotFound
from assetfs.query import (
    BOOL,
    DATE,
    NUMBER,
    SEARCH,
    STRING,
    Clause,
    Field,
    Query,
    QueryError,
    bind,
    matches,
    parse,
    search_plan,
)
from assetfs.query.language import OPERATORS

FIELDS = {
    "name": Field(STRING, "name", server=frozenset({"=="})),
    "state": Field(STRING, "state", fold=True),
    "created": Field(DATE, "created", server=frozenset(OPERATORS)),
    "size": Field(NUMBER, "size"),
    "active": Field(BOOL, "active"),
    "tags.name": Field(STRING, "tags.name"),
    "text": Field(SEARCH, get=lambda a: [a.get("name"), a.get("file")], server=frozenset({"=="}), once=True),
}
ASSET = {
    "name": "Logo Blue",
    "file": "logo-blue.png",
    "state": "Published",
    "created": "2026-10-02T08:30:00Z",
    "size": 2048,
    "active": True,
    "tags": [{"name": "brand"}, {"name": "print"}],
}
NOW = datetime(2026, 10, 10, tzinfo=UTC).timestamp()


def clauses(text: str) -> list[list[tuple[str, str, str]]]:
    return [[(c.field, c.op, c.value) for c in g] for g in parse(text).groups]


# ---- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("state==PUBLISHED", [[("state", "==", "PUBLISHED")]]),
        (
            "state==PUBLISHED;createdDate=gt=2026-10-01",
            [[("state", "==", "PUBLISHED"), ("createdDate", "=gt=", "2026-10-01")]],
        ),
        ("a==1,b!=2;c=le=3", [[("a", "==", "1")], [("b", "!=", "2"), ("c", "=le=", "3")]]),
        ("x=ge=1;x=lt=5", [[("x", "=ge=", "1"), ("x", "=lt=", "5")]]),
        ("logo", [[("text", "==", "logo")]]),
        ("old logo", [[("text", "==", "old logo")]]),
        ("text==logo", [[("text", "==", "logo")]]),
        ("name==logo*", [[("name", "==", "logo*")]]),
        ('name=="a;b,c"', [[("name", "==", "a;b,c")]]),
        ('"a=b"', [[("text", "==", "a=b")]]),
        ("name==O'Brien", [[("name", "==", "O'Brien")]]),
        ("name==a=b", [[("name", "==", "a=b")]]),
        (" state == PUBLISHED ; size =gt= 3 ", [[("state", "==", "PUBLISHED"), ("size", "=gt=", "3")]]),
        ("brandAssetDetails.intent==COVER_PHOTO", [[("brandAssetDetails.intent", "==", "COVER_PHOTO")]]),
        ("when=gt=2026-10-01T00:00:00+02:00", [[("when", "=gt=", "2026-10-01T00:00:00+02:00")]]),
        ("hello!", [[("text", "==", "hello!")]]),
        ("text==café", [[("text", "==", "café")]]),
        (
            "mimeType==image%2F*;file_location==%2fa\u2215b%2F",
            [[("mimeType", "==", "image/*"), ("file_location", "==", "/a/b/")]],
        ),
    ],
)
def test_parses(text, expected):
    assert clauses(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("x=y", r"unknown operator = at character 2; did you mean ==\?"),
        ("a=gte=3", "unknown operator =gte= at character 2"),
        ("size<3", r"unknown operator < at character 5; did you mean =lt=\?"),
        ("size>=3", r"did you mean =ge=\?"),
        ("a==", "empty value at character 4"),
        ("a==1;b==  ", "empty value at character 9"),
        ("==b", "no field before == at character 1"),
        (";a==1", "empty clause at the start"),
        ("a==1;", "empty clause at character 6"),
        ("a==1;;b==2", "empty clause at character 6"),
        ("a==1,,b==2", "empty clause at character 6"),
        ('name=="a', 'quote " opened before character 9 is never closed'),
        ('name==a"b"', "must be quoted whole"),
        ("a b==1", r"'a b' at character 1 is not a field name"),
        ("café==été", "'café' at character 1 is not a field name"),
        (";".join(["a==1"] * 33), "more than 32 clauses"),
        (",".join(["a==1"] * 9), "more than 8 alternatives"),
    ],
)
def test_parse_errors_say_what_and_where(text, message):
    with pytest.raises(QueryError, match=message):
        parse(text)


def test_a_query_error_is_enoent():
    import errno

    assert issubclass(QueryError, NotFound) and QueryError.errno == errno.ENOENT
    assert issubclass(QueryError, ValueError)  # so that the config's validation reports it


_names = st.text(string.ascii_letters + "_", min_size=1, max_size=6).flatmap(
    lambda head: st.text(string.ascii_letters + string.digits + "._", max_size=6).map(lambda tail: head + tail)
)
_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"\x00%\u2215'), min_size=1, max_size=12
).filter(lambda v: v.strip())
_clause = st.tuples(_names, st.sampled_from(OPERATORS), _values)
_queries = st.lists(st.lists(_clause, min_size=1, max_size=4), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(_queries)
def test_rendered_queries_parse_back(groups):
    """Any query, written out with its values quoted, reads back as the same clauses."""
    text = ",".join(";".join(f'{f}{op}"{v}"' for f, op, v in g) for g in groups)
    expected = [[(f, op, v) for f, op, v in g] for g in groups]
    assert clauses(text) == expected
    assert clauses(str(parse(text))) == expected  # the canonical form is a query too


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_fails_with_a_query_error(text):
    try:
        query = parse(text)
    except QueryError as e:
        assert str(e)
        return
    assert all(isinstance(c, Clause) and c.value and c.position >= 1 for c in query.clauses)


# ---- binding and matching -----------------------------------------------------------------------


def conditions(text: str):
    return bind(parse(text), FIELDS, now=NOW)


def match(text: str, asset: dict = ASSET) -> bool:
    return matches(conditions(text), asset)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nam==x", r"unknown field 'nam' at character 1; did you mean name\? fields here: active, created, name"),
        ("bogus==x", "unknown field 'bogus'"),
        ("name=gt=x", "=gt= does not apply to text; use == or !="),
        ("active=lt=true", "does not apply to true or false"),
        ("text=ge=x", "does not apply to free text"),
        ("created=gt=yesterday", r"'yesterday' is not a date; write 2026-10-01"),
        ("created==2026-13-01", "is not a date"),
        ("size=gt=big", "'big' is not a number"),
        ("size==nan", "is not a number"),
        ("active==yes", "'yes' is not true or false"),
        ("name==x;size=gt=1;created=lt=-3x", "created=lt= at character 19"),
    ],
)
def test_bind_errors(text, message):
    with pytest.raises(QueryError, match=message):
        conditions(text)


def test_free_text_needs_a_text_field():
    with pytest.raises(QueryError, match="free text is not searchable here"):
        bind(parse("logo"), {"name": FIELDS["name"]})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name==Logo Blue", True),
        ("name==logo blue", False),  # text compares with case ...
        ("state==PUBLISHED", True),  # ... unless the field folds it, as its API does
        ("name==Logo*", True),
        ("name==*Blue", True),
        ("name==L*o*e", True),
        ("name==*Red*", False),
        ("name!=*Red*", True),
        ("name!=Logo Blue", False),
        ("missing==x", None),
        ("logo", True),  # free text: any part of name or file, any case
        ("BLUE.PNG", True),
        ("text!=blue", False),
        ("l*g", True),
        ("size=gt=2047", True),
        ("size=ge=2048", True),
        ("size=lt=2048", False),
        ("size==2048.0", True),
        ("created=gt=2026-10-01", True),
        ("created==2026-10-02", True),  # a date alone: that whole day (UTC)
        ("created==2026-10-01", False),
        ("created!=2026-10-02", False),
        ("created==2026-10-02T08:30:00Z", True),
        ("created==2026-10-02T10:30:00+02:00", True),
        ("created=ge=-8d", True),
        ("created=ge=-7d", False),
        ("created=lt=-1w", True),
        ("active==true", True),
        ("active==FALSE", False),
        ("tags.name==print", True),
        ("tags.name!=print", False),
        ("tags.name==pr*", True),
        ("name==nope,size=gt=1", True),  # , is or
        ("name==nope;size=gt=1", False),  # ; is and
    ],
)
def test_matching(text, expected):
    if expected is None:
        with pytest.raises(QueryError):
            match(text)
    else:
        assert match(text) is expected


def test_absent_values_match_only_inequality():
    bare = {"name": "x"}
    assert match("size!=3", bare) and not match("size==3", bare) and not match("size=lt=3", bare)
    assert match("tags.name!=print", bare) and not match("tags.name==print", bare)
    assert not match("created=gt=2000-01-01", {"created": "not a date"})


def test_search_plan_keeps_what_the_api_answers():
    [group] = conditions("name==Logo Blue;name==x*;created==2026-10-02;created!=2026-10-02;text==a;text==b;size=gt=1")
    server, local = search_plan(group)
    assert [str(c.clause) for c in server] == ["name==Logo Blue", "created==2026-10-02", "text==a"]
    assert [str(c.clause) for c in local] == ["name==x*", "created!=2026-10-02", "text==b", "size=gt=1"]
    day = server[1]
    start = datetime(2026, 10, 2, tzinfo=UTC).timestamp()
    assert day.server_terms() == [("=ge=", start), ("=lt=", start + 86400)]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000), st.sampled_from(OPERATORS), st.integers(0, 5000))
def test_number_comparisons_agree_with_python(found, op, wanted):
    python = {
        "==": found == wanted,
        "!=": found != wanted,
        "=gt=": found > wanted,
        "=ge=": found >= wanted,
        "=lt=": found < wanted,
        "=le=": found <= wanted,
    }[op]
    assert match(f"size{op}{wanted}", {"size": found}) is python
    assert isinstance(parse(f"size{op}{wanted}"), Query)
