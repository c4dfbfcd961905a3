"""`mf diff`: the semantic difference between the twin at two commits (or a commit and the
working tree): entities, properties with units, relationships, constraint verdicts and their
margins, and the events that made the change with who made them and why.

The log of each side is read straight from git's objects, laid out in a temporary directory and
projected with the ordinary index code. When one side's log extends the other's (the usual
A..B), the second index is the first one caught up, not a second rebuild.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

from metaforge.errors import BadInput
from metaforge.repo import git

EVENTS = ".metaforge/events"


@dataclass
class Side:
    label: str
    rev: str | None  # a commit id; None for the working tree


def resolve(repo, spec: list[str]) -> tuple[Side, Side]:
    """git's meanings: none → merge base with main against the working tree; A → A against the
    working tree; A B and A..B → A against B; A...B → the merge base of A and B against B."""
    if len(spec) > 2:
        raise BadInput("mf diff takes at most two revisions")
    if len(spec) == 2:
        return _side(repo, spec[0]), _side(repo, spec[1])
    if len(spec) == 1:
        text = spec[0]
        if "..." in text:
            a, b = text.split("...", 1)
            b = b or "HEAD"
            base = git(["merge-base", a or "HEAD", b], cwd=repo.root)
            return Side(f"merge-base({a or 'HEAD'}, {b})", base), _side(repo, b)
        if ".." in text:
            a, b = text.split("..", 1)
            return _side(repo, a or "HEAD"), _side(repo, b or "HEAD")
        return _side(repo, text), Side("working tree", None)
    main = next((b for b in ("main", "master") if git(["rev-parse", "-q", "--verify", f"refs/heads/{b}"],
                                                         cwd=repo.root, check=False)), None)
    head = git(["rev-parse", "-q", "--verify", "HEAD"], cwd=repo.root, check=False)
    if not head:
        return Side("(no commit)", "EMPTY"), Side("working tree", None)
    if main:
        base = git(["merge-base", main, "HEAD"], cwd=repo.root, check=False) or head
        return Side(f"merge-base({main}, HEAD)" if base != head else "HEAD", base), Side("working tree", None)
    return Side("HEAD", head), Side("working tree", None)


def _side(repo, rev: str) -> Side:
    sha = git(["rev-parse", "-q", "--verify", f"{rev}^{{commit}}"], cwd=repo.root, check=False)
    if not sha:
        raise BadInput(f"unknown revision '{rev}'", "a branch, tag or commit, as git names it")
    return Side(rev, sha)


def read_segments(repo, side: Side) -> dict[str, bytes]:
    """The event log's files at a commit (from git's objects) or in the working tree."""
    if side.rev == "EMPTY":
        return {}
    if side.rev is None:
        folder = repo.root / EVENTS
        return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}
    listing = subprocess.run(["git", "ls-tree", "-r", "-z", side.rev, "--", EVENTS + "/"], cwd=repo.root,
                             capture_output=True, check=True).stdout
    entries = []
    for item in listing.split(b"\0"):
        if item:
            meta, path = item.split(b"\t", 1)
            if path.endswith(b".jsonl"):
                entries.append((os.path.basename(path.decode()), meta.split()[2].decode()))
    if not entries:
        return {}
    batch = subprocess.run(["git", "cat-file", "--batch"], cwd=repo.root, capture_output=True, check=True,
                           input="".join(f"{sha}\n" for _, sha in entries).encode()).stdout
    out, pos = {}, 0
    for name, _ in entries:
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        out[name] = batch[header_end + 1: header_end + 1 + size]
        pos = header_end + 1 + size + 1
    return out


def _project(segments: dict[str, bytes], folder: Path, seed: Path | None):
    """An index of these segments in `folder`, caught up from `seed` (an earlier index) if given."""
    from metaforge.store.index import GraphIndex
    from metaforge.store.log import EventLog

    mfdir = folder / ".metaforge"
    (mfdir / "events").mkdir(parents=True)
    for name, data in segments.items():
        (mfdir / "events" / name).write_bytes(data)
    if seed is not None:
        shutil.copyfile(seed, mfdir / "index.db")
    log, index = EventLog(mfdir), GraphIndex(mfdir / "index.db")
    with log.lock():
        index.sync(log, locked=True)
    return index


def compute(repo, a: Side, b: Side) -> dict:
    from metaforge.thread.constraints.engine import check_all

    seg_a, seg_b = read_segments(repo, a), read_segments(repo, b)
    with tempfile.TemporaryDirectory(prefix="mf-diff-") as tmp:
        index_a = _project(seg_a, Path(tmp) / "a", None)
        index_a.checkpoint()
        if b.rev is None:
            repo.sync_warnings()
            index_b = repo.index
        else:
            index_b = _project(seg_b, Path(tmp) / "b", index_a.path)
        out = {
            "a": {"label": a.label, "rev": a.rev, "semantic_version": index_a.position().seq},
            "b": {"label": b.label, "rev": b.rev, "semantic_version": index_b.position().seq},
            "entities": _entities(index_a, index_b),
            "edges": _edges(index_a, index_b),
            "constraints": _verdicts(check_all(index_a, repo.types), check_all(index_b, repo.types)),
            "events": _events(seg_a, seg_b),
        }
        index_a.close()
        if index_b is not repo.index:
            index_b.close()
    ents, edges = out["entities"], out["edges"]
    out["differs"] = bool(ents["added"] or ents["removed"] or ents["changed"] or edges["added"]
                          or edges["removed"] or out["constraints"])
    return out


def _nodes(index) -> dict[str, tuple]:
    """Live entities: id → (type, properties, their canonical JSON to compare cheaply)."""
    dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
    return {n.id: (n.type, n.props, dumps(n.props, option=sort)) for n in index.live_nodes()}


def _entities(index_a, index_b) -> dict:
    a, b = _nodes(index_a), _nodes(index_b)
    added = [{"id": i, "type": b[i][0], "properties": b[i][1]} for i in sorted(b.keys() - a.keys())]
    removed = [{"id": i, "type": a[i][0], "properties": a[i][1]} for i in sorted(a.keys() - b.keys())]
    changed = []
    for i in sorted(a.keys() & b.keys()):
        if a[i][2] == b[i][2]:
            continue
        before, after = a[i][1], b[i][1]
        props = {k: {"before": before.get(k), "after": after.get(k)}
                 for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)}
        changed.append({"id": i, "type": a[i][0], "properties": props})
    return {"added": added, "removed": removed, "changed": changed}


def _edges(index_a, index_b) -> dict:
    a, b = set(index_a.all_edges()), set(index_b.all_edges())
    return {"added": [list(e) for e in sorted(b - a)], "removed": [list(e) for e in sorted(a - b)]}


def _verdicts(before: list, after: list) -> list[dict]:
    old = {v.constraint: v for v in before}
    new = {v.constraint: v for v in after}
    out = []
    for cid in sorted(old.keys() | new.keys()):
        x, y = old.get(cid), new.get(cid)
        if x and y and (x.status, x.message, x.margin) == (y.status, y.message, y.margin):
            continue
        brief = lambda v: None if v is None else {"status": _status(v), "message": v.message,
                                                  "margin": v.margin, "headroom": v.headroom}
        out.append({"constraint": cid, "before": brief(x), "after": brief(y)})
    return out


def _status(v) -> str:
    return "pass" if v.status == "pass" else ("warn" if v.severity == "warning" else v.status)


def _events(seg_a: dict[str, bytes], seg_b: dict[str, bytes]) -> dict:
    """Events of B that A lacks (and of A that B lacks, when the two have diverged), by id."""
    lines_a = b"".join(seg_a[k] for k in sorted(seg_a)).splitlines()
    lines_b = b"".join(seg_b[k] for k in sorted(seg_b)).splitlines()
    common = 0
    for x, y in zip(lines_a, lines_b):
        if x != y:
            break
        common += 1
    keep = ("seq", "id", "type", "entity", "version", "ts", "actor", "msg")
    brief = lambda line: {k: v for k, v in orjson.loads(line).items() if k in keep}
    return {"common": common, "added": [brief(x) for x in lines_b[common:]],
            "dropped": [brief(x) for x in lines_a[common:]]}


# ---- markdown, ready to post as a pull request comment ---------------------------------------

def to_markdown(d: dict, max_events: int = 50) -> str:
    from metaforge.thread.units import format_quantity

    def val(v) -> str:
        if v is None:
            return "—"
        if isinstance(v, dict) and set(v) == {"value", "unit"}:
            return format_quantity(v)
        return ", ".join(map(str, v)) if isinstance(v, list) else str(v)

    ents, edges, cons, evs = d["entities"], d["edges"], d["constraints"], d["events"]
    lines = [f"### Twin changes: `{d['a']['label']}` → `{d['b']['label']}` "
             f"(semantic version {d['a']['semantic_version']} → {d['b']['semantic_version']})", ""]
    if not d["differs"]:
        return "\n".join(lines + ["No semantic difference."]) + "\n"
    lines.append(f"**{len(ents['changed'])} changed, {len(ents['added'])} added, {len(ents['removed'])} removed "
                 f"entities · {len(edges['added'])} relationships added, {len(edges['removed'])} removed · "
                 f"{len(cons)} constraint verdicts changed · {len(evs['added'])} events**")
    if cons:
        lines += ["", "#### Constraints", "", "| constraint | before | after |", "|---|---|---|"]
        for c in cons:
            lines.append(f"| {c['constraint'].split(':', 1)[1]} | {_verdict_md(c['before'])} | {_verdict_md(c['after'])} |")
    if ents["changed"]:
        lines += ["", "#### Changed", "", "| entity | property | before | after |", "|---|---|---|---|"]
        for e in ents["changed"]:
            for k, ch in e["properties"].items():
                lines.append(f"| {e['id']} | {k} | {val(ch['before'])} | {val(ch['after'])} |")
    for title, items in (("Added", ents["added"]), ("Removed", ents["removed"])):
        if items:
            lines += ["", f"#### {title}", ""]
            lines += [f"- `{e['id']}` " + ", ".join(f"{k}={val(v)}" for k, v in sorted(e["properties"].items()))
                      for e in items]
    if edges["added"] or edges["removed"]:
        lines += ["", "#### Relationships", ""]
        lines += [f"- added `{s}` {r} `{t}`" for s, r, t in edges["added"]]
        lines += [f"- removed `{s}` {r} `{t}`" for s, r, t in edges["removed"]]
    if evs["added"]:
        lines += ["", f"#### Events ({len(evs['added'])})", ""]
        for e in evs["added"][:max_events]:
            why = f" — {e['msg']}" if e.get("msg") else ""
            lines.append(f"- `#{e['seq']}` {e['type']} `{e['entity']}` v{e['version']} by {e['actor']}{why}")
        if len(evs["added"]) > max_events:
            lines.append(f"- … and {len(evs['added']) - max_events} more")
    return "\n".join(lines) + "\n"


def _verdict_md(v) -> str:
    if v is None:
        return "—"
    mark = {"pass": "✅", "warn": "⚠️"}.get(v["status"], "❌")
    text = v["message"].split(": ", 1)[1] if ": " in v["message"] else v["message"]
    margin = f" (margin {v['margin'] * 100:.0f} %)" if v.get("margin") is not None else \
        (f" (headroom {v['headroom']})" if v.get("headroom") else "")
    return f"{mark} {text}{margin}"
