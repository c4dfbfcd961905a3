"""`mf verify`: the log checks itself (hash chain, seq continuity, segment layout, torn tail),
then the index is checked as a file (SQLite's quick_check) and compared with a fresh fold of the
whole log.

`--repair` cuts an incomplete final line and nothing else. If the index or git's HEAD hold
complete events past the cut (the log was cut short, not torn by a crash), it refuses, saying how
many, which seq range and whether git holds them; `--repair --force` drops them anyway and keeps
what it cut in `.metaforge/cut/` (the bytes, and a summary of what was lost).
"""

from __future__ import annotations

import json
import time

import orjson

from metaforge.batch import no_gc
from metaforge.errors import LogCorrupt, Refused, UnknownFormat
from metaforge.events import check_hash
from metaforge.store.log import Position
from metaforge.graph import GraphState


def verify(repo, repair: bool = False, progress=None, force: bool = False) -> dict:
    report: dict = {"ok": True, "events": 0, "segments": 0, "problems": [], "repaired": None, "index": None}
    from metaforge.thread.transaction import maintenance

    with maintenance(repo), no_gc():
        if repair:
            report["repaired"] = _repair(repo, force)
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
            report["problems"].append({"kind": "unknown_format" if isinstance(exc, UnknownFormat) else "log",
                                       "message": exc.message, "hint": exc.hint})
        report["events"] = n
        report["segments"] = len(repo.log.segments())
        if reader.torn:
            t = reader.torn
            lost = _held_beyond(repo, reader.position)
            report["problems"].append({
                "kind": "torn_tail",
                "message": f"{repo.log.display(t.segment)}:{t.line}: torn last line ({t.size - t.keep} bytes without an end)"
                           + (f"; {_describe(lost)}" if lost else ""),
                "hint": _restore_hint(repo, lost) if lost else "run `mf verify --repair` to drop the torn tail",
                **({"lost": lost} if lost else {})})
        if not report["problems"]:
            lost = _held_beyond(repo, reader.position)
            if lost:
                report["problems"].append({"kind": "cut", "message": f"{repo.log.display(lost['segment'])}: "
                                           f"the log ends at seq {reader.position.seq}; {_describe(lost)}",
                                           "hint": _restore_hint(repo, lost), "lost": lost})
        if not report["problems"]:
            report["head"] = {"seq": reader.position.seq, "hash": reader.position.hash}
            damage = repo.index.damage()
            if damage:
                repo.index.recover(repo.log)
            report["index"] = _check_index(repo, state, reader.position)
            for notice in ([f".metaforge/index.db is damaged ({damage})"] if damage else []) + repo.index_notices():
                report["problems"].append({"kind": "index_damaged", "message": notice.split(": moved aside")[0]
                                           + ": moved aside to index.db.damaged and rebuilt from the log",
                                           "hint": "nothing more to do: the index is derived"})
            if report["index"] != "agrees":
                report["problems"].append({"kind": "index", "message": report["index"],
                                           "hint": "run `mf rebuild`"})
    report["ok"] = not report["problems"]
    return report


# ---- repair: an incomplete final line, and nothing that was complete -------------------------------

def _repair(repo, force: bool) -> dict | None:
    log = repo.log
    reader = log.read(stop_at_torn=True)
    for _ in reader:  # a damaged middle raises here: repair never touches it
        pass
    kept, torn = reader.position, reader.torn
    lost = _held_beyond(repo, kept)
    if lost and not force:
        where = f"{log.display(torn.segment)}:{torn.line}" if torn else log.display(lost["segment"])
        raise Refused(f"{where}: refusing to repair: {_describe(lost)}; cutting here would drop them",
                      _restore_hint(repo, lost) + ", or drop them with `mf verify --repair --force`",
                      {"lost": lost})
    if torn is None and not lost:
        return None
    cut = b""
    if torn is not None:
        path = log.path(torn.segment)
        with open(path, "rb") as f:
            f.seek(torn.keep)
            cut = f.read()
        log.cut(torn.segment, torn.keep)
    out = {"file": log.display(torn.segment if torn else lost["segment"]), "line": torn.line if torn else None,
           "bytes_dropped": len(cut), "events_dropped": lost}
    if lost or cut:
        out["record"] = _record_cut(repo, out, cut)
    if lost:
        repo.index.rebuild(log)  # the index held the dropped events: it follows the log now
    return out


