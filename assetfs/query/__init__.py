"""Finding assets: one expression language for every provider (`language`), the fields a
provider knows and which its API answers (`fields`), and evaluating the rest on a listing
(`local`). Imports nothing of the providers: they import it."""

from .fields import BOOL, DATE, NUMBER, SEARCH, STRING, Condition, Field, bind, matches, search_plan
from .language import TEXT, Clause, Query, QueryError, parse
from .local import asset_object, select

__all__ = [
    "BOOL",
    "DATE",
    "NUMBER",
    "SEARCH",
    "STRING",
    "TEXT",
    "Clause",
    "Condition",
    "Field",
    "Query",
    "QueryError",
    "asset_object",
    "bind",
    "matches",
    "parse",
    "search_plan",
    "select",
]
