"""Commands, the write side: validate and fold a batch of changes into event drafts.

A command is a list of changes. Inside a transaction (`thread/transaction.py`, which holds the
log lock and has caught the index up), each change is checked against the state the changes
before it left (an overlay on the index), turned into event drafts and folded, and the
constraints the batch can affect are evaluated on the result. The transaction then applies the
write policy and appends. Any refusal raises before the append, so a refused command leaves the
log and the index exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metaforge import events as ev
from metaforge.errors import BadInput, ConstraintViolation, MetaforgeError, Refused, VersionConflict
from metaforge.thread.entities import check_relation, parse_id, validate_properties
from metaforge.graph import GraphState

OPS = ("add", "set", "unset", "remove", "link", "unlink")


@dataclass
class Change:
    op: str
    id: str
    props: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    rel: str | None = None
    dst: str | None = None
    expect_version: int | None = None
    msg: str | None = None
    where: str | None = None  # where the change was written, for errors: "changes.yaml:12"

    def describe(self) -> str:
        if self.op in ("link", "unlink"):
            return f"{self.op} {self.id} {self.rel} {self.dst}"
        return f"{self.op} {self.id}"


@dataclass
class Outcome:
    change: Change
    drafts: list[ev.Draft]

    @property
    def summary(self) -> str:
        if not self.drafts:
            return "unchanged"
        return ", ".join(f"{d.type} v{d.version}" for d in self.drafts)


@dataclass
class Result:
    outcomes: list[Outcome]
    first_seq: int
    last_seq: int
    actor: str
    ts: str
    dry_run: bool
    verdicts: list = field(default_factory=list)
    proposal: str | None = None  # set when the command became a proposal awaiting approval
    warnings: list[str] = field(default_factory=list)  # violations that landed (the policy said warn)

    @property
    def refused(self) -> bool:
        return any(v.blocking for v in self.verdicts)

    @property
    def appended(self) -> int:
        if self.dry_run or self.proposal:
            return 0
        return max(0, self.last_seq - self.first_seq + 1)

    def drafts(self) -> list[ev.Draft]:
        return [d for o in self.outcomes for d in o.drafts]

    def as_dict(self) -> dict:
        seq = self.first_seq
        events = []
        for d in self.drafts():
            events.append({"seq": seq, "type": d.type, "entity": d.entity, "version": d.version,
                           "payload": d.payload, **({"msg": d.msg} if d.msg else {})})
            seq += 1
        return {"dry_run": self.dry_run, "appended": self.appended, "actor": self.actor, "ts": self.ts,
                "refused": self.refused, "verdicts": [v.as_dict() for v in self.verdicts],
                "proposal": self.proposal, "warnings": self.warnings,
                "first_seq": self.first_seq if events else None, "last_seq": self.last_seq if events else None,
                "events": events,
                "unchanged": [o.change.describe() for o in self.outcomes if not o.drafts]}


def _consistent(node_id: str, type_name: str, before: dict, props: dict) -> dict:
    """A BOMItem's quantity follows from its references: references set alone bring the quantity
    along (when the item has one); a quantity that disagrees with them is refused with both numbers."""
    if type_name != "BOMItem":
        return props
    merged = {**before, **props}
    refs, qty = merged.get("references"), merged.get("quantity")
    if refs is None or qty is None:
        return props
    if "references" in props and "quantity" not in props and not (qty == 0 and merged.get("dnp")):
        return {**props, "quantity": len(refs)}
    if qty != len(refs) and not (qty == 0 and merged.get("dnp")):
        shown = ", ".join(refs[:6]) + ("..." if len(refs) > 6 else "")
        raise Refused(f"{node_id}: quantity {qty} but {len(refs)} references ({shown})",
                      "a BOM item's quantity is its number of references: change the references "
                      "(the quantity follows), or both together")
    return props


class _Planner:
    def __init__(self, state: GraphState, types: dict, head_seq: int, ts: str, actor: str):
        self.state, self.types, self.seq, self.ts, self.actor = state, types, head_seq, ts, actor

    def emit(self, out: list[ev.Draft], kind: str, entity: str, version: int, payload: dict, msg: str | None) -> None:
        draft = ev.Draft(kind, entity, version, payload, msg)
        self.seq += 1
        self.state.apply({"seq": self.seq, "type": kind, "entity": entity, "version": version,
                          "ts": self.ts, "actor": self.actor, "payload": payload})
        out.append(draft)

    def existing(self, node_id: str, c: Change):
        parse_id(node_id, self.types)
        node = self.state.live(node_id)
        if node is None:
            raise BadInput(f"unknown entity {node_id}", "create it first with `mf mutate add`")
        if c.expect_version is not None and node.version != c.expect_version:
            raise VersionConflict(f"{node_id} is at version {node.version}, not {c.expect_version}: it changed "
                                  "since you read it", "read it again (`mf show`) and retry")
        return node

    def plan(self, c: Change) -> list[ev.Draft]:
        out: list[ev.Draft] = []
        getattr(self, "_" + c.op)(c, out)
        return out

    def _add(self, c: Change, out: list) -> None:
        type_name, _ = parse_id(c.id, self.types)
        props = _consistent(c.id, type_name, {}, validate_properties(type_name, c.props, self.types))
        old = self.state.get(c.id)
        if old is not None and not old.deleted:
            raise Refused(f"{c.id} already exists (version {old.version})", "use `mf mutate set` to change it")
        if c.expect_version is not None and c.expect_version != (old.version if old else 0):
            raise VersionConflict(f"{c.id} is at version {old.version if old else 0}, not {c.expect_version}")
        version = old.version + 1 if old else 1
        self.emit(out, ev.NODE_CREATED, c.id, version, {"properties": props} if props else {}, c.msg)

    def _set(self, c: Change, out: list) -> None:
        node = self.existing(c.id, c)
        if not c.props:
            raise BadInput(f"set {c.id}: no key=value given")
        props = _consistent(c.id, node.type, node.props, validate_properties(node.type, c.props, self.types))
        changed = {k: v for k, v in props.items() if node.props.get(k) != v}
        if len(changed) == 1:
            (key, value), = changed.items()
            self.emit(out, ev.PROPERTY_SET, c.id, node.version + 1, {"key": key, "value": value}, c.msg)
        elif changed:
            self.emit(out, ev.NODE_UPDATED, c.id, node.version + 1, {"set": changed}, c.msg)

    def _unset(self, c: Change, out: list) -> None:
        node = self.existing(c.id, c)
        missing = [k for k in c.keys if k not in node.props]
        if missing:
            raise BadInput(f"{c.id} has no value for {', '.join(missing)}")
        if c.keys:
            self.emit(out, ev.NODE_UPDATED, c.id, node.version + 1, {"unset": sorted(c.keys)}, c.msg)

    def _remove(self, c: Change, out: list) -> None:
        node = self.existing(c.id, c)
        for src, rel, dst in self.state.edges_touching(c.id):
            src_node = self.state.live(src)
            self.emit(out, ev.EDGE_DELETED, src, src_node.version + 1, {"rel": rel, "to": dst}, c.msg)
        self.emit(out, ev.NODE_DELETED, c.id, node.version + 1, {}, c.msg)

    def _edge(self, c: Change):
        if not c.rel or not c.dst:
            raise BadInput(f"{c.op} {c.id}: needs a relation and a target")
        src = self.existing(c.id, c)
        dst_type, _ = parse_id(c.dst, self.types)
        check_relation(c.rel, src.type, dst_type)
        if self.state.live(c.dst) is None:
            raise BadInput(f"link target {c.dst} does not exist", "create it first, or check the id")
        return src, (c.id, c.rel, c.dst)

    def _link(self, c: Change, out: list) -> None:
        src, edge = self._edge(c)
        if self.state.has_edge(edge):
            raise Refused(f"{c.id} {c.rel} {c.dst} already exists")
        self.emit(out, ev.EDGE_CREATED, c.id, src.version + 1, {"rel": c.rel, "to": c.dst}, c.msg)

    def _unlink(self, c: Change, out: list) -> None:
        src, edge = self._edge(c)
        if not self.state.has_edge(edge):
            raise BadInput(f"{c.id} {c.rel} {c.dst} does not exist")
        self.emit(out, ev.EDGE_DELETED, c.id, src.version + 1, {"rel": c.rel, "to": c.dst}, c.msg)


def execute(repo, changes: list[Change], *, actor: str, message: str | None = None,
            dry_run: bool = False, source=None) -> Result:
    """Run one command (a batch of changes) through the one gate (`repo.transaction`): all of it
    lands, or none of it and an error says why, or it becomes a proposal if an approval rule covers
    it (see `thread/policy.py` for what each source may do)."""
    from metaforge.thread.policy import Source

    if not changes:
        raise BadInput("nothing to do: no changes given")
    with repo.transaction(actor, source or Source.CLI) as tx:
        return tx.change(changes, message, dry_run=dry_run)


@dataclass
class Planned:
    head: Any
    state: GraphState
    result: Result


def plan(repo, changes: list[Change], *, actor: str, message: str | None, dry_run: bool = False) -> Planned:
    """Check and fold a batch on the current state, with its constraint verdicts (in a
    transaction, which holds the lock and has caught the index up)."""
    from metaforge.limits import check_message

    check_message(message)
    ts = ev.now()
    index = repo.index
    head = index.position()
    state = GraphState(base=index)
    state.prefetch([c.id for c in changes] + [c.dst for c in changes if c.dst])
    planner = _Planner(state, repo.types, head.seq, ts, actor)
    outcomes = []
    for c in changes:
        if c.msg is None:
            c.msg = message
        elif c.msg is not message:
            check_message(c.msg, f"{c.where or c.id}: msg")
        try:
            outcomes.append(Outcome(c, planner.plan(c)))
        except MetaforgeError as exc:
            if c.where:
                exc.message = f"{c.where}: {c.describe()}: {exc.message}"
            raise
    n = sum(len(o.drafts) for o in outcomes)
    result = Result(outcomes, head.seq + 1, head.seq + n, actor, ts, dry_run)
    result.verdicts = _check_constraints(repo, index, state)
    return Planned(head, state, result)


def _check_constraints(repo, index, state) -> list:
    """Verdicts of the constraints the change can affect; refuse on an error-level one."""
    from metaforge.thread.constraints.engine import check_change

    verdicts, _ = check_change(index, state, repo.types, list(state.dirty))
    for v in verdicts:
        if v.status == "invalid" and v.constraint in state.dirty:
            raise BadInput(f"{v.constraint}: {v.message.split(': ', 1)[1]}",
                           "fix the expression: see `mf types` for the properties and their kinds")
    return verdicts


def refuse_if_blocked(result: Result) -> None:
    blocking = [v for v in result.verdicts if v.blocking]
    if blocking:
        raise ConstraintViolation("refused: " + "; ".join(v.message for v in blocking),
                                  details={"verdicts": [v.as_dict() for v in result.verdicts]})
