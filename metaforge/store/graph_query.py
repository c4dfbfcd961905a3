"""Screens: what SQL can already decide about a query's conditions, before Python reads a row.

`mf query --where` conditions are judged in Python (thread/queries.py: units convert, `~` reads
the value as JSON, lists, booleans). Most rows need none of that: from the kind of JSON value
under the key, SQL can tell that a string is not the one asked for, that a number lies outside
a window, that a quantity's value in its own unit lies below the limit converted to that unit.
A `Screen` says, for each kind of value, what SQL may conclude about a row:

- NO: the condition is false (the row is dropped, unread by Python);
- MAYBE: the condition may hold: Python decides;
- ASK: Python must see the row even if a later condition would drop it, because judging this
  one may raise an error the user must be shown (`current>=5V` against a current).

Rows come back in id order, so Python's final verdict on the rows kept is exactly its verdict
on every row, in the same order, at a cost that grows with the hits instead of the entities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

NO, MAYBE, ASK = 0, 1, 2

# the node columns a condition can name, each with the kind of value it holds
COLUMNS = {"id": "text", "name": "text", "type": "text", "created_by": "text", "updated_by": "text",
           "version": "number"}
_COMPARE = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# a character JSON writes otherwise than as itself, or that SQLite's lower() does not fold
# like Python's: everything but printable ASCII, the quote and the backslash
_UNUSUAL = "*[^]^-~ -!#-[]*"


@dataclass(frozen=True)
class Window:
    """A number passes if it lies in [lo, hi] (None: unbounded); every other number is NO."""
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class TextIs:
    """A string compared with `operand` in code point order (SQLite's BINARY order is the same)."""
    op: str
    operand: str


@dataclass(frozen=True)
class TextHas:
    """A string whose JSON form, lowered, may contain `needle` (lower case, no quote nor
    backslash). Strings with characters JSON escapes or SQLite cannot lower are MAYBE."""
    needle: str


Rule = Union[int, Window, TextIs, TextHas]


@dataclass(frozen=True)
class Screen:
    """What SQL may conclude about one condition on `key`, by the kind of the value there."""
    key: str
    attribute: bool = False  # key is a node column (COLUMNS), not a property
    absent: int = NO         # no such property, or JSON null
    text: Rule = MAYBE
    number: Rule = MAYBE
    true: int = MAYBE
    false: int = MAYBE
    array: int = MAYBE
    object: int = MAYBE      # an object without a `unit`
    # a quantity ({"value", "unit"}) by its unit: a window on its value in that unit
    quantity: dict[str, Union[int, Window]] = field(default_factory=dict)
    other_quantity: int = ASK  # a unit not listed, or a value that is not a number


def _rule_sql(rule: Rule, value: str, args: list) -> str:
    if isinstance(rule, int):
        return str(rule)
    if isinstance(rule, TextIs):
        args.append(rule.operand)
        return f"({value} {_COMPARE[rule.op]} ?)"
    if isinstance(rule, TextHas):
        args += [_UNUSUAL, rule.needle]
        # bytes != characters: not ASCII, or a NUL that ends the string for SQL's functions
        return (f"(CASE WHEN length(CAST({value} AS BLOB)) != length({value}) OR {value} GLOB ? THEN 1 "
                f"ELSE instr(lower({value}), ?) > 0 END)")
    return _window_sql(rule, value, args)


def _window_sql(w: Window, value: str, args: list) -> str:
    if w.lo is None and w.hi is None:
        return "1"
    if w.hi is None:
        args.append(w.lo)
        return f"({value} >= ?)"
    if w.lo is None:
        args.append(w.hi)
        return f"({value} <= ?)"
    args += [w.lo, w.hi]
    return f"({value} BETWEEN ? AND ?)"


def _quantity_sql(s: Screen, path: str, args: list) -> str:
    if not s.quantity:
        return str(s.other_quantity)
    value, unit = f"(props ->> '{path}.value')", f"(props ->> '{path}.unit')"
    arms = []
    for u, rule in sorted(s.quantity.items()):
        args.append(u)
        arms.append(f"WHEN ? THEN {_rule_sql(rule, value, args)}")
    return (f"CASE WHEN json_type(props, '{path}.value') IN ('integer', 'real') THEN "
            f"CASE {unit} {' '.join(arms)} ELSE {s.other_quantity} END ELSE {s.other_quantity} END")


def screen_sql(s: Screen, args: list) -> str:
    """An SQL expression worth NO, MAYBE or ASK for each row of `nodes`."""
    if s.attribute:
        return _rule_sql(s.text if COLUMNS[s.key] == "text" else s.number, s.key, args)
    path = '$."' + s.key + '"'  # keys are identifiers (thread/queries.py), safe inside the path
    value = f"(props ->> '{path}')"
    parts = [f"WHEN 'text' THEN {_rule_sql(s.text, value, args)}"]
    parts += [f"WHEN {kind} THEN {_rule_sql(s.number, value, args)}" for kind in ("'integer'", "'real'")]
    parts += [f"WHEN 'true' THEN {s.true}", f"WHEN 'false' THEN {s.false}", f"WHEN 'array' THEN {s.array}"]
    parts.append(f"WHEN 'object' THEN CASE WHEN json_type(props, '{path}.unit') IS NULL THEN {s.object} "
                 f"ELSE {_quantity_sql(s, path, args)} END")
    return f"CASE json_type(props, '{path}') {' '.join(parts)} ELSE {s.absent} END"


def where_sql(screens: Sequence[Screen], args: list) -> str:
    """Rows Python could accept, or must judge, under all screens in their order: as Python stops
    at the first false condition, a NO drops a row only when no ASK came before it."""
    if not screens:
        return "1"
    first = screen_sql(screens[0], args)
    if len(screens) == 1:
        return f"({first}) != 0"
    return f"CASE {first} WHEN {NO} THEN 0 WHEN {ASK} THEN 1 ELSE {where_sql(screens[1:], args)} END"
