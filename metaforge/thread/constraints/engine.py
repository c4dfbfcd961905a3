"""The constraint engine: which constraints a change can affect, and their verdicts.

A Constraint is an entity (`expression`, `severity` error|warning, `message`, `enabled`), so
it is versioned, traced and reviewed like the rest. Every command checks, on the state as it
would be after the change, the constraints whose inputs the change touches: an entity an
expression names, or an entity of a type an aggregate runs over that its `where` selects
before or after the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

from metaforge.thread.constraints.evaluate import EvalError, Evaluator, compare, show
from metaforge.thread.constraints.expr import COMPARISONS, Agg, Bin, ExprError, check, inputs, parse


@dataclass
class Verdict:
    constraint: str
    severity: str
    status: str  # pass | fail | invalid
    message: str
    expression: str
    because: list[str] = field(default_factory=list)
    margin: float | None = None  # how far from the limit, as a fraction of it (0.18: 18 % left)
    headroom: str | None = None  # the same as a quantity: "363.4 mA", "11.3 K"

    @property
    def blocking(self) -> bool:
        return self.severity == "error" and self.status != "pass"

    def as_dict(self) -> dict:
        return {"constraint": self.constraint, "severity": self.severity, "status": self.status,
                "message": self.message, "expression": self.expression, "because": self.because,
                "margin": self.margin, "headroom": self.headroom}


@dataclass
class Compiled:
    id: str
    props: dict
    ast: Any = None
    error: str | None = None
    refs: set = field(default_factory=set)
    aggs: list = field(default_factory=list)

    @property
    def severity(self) -> str:
        return self.props.get("severity") or "error"

    @property
    def expression(self) -> str:
        return self.props.get("expression") or ""


def compile_constraint(cid: str, props: dict, types: dict, cache: "CompileCache | None" = None) -> Compiled:
    c = Compiled(cid, props)
    hit = cache.get(c.expression) if cache else None
    if hit is not None:
        c.ast, c.error, c.refs, c.aggs = hit[0], hit[1], set(hit[2]), list(hit[3])
        return c
    try:
        if not c.expression.strip():
            raise ExprError("it has no expression")
        c.ast = parse(c.expression)
        if check(c.ast, types) not in ("bool", "any"):
            raise ExprError("the expression must be a condition (a comparison, unique(), and/or/not)")
        inputs(c.ast, c.refs, c.aggs)
    except ExprError as exc:
        c.error = str(exc)
    if cache:
        cache.put(c.expression, (c.ast, c.error, tuple(sorted(c.refs)), tuple(c.aggs)))
    return c


class CompileCache:
    """Parsed and checked expressions, kept between runs: parsing 300 constraints costs 60 ms,
    loading them from here 2 ms. Kept in the user's cache directory (never in the repository),
    one file per set of entity types, since the check depends on them."""

    def __init__(self, types: dict):
        import hashlib
        import os

        from metaforge import __version__

        fingerprint = hashlib.sha256(orjson.dumps(types, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        self.path = os.path.join(base, "metaforge", f"constraints-{__version__}-{fingerprint}.pickle")
        self.entries: dict | None = None
        self.dirty = False

    def _load(self) -> dict:
        if self.entries is None:
            import pickle

            try:
                with open(self.path, "rb") as f:
                    self.entries = pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
                self.entries = {}
        return self.entries

    def get(self, expression: str):
        return self._load().get(expression)

    def put(self, expression: str, entry) -> None:
        self._load()[expression] = entry
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        import os
        import pickle

        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                pickle.dump(self.entries, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time
        self.dirty = False


# ---- reading the state ------------------------------------------------------------------------

def _base_value(v) -> tuple[float, str | None] | None:
    from metaforge.thread.constraints.evaluate import Q, to_value

    q = to_value(v)
    return (q.value, q.unit) if isinstance(q, Q) else None


class StateSource:
    """The graph as a command would leave it: the index with the command's overlay on top."""

    def __init__(self, index, state=None, touched: dict | None = None):
        self.index, self.state, self.touched = index, state, touched
        self.base_seq = index.position().seq
        self.fresh: dict[str, tuple] = {}  # aggregates computed here, for the index to keep
        self._types: dict[tuple, list] = {}

    def node_props(self, entity_id: str) -> dict | None:
        if self.state is not None:
            node = self.state.live(entity_id)
            return None if node is None else node.props
        return self.index.props(entity_id)

    def nodes_of_type(self, type_name: str, equal: tuple) -> list[tuple[str, dict]]:
        key = (type_name, equal)
        if key not in self._types:
            self._types[key] = self._load(type_name, equal)
        return self._types[key]

    def _load(self, type_name: str, equal: tuple) -> list[tuple[str, dict]]:
        overlay = self.state.nodes if self.state is not None else {}
        rows = []
        # `equal` is a pre-filter only: the where is evaluated on every row kept
        for nid, props in self.index.props_of_type(type_name, equal):
            if nid not in overlay:
                rows.append((nid, props))
        for nid, node in overlay.items():
            if node is not None and not node.deleted and node.type == type_name:
                rows.append((nid, node.props))
        rows.sort(key=lambda r: r[0])
        return rows

    def aggregate(self, node, equal: tuple, types: dict):
        """sum/count/avg/min/max over a type without bringing the rows into Python: sums and
        counts come from the index's cache of them, moved by what this command touched, or
        from one SQL scan per unit; min and max always scan."""
        from metaforge.thread.constraints.evaluate import EvalError, Q
        from metaforge.thread.constraints.expr import kind_of_property

        dims = () if node.func == "count" else kind_of_property(types[node.type][node.prop])[1]
        if node.func in ("sum", "count", "avg"):
            count, total, unit = self._totals(node, equal, types)
            if node.func == "count":
                return Q(float(count), (), None)
            if node.func == "sum":
                return Q(total, dims, unit)
            if not count:
                raise EvalError(f"avg({node.type}.{node.prop}) of no values: nothing matches")
            return Q(total / count, dims, unit)
        groups, unit = self._scan(node, equal, types)
        values = [v for g in groups for v in g[2:]]
        if not values:
            raise EvalError(f"{node.func}({node.type}.{node.prop}) of no values: nothing matches")
        return Q(min(values) if node.func == "min" else max(values), dims, unit)

    def _totals(self, node, equal: tuple, types: dict) -> tuple[int, float, str | None]:
        key = repr((node.type, None if node.func == "count" else node.prop, equal))
        cached = self.index.cached_aggregate(key)
        if cached is not None and cached[0] == self.base_seq:
            _, count, total, unit = cached
            for nid, (before, after) in (self.touched or {}).items():
                if nid.split(":", 1)[0] != node.type:
                    continue
                for props, sign in ((before, -1), (after, 1)):
                    if props is None or any(props.get(k) != v for k, v in equal):
                        continue
                    if node.func == "count":
                        count += sign
                        continue
                    value = _base_value(props.get(node.prop))
                    if value is not None:
                        count, total = count + sign, total + sign * value[0]
                        unit = unit or value[1]
        else:
            groups, unit = self._scan(node, equal, types)
            count, total = sum(g[0] for g in groups), sum(g[1] for g in groups)
        self.fresh[key] = (count, total, unit)
        return count, total, unit

    def _scan(self, node, equal: tuple, types: dict):
        """[(count, total, min, max)] per unit in SI base values, and a unit to show them in."""
        from metaforge.thread import units

        overlay = {nid: n for nid, n in (self.state.nodes.items() if self.state is not None else ())
                   if n is not None and n.type == node.type}
        groups: list = []
        unit = None
        if node.func == "count":
            groups.append((self.index.count_of_type(node.type, equal, list(overlay)), 0.0))
        else:
            quantity = types[node.type][node.prop] not in ("int", "float")
            for u, n, total, lo, hi in self.index.totals_by_unit(node.type, node.prop, quantity, equal, list(overlay)):
                if u:
                    _, factor, offset = units._info(u)
                    unit = unit or u
                    groups.append((n, total * factor + n * offset, lo * factor + offset, hi * factor + offset))
                else:
                    groups.append((n, total, lo, hi))
        for n in overlay.values():  # this command's version of the entities it touched
            if n.deleted or any(n.props.get(k) != v for k, v in equal):
                continue
            if node.func == "count":
                groups.append((1, 0.0))
                continue
            value = _base_value(n.props.get(node.prop))
            if value is not None:
                unit = unit or value[1]
                groups.append((1, value[0], value[0], value[0]))
        return groups, unit

    def constraints(self) -> list[tuple[str, dict]]:
        return [(i, p) for i, p in self.nodes_of_type("Constraint", ()) if p.get("enabled", True) is not False]


