"""The graph fold: how events become nodes and edges. Pure: no files, no SQLite.

The same fold serves the index (catch-up and rebuild) and the command planner, which folds
the events it is about to write so that each change in a batch sees the ones before it.
A `GraphState` is an overlay on a base (the index, or nothing for a rebuild).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from metaforge.errors import LogCorrupt
from metaforge.events import (EDGE_CREATED, EDGE_DELETED, NODE_CREATED, NODE_DELETED, NODE_UPDATED,
                              PROPERTY_SET)

Edge = tuple[str, str, str]  # (source id, relation, target id)


@dataclass(slots=True)
class Node:
    id: str
    type: str
    version: int
    created_at: str
    updated_at: str
    created_by: str
    updated_by: str
    created_seq: int
    updated_seq: int
    props: dict = field(default_factory=dict)
    deleted: bool = False


@dataclass(slots=True)
class EdgeInfo:
    created_at: str
    created_by: str
    seq: int


class Base(Protocol):
    def load_nodes(self, ids: Iterable[str]) -> dict[str, Node]: ...
    def load_edges(self, triples: Iterable[Edge]) -> dict[Edge, EdgeInfo]: ...
    def edges_touching(self, node_id: str) -> list[Edge]: ...


class EmptyBase:
    def load_nodes(self, ids):
        return {}

    def load_edges(self, triples):
        return {}

    def edges_touching(self, node_id):
        return []


class GraphState:
    def __init__(self, base: Base | None = None):
        self.base = base or EmptyBase()
        self.nodes: dict[str, Node | None] = {}   # None: known to be absent from the base
        self.edges: dict[Edge, EdgeInfo | None] = {}  # None: removed in this overlay
        self.dirty: set[str] = set()
        self.dirty_edges: set[Edge] = set()
        self.aggregates: dict = {}  # constraint sums and counts on this state (see constraints.engine)

    # ---- reading through the overlay ---------------------------------------------------

    def prefetch(self, ids: Iterable[str]) -> None:
        missing = [i for i in set(ids) if i not in self.nodes]
        if missing:
            found = self.base.load_nodes(missing)
            for i in missing:
                self.nodes[i] = found.get(i)

    def get(self, node_id: str) -> Node | None:
        if node_id not in self.nodes:
            self.prefetch([node_id])
        return self.nodes[node_id]

    def live(self, node_id: str) -> Node | None:
        node = self.get(node_id)
        return node if node is not None and not node.deleted else None

    def has_edge(self, edge: Edge) -> bool:
        if edge not in self.edges:
            self.edges.update(self.base.load_edges([edge]))
            self.edges.setdefault(edge, None)
        return self.edges[edge] is not None

    def edges_touching(self, node_id: str) -> list[Edge]:
        found = {e for e in self.base.edges_touching(node_id) if e not in self.edges}
        found |= {e for e, info in self.edges.items() if info is not None and node_id in (e[0], e[2])}
        return sorted(found)

    # ---- the fold ----------------------------------------------------------------------

    def apply(self, e: dict) -> None:
        kind, entity, payload = e["type"], e["entity"], e["payload"]
        if kind == NODE_CREATED:
            old = self.get(entity)
            if old is not None and not old.deleted:
                raise LogCorrupt(f"event {e['seq']}: {entity} created twice")
            self.nodes[entity] = Node(entity, entity.split(":", 1)[0], e["version"], e["ts"], e["ts"],
                                      e["actor"], e["actor"], e["seq"], e["seq"],
                                      dict(payload.get("properties") or {}))
            self.dirty.add(entity)
            return
        if kind not in _UPDATES:
            return  # not a graph event: later layers project it elsewhere
        node = self.get(entity)
        if node is None or node.deleted:
            raise LogCorrupt(f"event {e['seq']}: {kind} on {entity}, which does not exist")
        if kind == PROPERTY_SET:
            node.props[payload["key"]] = payload["value"]
        elif kind == NODE_UPDATED:
            node.props.update(payload.get("set") or {})
            for key in payload.get("unset") or ():
                node.props.pop(key, None)
        elif kind == NODE_DELETED:
            node.deleted, node.props = True, {}
        elif kind == EDGE_CREATED:
            edge = (entity, payload["rel"], payload["to"])
            self.edges[edge] = EdgeInfo(e["ts"], e["actor"], e["seq"])
            self.dirty_edges.add(edge)
        elif kind == EDGE_DELETED:
            edge = (entity, payload["rel"], payload["to"])
            self.edges[edge] = None
            self.dirty_edges.add(edge)
        node.version, node.updated_at, node.updated_by, node.updated_seq = e["version"], e["ts"], e["actor"], e["seq"]
        self.dirty.add(entity)


_UPDATES = frozenset({PROPERTY_SET, NODE_UPDATED, NODE_DELETED, EDGE_CREATED, EDGE_DELETED})
