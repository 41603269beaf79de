"""The assets list call of Apple Business Connect: its `ql` filter and its paging.

`ql` is FIQL-like, clauses joined by `;`: `createdDate=gt=2024-09-30T00:00:00Z;brandAssetDetails.intent==COVER_PHOTO`
keeps the assets matching every clause. Dates compare as instants, ids as numbers, the rest as text.
Pages follow the listing order (createdDate, id) from the position a cursor stands for.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import UTC, datetime

# `==` and `=gt=` are documented; the other four operators are inferred (FIQL's own set).
OPERATORS = ("==", "!=", "=gt=", "=lt=", "=ge=", "=le=")
FIELDS = (
    "id",
    "state",
    "createdDate",
    "updatedDate",
    "brandAssetDetails.partnersAssetId",
    "brandAssetDetails.imageId",
    "brandAssetDetails.intent",
)
DATE_FIELDS = ("createdDate", "updatedDate")
# inferred: ordering operators make sense only on dates and ids; on other fields they are a 400.
ORDERED_FIELDS = DATE_FIELDS + ("id",)

_CLAUSE = re.compile(r"^(?P<field>[A-Za-z.]+)(?P<op>==|!=|=gt=|=lt=|=ge=|=le=)(?P<value>.+)$")


class QlError(ValueError):
    """A filter the API would answer with 400."""


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: object  # datetime for date fields, int for numeric ids, else str

    def matches(self, asset: dict) -> bool:
        text = field_value(asset, self.field)
        if text is None:  # an absent field (no partnersAssetId) matches only `!=`
            return self.op == "!="
        want = self.value
        found: object = text
        if self.field in DATE_FIELDS:
            found = parse_date(text)
        elif isinstance(want, int):
            if not text.isdigit():
                return self.op == "!="
            found = int(text)
        return _compare(found, self.op, want)


def parse(ql: str | None) -> list[Clause]:
    """The clauses of a `ql` value; raises QlError for anything malformed."""
    if not ql:
        return []
    clauses = []
    for text in ql.split(";"):
        m = _CLAUSE.match(text.strip())
        if not m:
            raise QlError(
                f"invalid ql clause {text!r}: expected <field><operator><value>, operators {', '.join(OPERATORS)}"
            )
        field, op, raw = m.group("field"), m.group("op"), m.group("value")
        if field not in FIELDS:
            raise QlError(f"field {field!r} cannot be filtered on; filterable: {', '.join(FIELDS)}")
        if op not in ("==", "!=") and field not in ORDERED_FIELDS:
            raise QlError(f"operator {op} does not apply to {field}")
        clauses.append(Clause(field, op, _typed(field, raw)))
    return clauses


def page(items: list, clauses: list[Clause], position: tuple | None, limit: int) -> tuple[list, bool]:
    """Up to `limit` matching assets after `position` (a listing key), and whether more follow;
    `items` are sorted by their `key`."""
    start = bisect.bisect_right(items, position, key=lambda a: a.key) if position else 0
    # inferred: DELETED assets are listed only when the filter asks about state (the docs:
    # "listable with state==DELETED").
    with_deleted = mentions_state(clauses)
    found: list = []
    for index in range(start, len(items)):
        asset = items[index]
        if (with_deleted or asset.data["state"] != "DELETED") and all(c.matches(asset.data) for c in clauses):
            if len(found) == limit:
                return found, True
            found.append(asset)
    return found, False


def mentions_state(clauses: list[Clause]) -> bool:
    return any(c.field == "state" for c in clauses)


def field_value(asset: dict, field: str) -> str | None:
    head, _, rest = field.partition(".")
    value = asset.get(head)
    return value.get(rest) if rest and isinstance(value, dict) else value


def parse_date(text: str) -> datetime:
    """An ISO 8601 instant; one without a zone is taken as UTC (inferred)."""
    when = datetime.fromisoformat(text.replace(" ", "+"))  # a `+` decoded from a query string as a space
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _typed(field: str, raw: str):
    if field in DATE_FIELDS:
        try:
            return parse_date(raw)
        except ValueError:
            raise QlError(f"{field} needs an ISO 8601 date-time, not {raw!r}") from None
    if field == "id" and raw.isdigit():
        return int(raw)
    return raw


def _compare(found, op: str, want) -> bool:
    if op == "==":
        return found == want
    if op == "!=":
        return found != want
    if type(found) is not type(want):
        return False
    return {"=gt=": found > want, "=lt=": found < want, "=ge=": found >= want, "=le=": found <= want}[op]
