"""Fields: what a provider's assets can be asked about, and a query bound to them.

A provider describes its fields (a dotted path into the asset object, or a function of it; a
kind; the operators its API answers). `bind` checks a parsed query against them and types
each value once (a date, a number, a pattern), so that a wrong field, operator or date fails
before any request, and the conditions left for local evaluation compare like the API does.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .language import TEXT, Clause, Query, QueryError

STRING, DATE, NUMBER, BOOL, SEARCH = "text", "date", "number", "true or false", "free text"
EQUALITY = frozenset({"==", "!="})
ALL = frozenset({"==", "!=", "=gt=", "=ge=", "=lt=", "=le="})
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AGO = re.compile(r"^-(\d+(?:\.\d+)?)([mhdw])$")
_AGO_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Field:
    kind: str
    path: str = ""  # dotted path into the asset object; lists fan out
    get: Callable[[dict], list] | None = None  # or the values, from the asset object
    server: frozenset[str] = frozenset()  # the operators the provider's API answers for it
    fold: bool = False  # compared without case, as the API does
    once: bool = False  # the API takes one such condition per request

    def values(self, asset: dict) -> list:
        if self.get is not None:
            return [v for v in self.get(asset) if v is not None]
        found = [asset]
        for part in self.path.split("."):
            step: list = []
            for item in found:
                value = item.get(part) if isinstance(item, dict) else None
                step.extend(value if isinstance(value, list) else [value])
            found = [v for v in step if v is not None]
        return found


@dataclass(frozen=True)
class Condition:
    """One clause with its value typed for its field."""

    clause: Clause
    field: Field
    value: object  # str (text), float (number, date as epoch seconds), bool
    until: float | None = None  # a date alone under == or !=: the end of that day
    pattern: re.Pattern | None = None  # a text value with `*`

    @property
    def op(self) -> str:
        return self.clause.op

    @property
    def on_server(self) -> bool:
        """Whether the provider's API can answer it as it stands."""
        return (
            self.op in self.field.server and self.pattern is None and not (self.until is not None and self.op == "!=")
        )

    def server_terms(self) -> list[tuple[str, object]]:
        """(operator, value) pairs the API is sent for it: a day under == is a range."""
        if self.until is not None:
            return [("=ge=", self.value), ("=lt=", self.until)]
        return [(self.op, self.value)]

    def matches(self, asset: dict) -> bool:
        found = self._values(asset)
        hit = any(self._equal(v) for v in found) if self.op in EQUALITY else any(self._ordered(v) for v in found)
        return not hit if self.op == "!=" else hit

    def _values(self, asset: dict) -> list:
        raw = self.field.values(asset)
        kind = self.field.kind
        if kind == DATE:
            return [t for t in (instant(v) for v in raw) if t is not None]
        if kind == NUMBER:
            return [float(v) for v in raw if _is_number(v)]
        if kind == BOOL:
            return [v for v in raw if isinstance(v, bool)]
        texts = [v if isinstance(v, str) else str(v) for v in raw if not isinstance(v, (dict, list))]
        return [t.casefold() for t in texts] if self.field.fold or kind == SEARCH else texts

    def _equal(self, found) -> bool:
        if self.field.kind == SEARCH:
            return bool(self.pattern.search(found)) if self.pattern else self.value in found
        if self.pattern is not None:
            return bool(self.pattern.fullmatch(found))
        if self.until is not None:
            return self.value <= found < self.until
        return found == self.value

    def _ordered(self, found) -> bool:
        return {
            "=gt=": found > self.value,
            "=ge=": found >= self.value,
            "=lt=": found < self.value,
            "=le=": found <= self.value,
        }[self.op]


def bind(query: Query, fields: dict[str, Field], now: float | None = None) -> list[list[Condition]]:
    """The query's alternatives as typed conditions; QueryError for a field the provider does
    not know, an operator its kind has no meaning for, or a value that is not of its kind."""
    now = time.time() if now is None else now
    return [[_condition(query, clause, fields, now) for clause in group] for group in query.groups]


def search_plan(group: list[Condition]) -> tuple[list[Condition], list[Condition]]:
    """(what the provider's API is asked, what is then checked locally) for one alternative."""
    server, local, taken = [], [], set()
    for condition in group:
        if condition.on_server and not (condition.field.once and id(condition.field) in taken):
            server.append(condition)
            taken.add(id(condition.field))
        else:
            local.append(condition)
    return server, local


def matches(groups: list[list[Condition]], asset: dict) -> bool:
    return any(all(c.matches(asset) for c in group) for group in groups)


def _condition(query: Query, clause: Clause, fields: dict[str, Field], now: float) -> Condition:
    field = fields.get(clause.field)
    where = f"{str(query)!r}: {clause.field}{clause.op} at character {clause.position}"
    if field is None:
        if clause.field == TEXT:
            raise QueryError(f"{where}: free text is not searchable here")
        close = difflib.get_close_matches(clause.field, list(fields), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise QueryError(
            f"{str(query)!r}: unknown field {clause.field!r} at character {clause.position}; {hint}"
            f"fields here: {', '.join(sorted(f for f in fields if f != TEXT))}"
        )
    value = clause.value
    if field.kind in (STRING, SEARCH, BOOL) and clause.op not in EQUALITY:
        wildcard = " (* in a value matches any characters)" if field.kind != BOOL else ""
        raise QueryError(f"{where}: {clause.op} does not apply to {field.kind}; use == or !={wildcard}")
    if field.kind == DATE:
        start, until = _date(value, now, where)
        return Condition(clause, field, start, until if clause.op in EQUALITY else None)
    if field.kind == NUMBER:
        if not _is_number(value):
            raise QueryError(f"{where}: {value!r} is not a number")
        return Condition(clause, field, float(value))
    if field.kind == BOOL:
        if value.lower() not in ("true", "false"):
            raise QueryError(f"{where}: {value!r} is not true or false")
        return Condition(clause, field, value.lower() == "true")
    folded = value.casefold() if field.fold or field.kind == SEARCH else value
    pattern = _pattern(folded) if "*" in value else None
    return Condition(clause, field, folded, pattern=pattern)


def _date(value: str, now: float, where: str) -> tuple[float, float | None]:
    """Epoch seconds of a date value, and the end of the day for a date alone (midnight UTC)."""
    ago = _AGO.match(value)
    if ago:
        return now - float(ago.group(1)) * _AGO_UNITS[ago.group(2)], None
    start = instant(value)
    if start is None:
        raise QueryError(
            f"{where}: {value!r} is not a date; write 2026-10-01, 2026-10-01T08:00:00Z, "
            "or -7d (7 days ago; also m, h, w)"
        )
    return start, start + 86400 if _DAY.match(value) else None


def instant(value) -> float | None:
    """Epoch seconds of an ISO 8601 date or date-time (one without a zone is UTC), else None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _pattern(value: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in value.split("*")), re.DOTALL)


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return str(value).strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity", "+inf")
