"""Evaluating a checked expression on a graph state: SI base values, and who contributed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from metaforge.thread import units
from metaforge.thread.constraints.expr import (COMPARISONS, Agg, Bin, Call, Dims, Lit, Num, Prop, Ref, Unary,
                                               combine, dims_of_unit, kind_of_property)


class EvalError(ValueError):
    """The expression is well formed but cannot be computed on this state."""


class Source(Protocol):
    def node_props(self, entity_id: str) -> dict | None: ...
    def nodes_of_type(self, type_name: str, equal: tuple[tuple[str, str], ...]) -> Iterable[tuple[str, dict]]: ...


@dataclass(frozen=True)
class Q:
    value: float  # SI base units
    dims: Dims
    unit: str | None = None  # the unit to show it in


_TEMPERATURE: Dims = (("[temperature]", 1.0),)


def to_value(v: Any) -> Any:
    """A stored property value → what expressions compute with."""
    if isinstance(v, dict) and "value" in v and "unit" in v:
        unit = v["unit"]
        if not unit:
            return Q(float(v["value"]), (), None)
        return Q(units.to_base(v["value"], unit), dims_of_unit(unit), unit)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return Q(float(v), (), None)
    return v


def show(v: Any, like: Any = None) -> str:
    """A value as a person reads it; `like`: another value whose unit to use (612 mA > 500 mA)."""
    if isinstance(v, Q):
        unit = v.unit or _reference_unit(v.dims)
        if isinstance(like, Q) and like.dims == v.dims and like.unit and _absolute(like.unit) == _absolute(unit):
            unit = like.unit
        if not unit:
            return f"{v.value:.4g}"
        number = units.from_base(v.value, unit)
        return f"{number:.4g} {units.shown_unit(unit)}"
    if isinstance(v, str):
        return f'"{v}"'
    return "null" if v is None else str(v).lower()


def _reference_unit(dims: Dims) -> str | None:
    for ref in units.DIMENSIONS.values():
        if dims and dims_of_unit(ref) == dims:
            return ref
    return None


_MAX_NOTES = 10


class Evaluator:
    """explain=False computes fast (aggregates pushed down to SQL where they can be);
    explain=True also records what the value rests on, for the message of a failed verdict."""

    def __init__(self, source: Source, types: dict, explain: bool = True):
        self.source, self.types, self.explain = source, types, explain
        self.notes: list[str] = []  # "BOMItem:U1 250 mA": what the verdict rests on

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def eval(self, node, scope: dict | None = None) -> Any:
        method = getattr(self, "_" + type(node).__name__.lower())
        return method(node, scope)

    def _num(self, node: Num, scope):
        return Q(node.value, node.dims, node.unit)

    def _lit(self, node: Lit, scope):
        return node.value

    def _ref(self, node: Ref, scope):
        props = self.source.node_props(node.entity)
        if props is None:
            raise EvalError(f"{node.entity} does not exist")
        if node.prop not in props:
            raise EvalError(f"{node.entity} has no value for {node.prop}")
        value = to_value(props[node.prop])
        self.note(f"{node.entity}.{node.prop} {show(value)}")
        return value

    def _prop(self, node: Prop, scope):
        if node.name in ("id", "name", "type"):
            return scope["__" + node.name]
        return to_value(scope.get(node.name))

    def _agg(self, node: Agg, scope):
        if not self.explain and node.func != "unique" and hasattr(self.source, "aggregate"):
            pure = pure_equality(node.where)
            if pure is not None:
                return self.source.aggregate(node, tuple(pure), self.types)
        hints = tuple(equality_hints(node.where))
        rows = []
        for nid, props in self.source.nodes_of_type(node.type, hints):
            if node.where is not None:
                row_scope = {**props, "__id": nid, "__name": nid.split(":", 1)[1], "__type": node.type}
                if self.eval(node.where, row_scope) is not True:
                    continue
            if node.func == "count":
                rows.append((nid, None))
            elif node.prop in props and props[node.prop] is not None:
                rows.append((nid, to_value(props[node.prop])))
        if node.func == "count":
            return Q(float(len(rows)), (), None)
        if node.func == "unique":
            return self._unique(node, rows)
        values = [v for _, v in rows]
        if any(not isinstance(v, Q) for v in values):
            raise EvalError(f"{node.func}({node.type}.{node.prop}) met a value that is not a number")
        if self.explain:
            biggest = sorted(rows, key=lambda r: -abs(r[1].value))
            for nid, v in sorted(biggest[:_MAX_NOTES]):
                self.note(f"{nid} {show(v)}")
            if len(rows) > _MAX_NOTES:
                self.note(f"and {len(rows) - _MAX_NOTES} more")
        if node.func == "sum":
            if not values:  # the sum of nothing, in the unit the schema gives the property
                kind = kind_of_property(self.types[node.type][node.prop])
                return Q(0.0, kind[1], None)
            return Q(math.fsum(v.value for v in values), values[0].dims, values[0].unit)
        if not values:
            raise EvalError(f"{node.func}({node.type}.{node.prop}) of no values: nothing matches")
        if node.func == "avg":
            return Q(math.fsum(v.value for v in values) / len(values), values[0].dims, values[0].unit)
        pick = min if node.func == "min" else max
        return pick(values, key=lambda v: v.value)

    def _unique(self, node: Agg, rows: list) -> bool:
        seen: dict[Any, list[str]] = {}
        for nid, v in rows:
            key = v.value if isinstance(v, Q) else v
            seen.setdefault(key if not isinstance(key, list) else tuple(key), []).append(nid)
        clashes = {k: ids for k, ids in seen.items() if len(ids) > 1}
        for key, ids in clashes.items():
            self.note(f"{node.prop} {key} is used by {', '.join(ids)}")
        return not clashes

    def _call(self, node: Call, scope):
        args = [self.eval(a, scope) for a in node.args]
        if any(a is None for a in args):
            return None
        if node.func == "abs":
            return Q(abs(args[0].value), args[0].dims, args[0].unit)
        pick = min if node.func == "min" else max
        return pick(args, key=lambda v: v.value)

    def _unary(self, node: Unary, scope):
        v = self.eval(node.arg, scope)
        if node.op == "not":
            return None if v is None else not v
        return None if v is None else Q(-v.value, v.dims, v.unit)

    def _bin(self, node: Bin, scope):
        op = node.op
        if op in ("and", "or"):
            left = self.eval(node.left, scope)
            if op == "and" and left is False or op == "or" and left is True:
                return left
            right = self.eval(node.right, scope)
            decisive = op == "or"  # True decides an `or`, False decides an `and`
            if right is decisive:
                return right
            return None if left is None or right is None else not decisive
        left, right = self.eval(node.left, scope), self.eval(node.right, scope)
        if op in COMPARISONS:
            return compare(op, left, right)
        if left is None or right is None:
            return None
        if op in "+-":
            unit = left.unit or right.unit
            if op == "-" and left.dims == _TEMPERATURE and _absolute(left.unit) and _absolute(right.unit):
                unit = "K"  # 85 °C - 50 °C is a temperature difference: 35 K, not 35 °C
            return Q(left.value + right.value if op == "+" else left.value - right.value, left.dims, unit)
        if op == "*":
            return Q(left.value * right.value, combine(left.dims, right.dims, 1),
                     left.unit if not right.dims else right.unit if not left.dims else None)
        if right.value == 0:
            raise EvalError("division by zero")
        dims = combine(left.dims, right.dims, -1)
        return Q(left.value / right.value, dims, left.unit if not right.dims else None)


def _absolute(unit: str | None) -> bool:
    """°C and °F have an offset: a value in them is a temperature, not a difference."""
    return bool(unit) and units.has_offset(unit)


def compare(op: str, left: Any, right: Any) -> bool:
    """SQL-like: a comparison with a missing value is false (except `== null`, `!= null`)."""
    if left is None or right is None:
        same = left is None and right is None
        return same if op == "==" else (not same) if op == "!=" else False
    if isinstance(left, Q) and isinstance(right, Q):
        a, b = left.value, right.value
        close = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return {"<": a < b and not close, "<=": a <= b or close, ">": a > b and not close,
                ">=": a >= b or close, "==": close, "!=": not close}[op]
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        raise EvalError(f"cannot order {show(left)} and {show(right)}") from None


def pure_equality(where) -> list[tuple[str, str]] | None:
    """The terms of a where made only of `prop == "text"` joined by `and` (None if it has more)."""
    if where is None:
        return []
    if isinstance(where, Bin) and where.op == "and":
        left, right = pure_equality(where.left), pure_equality(where.right)
        return None if left is None or right is None else left + right
    hints = equality_hints(where)
    return hints if hints else None


def equality_hints(where) -> list[tuple[str, str]]:
    """`prop == "text"` terms joined by `and` at the top of a where: a pre-filter for SQL."""
    if where is None:
        return []
    if isinstance(where, Bin) and where.op == "and":
        return equality_hints(where.left) + equality_hints(where.right)
    if isinstance(where, Bin) and where.op == "==":
        for a, b in ((where.left, where.right), (where.right, where.left)):
            if isinstance(a, Prop) and a.name not in ("id", "name", "type") and isinstance(b, Lit) \
                    and isinstance(b.value, str):
                return [(a.name, b.value)]
    return []