def _held_beyond(repo, end: Position) -> dict | None:
    """Complete events past `end` that the index or git's HEAD holds: {count, first, last, git,
    index, segment}, or None. The index says how far the log went; git says whether it can be had back."""
    try:
        indexed = repo.index.position().seq
    except Exception:  # a damaged index knows nothing: git alone decides
        indexed = 0
    seg = end.segment or 1
    committed = repo.log.committed(seg)
    try:
        if committed is not None and repo.log.path(seg).read_bytes() == committed:
            return None  # the segment is what git holds: checked out or reset, not cut
    except FileNotFoundError:
        pass
    in_git = _continues(committed, end) if committed else 0
    if in_git > end.seq and indexed <= end.seq and _accepted(repo, seg, end.seq + 1):
        in_git = 0  # a `--repair --force` dropped these on purpose, and recorded it
    last = max(indexed, in_git)
    if last <= end.seq:
        return None
    return {"count": last - end.seq, "first": end.seq + 1, "last": last, "segment": seg,
            "index": indexed > end.seq, "git": in_git >= last, "git_last": in_git}


def _accepted(repo, seg: int, first: int) -> bool:
    """Has a forced repair recorded dropping the events of `seg` from seq `first` on?"""
    for record in sorted((repo.mfdir / "cut").glob("*.json")):
        try:
            lost = json.loads(record.read_text()).get("events_dropped") or {}
        except (OSError, ValueError):
            continue
        if lost.get("segment") == seg and lost.get("first") == first:
            return True
    return False


def _continues(data: bytes, end: Position) -> int:
    """The last seq of git's copy of the segment if the log, up to `end`, is a prefix of it (the
    same event at end.seq); 0 if git's copy is another history (or holds nothing more)."""
    lines = data.rstrip(b"\n").split(b"\n") if data.strip() else []
    same = end.seq == 0
    last = 0
    for line in lines:
        try:
            d = orjson.loads(line)
        except ValueError:
            continue
        if not isinstance(d, dict) or type(d.get("seq")) is not int:
            continue
        last = d["seq"]
        if last == end.seq:
            same = check_hash(line) == end.hash
    return last if same else 0


def _describe(lost: dict) -> str:
    rng = f"seq {lost['first']}" + (f"..{lost['last']}" if lost["last"] > lost["first"] else "")
    who = " and ".join(w for w, held in (("the index", lost["index"]), ("git HEAD", lost["git_last"] >= lost["first"]))
                       if held)
    return f"{lost['count']} complete event(s) ({rng}) that {who} held are missing from the log"


def _restore_hint(repo, lost: dict) -> str:
    path = f"{repo.log.rel}/{lost['segment']:06d}.jsonl"
    if lost["git"]:
        return f"git HEAD holds them: restore with `git checkout HEAD -- {path}`"
    if lost["git_last"] >= lost["first"]:
        return (f"git HEAD holds seq {lost['first']}..{lost['git_last']} (`git show HEAD:{path}`); "
                "the rest only the index listed")
    return "git HEAD does not hold them (not committed)"


def _record_cut(repo, summary: dict, cut: bytes) -> str:
    """Keep what a repair cut in `.metaforge/cut/` (untracked: git status shows it until looked at)."""
    folder = repo.mfdir / "cut"
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (folder / f"{stamp}.bytes").write_bytes(cut)
    (folder / f"{stamp}.json").write_text(json.dumps({**summary, "cut_bytes": f"{stamp}.bytes",
                                                      "at": stamp}, indent=2) + "\n")
    return f".metaforge/cut/{stamp}.json"


def _check_index(repo, state: GraphState, end: Position) -> str:
    index = repo.index
    try:
        index.sync(repo.log, locked=True)
    except LogCorrupt as exc:
        return exc.message
    pos = index.position()
    if (pos.seq, pos.hash) != (end.seq, end.hash):
        return f"index is at seq {pos.seq}, the log at {end.seq}"
    expected = {nid: n for nid, n in state.nodes.items() if n is not None}
    seen = 0
    for node in index.all_nodes(include_deleted=True):
        n = expected.get(node.id)
        seen += 1
        if n is None:
            return f"index has {node.id}, which the log never created"
        if (node.type, node.version, node.created_seq, node.updated_seq, node.deleted, node.props) != \
                (n.type, n.version, n.created_seq, n.updated_seq, n.deleted, n.props):
            return f"index disagrees with the log on {node.id}"
    if seen != len(expected):
        return f"index has {seen} entities, the log {len(expected)}"
    edges = {e for e, info in state.edges.items() if info is not None}
    indexed = set(index.all_edges())
    if edges != indexed:
        diff = sorted(edges ^ indexed)[0]
        return f"index disagrees with the log on edge {' '.join(diff)}"
    count = index.event_rows()
    if count != (end.seq, end.seq):
        return f"index lists {count[0]} events, the log {end.seq}"
    return "agrees"
