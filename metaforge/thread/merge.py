"""Merging the twin across git branches: the event-log merge that git's merge driver runs.

Both sides extend a common prefix (git's merge base of the segment). The target side's events
are kept as they are; the other side's events are replayed after them, re-sequenced and
re-chained (ids, times, actors and rationale kept), each checked against the state it now lands
on. An event whose effect is already there is dropped as a duplicate. A true conflict holds the
event back: the same property set to different values on both sides, an entity removed on one
side and changed on the other, an entity created twice differently, a replayed change that
breaks an error-level constraint. The merged log without the held events is a valid log; `mf
merge --continue` or `--abort` finishes the way git does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from metaforge import events as ev
from metaforge.errors import BadInput, Refused
from metaforge.graph import GraphState

GRAPH = {ev.NODE_CREATED, ev.NODE_UPDATED, ev.NODE_DELETED, ev.PROPERTY_SET, ev.EDGE_CREATED, ev.EDGE_DELETED}


@dataclass
class Conflict:
    kind: str  # property | removed | created | constraint | missing
    entity: str
    message: str
    event: dict

    def as_dict(self) -> dict:
        e = self.event
        return {"kind": self.kind, "entity": self.entity, "message": self.message,
                "event": {k: e.get(k) for k in ("id", "seq", "type", "entity", "actor", "ts", "msg", "payload")}}


@dataclass
class MergeOutcome:
    content: bytes
    kept: int = 0          # the target side's events since the fork
    replayed: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    def summary(self) -> dict:
        brief = lambda e: {k: e.get(k) for k in ("id", "seq", "type", "entity", "actor", "msg")}
        return {"kept": self.kept, "replayed": len(self.replayed), "duplicates": [brief(e) for e in self.duplicates],
                "conflicts": [c.as_dict() for c in self.conflicts], "clean": not self.conflicts}


def split(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


def merge_logs(repo, base: bytes, ours: bytes, theirs: bytes, earlier: list[bytes]) -> MergeOutcome:
    """Merge one segment's three versions. `earlier`: the contents of the segments before it."""
    base_lines, ours_lines, theirs_lines = split(base), split(ours), split(theirs)
    n = len(base_lines)
    # The other side extends the base as it is. The target side may hold the base's events
    # re-sequenced (a rebase replays a branch one commit at a time): it must hold them all.
    if theirs_lines[:n] != base_lines:
        raise Refused("the event log was rewritten on the other side since the fork (only appends merge)",
                      "was the log edited, or `mf seal` run on a branch? `mf verify` there says more")
    base_ids = {orjson.loads(x)["id"] for x in base_lines}
    ours_events = [orjson.loads(x) for x in ours_lines]
    ours_ids = {e["id"] for e in ours_events}
    for e in ours_events:  # held back and settled in an earlier step of the same rebase
        if e["type"] == "merge.resolved":
            ours_ids.update(e["payload"].get("dropped") or ())
            ours_ids.update(e["payload"].get("taken") or ())
    if not base_ids <= ours_ids:
        raise Refused("the event log was rewritten on this side since the fork (only appends merge)",
                      "was the log edited, or `mf seal` run on a branch? `mf verify` here says more")
    ours_new = [e for e in ours_events if e["id"] not in base_ids]
    theirs_new = [ev.upcast(orjson.loads(x)) for x in theirs_lines[n:]]  # a newer format: refused, never downgraded
    with tempfile.TemporaryDirectory(prefix="mf-merge-") as tmp:
        index = _project(repo, earlier + [b"\n".join(ours_lines) + b"\n" if ours_lines else b""], Path(tmp))
        try:
            out = _replay(repo, index, ours_new, theirs_new)
            head = index.position()
        finally:
            index.close()
    lines = list(ours_lines)
    seq, prev = head.seq, head.hash
    for e in out.replayed:
        seq += 1
        draft = ev.Draft(e["type"], e["entity"], e["version"], e["payload"], e.get("msg"))
        line, _, prev = ev.encode(seq, draft, e["ts"], e["actor"], prev, e["id"])
        lines.append(line.rstrip(b"\n"))
        e["seq"] = seq
    out.content = b"\n".join(lines) + b"\n" if lines else b""
    out.kept = len(ours_new)
    return out


