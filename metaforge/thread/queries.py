"""Queries, the read side: answered from the graph index, never by replaying the log."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from metaforge.errors import BadInput, NotFound
from metaforge.store.log import segment_name

_NODE_SQL = ("SELECT id, type, name, version, created_at, updated_at, created_by, updated_by, "
             "created_seq, updated_seq, deleted, json(props) FROM nodes")


def _node_dict(r) -> dict:
    return {"id": r[0], "type": r[1], "name": r[2], "version": r[3], "createdAt": r[4], "updatedAt": r[5],
            "createdBy": r[6], "updatedBy": r[7], "createdSeq": r[8], "updatedSeq": r[9],
            "properties": json.loads(r[11])}


def show(index, node_id: str) -> dict:
    row = index.conn.execute(_NODE_SQL + " WHERE id = ?", (node_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown entity {node_id}", "list what exists with `mf query`")
    if row[10]:
        raise NotFound(f"{node_id} was removed (version {row[3]}, seq {row[9]})", f"see `mf log {node_id}`")
    node = _node_dict(row)
    conn = index.conn
    node["out"] = [{"rel": r, "id": d} for r, d in
                   conn.execute("SELECT rel, dst FROM edges WHERE src = ? ORDER BY rel, dst", (node_id,))]
    node["in"] = [{"rel": r, "id": s} for r, s in
                  conn.execute("SELECT rel, src FROM edges WHERE dst = ? ORDER BY rel, src", (node_id,))]
    node["artifacts"] = [{"path": p, "region": r, "line": ln} for p, r, ln in conn.execute(
        "SELECT path, region, line FROM artifact_map WHERE entity = ? ORDER BY path, line", (node_id,))]
    return node


# ---- mf query --------------------------------------------------------------------------------

_WHERE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(!=|>=|<=|=|>|<|~)\s*(.*)$")
_ATTRS = {"id": "id", "name": "name", "type": "type", "version": "version",
          "created_by": "createdBy", "updated_by": "updatedBy"}


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
        try:
            return {"=": left == right, "!=": left != right, ">": left > right, "<": left < right,
                    ">=": left >= right, "<=": left <= right}[self.op]
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
    conditions = [Condition.parse(w) for w in where]
    sql, args = _NODE_SQL + " WHERE deleted = 0", []
    if type_name:
        sql, args = sql + " AND type = ?", [type_name]
    sql += " ORDER BY id"
    out = []
    for row in index.conn.execute(sql, args):
        node = _node_dict(row)
        if all(c.matches(node) for c in conditions):
            out.append(node)
            if limit and len(out) >= limit:
                break
    return out


# ---- mf trace --------------------------------------------------------------------------------

def trace(index, node_id: str, depth: int = 10, direction: str = "both") -> dict:
    show(index, node_id)  # refuses an unknown or removed id
    conn = index.conn
    types = dict(conn.execute("SELECT id, type FROM nodes WHERE deleted = 0"))
    out: dict[str, Any] = {"id": node_id, "type": types.get(node_id)}
    reached: dict[str, int] = {}

    def walk(start: str, sql: str) -> list[dict]:
        seen = {start}

        def expand(nid: str, level: int) -> list[dict]:
            if level > depth:
                return []
            children = []
            for rel, other in conn.execute(sql, (nid,)):
                child = {"id": other, "type": types.get(other), "rel": rel, "children": []}
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
        out["downstream"] = walk(node_id, "SELECT rel, dst FROM edges WHERE src = ? ORDER BY rel, dst")
    if direction in ("both", "up"):
        out["upstream"] = walk(node_id, "SELECT rel, src FROM edges WHERE dst = ? ORDER BY rel, src")
    out["reached"] = [{"id": i, "type": types.get(i), "distance": d} for i, d in sorted(reached.items())]
    return out


# ---- BOM data and constraints of one entity (for viewers) -----------------------------------

def bom_for(index, node_id: str) -> dict:
    """The BOM items behind an entity: itself if it is a BOMItem, else those it and the elements
    under it (HAS_ELEMENT, any depth) use or hold, with who uses each and the cost per currency."""
    node = show(index, node_id)
    conn = index.conn
    used_by: dict[str, list[str]] = {}
    if node["type"] == "BOMItem":
        used_by[node_id] = [e["id"] for e in node["in"] if e["rel"] in ("USES_COMPONENT", "HAS_ELEMENT")]
    else:
        seen, stack = {node_id}, [node_id]
        while stack:
            here = stack.pop()
            for rel, dst in conn.execute("SELECT rel, dst FROM edges WHERE src = ? AND rel IN "
                                         "('HAS_ELEMENT', 'USES_COMPONENT') ORDER BY rel, dst", (here,)):
                if dst.startswith("BOMItem:"):
                    used_by.setdefault(dst, []).append(here)
                elif rel == "HAS_ELEMENT" and dst not in seen:
                    seen.add(dst)
                    stack.append(dst)
    items, cost = [], {}
    for item_id in sorted(used_by):
        row = conn.execute(_NODE_SQL + " WHERE id = ? AND deleted = 0", (item_id,)).fetchone()
        if row is None:
            continue
        item = _node_dict(row)
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
        ids = [r[0] for r in index.conn.execute("SELECT src FROM edges WHERE dst = ? AND rel = 'SIMULATES' "
                                                "AND src LIKE 'SimulationRun:%'", (target,))]
        runs = [_node_dict(r) for i in ids
                for r in index.conn.execute(_NODE_SQL + " WHERE id = ? AND deleted = 0", (i,))]
    return sorted(runs, key=lambda n: (n["properties"].get("started_at") or n["createdAt"], n["id"]), reverse=True)


# ---- mf log ----------------------------------------------------------------------------------

def history(repo, entity: str | None = None, event_type: str | None = None, limit: int | None = 50,
            since_seq: int | None = None, reverse: bool = False) -> list[dict]:
    """Events newest first (oldest first with reverse), read from the log through the index."""
    sql, args = "SELECT segment, offset FROM events WHERE 1 = 1", []
    if entity:
        sql += " AND entity = ?"
        args.append(entity)
    if event_type:
        if event_type.endswith("*") or event_type.endswith("."):
            sql += " AND type LIKE ?"
            args.append(event_type.rstrip("*").rstrip(".") + ".%")
        else:
            sql += " AND type = ?"
            args.append(event_type)
    if since_seq is not None:
        sql += " AND seq > ?"
        args.append(since_seq)
    sql += " ORDER BY seq " + ("ASC" if reverse else "DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    refs = list(repo.index.conn.execute(sql, args))
    return repo.log.lines_at(refs)


# ---- mf status -------------------------------------------------------------------------------

def status(repo) -> dict:
    from metaforge.repo import git

    index = repo.index
    conn = index.conn
    pos = index.position()
    counts = dict(conn.execute("SELECT type, count(*) FROM nodes WHERE deleted = 0 GROUP BY type ORDER BY type"))
    edges = dict(conn.execute("SELECT rel, count(*) FROM edges GROUP BY rel ORDER BY rel"))
    last = conn.execute("SELECT seq, type, entity, version, ts, actor FROM events ORDER BY seq DESC LIMIT 1").fetchone()
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
        "last_event": dict(zip(("seq", "type", "entity", "version", "ts", "actor"), last)) if last else None,
        "git": {"commit": commit or None, "branch": branch or None},
        "files": _last_link(repo),
    }


def _last_link(repo) -> dict | None:
    row = repo.index.conn.execute("SELECT semantic_version, git_commit, projected_at FROM state_links "
                                  "ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        return None
    changed = repo.index.conn.execute("SELECT count(*) FROM nodes WHERE updated_seq > ?", (row[0],)).fetchone()[0]
    return {"semantic_version": row[0], "git_commit": row[1], "projected_at": row[2],
            "entities_changed_since": changed}
