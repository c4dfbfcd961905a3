"""Queries, the read side: answered from the graph index, never by replaying the log."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from metaforge.errors import BadInput, NotFound
from metaforge.store.graph_query import ASK, MAYBE, NO, Screen, TextHas, TextIs, Window
from metaforge.store.log import segment_name


def _node_dict(n) -> dict:
    return {"id": n.id, "type": n.type, "name": n.id.split(":", 1)[1], "version": n.version,
            "createdAt": n.created_at, "updatedAt": n.updated_at, "createdBy": n.created_by,
            "updatedBy": n.updated_by, "createdSeq": n.created_seq, "updatedSeq": n.updated_seq,
            "properties": n.props}


def _live(index, node_id: str):
    """The live node, or NotFound saying whether it never existed or was removed."""
    n = index.stored_node(node_id)
    if n is None:
        raise NotFound(f"unknown entity {node_id}", "list what exists with `mf query`")
    if n.deleted:
        raise NotFound(f"{node_id} was removed (version {n.version}, seq {n.updated_seq})", f"see `mf log {node_id}`")
    return n


def show(index, node_id: str) -> dict:
    node = _node_dict(_live(index, node_id))
    node["out"] = [{"rel": r, "id": d} for r, d in index.edges_from(node_id)]
    node["in"] = [{"rel": r, "id": s} for r, s in index.edges_to(node_id)]
    node["artifacts"] = [{"path": p, "region": r, "line": ln} for p, r, ln in index.mappings_of(node_id)]
    return node


# ---- mf query --------------------------------------------------------------------------------

_WHERE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(!=|>=|<=|=|>|<|~)\s*(.*)$")
_ATTRS = {"id": "id", "name": "name", "type": "type", "version": "version",
          "created_by": "createdBy", "updated_by": "updatedBy"}
# units.parse_quantity reads a number first: a text that does not start with one is no quantity
_LEADING_NUMBER = re.compile(r"^\s*[-+]?\.?\d")


@dataclass
class Condition:
    key: str
    op: str
    text: str

    @classmethod
    def parse(cls, expr: str) -> "Condition":
        m = _WHERE.match(expr.strip())
        if not m:
            raise BadInput(f"--where '{expr}': expected key=value (or != < <= > >= ~)")
        return cls(m.group(1), m.group(2), m.group(3).strip())

    def matches(self, node: dict) -> bool:
        value = node[_ATTRS[self.key]] if self.key in _ATTRS else node["properties"].get(self.key)
        if value is None:
            return self.op == "!=" and self.text != ""
        if self.op == "~":
            return self.text.lower() in json.dumps(value, ensure_ascii=False).lower()
        if isinstance(value, list):
            return (self.text in [str(v) for v in value]) == (self.op == "=") if self.op in ("=", "!=") else False
        left, right = _comparable(value, self.text, self.key)
        return _compare(left, self.op, right)

    # What SQL can rule out before `matches` reads a row (store/graph_query.py): for each kind
    # of value, NO only where `matches` is surely false, ASK where it may raise.

    def screen(self, units_at: Callable[[str], list[str]]) -> Screen:
        """This condition as a screen; `units_at(key)` lists the units the twin writes a
        quantity property in (asked only for a comparison that needs them)."""
        attribute = self.key in _ATTRS
        if self.op == "~":
            needle = self.text.lower()
            return Screen(self.key, attribute, text=MAYBE if '"' in needle or "\\" in needle else TextHas(needle),
                          true=MAYBE if needle in "true" else NO, false=MAYBE if needle in "false" else NO,
                          other_quantity=MAYBE)
        target = self.text.lower() in ("true", "yes", "1")
        return Screen(self.key, attribute, absent=MAYBE if self.op == "!=" and self.text != "" else NO,
                      text=TextIs(self.op, self.text), number=self._number_rule(),
                      true=MAYBE if _compare(True, self.op, target) else NO,
                      false=MAYBE if _compare(False, self.op, target) else NO,
                      array=MAYBE if self.op in ("=", "!=") else NO,
                      quantity=self._unit_rules(units_at) if not attribute else {})

    def _number_rule(self):
        try:
            limit = float(self.text)
        except ValueError:
            return ASK  # _comparable refuses: the user must see it
        return self._window(limit, 0.0) if math.isfinite(limit) else MAYBE

    def _unit_rules(self, units_at) -> dict:
        """A window on the value in each unit the twin uses (ASK where parsing the limit in that
        unit's dimension fails, as `matches` raises there); no unit listed: every quantity ASKs."""
        if self.op == "!=" or not _LEADING_NUMBER.match(self.text):
            return {}
        return {unit: self._unit_window(unit) for unit in units_at(self.key)}

    def _unit_window(self, unit: str):
        try:  # the limit as `matches` compares it, and how a value in `unit` maps onto it
            low, limit = _comparable({"value": 0, "unit": unit}, self.text, self.key)
            high, _ = _comparable({"value": 1, "unit": unit}, self.text, self.key)
        except Exception:  # noqa: BLE001 — whatever `matches` would raise, it must raise it
            return ASK
        factor = high - low
        if not (factor > 0 and math.isfinite(factor) and math.isfinite(low) and math.isfinite(limit)):
            return MAYBE
        return self._window((limit - low) / factor, abs(low) / factor)

    def _window(self, limit: float, offset: float):
        """The numbers SQL keeps: wider than the condition by a billionth, as SQLite may read a
        JSON number one rounding off Python's (the exact verdict is `matches`'s)."""
        slack = 1e-9 * (abs(limit) + offset) + 1e-300
        if self.op in (">", ">="):
            return Window(limit - slack, None)
        if self.op in ("<", "<="):
            return Window(None, limit + slack)
        if self.op == "=":
            return Window(limit - slack, limit + slack)
        return MAYBE


def _compare(left: Any, op: str, right: Any) -> bool:
    try:
        return {"=": left == right, "!=": left != right, ">": left > right, "<": left < right,
                ">=": left >= right, "<=": left <= right}[op]
    except TypeError:
        return False


def _comparable(value: Any, text: str, key: str) -> tuple[Any, Any]:
    from metaforge.thread import units

    if isinstance(value, dict) and "unit" in value:
        dimension = units.dimension_name(value["unit"]) if value["unit"] else "ratio"
        try:
            q = units.parse_quantity(text, dimension or "ratio")
        except units.UnitError as exc:
            raise BadInput(f"--where {key}: {exc}") from None
        if not isinstance(value.get("value"), (int, float)):  # null: what an older mf stored for 1e999
            return None, q["value"]                             # (no comparison holds: _compare says no)
        if not q["unit"] and not value["unit"]:
            return value["value"], q["value"]
        return units.to_base(value["value"], value["unit"]), units.to_base(q["value"], q["unit"])
    if isinstance(value, bool):
        return value, text.lower() in ("true", "yes", "1")
    if isinstance(value, (int, float)):
        try:
            return value, float(text)
        except ValueError:
            raise BadInput(f"--where {key}: '{text}' is not a number") from None
    return str(value), text


def query(index, type_name: str | None = None, where: list[str] = (), limit: int | None = None) -> list[dict]:
    """Live entities in id order that every condition holds for, at most `limit`. SQL drops
    the rows the conditions surely reject; `Condition.matches` judges the rest, in order."""
    conditions = [Condition.parse(w) for w in where]
    screens = [c.screen(index.property_units) for c in conditions]
    keep = (lambda n: all(c.matches(_node_dict(n)) for c in conditions)) if conditions else None
    return [_node_dict(n) for n in index.find_nodes(screens, type_name, keep, limit)]


# ---- mf trace --------------------------------------------------------------------------------

def trace(index, node_id: str, depth: int = 10, direction: str = "both") -> dict:
    """The tree of relationships from an entity, down and up. Reads only the nodes it walks:
    their edges as it goes, their types in one look-up at the end."""
    _live(index, node_id)  # refuses an unknown or removed id
    out: dict[str, Any] = {"id": node_id, "type": None}
    placed = [out]  # every dict that gets a type once the walk is done
    reached: dict[str, int] = {}

    def walk(start: str, edges) -> list[dict]:
        seen = {start}

        def expand(nid: str, level: int) -> list[dict]:
            if level > depth:
                return []
            children = []
            for rel, other in edges(nid):
                child = {"id": other, "type": None, "rel": rel, "children": []}
                placed.append(child)
                if other in seen:
                    child["seen"] = True
                else:
                    seen.add(other)
                    reached[other] = min(reached.get(other, level), level)
                    child["children"] = expand(other, level + 1)
                children.append(child)
            return children

        return expand(start, 1)

    if direction in ("both", "down"):
        out["downstream"] = walk(node_id, index.edges_from)
    if direction in ("both", "up"):
        out["upstream"] = walk(node_id, index.edges_to)
    types = index.types_of(d["id"] for d in placed)
    for d in placed:
        d["type"] = types.get(d["id"])
    out["reached"] = [{"id": i, "type": types.get(i), "distance": d} for i, d in sorted(reached.items())]
    return out


# ---- BOM data and constraints of one entity (for viewers) -----------------------------------

def bom_for(index, node_id: str) -> dict:
    """The BOM items behind an entity: itself if it is a BOMItem, else those it and the elements
    under it (HAS_ELEMENT, any depth) use or hold, with who uses each and the cost per currency."""
    node = show(index, node_id)
    used_by: dict[str, list[str]] = {}
    if node["type"] == "BOMItem":
        used_by[node_id] = [e["id"] for e in node["in"] if e["rel"] in ("USES_COMPONENT", "HAS_ELEMENT")]
    else:
        seen, stack = {node_id}, [node_id]
        while stack:
            here = stack.pop()
            for rel, dst in index.edges_from(here):
                if rel not in ("HAS_ELEMENT", "USES_COMPONENT"):
                    continue
                if dst.startswith("BOMItem:"):
                    used_by.setdefault(dst, []).append(here)
                elif rel == "HAS_ELEMENT" and dst not in seen:
                    seen.add(dst)
                    stack.append(dst)
    items, cost = [], {}
    for item_id in sorted(used_by):
        found = index.node(item_id)
        if found is None:
            continue
        item = _node_dict(found)
        item["used_by"] = sorted(set(used_by[item_id]))
        props = item["properties"]
        if isinstance(props.get("unit_cost"), (int, float)):
            currency = props.get("currency") or "?"
            cost[currency] = round(cost.get(currency, 0.0) + props["unit_cost"] * (props.get("quantity") or 1), 6)
        items.append(item)
    return {"id": node_id, "type": node["type"], "items": items, "count": len(items), "cost": cost}


def constraints_on(index, types: dict, node_id: str) -> list[dict]:
    """The constraints that bear on an entity, with their verdict now: those that CONSTRAINS it,
    and those whose expression reads it (by name, or through an aggregate that selects it)."""
    from metaforge.thread.constraints.engine import StateSource, affected, compile_all, evaluate

    node = show(index, node_id)
    linked = {e["id"] for e in node["in"] if e["rel"] == "CONSTRAINS"}
    source = StateSource(index)
    compiled = compile_all(source, types)
    props = node["properties"]
    reading = {c.id for c in affected(compiled, {node_id: (props, props)})}
    return [{**evaluate(c, source, types).as_dict(), "linked": c.id in linked}
            for c in compiled if c.id in linked or c.id in reading]


def simulation_runs(index, target: str | None = None) -> list[dict]:
    """SimulationRun entities, newest first; with `target`, only those that SIMULATES it."""
    if target is None:
        runs = query(index, "SimulationRun")
    else:
        show(index, target)  # refuses an unknown id
        ids = [src for _, src in index.edges_to(target, "SIMULATES") if src.startswith("SimulationRun:")]
        runs = [_node_dict(n) for n in map(index.node, ids) if n is not None]
    return sorted(runs, key=lambda n: (n["properties"].get("started_at") or n["createdAt"], n["id"]), reverse=True)


# ---- mf log ----------------------------------------------------------------------------------

def history(repo, entity: str | None = None, event_type: str | None = None, limit: int | None = 50,
            since_seq: int | None = None, reverse: bool = False) -> list[dict]:
    """Events newest first (oldest first with reverse), read from the log through the index."""
    refs = repo.index.event_positions(entity, event_type, since_seq, oldest_first=reverse, limit=limit)
    return repo.log.lines_at(refs)


# ---- mf status -------------------------------------------------------------------------------

def status(repo) -> dict:
    from metaforge.repo import git

    index = repo.index
    pos = index.position()
    counts = index.count_by_type()
    edges = index.count_by_relation()
    commit = git(["rev-parse", "--short", "HEAD"], cwd=repo.root, check=False)
    branch = git(["symbolic-ref", "--short", "-q", "HEAD"], cwd=repo.root, check=False)
    return {
        "root": str(repo.root),
        "semantic_version": pos.seq,
        "head_hash": pos.hash if pos.seq else None,
        "segments": pos.segment,
        "head_segment": f".metaforge/events/{segment_name(pos.segment)}" if pos.segment else None,
        "entities": sum(counts.values()),
        "entities_by_type": counts,
        "edges": sum(edges.values()),
        "edges_by_relation": edges,
        "last_event": index.last_event(),
        "git": {"commit": commit or None, "branch": branch or None},
        "files": _last_link(repo),
    }


def _last_link(repo) -> dict | None:
    link = repo.index.last_state_link()
    if link is None:
        return None
    return {**link, "entities_changed_since": repo.index.changed_after(link["semantic_version"])}