def _project(repo, segments: list[bytes], folder: Path):
    """An index of the target side's log, seeded from the repository's index when it can catch up."""
    from metaforge.store.index import GraphIndex
    from metaforge.store.log import EventLog, segment_name

    mfdir = folder / ".metaforge"
    (mfdir / "events").mkdir(parents=True)
    for i, data in enumerate(segments, start=1):
        (mfdir / "events" / segment_name(i)).write_bytes(data)
    if repo.index.path.exists():
        try:
            repo.index.checkpoint()
            shutil.copyfile(repo.index.path, mfdir / "index.db")
        except Exception:  # a seed is an optimization only
            (mfdir / "index.db").unlink(missing_ok=True)
    log, index = EventLog(mfdir), GraphIndex(mfdir / "index.db")
    index.sync(log, locked=False)
    return index


class _OursChanges:
    """What the target side changed since the fork, to tell a true conflict from a duplicate."""

    def __init__(self, events: list[dict]):
        self.ids = {e["id"] for e in events}
        self.props: dict[tuple[str, str], object] = {}
        self.created: set[str] = set()
        self.removed: set[str] = set()
        self.touched: set[str] = set()  # changed in any way, including relationships at either end
        self.edges_added: set[tuple] = set()
        self.edges_removed: set[tuple] = set()
        for e in events:
            kind, entity, p = e["type"], e["entity"], e.get("payload") or {}
            if kind not in GRAPH:
                continue
            self.touched.add(entity)
            if kind == ev.NODE_CREATED:
                self.created.add(entity)
                self.removed.discard(entity)
                for k, v in (p.get("properties") or {}).items():
                    self.props[(entity, k)] = v
            elif kind == ev.PROPERTY_SET:
                self.props[(entity, p["key"])] = p["value"]
            elif kind == ev.NODE_UPDATED:
                for k, v in (p.get("set") or {}).items():
                    self.props[(entity, k)] = v
                for k in p.get("unset") or ():
                    self.props[(entity, k)] = None
            elif kind == ev.NODE_DELETED:
                self.removed.add(entity)
            elif kind in (ev.EDGE_CREATED, ev.EDGE_DELETED):
                edge = (entity, p["rel"], p["to"])
                self.touched.add(p["to"])
                (self.edges_added if kind == ev.EDGE_CREATED else self.edges_removed).add(edge)


def _replay(repo, index, ours_new: list[dict], theirs_new: list[dict]) -> MergeOutcome:
    from metaforge.thread.constraints.engine import check_change

    ours = _OursChanges(ours_new)
    held: dict[str, Conflict] = {}
    for _ in range(5):  # a constraint conflict holds events back; replay again without them
        state = GraphState(base=index)
        state.prefetch({e["entity"] for e in theirs_new} | {e["payload"].get("to") for e in theirs_new
                                                           if isinstance(e.get("payload"), dict) and e["payload"].get("to")})
        out = MergeOutcome(b"")
        seq = index.position().seq
        proposals = index.proposal_ids()
        renamed: dict[str, str] = {}
        for e in theirs_new:
            if e["id"] in held:
                continue
            e = _renumber_proposal(e, seq + 1, proposals, renamed)
            verdict = _one(e, state, ours)
            if isinstance(verdict, Conflict):
                held[e["id"]] = verdict
            elif verdict == "duplicate":
                out.duplicates.append(e)
            else:
                seq += 1
                replayed = {**e, "version": verdict, "seq": seq}
                state.apply(replayed)
                out.replayed.append(replayed)
        verdicts, _ = check_change(index, state, repo.types, list(state.dirty))
        blocking = [v for v in verdicts if v.blocking]
        if not blocking:
            break
        guilty = _guilty(blocking, out.replayed, repo.types, index, state)
        if not guilty:  # the target side alone breaks it: not this merge's to settle
            break
        for e in guilty:
            v = next(v for v in blocking)
            held[e["id"]] = Conflict("constraint", e["entity"], f"replayed, it breaks {v.message}", e)
    out.conflicts = [held[e["id"]] for e in theirs_new if e["id"] in held]
    return out