# ---- verdicts ---------------------------------------------------------------------------------

def evaluate(c: Compiled, source: StateSource, types: dict) -> Verdict:
    name = c.id.split(":", 1)[1]
    if c.error:
        return Verdict(c.id, c.severity, "invalid", f"{name}: invalid expression: {c.error}", c.expression)
    try:
        ok, detail, margin, headroom = _judge(c.ast, Evaluator(source, types, explain=False))
        if ok is True:
            return Verdict(c.id, c.severity, "pass", f"{name}: {detail}", c.expression, [], margin, headroom)
        ev = Evaluator(source, types, explain=True)  # again, noting who contributed
        ok, detail, margin, headroom = _judge(c.ast, ev)
    except EvalError as exc:
        return Verdict(c.id, c.severity, "invalid", f"{name}: cannot evaluate: {exc}", c.expression)
    because = f" ({', '.join(ev.notes)})" if ev.notes else ""
    custom = c.props.get("message")
    text = f"{name}: {detail}{because}" + (f" — {custom}" if custom else "")
    return Verdict(c.id, c.severity, "fail", text, c.expression, ev.notes, margin, headroom)


def _judge(ast, ev: Evaluator) -> tuple[Any, str, float | None, str | None]:
    """The verdict of a condition, the numbers behind it (`612 mA > 480 mA` when it fails), and
    for a limit (< <= > >=) the margin left: as a fraction of the limit, and as a quantity."""
    if isinstance(ast, Bin) and ast.op in COMPARISONS:
        left, right = ev.eval(ast.left), ev.eval(ast.right)
        ok = compare(ast.op, left, right)
        if left is None or right is None:
            return ok, f"the {'left' if left is None else 'right'} side has no value", None, None
        text = f"{show(left)} {ast.op if ok else _NEGATED[ast.op]} {show(right, like=left)}"
        return (ok, text, *_margin(ast.op, left, right))
    if isinstance(ast, Bin) and ast.op == "and":
        parts = [_judge(p, ev) for p in (ast.left, ast.right)]
        ok = all(p[0] is True for p in parts)
        margins = [p for p in parts if p[2] is not None]
        tightest = min(margins, key=lambda p: p[2]) if margins else (None, None, None, None)
        return ok, "; ".join(p[1] for p in parts if (p[0] is True) == ok), tightest[2], tightest[3]
    ok = ev.eval(ast)
    if isinstance(ast, Agg) and ast.func == "unique":
        return ok, "values are unique" if ok else "values are not unique", None, None
    return ok, "condition holds" if ok is True else "condition is false", None, None


