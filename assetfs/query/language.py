"""The query language: FIQL-like clauses, `;` for and, `,` for or (and binds tighter).

    state==PUBLISHED;createdDate=gt=2026-10-01
    brandAssetDetails.intent==COVER_PHOTO,brandAssetDetails.intent==GALLERY
    name==logo*            (`*` matches any run of characters in == and != values)
    logo                   (a bare word: free text, the same as text==logo)
    name=="a;b"            (double quotes keep ; and , inside a value)
    mimeType==image%2F*    (a path cannot hold `/`: write %2F, or ∕ as the mount shows it)

Operators: == != =gt= =ge= =lt= =le=. Parsing knows no field: which fields exist and what
their values are is the provider's (see `fields.bind`). A small parser of our own: the FIQL
package on PyPI percent-decodes `+` into a space (breaking `…+02:00` dates), allows no space or
non-ASCII letter in a value, and reports errors without a position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NotFound

OPERATORS = ("==", "!=", "=gt=", "=ge=", "=lt=", "=le=")
TEXT = "text"  # the free-text field: a bare word means text==word
MAX_CLAUSES = 32
MAX_ALTERNATIVES = 8  # a provider may make one request per alternative
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_OPERATOR = re.compile(r"==|!=|=[A-Za-z]*=|[<>]=?|=")
_SLASH = re.compile("%2[Ff]|\u2215")  # a path component cannot hold `/`


class QueryError(NotFound, ValueError):
    """An expression that cannot be asked: ENOENT for the path that holds it, never a request."""


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str
    position: int  # 1-based character position of the clause, for messages

    def __str__(self) -> str:
        return f"{self.field}{self.op}{_quoted(self.value)}"


@dataclass(frozen=True)
class Query:
    """Alternatives (`,`) of clauses that must all hold (`;`)."""

    groups: tuple[tuple[Clause, ...], ...]

    def __str__(self) -> str:
        return ",".join(";".join(str(c) for c in group) for group in self.groups)

    @property
    def clauses(self) -> list[Clause]:
        return [c for group in self.groups for c in group]


def parse(text: str) -> Query:
    """The query an expression stands for; QueryError names what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("empty expression: write clauses like state==PUBLISHED;createdDate=gt=2026-10-01")
    groups: list[tuple[Clause, ...]] = []
    group: list[Clause] = []
    for start, piece, separator in _split(text):
        if not piece.strip():
            where = "at the start" if start == 1 else f"at character {start}"
            raise QueryError(f"{text!r}: empty clause {where} (two separators in a row, or one at an end)")
        group.append(_clause(text, start, piece))
        if separator != ";":
            groups.append(tuple(group))
            group = []
    if sum(len(g) for g in groups) > MAX_CLAUSES:
        raise QueryError(f"{text!r}: more than {MAX_CLAUSES} clauses")
    if len(groups) > MAX_ALTERNATIVES:
        raise QueryError(f"{text!r}: more than {MAX_ALTERNATIVES} alternatives (clauses joined by ,)")
    return Query(tuple(groups))


def _split(text: str):
    """(1-based start, text, separator after it or "") of each clause; quotes hide separators."""
    start, quote = 0, ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char == '"':
            quote = char
        elif char in ";,":
            yield start + 1, text[start:i], char
            start = i + 1
    if quote:
        raise QueryError(f"{text!r}: the quote {quote} opened before character {len(text) + 1} is never closed")
    yield start + 1, text[start:], ""


def _clause(text: str, start: int, piece: str) -> Clause:
    lead = len(piece) - len(piece.lstrip())
    body = piece.strip()
    position = start + lead
    match = _find_operator(body)
    if match is None:
        return Clause(TEXT, "==", _value(text, position, body), position)
    field = body[: match.start()].strip()
    op = match.group()
    op_at = position + match.start()
    if not field:
        raise QueryError(f"{text!r}: no field before {op} at character {op_at}")
    if not _FIELD.fullmatch(field):
        raise QueryError(f"{text!r}: {field!r} at character {position} is not a field name (letters, digits, _ . -)")
    if op not in OPERATORS:
        hint = {"=": "==", "<": "=lt=", ">": "=gt=", "<=": "=le=", ">=": "=ge="}.get(op)
        raise QueryError(
            f"{text!r}: unknown operator {op} at character {op_at}; "
            + (f"did you mean {hint}? " if hint else "")
            + f"operators: {' '.join(OPERATORS)}"
        )
    value_at = position + match.end()
    return Clause(field, op, _value(text, value_at, body[match.end() :]), position)


def _find_operator(body: str) -> re.Match | None:
    """The first operator outside quotes, if the clause has one (a lone `!` is text)."""
    quoted = False
    for i, char in enumerate(body):
        if char == '"':
            quoted = not quoted
        elif not quoted and (char in "=<>" or body.startswith("!=", i)):
            return _OPERATOR.match(body, i)
    return None


def _value(text: str, position: int, raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    elif '"' in value:
        raise QueryError(f"{text!r}: a quoted value at character {position} must be quoted whole")
    if not value:
        raise QueryError(f"{text!r}: empty value at character {position}")
    return _SLASH.sub("/", value)


def _quoted(value: str) -> str:
    plain = value == value.strip() and not any(c in value for c in ';,"') and value[:1] not in "=!<>"
    return value if plain else f'"{value}"'