def _renumber_proposal(e: dict, seq: int, taken: set[str], renamed: dict[str, str]) -> dict:
    """Proposals are named by the seq that created them; both branches may have used the same
    one. A replayed proposal takes the seq it lands at, and the events about it follow."""
    if not e["type"].startswith("proposal."):
        return e
    if e["type"] == "proposal.created" and e["entity"] in taken:
        renamed[e["entity"]] = f"Proposal:{seq}"
    new = renamed.get(e["entity"])
    if e["type"] == "proposal.created":
        taken.add(new or e["entity"])
    return {**e, "entity": new} if new else e


def _one(e: dict, state: GraphState, ours: _OursChanges):
    """The version the event lands at, "duplicate", or a Conflict."""
    kind, entity, p = e["type"], e["entity"], e.get("payload") or {}
    if e["id"] in ours.ids:
        return "duplicate"  # the same event on both sides (a cherry-pick, a merge merged again)
    if kind not in GRAPH:
        return e["version"]
    node = state.live(entity)
    if kind == ev.NODE_CREATED:
        if node is not None:
            if node.props == (p.get("properties") or {}):
                return "duplicate"
            return Conflict("created", entity, f"{entity} was created on both sides with different properties", e)
        old = state.get(entity)
        return old.version + 1 if old is not None else 1
    if node is None:
        if entity in ours.removed:
            return "duplicate" if kind == ev.NODE_DELETED else \
                Conflict("removed", entity, f"{entity} was removed on one side and changed on the other", e)
        return Conflict("missing", entity, f"{entity} does not exist on the target side", e)
    if kind == ev.NODE_DELETED:
        if entity in ours.touched:
            return Conflict("removed", entity, f"{entity} was changed on one side and removed on the other", e)
        return node.version + 1
    if kind in (ev.PROPERTY_SET, ev.NODE_UPDATED):
        changes = {p["key"]: p["value"]} if kind == ev.PROPERTY_SET else \
            {**(p.get("set") or {}), **{k: None for k in p.get("unset") or ()}}
        for key, value in changes.items():
            if (entity, key) in ours.props and ours.props[(entity, key)] != value:
                return Conflict("property", entity, f"{entity}.{key} was set to {_show(ours.props[(entity, key)])} "
                                f"on one side and {_show(value)} on the other", e)
        if all(node.props.get(k) == v for k, v in changes.items()):
            return "duplicate"
        return node.version + 1
    edge = (entity, p["rel"], p["to"])
    if kind == ev.EDGE_CREATED:
        if state.has_edge(edge):
            return "duplicate"
        if state.live(p["to"]) is None:
            return Conflict("removed", p["to"], f"{p['to']} was removed on one side and linked on the other", e)
        return node.version + 1
    if not state.has_edge(edge):  # edge.deleted
        return "duplicate" if edge in ours.edges_removed else \
            Conflict("missing", entity, f"{' '.join(edge)} does not exist on the target side", e)
    return node.version + 1


def _guilty(blocking, replayed: list[dict], types: dict, index, state) -> list[dict]:
    """The replayed events that feed the constraints a merge breaks."""
    from metaforge.thread.constraints.engine import StateSource, compile_all

    names = {v.constraint for v in blocking}
    compiled = [c for c in compile_all(StateSource(index, state), types) if c.id in names]
    refs = {r for c in compiled for r in c.refs}
    agg_types = {a.type for c in compiled for a in c.aggs}
    return [e for e in replayed if e["type"] in GRAPH and
            (e["entity"] in refs or e["entity"].split(":", 1)[0] in agg_types or e["entity"] in names)]