def _margin(op: str, left, right) -> tuple[float | None, str | None]:
    from metaforge.thread.constraints.evaluate import Q, _absolute

    if op not in ("<", "<=", ">", ">=") or not (isinstance(left, Q) and isinstance(right, Q)):
        return None, None
    slack = right.value - left.value if op in ("<", "<=") else left.value - right.value
    absolute = _absolute(left.unit) or _absolute(right.unit)
    unit = "K" if absolute else (left.unit or right.unit)
    headroom = show(Q(slack, left.dims, unit if not absolute else "K"))
    if absolute or right.value == 0:
        return None, headroom  # a share of 348 K says nothing; the kelvins do
    return round(slack / abs(right.value), 4), headroom


_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def affected(compiled: list[Compiled], touched: dict[str, tuple[dict | None, dict | None]]) -> list[Compiled]:
    """The constraints a change can affect. `touched`: entity id → (props before, props after)."""
    if not touched:
        return []
    types_touched: dict[str, list] = {}
    for nid, (before, after) in touched.items():
        types_touched.setdefault(nid.split(":", 1)[0], []).append((nid, before, after))
    out = []
    for c in compiled:
        if c.id in touched or c.refs & touched.keys():
            out.append(c)
        elif any(_agg_touched(agg, types_touched.get(agg.type, ())) for agg in c.aggs):
            out.append(c)
    return out


def _agg_touched(agg: Agg, changes: Iterable) -> bool:
    changes = list(changes)
    if not changes:
        return False
    if agg.where is None or _has_ref(agg.where):
        return True
    ev = Evaluator(None, {})
    for nid, before, after in changes:
        for props in (before, after):
            if props is None:
                continue
            scope = {**props, "__id": nid, "__name": nid.split(":", 1)[1], "__type": agg.type}
            try:
                if ev.eval(agg.where, scope) is True:
                    return True
            except EvalError:
                return True
    return False


def _has_ref(node) -> bool:
    refs: set = set()
    inputs(node, refs, [])
    return bool(refs)


def compile_all(source: StateSource, types: dict) -> list[Compiled]:
    cache = CompileCache(types)
    compiled = [compile_constraint(cid, props, types, cache) for cid, props in source.constraints()]
    cache.save()
    return compiled


def check_all(index, types: dict) -> list[Verdict]:
    source = StateSource(index)
    return [evaluate(c, source, types) for c in compile_all(source, types)]


def check_change(index, state, types: dict, touched_ids: Iterable[str]) -> tuple[list[Verdict], list[Compiled]]:
    """Verdicts of the constraints a command's change can affect, on the state after it."""
    touched_ids = list(touched_ids)
    if not touched_ids:
        return [], []
    source = StateSource(index, state)
    compiled = compile_all(source, types)
    if not compiled:
        return [], []
    # only what a constraint can read needs its state before the change
    named = {r for c in compiled for r in c.refs} | {c.id for c in compiled}
    agg_types = {a.type for c in compiled for a in c.aggs}
    relevant = [i for i in touched_ids if i in named or i.split(":", 1)[0] in agg_types]
    before = index.load_nodes(relevant)
    touched = {}
    for nid in relevant:
        old, new = before.get(nid), state.nodes.get(nid)
        touched[nid] = (old.props if old and not old.deleted else None,
                        new.props if new is not None and not new.deleted else None)
    source.touched = touched
    hit = affected(compiled, touched)
    verdicts = [evaluate(c, source, types) for c in hit]
    state.aggregates = source.fresh  # kept by the index with the command's events, if it lands
    return verdicts, hit
