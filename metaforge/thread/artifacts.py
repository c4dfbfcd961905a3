"""The artifact state: files read into the graph (`mf ingest PATH`) and written from it (`mf project`).

Ingest runs the adapter that owns each file and lands what it read as one atomic batch: the
entity changes, plus one `artifact.mapped` event per file (its sha256, adapter and version, and
where in it each entity lives: the ArtifactMappings). A file whose content and adapter version
match its last mapping is not parsed again, so ingesting unchanged files appends nothing.

Projection writes the graph's values into the files whose entities changed since they were last
mapped, commits exactly those files, and appends the StateLink (`state.linked`: semantic version
↔ git commit) with the files' new mappings.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaforge import events as ev
from metaforge.errors import BadInput, Refused

SKIP_DIRS = {".git", ".metaforge", ".venv", "node_modules", "__pycache__"}
# set for the git commits mf makes itself (it holds the log lock meanwhile): mf's own git hooks
# stand aside for them, since the command checks and records its own commit
MF_COMMIT_ENV = "MF_COMMIT"


@dataclass
class FileOutcome:
    rel: str
    adapter: str
    status: str  # read | unchanged | refused | projected | current | proposed (its content waits for approval)
    entities: int = 0
    error: str | None = None
    proposal: str | None = None
    sha256: str | None = None
    mappings: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the adapter could not do (no GLB, a model left out)

    def as_dict(self) -> dict:
        out = {"path": self.rel, "adapter": self.adapter, "status": self.status, "entities": self.entities}
        if self.error:
            out["error"] = self.error
        if self.notes:
            out["notes"] = self.notes
        if self.proposal:
            out["proposal"] = self.proposal
        return out


def _adapter_notes(result, rel: str) -> list[str]:
    """The adapter's warnings and its 3D manifest's, each naming the file once."""
    found = list(result.extra.get("warnings") or []) + list((result.extra.get("manifest") or {}).get("warnings") or [])
    return [w if w.startswith(rel) else f"{rel}: {w}" for w in found]


def collect(repo, paths: list[Path], adapter_name: str | None = None,
            companions: bool = False) -> list[tuple[Path, str, Any]]:
    """(absolute path, repository-relative posix path, adapter) of every file an adapter owns;
    with `companions`, a file named alone brings the files read with it (a root's sheets)."""
    from metaforge.adapters import registry

    chosen = registry.get(adapter_name) if adapter_name else None
    out: dict[str, tuple] = {}
    root = repo.root.resolve()
    for given in paths:
        path = _real(Path(given), given)
        if not path.exists():
            raise BadInput(f"{given}: no such file or folder")
        try:
            path.relative_to(root)
        except ValueError:
            raise BadInput(f"{given}: outside the repository {root}", "copy or move it into the repository") from None
        files = [path] if path.is_file() else sorted(
            Path(d) / f for d, dirs, names in os.walk(path)
            for _ in [dirs.__setitem__(slice(None), sorted(x for x in dirs if x not in SKIP_DIRS))]
            for f in names)
        for f in files:
            if f.is_symlink():
                _real(f, f.relative_to(root).as_posix())  # a loop among the folder's links is named, not an internal error
            rel = f.relative_to(root).as_posix()
            adapter = chosen if chosen and chosen.owns(rel) else None if chosen else registry.for_file(rel)
            if adapter is None:
                if path.is_file():
                    raise BadInput(f"{given}: no adapter reads this kind of file",
                                   "adapters: " + ", ".join(f"{a.name} ({' '.join(a.patterns)})"
                                                            for a in registry.adapters().values()))
                continue
            out[rel] = (f, rel, adapter)
            if companions and path.is_file():
                _add_companions(adapter, f, root, out)
    return [out[k] for k in sorted(out)]


def _real(path: Path, given) -> Path:
    try:
        return path.resolve(strict=path.is_symlink())
    except RuntimeError:
        raise BadInput(f"{given}: a symbolic link loop", "point the link at a real file or remove it") from None
    except OSError as exc:
        raise BadInput(f"{given}: {exc.strerror or exc}") from None


def _add_companions(adapter, path: Path, root: Path, out: dict) -> None:
    """A root schematic named alone brings its sheets (in sub-folders too): read apart, they
    would name sheets the graph does not have."""
    from metaforge.adapters import registry

    for other in adapter.companions(path):
        try:
            rel = other.resolve().relative_to(root).as_posix()
        except ValueError:
            continue  # a sheet outside the repository: its root's links to it are refused when read
        owner = registry.for_file(rel)
        if owner is not None:
            out.setdefault(rel, (other.resolve(), rel, owner))


def _parse(adapter, path: Path, rel: str, root: Path):
    if "root" in inspect.signature(adapter.parse).parameters:  # adapters that write derived files (GLB)
        return adapter.parse(path, rel, root=root)
    return adapter.parse(path, rel)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mapping_draft(rel: str, adapter, sha: str, how: str, mappings: list[dict]) -> ev.Draft:
    return ev.Draft(ev.ARTIFACT_MAPPED, f"Artifact:{rel}", 1,
                    {"path": rel, "adapter": adapter.name, "adapter_version": adapter.version, "sha256": sha,
                     "how": how, "mappings": mappings})


def ingest(repo, paths: list[Path], *, actor: str, message: str | None = None, adapter: str | None = None,
           keep_going: bool = False, dry_run: bool = False, progress=None, file_wins: bool = False,
           also: list[ev.Draft] | None = None, source=None) -> dict:
    """Read files into the graph as one batch; see the module docstring.

    `file_wins` (accepting a drifted file): read even an unchanged file, and let every value it
    states win, also those it only reports. `also`: records to append in the same batch. What a
    person's file breaks lands with warnings; a change an approval rule covers becomes a proposal
    (`out["proposal"]`) and the files stay unmapped, so drifted, until it is decided.
    """
    from metaforge.adapters.base import AdapterError
    from metaforge.thread.commands import refuse_if_blocked
    from metaforge.thread.policy import REFUSE, Source

    source = source or Source.INGEST
    files = collect(repo, paths, adapter, companions=not file_wins)  # accepting a file reads that file only
    if not files:
        raise BadInput("no file here that an adapter reads", "KiCad .kicad_sch/.kicad_pcb, BOM *bom*.csv, STEP .step/.stp")
    outcomes: list[FileOutcome] = []
    parsed = []
    repo.index.sync(repo.log, locked=False)
    waiting = repo.index.files_awaiting_approval()
    for i, (path, rel, ad) in enumerate(files):
        try:
            data = path.read_bytes()
        except OSError as exc:
            if not keep_going:
                raise BadInput(f"{rel}: cannot read the file: {exc.strerror or exc}") from None
            outcomes.append(FileOutcome(rel, ad.name, "refused", error=f"cannot read the file: {exc.strerror or exc}"))
            continue
        sha = _sha(data)
        last = repo.index.artifact(rel)
        if last and (last.sha256, last.adapter, last.adapter_version) == (sha, ad.name, ad.version) and not file_wins:
            outcomes.append(FileOutcome(rel, ad.name, "unchanged", sha256=sha))
        elif waiting.get(rel, ("",))[0] == sha and not file_wins:  # read in already, waiting for approval
            outcomes.append(FileOutcome(rel, ad.name, "proposed", sha256=sha, proposal=waiting[rel][1]))
        else:
            try:
                result = _parse(ad, path, rel, repo.root)
                _refuse_inconsistent(result)
                if ad.name == "kicad_pcb":  # the board's 3D view for viewers (adapters/pcb_3d.py)
                    from metaforge.adapters import pcb_3d
                    pcb_3d.attach(result, path, rel, repo.root)
            except AdapterError as exc:
                if not keep_going:
                    raise
                outcomes.append(FileOutcome(rel, ad.name, "refused", error=exc.message))
            else:
                outcome = FileOutcome(rel, ad.name, "read", len(result.entities), sha256=sha,
                                      notes=_adapter_notes(result, rel))
                outcomes.append(outcome)
                parsed.append((outcome, ad, result))
        if progress:
            progress(i + 1, len(files))

    changes, mapped = _changes_for(repo, parsed, file_wins)
    out = {"files": [o.as_dict() for o in outcomes], "changes": 0, "appended": 0, "warnings": []}
    if not parsed:
        return out
    with repo.transaction(actor, source) as tx:
        # the graph may have moved while the files were parsed: plan on what it is now
        planned = tx.plan(changes, message or _message(parsed), dry_run=dry_run)
        if dry_run and tx.rule.on_violation == REFUSE:
            refuse_if_blocked(planned.result)  # say now what the real run would refuse
        result = tx.apply(planned, extra=mapped + list(also or []), proposal_records=mapped)
    out["warnings"] = result.warnings or ([v.message for v in result.verdicts if v.blocking] if dry_run else [])
    out["changes"] = len(result.drafts())
    if result.proposal:
        out["proposal"] = result.proposal
    elif not dry_run and tx.last_seq:
        out["appended"] = tx.last_seq - result.first_seq + 1
        out["version"] = tx.last_seq
    out["result"] = result
    return out


def _refuse_inconsistent(result) -> None:
    """A file that contradicts itself (a BOM row whose quantity is not its count of references) is
    not read into the graph; drift shows it as an item naming the row."""
    from metaforge.adapters.base import AdapterError

    bad = result.extra.get("inconsistent")
    if bad:
        eid, wrong = min(bad.items(), key=lambda item: item[1]["line"])  # the first row of the file
        raise AdapterError(result.rel, f"{wrong['message']} ({eid})", wrong["line"],
                           "make the quantity the number of references, or list the references")


def _message(parsed) -> str:
    names = [o.rel for o, _, _ in parsed]
    return f"ingested {names[0]}" if len(names) == 1 else f"ingested {len(names)} files"


def _changes_for(repo, parsed, file_wins: bool = False) -> tuple[list, list[ev.Draft]]:
    """Entity changes for what the files say, and one artifact.mapped draft per file."""
    from metaforge.thread.commands import Change

    # each property from the file that can write it wins over one that only reports it (a board's
    # footprint is the schematic's to change); a report-only value fills a gap, never overwrites
    values: dict[str, dict[str, tuple[Any, bool]]] = {}
    links: set[tuple[str, str, str]] = set()
    seen: set[str] = set()
    drafts = []
    for outcome, ad, result in parsed:
        read_only = set() if file_wins else set(result.extra.get("read_only_props") or ())
        for p in result.entities:
            seen.add(p.id)
            slot = values.setdefault(p.id, {})
            for key, value in p.props.items():
                writable = key not in read_only
                if key not in slot or (writable and not slot[key][1]):
                    slot[key] = (value, writable)
            for rel, dst in p.links:
                links.add((p.id, rel, dst))
    current = repo.index.props_of(sorted(values))
    links |= _links_in(repo, parsed, seen)
    changes = []
    after: dict[str, dict] = {}  # the graph's values once the batch lands
    for node_id in sorted(values):
        props = current.get(node_id)
        if props is None:
            changes.append(Change("add", node_id, props={k: v for k, (v, _) in values[node_id].items()}))
            after[node_id] = changes[-1].props
            continue
        update = {k: v for k, (v, writable) in values[node_id].items()
                  if (writable or k not in props) and props.get(k) != v}
        after[node_id] = {**props, **update}
        if update:
            changes.append(Change("set", node_id, props=update))
    for outcome, ad, result in parsed:
        outcome.mappings = mapping_entries(repo, result, after)
        drafts.append(_mapping_draft(outcome.rel, ad, outcome.sha256, "ingest", outcome.mappings))
    # what a file no longer holds, and no other file maps, is gone from the design
    read_paths = [o.rel for o, _, _ in parsed]
    index = repo.index
    for rel in read_paths:
        for entity in index.entities_in(rel):
            if entity in seen:
                continue
            if not index.mapped_elsewhere(entity, read_paths) and current.get(entity, 1) is not None:
                changes.append(Change("remove", entity))
    existing = index.edges_among(s for s, _, _ in links)
    for src, rel, dst in sorted(links - existing):
        changes.append(Change("link", src, rel=rel, dst=dst))
    return changes, drafts


def _links_in(repo, parsed, seen: set[str]) -> set[tuple[str, str, str]]:
    """Links a file asks for from entities other files hold (a component DESCRIBED_BY its 3D
    model, USES_COMPONENT its BOM rows): made where that entity is in the batch or the graph,
    left out where it is not (the board was not read in)."""
    wanted = {tuple(link) for _, _, result in parsed for link in result.extra.get("links_in") or ()}
    elsewhere = sorted({end for src, _, dst in wanted for end in (src, dst)} - seen)
    known = {k for k, v in repo.index.props_of(elsewhere).items() if v is not None} if elsewhere else set()
    have = seen | known
    return {w for w in wanted if w[0] in have and w[2] in have}


def mapping_entries(repo, result, graph: dict[str, dict | None]) -> list[dict]:
    """The ArtifactMappings of a parsed file. An entity also keeps the values the file only
    reports where they differ from the graph's (a board whose footprint is not its schematic's):
    drift compares the file with that, so a disagreement already there when mapped is no news."""
    from metaforge.thread.entities import validate_properties

    read_only = set(result.extra.get("read_only_props") or ())
    out = []
    for p in result.entities:
        entry = {"entity_id": p.id, "entity_type": p.id.split(":", 1)[0], "region": p.region, "line": p.line}
        graph_props = graph.get(p.id) or {}
        reports = {}
        for key in read_only & p.props.keys():
            if graph_props.get(key) == p.props[key]:
                continue
            try:
                value = validate_properties(entry["entity_type"], {key: p.props[key]}, repo.types)[key]
            except (BadInput, KeyError):
                value = p.props[key]
            if graph_props.get(key) != value:
                reports[key] = p.props[key]
        if reports:
            entry["reports"] = reports
        out.append(entry)
    return out


# ---- projection ---------------------------------------------------------------------------------

def project(repo, paths: list[Path] | None = None, *, actor: str, adapter: str | None = None,
            message: str | None = None, dry_run: bool = False) -> dict:
    """Write the graph into the files it owns, commit them, and link the version to the commit."""
    from metaforge.adapters import registry
    from metaforge.repo import git

    repo.index.sync(repo.log, locked=False)
    rows = [r[:5] for r in repo.index.artifacts()]
    if paths:
        wanted = {rel for _, rel, _ in collect(repo, paths, adapter)}
        rows = [r for r in rows if r[0] in wanted]
    if adapter:
        rows = [r for r in rows if r[1] == adapter]
    if not rows:
        raise BadInput("no file the graph owns here", "read files into the graph first: mf ingest PATH")
    _check_git(repo, [r[0] for r in rows])
    head_seq = repo.index.position().seq
    outcomes, writes = [], []
    for rel, name, _, sha, seq in rows:
        ad = registry.get(name)
        path = repo.root / rel
        if not path.exists():
            raise Refused(f"{rel}: the file is missing", "restore it (git checkout) or ingest what replaced it")
        entities = repo.index.entities_in(rel)
        if not repo.index.changed_since(entities, seq):
            outcomes.append(FileOutcome(rel, name, "current", len(entities)))
            continue
        data = path.read_bytes()
        if _sha(data) != sha:
            raise Refused(f"{rel} changed since it was last read into the graph (drift)",
                          f"read it in first (mf ingest {rel}) or put it back (git checkout -- {rel})")
        props = changed_props(repo, entities, seq)
        new, reread = ad.project_read(path, rel, props)  # one parse of the file per command
        if new == data:
            outcomes.append(FileOutcome(rel, name, "current", len(entities)))
            continue
        outcome = FileOutcome(rel, name, "projected", len(entities), sha256=_sha(new))
        outcomes.append(outcome)
        graph = {k: v for k, v in repo.index.props_of(entities).items() if v is not None}
        writes.append((path, rel, ad, data, new, outcome, (graph, reread)))
    out = {"semantic_version": head_seq, "files": [o.as_dict() for o in outcomes], "commit": None}
    if dry_run or not writes:
        return out
    from metaforge.thread.policy import Source

    with repo.transaction(actor, Source.RECORD) as tx:
        if tx.head.seq != head_seq:
            raise Refused("the graph changed while projecting", "run mf project again")
        rels = [w[1] for w in writes]
        try:
            for path, rel, ad, _, new, outcome, _ in writes:
                _write_atomic(path, new)
            for path, rel, ad, _, new, outcome, (props, reread) in writes:  # where each entity now is
                outcome.mappings = mapping_entries(repo, reread or _parse(ad, path, rel, repo.root), props)
            git(["add", "--", *rels], cwd=repo.root)
            git(["commit", "-q", "-m", message or f"mf project: semantic version {head_seq}",
                 "-m", "Files written from the twin by mf project:\n" + "\n".join(f"  {r}" for r in rels),
                 "--", *rels], cwd=repo.root, env={MF_COMMIT_ENV: "project"})
            commit = git(["rev-parse", "HEAD"], cwd=repo.root).strip()
        except BaseException as exc:  # the commit did not happen: put every file back, append nothing
            for path, rel, _, old, _, _, _ in writes:
                _write_atomic(path, old)
            git(["reset", "-q", "--", *rels], cwd=repo.root, check=False)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise Refused(f"projection failed, every file put back: {exc}", "nothing was committed or recorded") from None
        drafts = [_mapping_draft(rel, ad, o.sha256, "project", o.mappings) for _, rel, ad, _, _, o, _ in writes]
        drafts.append(ev.Draft(ev.STATE_LINKED, f"StateLink:{commit[:12]}", 1, {
            "semantic_version": head_seq, "git_commit": commit, "projected_at": ev.now(), "projected_by": actor,
            "artifacts": rels}, message or f"projected semantic version {head_seq}"))
        tx.record(drafts)
    out["commit"] = commit
    return out


def changed_props(repo, entities: list[str], seq: int) -> dict[str, dict]:
    """What projection writes into a file mapped at `seq`: for each of its live entities, only the
    properties a command changed since (a `fields` entry only for the fields that changed). A value
    the file holds differently from the graph without anyone changing it since (a board's value
    that disagreed with its schematic when read in) is the file's: projection leaves it alone."""
    nodes = repo.index.load_nodes(entities)
    out: dict[str, dict] = {}
    for eid in entities:
        node = nodes.get(eid)
        if node is None or node.deleted:
            continue
        out[eid] = {}
        if node.updated_seq <= seq:
            continue
        past = _props_at(repo, eid, seq)
        for key, value in node.props.items():
            then = past.get(key)
            if key == "fields" and isinstance(value, dict):
                before = then if isinstance(then, dict) else {}
                moved = {k: v for k, v in value.items() if before.get(k) != v}
                if moved:
                    out[eid]["fields"] = moved
            elif then != value:
                out[eid][key] = value
    return out


def _props_at(repo, entity: str, seq: int) -> dict:
    """An entity's properties as they were at `seq`, folded from its own events."""
    from metaforge.graph import GraphState

    state = GraphState()
    for e in repo.log.lines_at(repo.index.event_refs(entity=entity, upto=seq)):
        state.apply(e)
    node = state.nodes.get(entity)
    return {} if node is None or node.deleted else node.props


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.mf-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _check_git(repo, rels: list[str]) -> None:
    from metaforge.repo import git

    try:
        git(["rev-parse", "--git-dir"], cwd=repo.root)
    except Exception:
        raise Refused("not a git repository: mf project commits the files it writes", "git init") from None
    if git(["symbolic-ref", "-q", "HEAD"], cwd=repo.root, check=False).strip() == "":
        raise Refused("HEAD is detached: a projection commit would belong to no branch", "git switch BRANCH")
    dirty = git(["status", "--porcelain", "--", *rels], cwd=repo.root).strip()
    if dirty:
        first = dirty.splitlines()[0][2:].strip()  # git() strips the output: the first line's " M" lost its space
        raise Refused(f"{first} has uncommitted changes: projecting over them would mix them into the commit",
                      "commit or stash them, or read them in with mf ingest")


# ---- reading the links --------------------------------------------------------------------------

def where(repo, entity_id: str) -> list[dict]:
    """Where in which files an entity lives."""
    return [{"path": p, "region": r, "line": ln} for p, r, ln in repo.index.mappings_of(entity_id)]


def links(repo, limit: int = 20) -> list[dict]:
    return repo.index.state_links(limit)


def version_of_commit(repo, rev: str) -> dict | None:
    """The StateLink of a commit, or of its nearest ancestor that has one."""
    from metaforge.repo import git

    try:
        commits = git(["rev-list", "--max-count=500", rev], cwd=repo.root).split()
    except Exception:
        raise BadInput(f"'{rev}' is not a commit here") from None
    by_commit = {c: l for l in links(repo, limit=10_000) for c in [l["git_commit"]]}
    for distance, c in enumerate(commits):
        if c in by_commit:
            return {**by_commit[c], "commit": commits[0], "commits_after_link": distance}
    return None


def commit_of_version(repo, version: int) -> dict | None:
    """The newest StateLink at or before a semantic version: the commit holding its files."""
    seq = repo.index.state_link_at(version)
    if seq is None:
        return None
    return next(l for l in links(repo, limit=10_000) if l["seq"] == seq)