def _show(value) -> str:
    if isinstance(value, dict) and set(value) == {"value", "unit"}:
        from metaforge.thread.units import format_quantity

        return format_quantity(value)
    return "nothing" if value is None else repr(value) if isinstance(value, str) else str(value)


# ---- the git side: driver, state, --continue, --abort, --preview --------------------------------

def git_dir(repo) -> Path:
    from metaforge.repo import git

    return (repo.root / git(["rev-parse", "--git-dir"], cwd=repo.root)).resolve()


def state_path(repo) -> Path:
    return git_dir(repo) / "mf-merge.json"


def run_driver(repo, base: Path, ours: Path, theirs: Path, path: str) -> MergeOutcome:
    """What git runs for a segment both sides changed: writes the merge into `ours`."""
    from metaforge.store.log import _SEGMENT_RE

    name = os.path.basename(path)
    if not _SEGMENT_RE.match(name):
        raise BadInput(f"{path} is not an event-log segment")
    earlier = [p.read_bytes() for p in sorted((repo.root / os.path.dirname(path)).glob("*.jsonl"))
               if _SEGMENT_RE.match(p.name) and p.name < name]
    out = merge_logs(repo, base.read_bytes(), ours.read_bytes(), theirs.read_bytes(), earlier)
    tmp = ours.with_name(ours.name + ".mf")
    tmp.write_bytes(out.content)
    os.replace(tmp, ours)
    sp = state_path(repo)
    if out.conflicts:
        sp.write_text(orjson.dumps({"path": path, **out.summary()}, option=orjson.OPT_INDENT_2).decode())
    else:
        sp.unlink(missing_ok=True)
    return out


def pending(repo) -> dict | None:
    sp = state_path(repo)
    return orjson.loads(sp.read_bytes()) if sp.exists() else None


def _operation(repo) -> str | None:
    gd = git_dir(repo)
    if (gd / "rebase-merge").exists() or (gd / "rebase-apply").exists():
        return "rebase"
    if (gd / "CHERRY_PICK_HEAD").exists():
        return "cherry-pick"
    if (gd / "MERGE_HEAD").exists():
        return "merge"
    return None


def finish(repo, take: str, actor: str) -> dict:
    """`mf merge --continue`: settle the held events (ours: drop them; theirs: apply them on top
    through the ordinary command path), record the decision, stage the log, continue git."""
    import subprocess

    from metaforge.thread.commands import execute
    from metaforge.thread.policy import Source

    st = pending(repo)
    if st is None:
        raise BadInput("no mf merge in progress", "a merge stops for mf only when `git merge` reports event conflicts")
    held = [c["event"] for c in st["conflicts"]]
    taken: list[str] = []
    if take == "theirs":
        changes = [c for e in held for c in _as_changes(e)]
        if changes:
            execute(repo, changes, actor=actor, message="merge: the other side's value taken", source=Source.MERGE)
            taken = [e["id"] for e in held]
    with repo.transaction(actor, Source.RECORD) as tx:
        draft = ev.Draft(ev.MERGE_RESOLVED, f"Merge:{tx.head.seq + 1}", 1,
                         {"took": take, "taken": taken, "dropped": [e["id"] for e in held if e["id"] not in taken],
                          "conflicts": [c["message"] for c in st["conflicts"]]})
        tx.record([draft])
    state_path(repo).unlink(missing_ok=True)
    subprocess.run(["git", "add", "--", st["path"]], cwd=repo.root, check=True)
    op = _operation(repo)
    env = {**os.environ, "GIT_EDITOR": "true"}
    if op == "merge":
        subprocess.run(["git", "commit", "--no-edit", "-q"], cwd=repo.root, check=True, env=env)
    elif op in ("rebase", "cherry-pick"):
        proc = subprocess.run(["git", op, "--continue"], cwd=repo.root, env=env, capture_output=True, text=True)
        if proc.returncode != 0 and pending(repo) is None:
            raise Refused(f"git {op} --continue: {proc.stderr.strip() or proc.stdout.strip()}")
    return {"took": take, "taken": taken, "dropped": [e["id"] for e in held if e["id"] not in taken],
            "git": op, "next_conflicts": pending(repo)}


