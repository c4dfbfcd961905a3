"""Drift: where the files and the graph disagree, found at entity and property level.

Each file the graph maps (`artifact.mapped`: its sha256 and the seq it was mapped at) is
compared with the graph. A file whose content is what was mapped, and whose entities did not
change in the graph since, agrees without being parsed: the fast path a pre-commit hook takes.
Otherwise the adapter that owns it reads it, its values go through the graph's own validation
(so `10 uF` and `10uF` compare as the graph stores them), and each owned property that differs,
each element only one side has, is one drift item. Cosmetic edits (a moved symbol, reformatting)
change no property, so they are not drift.

Which side moved is told by the graph's value when the file was mapped (both agreed then, but
for values the file only reports, whose differences the mapping kept): the file moved (a person
edited it), the graph moved (mutations not projected yet), or both. A file that is gone is
drift too. Resolving it is `drift_resolve`'s; recording it live, `drift_watch`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaforge import events as ev
from metaforge.errors import BadInput

DETECTED, RESOLVED = ev.DRIFT_DETECTED, ev.DRIFT_RESOLVED


@dataclass
class Item:
    """One disagreement: a property both hold differently, or an element only one side has."""

    kind: str            # changed | added | removed
    entity: str
    direction: str       # file (the file moved) | graph (the graph moved) | both
    key: str | None = None
    graph: Any = None
    file: Any = None
    read_only: bool = False  # a value this file only reports: projection cannot write it here
    note: str | None = None  # what is wrong in the file there: "line 3: quantity 3 but 2 references (C1, C2)"

    def as_dict(self) -> dict:
        out = {"kind": self.kind, "entity": self.entity, "direction": self.direction}
        if self.kind == "changed":
            out.update(key=self.key, graph=self.graph, file=self.file)
        elif self.file is not None:
            out["file"] = self.file
        if self.read_only:
            out["read_only"] = True
        if self.note:
            out["note"] = self.note
        return out

    def line(self, rel: str) -> str:
        """`DesignElement:pic_programmer/C1.value: 100µF → 220uF in hw/x.kicad_sch`."""
        if self.kind == "added":
            return f"{self.entity} added in {rel}"
        if self.kind == "removed":
            return (f"{self.entity} removed from {rel}" if self.direction == "file"
                    else f"{self.entity} removed from the graph, still in {rel}")
        name, g, f = f"{self.entity}.{self.key}", show(self.graph), show(self.file)
        note = " (the file only reports it: fix it where it is owned)" if self.read_only else ""
        if self.note:
            note += f" ({self.note})"
        if self.direction == "file":
            return f"{name}: {g} → {f} in {rel}{note}"
        if self.direction == "graph":
            return f"{name}: {f} → {g} in the graph, not yet in {rel}{note}"
        return f"{name}: graph {g}, {rel} {f} (both changed){note}"


@dataclass
class FileDrift:
    path: str
    adapter: str
    direction: str       # file | graph | both | missing | unreadable
    items: list[Item] = field(default_factory=list)
    sha256: str | None = None          # the file's content now (None: missing)
    mapped_sha256: str | None = None   # its content when last mapped
    mapping_seq: int = 0
    error: str | None = None
    entities: int = 0                  # how many entities the graph maps to it
    proposal: str | None = None        # the pending proposal that holds the file's content

    @property
    def fingerprint(self) -> str:
        """The same disagreement gives the same print, however many saves or cosmetic edits."""
        body = [self.path, self.direction, self.error, [i.as_dict() for i in self.items]]
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def lines(self) -> list[str]:
        if self.direction == "missing":
            return [f"{self.path} is missing ({self.entities} entities mapped to it)"]
        if self.direction == "unreadable":
            return [f"{self.path} cannot be read: {self.error}"]
        waiting = [f"{self.path}: read in, waiting for approval in {self.proposal} (mf approve / mf reject)"] \
            if self.proposal else []
        return [i.line(self.path) for i in self.items] + waiting

    def as_dict(self) -> dict:
        return {"path": self.path, "adapter": self.adapter, "direction": self.direction,
                "fingerprint": self.fingerprint, "sha256": self.sha256, "mapped_sha256": self.mapped_sha256,
                "mapping_seq": self.mapping_seq, "entities": self.entities, "error": self.error,
                "items": [i.as_dict() for i in self.items], "summary": self.lines(),
                **({"proposal": self.proposal} if self.proposal else {})}


@dataclass
class Disagreement:
    """Two files that state one value differently (file ↔ file): a board's value or footprint
    that is not its schematic's. The owner's value is the graph's; the other file only reports
    its own, so no projection or ingest settles it silently: a person fixes one of the files."""

    entity: str
    key: str
    path: str            # the file that reports a value it does not own
    value: Any
    owner: str | None    # the file that owns it (None: no other file maps the entity)
    graph: Any

    def as_dict(self) -> dict:
        return {"entity": self.entity, "key": self.key, "direction": "files", "path": self.path,
                "value": self.value, "owner": self.owner, "graph": self.graph}

    def line(self) -> str:
        return f"{self.entity}.{self.key}: {show(self.graph)} in {self.owner or 'the graph'}, {show(self.value)} in {self.path}"


@dataclass
class Report:
    checked: int = 0
    parsed: int = 0
    drifts: list[FileDrift] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)  # files an adapter reads that the graph does not map
    # file ↔ file: kept apart from `drifts` (file ↔ graph), which hooks and the watcher act on; a
    # standing disagreement between two committed files must not block every commit
    between_files: list[Disagreement] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drifts and not self.between_files

    def as_dict(self, open_ids: dict[str, int] | None = None) -> dict:
        ids = open_ids or {}
        return {"ok": self.ok, "checked": self.checked, "parsed": self.parsed,
                "drifts": [{"id": ids.get(d.fingerprint), **d.as_dict()} for d in self.drifts],
                "between_files": [d.as_dict() for d in self.between_files],
                "untracked": self.untracked}


def show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, dict) and set(value) == {"value", "unit"}:
        from metaforge.thread.units import format_quantity

        return format_quantity(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# ---- which files --------------------------------------------------------------------------------

def rels_of(repo, paths: list[Path]) -> list[str]:
    """Repository-relative posix paths of what was typed (which may no longer exist)."""
    root = repo.root.resolve()
    out = []
    for given in paths:
        path = Path(given).absolute()
        try:
            rel = path.resolve().relative_to(root) if path.exists() else _relative(path, root)
        except ValueError:
            raise BadInput(f"{given}: outside the repository {root}") from None
        out.append("" if str(rel) == "." else rel.as_posix())
    return out


def _relative(path: Path, root: Path) -> Path:
    parent = path.parent.resolve() if path.parent.exists() else path.parent
    return (parent / path.name).relative_to(root)


def _select(repo, rels: list[str] | None) -> tuple[list[tuple], list[str]]:
    rows = repo.index.artifacts()
    if rels is None:
        return rows, []
    chosen, untracked = {}, []
    for rel in rels:
        hits = [r for r in rows if not rel or r[0] == rel or r[0].startswith(rel + "/")]
        for r in hits:
            chosen[r[0]] = r
        if hits:
            continue
        from metaforge.adapters import registry

        path = repo.root / rel
        if path.is_file() and registry.for_file(rel):
            untracked.append(rel)
        elif not path.exists():
            raise BadInput(f"{rel}: no such file, and the graph maps no file there")
    return [chosen[k] for k in sorted(chosen)], untracked


# ---- detection ----------------------------------------------------------------------------------

def detect(repo, rels: list[str] | None = None, *, locked: bool = False, settle: float = 0.0) -> Report:
    """Every drift among the mapped files (or those under `rels`). `settle`: wait this long and
    look again at a file that is missing or unreadable (an editor in the middle of a save)."""
    import time

    repo.index.sync(repo.log, locked=locked)
    rows, untracked = _select(repo, rels)
    moved = _entities_moved(repo)
    report = Report(checked=len(rows), untracked=untracked)
    hashes = ContentHashes(repo)
    waiting = repo.index.files_awaiting_approval()
    for row in rows:
        fd, parsed = check_file(repo, row, moved.get(row[0], 0), hashes)
        if fd is not None and settle and fd.direction in ("missing", "unreadable"):
            time.sleep(settle)
            fd, again = check_file(repo, row, moved.get(row[0], 0), hashes)
            parsed += again
        report.parsed += parsed
        if fd is not None:
            if waiting.get(fd.path, ("",))[0] == fd.sha256:
                fd.proposal = waiting[fd.path][1]
            report.drifts.append(fd)
    hashes.save()
    report.between_files = disagreements(repo, rows, report.drifts)
    return report


def disagreements(repo, rows: list, drifts: list[FileDrift]) -> list[Disagreement]:
    """The values files report differently from their owner (kept in each file's mapping), where
    the graph still holds the owner's value and the file has not moved that value since (that
    is file ↔ graph drift, in `drifts`)."""
    from metaforge.adapters import registry

    table = registry.adapters()
    moved = {(d.path, i.entity, i.key) for d in drifts for i in d.items}
    out: list[Disagreement] = []
    for row in rows:
        rel, name, seq = row[0], row[1], row[4]
        adapter = table.get(name)
        if adapter is None or not adapter.reports:
            continue
        ref = repo.index.event_refs(seq=seq)
        payload = repo.log.lines_at(ref)[0]["payload"] if ref else {}
        reports = {m["entity_id"]: m["reports"] for m in payload.get("mappings") or () if m.get("reports")}
        if not reports:
            continue
        graph = repo.index.props_of(sorted(reports))
        for eid in sorted(reports):
            props = graph.get(eid)
            if props is None:
                continue
            for key, value in normalized(repo, eid, reports[eid]).items():
                if (rel, eid, key) in moved or props.get(key) is None or props.get(key) == value:
                    continue
                owner = next((p for p, _, _ in repo.index.mappings_of(eid) if p != rel), None)
                out.append(Disagreement(eid, key, rel, reports[eid][key], owner, props.get(key)))
    return out


class ContentHashes:
    """The sha256 of files by their (size, mtime, ctime, inode), as git's index keeps them: a file
    not touched since it was last hashed is not read again. It lives in .metaforge/cache/ (git
    ignores it; deleting it costs one read of every file). A file changed within the last seconds
    is not trusted to the cache: a second save in the same clock tick would look untouched."""

    RACY_NS = 2_000_000_000

    def __init__(self, repo):
        self.path = repo.mfdir / "cache" / "drift-sha256.json"
        try:
            self.known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.changed = False

    def sha(self, rel: str, path: Path) -> str:
        """The file's sha256 (OSError when it cannot be read)."""
        import time

        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(rel)
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entry = self.known.get(rel)
        if entry and entry[0] == key:
            return entry[1]
        digest = sha256(path.read_bytes())
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > self.RACY_NS:
            self.known[rel] = [key, digest]
            self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self.known))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache: a read-only checkout just reads the files again


