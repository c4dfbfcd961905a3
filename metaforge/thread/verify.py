"""`mf verify`: the log checks itself (hash chain, seq continuity, segment layout, torn tail),
then the index is compared with a fresh fold of the whole log."""

from __future__ import annotations

from metaforge.batch import no_gc
from metaforge.errors import LogCorrupt
from metaforge.store.log import Position
from metaforge.thread.graph import GraphState


def verify(repo, repair: bool = False, progress=None) -> dict:
    report: dict = {"ok": True, "events": 0, "segments": 0, "problems": [], "repaired": None, "index": None}
    with repo.log.lock(), no_gc():
        if repair:
            report["repaired"] = repo.log.repair()
        state = GraphState()
        reader = repo.log.read(stop_at_torn=True)
        n = 0
        try:
            for rec in reader:
                state.apply(rec.event)
                n += 1
                if progress and n % 50_000 == 0:
                    progress(n)
        except LogCorrupt as exc:
            report["problems"].append({"kind": "log", "message": exc.message, "hint": exc.hint})
        report["events"] = n
        report["segments"] = len(repo.log.segments())
        if reader.torn:
            t = reader.torn
            report["problems"].append({
                "kind": "torn_tail",
                "message": f"{repo.log.display(t.segment)}:{t.line}: torn last line ({t.size - t.keep} bytes without an end)",
                "hint": "run `mf verify --repair` to drop the torn tail"})
        if not report["problems"]:
            report["head"] = {"seq": reader.position.seq, "hash": reader.position.hash}
            report["index"] = _check_index(repo, state, reader.position)
            if report["index"] != "agrees":
                report["problems"].append({"kind": "index", "message": report["index"],
                                           "hint": "run `mf rebuild`"})
    report["ok"] = not report["problems"]
    return report


def _check_index(repo, state: GraphState, end: Position) -> str:
    index = repo.index
    index.sync(repo.log, locked=True)
    pos = index.position()
    if (pos.seq, pos.hash) != (end.seq, end.hash):
        return f"index is at seq {pos.seq}, the log at {end.seq}"
    expected = {nid: n for nid, n in state.nodes.items() if n is not None}
    seen = 0
    for got in index.all_nodes():
        n = expected.get(got.id)
        seen += 1
        if n is None:
            return f"index has {got.id}, which the log never created"
        if (got.type, got.version, got.created_seq, got.updated_seq, got.deleted, got.props) != \
                (n.type, n.version, n.created_seq, n.updated_seq, n.deleted, n.props):
            return f"index disagrees with the log on {got.id}"
    if seen != len(expected):
        return f"index has {seen} entities, the log {len(expected)}"
    edges = {e for e, info in state.edges.items() if info is not None}
    indexed = set(index.all_edges())
    if edges != indexed:
        diff = sorted(edges ^ indexed)[0]
        return f"index disagrees with the log on edge {' '.join(diff)}"
    count = index.event_count()
    if count != (end.seq, end.seq):
        return f"index lists {count[0]} events, the log {end.seq}"
    return "agrees"