def _as_changes(e: dict) -> list:
    from metaforge.thread.commands import Change

    kind, entity, p = e["type"], e["entity"], e.get("payload") or {}
    if kind == ev.NODE_CREATED:
        return [Change("set", entity, props=p.get("properties") or {})]
    if kind == ev.PROPERTY_SET:
        return [Change("set", entity, props={p["key"]: p["value"]})] if p["value"] is not None else []
    if kind == ev.NODE_UPDATED:
        out = [Change("set", entity, props=p["set"])] if p.get("set") else []
        return out + ([Change("unset", entity, keys=list(p["unset"]))] if p.get("unset") else [])
    if kind == ev.NODE_DELETED:
        return [Change("remove", entity)]
    if kind == ev.EDGE_CREATED:
        return [Change("link", entity, rel=p["rel"], dst=p["to"])]
    if kind == ev.EDGE_DELETED:
        return [Change("unlink", entity, rel=p["rel"], dst=p["to"])]
    return []


def abort(repo) -> str | None:
    import subprocess

    op = _operation(repo)
    state_path(repo).unlink(missing_ok=True)
    if op:
        subprocess.run(["git", op, "--abort"], cwd=repo.root, check=True, capture_output=True)
    return op


def preview(repo, branch: str) -> dict:
    """What merging BRANCH into HEAD would do to the twin, computed from git's objects."""
    from metaforge.repo import git
    from metaforge.thread.diff import Side, read_segments

    head = git(["rev-parse", "HEAD"], cwd=repo.root)
    other = git(["rev-parse", "-q", "--verify", f"{branch}^{{commit}}"], cwd=repo.root, check=False)
    if not other:
        raise BadInput(f"unknown branch or commit '{branch}'")
    base = git(["merge-base", head, other], cwd=repo.root, check=False)
    segs = [read_segments(repo, Side("", rev)) if rev else {} for rev in (base, head, other)]
    names = sorted(set().union(*segs))
    last = names[-1] if names else None
    if last is None:
        return {"branch": branch, "clean": True, "kept": 0, "replayed": 0, "duplicates": [], "conflicts": []}
    earlier = [segs[1][n] for n in names[:-1] if n in segs[1]]
    for n in names[:-1]:
        if len({s.get(n) for s in segs}) > 1:
            raise Refused(f"segment {n} differs between the sides, not only the last one (was the log sealed?)")
    out = merge_logs(repo, segs[0].get(last, b""), segs[1].get(last, b""), segs[2].get(last, b""), earlier)
    return {"branch": branch, "base": base, **out.summary(),
            "replayed_events": [{k: e.get(k) for k in ("seq", "type", "entity", "actor", "msg")} for e in out.replayed]}


def install(repo) -> dict:
    """Register the merge driver: .gitattributes (committed) and this clone's git config."""
    import shlex
    import sys

    from metaforge.repo import git

    attributes = repo.root / ".gitattributes"
    line = ".metaforge/events/*.jsonl merge=mf-events"
    text = attributes.read_text() if attributes.exists() else ""
    if line not in text.splitlines():
        attributes.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
    driver = f"{shlex.quote(sys.executable)} -m metaforge merge-driver %O %A %B %P"
    git(["config", "merge.mf-events.name", "mf event log merge (keeps ours, replays theirs, re-chained)"],
        cwd=repo.root)
    git(["config", "merge.mf-events.driver", driver], cwd=repo.root)
    return {"gitattributes": str(attributes), "driver": driver}