def _entities_moved(repo) -> dict[str, int]:
    """For each mapped file, the last seq at which one of its entities changed in the graph."""
    return repo.index.last_change_by_file()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_file(repo, row: tuple, moved_seq: int, hashes: ContentHashes | None = None) -> tuple[FileDrift | None, int]:
    """(the file's drift or None, 1 if it was parsed)."""
    from metaforge.adapters import registry
    from metaforge.adapters.base import AdapterError
    from metaforge.thread.artifacts import _parse

    rel, name, _, mapped_sha, seq, _ = row
    base = {"path": rel, "adapter": name, "mapped_sha256": mapped_sha, "mapping_seq": seq}
    path = repo.root / rel
    try:
        sha = (hashes or ContentHashes(repo)).sha(rel, path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return FileDrift(direction="missing", entities=len(repo.index.entities_in(rel)), **base), 0
    except OSError as exc:
        return FileDrift(direction="unreadable", error=exc.strerror or str(exc), **base), 0
    if sha == mapped_sha and moved_seq <= seq:
        return None, 0  # the content that was mapped, and the graph did not move since: agrees
    try:
        adapter = registry.get(name)
    except BadInput as exc:
        return FileDrift(direction="unreadable", sha256=sha, error=exc.message, **base), 0
    try:
        result = _parse(adapter, path, rel, repo.root)
    except AdapterError as exc:
        return FileDrift(direction="unreadable", sha256=sha, error=exc.message, **base), 1
    items = compare(repo, result, rel, seq, file_changed=sha != mapped_sha)
    _note_inconsistent(items, result)
    if not items:
        return None, 1
    directions = {i.direction for i in items}
    direction = directions.pop() if len(directions) == 1 else "both"
    return FileDrift(direction=direction, items=items, sha256=sha, entities=len(result.entities), **base), 1


def _note_inconsistent(items: list[Item], result) -> None:
    """A row that contradicts itself (a BOM's quantity against its references) is named on its item."""
    bad = result.extra.get("inconsistent") or {}
    for item in items:
        wrong = bad.get(item.entity)
        if wrong and item.key in (None, "quantity", "references"):
            item.note = f"line {wrong['line']}: {wrong['message']}"


def compare(repo, result, rel: str, seq: int, *, file_changed: bool) -> list[Item]:
    """The drift items between a parsed file and the graph (the file was mapped at `seq`)."""
    read_only = set(result.extra.get("read_only_props") or ())
    follows = set(result.extra.get("follows_props") or ())  # not owned, but projection writes them
    mapped = set(repo.index.entities_in(rel))
    in_file: dict[str, dict] = {}
    for p in result.entities:  # one id read twice (units of a symbol): the first value of each key
        slot = in_file.setdefault(p.id, {})
        for k, v in p.props.items():
            slot.setdefault(k, v)
    nodes = repo.index.load_nodes(sorted(set(in_file) | mapped))
    past = _PastValues(repo, seq)
    items: list[Item] = []
    for node_id in sorted(in_file):
        props = normalized(repo, node_id, in_file[node_id])
        node = nodes.get(node_id)
        if node is None or node.deleted:
            if node is not None and node_id in mapped and node.updated_seq > seq:
                items.append(Item("removed", node_id, "graph"))
            else:
                items.append(Item("added", node_id, "file", file=props))
            continue
        if node_id not in mapped:
            items.append(Item("added", node_id, "file", file=props))
        for key, value in props.items():
            now = node.props.get(key)
            if now == value:
                continue
            then = past.value(node_id, key) if node.updated_seq > seq else now
            # the file's value when mapped: the graph's then, unless it only reported one that differed
            was = past.reported(node_id, key, then) if key in read_only else then
            graph_moved, file_moved = then != now, file_changed and value != was
            direction = "both" if graph_moved and file_moved else "graph" if graph_moved else \
                "file" if file_moved else None
            if direction:  # neither moved: a disagreement already there when the file was mapped
                items.append(Item("changed", node_id, direction, key, now, value,
                                  key in read_only and key not in follows))
    for node_id in sorted(mapped - set(in_file)):
        node = nodes.get(node_id)
        if node is not None and not node.deleted:
            items.append(Item("removed", node_id, "file"))
    return items


def normalized(repo, node_id: str, props: dict) -> dict:
    """A file's values as the graph would store them (units, lists, JSON), or as read if invalid."""
    from metaforge.thread.entities import validate_properties

    type_name = node_id.split(":", 1)[0]
    if type_name not in repo.types:
        return props
    try:
        return validate_properties(type_name, props, repo.types)
    except BadInput:
        out = {}
        for k, v in props.items():  # keep the valid ones normalized; ingest will name the bad one
            try:
                out.update(validate_properties(type_name, {k: v}, repo.types))
            except BadInput:
                out[k] = v
        return out


class _PastValues:
    """An entity's properties at a past seq, folded from its own events (read through the index),
    and what the file mapped at that seq reported where it differed from the graph."""

    def __init__(self, repo, seq: int):
        self.repo, self.seq, self.cache = repo, seq, {}
        self.reports: dict[str, dict] | None = None

    def reported(self, node_id: str, key: str, default: Any) -> Any:
        if self.reports is None:
            ref = self.repo.index.event_refs(seq=self.seq)
            mapped = self.repo.log.lines_at(ref)[0]["payload"]["mappings"] if ref else []
            self.reports = {m["entity_id"]: m["reports"] for m in mapped if m.get("reports")}
        if key not in self.reports.get(node_id, {}):
            return default
        return normalized(self.repo, node_id, {key: self.reports[node_id][key]})[key]

    def value(self, node_id: str, key: str) -> Any:
        if node_id not in self.cache:
            from metaforge.graph import GraphState

            refs = self.repo.index.event_refs(entity=node_id, upto=self.seq)
            state = GraphState()
            for e in self.repo.log.lines_at(refs):
                state.apply(e)
            node = state.nodes.get(node_id)
            self.cache[node_id] = {} if node is None or node.deleted else node.props
        return self.cache[node_id].get(key)


# ---- the drifts the log holds open ---------------------------------------------------------------

def open_drifts(repo) -> dict[str, dict]:
    """path → {seq, fingerprint, payload} of each drift.detected not yet resolved."""
    return repo.index.open_drifts()


def detected_draft(fd: FileDrift) -> ev.Draft:
    lines = fd.lines()
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return ev.Draft(DETECTED, f"Artifact:{fd.path}", 1, fd.as_dict(), lines[0] + more if lines else None)


def resolved_draft(rel: str, how: str, opened: dict | None, fd: FileDrift | None = None, **extra) -> ev.Draft:
    payload = {"path": rel, "how": how, "drift": opened["seq"] if opened else None,
               "fingerprint": fd.fingerprint if fd else opened["fingerprint"] if opened else None,
               "items": [i.as_dict() for i in fd.items] if fd else None, **extra}
    return ev.Draft(RESOLVED, f"Artifact:{rel}", 1, payload, f"{rel}: drift resolved ({how})")
