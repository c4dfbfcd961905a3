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

from metaforge.thread.constraints.evaluate import EvalError, Evaluator, show
from metaforge.thread.constraints.expr import COMPARISONS, Agg, Bin, ExprError, Ref, check, inputs, parse


@dataclass
class Verdict:
    constraint: str
    severity: str
    status: str  # pass | fail | invalid
    message: str
    expression: str
    because: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> bool:
        return self.severity == "error" and self.status != "pass"

    def as_dict(self) -> dict:
        return {"constraint": self.constraint, "severity": self.severity, "status": self.status,
                "message": self.message, "expression": self.expression, "because": self.because}


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


def compile_constraint(cid: str, props: dict, types: dict) -> Compiled:
    c = Compiled(cid, props)
    try:
        if not c.expression.strip():
            raise ExprError("it has no expression")
        c.ast = parse(c.expression)
        if check(c.ast, types) not in ("bool", "any"):
            raise ExprError("the expression must be a condition (a comparison, unique(), and/or/not)")
        inputs(c.ast, c.refs, c.aggs)
    except ExprError as exc:
        c.error = str(exc)
    return c


# ---- reading the state ------------------------------------------------------------------------

class StateSource:
    """The graph as a command would leave it: the index with the command's overlay on top."""

    def __init__(self, index, state=None):
        self.index, self.state = index, state
        self._types: dict[tuple, list] = {}

    def node_props(self, entity_id: str) -> dict | None:
        if self.state is not None:
            node = self.state.live(entity_id)
            return None if node is None else node.props
        row = self.index.conn.execute("SELECT props FROM nodes WHERE id = ? AND deleted = 0", (entity_id,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def nodes_of_type(self, type_name: str, equal: tuple) -> list[tuple[str, dict]]:
        key = (type_name, equal)
        if key not in self._types:
            self._types[key] = self._load(type_name, equal)
        return self._types[key]

    def _load(self, type_name: str, equal: tuple) -> list[tuple[str, dict]]:
        sql = "SELECT id, props FROM nodes WHERE type = ? AND deleted = 0"
        args: list = [type_name]
        for prop, value in equal:  # a pre-filter only: the where is evaluated on every row kept
            sql += " AND json_extract(props, ?) = ?"
            args += [f'$."{prop}"', value]
        overlay = self.state.nodes if self.state is not None else {}
        rows = []
        for nid, props in self.index.conn.execute(sql, args):
            if nid not in overlay:
                rows.append((nid, orjson.loads(props)))
        for nid, node in overlay.items():
            if node is not None and not node.deleted and node.type == type_name:
                rows.append((nid, node.props))
        rows.sort(key=lambda r: r[0])
        return rows

    def constraints(self) -> list[tuple[str, dict]]:
        return [(i, p) for i, p in self.nodes_of_type("Constraint", ()) if p.get("enabled", True) is not False]


# ---- verdicts ---------------------------------------------------------------------------------

def evaluate(c: Compiled, source: StateSource, types: dict) -> Verdict:
    name = c.id.split(":", 1)[1]
    if c.error:
        return Verdict(c.id, c.severity, "invalid", f"{name}: invalid expression: {c.error}", c.expression)
    ev = Evaluator(source, types)
    try:
        ok = ev.eval(c.ast)
        detail = _explain(c.ast, source, types, failed=ok is not True)
        if ok is True:
            return Verdict(c.id, c.severity, "pass", f"{name}: {detail}", c.expression, ev.notes)
    except EvalError as exc:
        return Verdict(c.id, c.severity, "invalid", f"{name}: cannot evaluate: {exc}", c.expression, ev.notes)
    because = f" ({', '.join(ev.notes)})" if ev.notes else ""
    custom = c.props.get("message")
    text = f"{name}: {detail}{because}" + (f" — {custom}" if custom else "")
    return Verdict(c.id, c.severity, "fail", text, c.expression, ev.notes)


_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def _explain(ast, source, types, failed: bool) -> str:
    """The numbers behind a verdict: `612 mA > 480 mA` when it fails, `116.6 mA <= 480 mA` when not."""
    if isinstance(ast, Bin) and ast.op in COMPARISONS:
        side = Evaluator(source, types)
        left, right = side.eval(ast.left), side.eval(ast.right)
        if left is None or right is None:
            return f"the {'left' if left is None else 'right'} side has no value"
        return f"{show(left)} {_NEGATED[ast.op] if failed else ast.op} {show(right, like=left)}"
    if isinstance(ast, Bin) and ast.op == "and":
        parts = [p for p in (ast.left, ast.right) if (Evaluator(source, types).eval(p) is not True) == failed]
        return "; ".join(_explain(p, source, types, failed) for p in parts)
    if isinstance(ast, Agg) and ast.func == "unique":
        return "values are not unique" if failed else "values are unique"
    return "condition is false" if failed else "condition holds"


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


def check_all(index, types: dict) -> list[Verdict]:
    source = StateSource(index)
    return [evaluate(compile_constraint(cid, props, types), source, types) for cid, props in source.constraints()]


def check_change(index, state, types: dict, touched_ids: Iterable[str]) -> tuple[list[Verdict], list[Compiled]]:
    """Verdicts of the constraints a command's change can affect, on the state after it."""
    touched_ids = list(touched_ids)
    if not touched_ids:
        return [], []
    before = index.load_nodes(touched_ids)
    touched = {}
    for nid in touched_ids:
        old, new = before.get(nid), state.nodes.get(nid)
        touched[nid] = (old.props if old and not old.deleted else None,
                        new.props if new is not None and not new.deleted else None)
    source = StateSource(index, state)
    compiled = [compile_constraint(cid, props, types) for cid, props in source.constraints()]
    hit = affected(compiled, touched)
    return [evaluate(c, source, types) for c in hit], hit
