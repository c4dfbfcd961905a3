"""Resolving a file's drift: accept the file (its values become a mutation by its author, in
Assistant Mode) or re-project the graph over it. Both append `drift.resolved` naming how."""

from __future__ import annotations

from pathlib import Path

from metaforge import events as ev
from metaforge.errors import BadInput, Refused
from metaforge.thread.drift import (FileDrift, Item, _select, detect, open_drifts, rels_of, resolved_draft,
                                    sha256)


def target_path(repo, target: str, cwd: str | Path | None = None) -> str:
    """A drift's id (the seq of its drift.detected, `812` or `#812`) or a path → the
    repository-relative path of the file."""
    if target.lstrip("#").isdigit():
        seq = int(target.lstrip("#"))
        path = repo.index.drift_path(seq)
        if path is None:
            raise BadInput(f"no open drift #{seq}", "mf drift reconcile lists the open ones; or name the file")
        return path
    return rels_of(repo, [Path(cwd or ".") / target])[0]


def resolve(repo, rel: str, *, how: str, actor: str | None = None, message: str | None = None) -> dict:
    """Resolve the drift of one file: `accept-file` or `reproject`. See the module docstring."""
    if how not in ("accept-file", "reproject"):
        raise BadInput(f"unknown resolution '{how}'", "--accept-file or --reproject")
    report = detect(repo, [rel])
    if not report.checked:
        raise BadInput(f"{rel}: the graph maps no such file", "read it in first: mf ingest " + rel)
    if report.checked > 1 or _select(repo, [rel])[0][0][0] != rel:
        raise BadInput(f"{rel or '.'}: name one file (or a drift's id)", "mf drift lists the files that drift")
    fd = report.drifts[0] if report.drifts else None
    opened = open_drifts(repo).get(rel)
    if fd is None:
        if opened:  # the log still says drift, the files say none
            _append(repo, [resolved_draft(rel, "reconciled", opened)], actor or _default_actor(repo))
        return {"path": rel, "how": None, "resolved": bool(opened), "message": f"{rel} agrees with the graph"}
    if how == "accept-file":
        return _accept(repo, fd, opened, actor, message)
    return _reproject(repo, fd, opened, actor or _default_actor(repo))


def _default_actor(repo) -> str:
    from metaforge.repo import default_actor

    return default_actor(repo.root)


def _append(repo, drafts: list[ev.Draft], actor: str) -> int:
    from metaforge.thread.policy import Source

    with repo.transaction(actor, Source.RECORD) as tx:
        return tx.record(drafts)


def author_of(repo, rel: str) -> str:
    """Who made the file as it is: the person at this clone for an uncommitted edit, else the
    author of its last commit (`agent:<name>` for a bot author, or an `MF-Actor:` trailer)."""
    from metaforge.actors import check_actor
    from metaforge.repo import git

    dirty = git(["status", "--porcelain", "--", rel], cwd=repo.root, check=False)
    if dirty or not git(["log", "-1", "--format=%H", "--", rel], cwd=repo.root, check=False):
        return _default_actor(repo)
    name, _, body = git(["log", "-1", "--format=%an%x00%B", "--", rel], cwd=repo.root).partition("\x00")
    for line in body.splitlines():
        if line.lower().startswith("mf-actor:"):
            return check_actor(line.split(":", 1)[1].strip())
    if name.endswith("[bot]"):
        return f"agent:{name[:-5]}"
    return f"user:{name}"


def _accept(repo, fd: FileDrift, opened: dict | None, actor: str | None, message: str | None) -> dict:
    """The file's values into the graph, by the file's author: a person's edit lands and what it
    breaks is said; an agent's is checked first and refused if it breaks a constraint."""
    from metaforge.thread.artifacts import ingest
    from metaforge.thread.policy import Source

    who = actor or (author_of(repo, fd.path) if fd.sha256 != fd.mapped_sha256 else _default_actor(repo))
    done = resolved_draft(fd.path, "accept-file", opened, fd, by=who)
    why = message or f"accepted {fd.path} as edited (drift resolved)"
    if fd.direction == "missing":
        out = _accept_missing(repo, fd, who, why, done)
    else:
        out = ingest(repo, [repo.root / fd.path], actor=who, message=why, file_wins=True, also=[done],
                     source=Source.DRIFT_ACCEPT)
    proposal = out.get("proposal")  # an approval rule covers it: the drift stays open until it is decided
    return {"path": fd.path, "how": "accept-file", "resolved": proposal is None, "actor": who,
            **({"proposal": proposal} if proposal else {}),
            "changes": out["changes"], "warnings": out["warnings"], "version": out.get("version"),
            "drift": fd.as_dict()}


def _accept_missing(repo, fd: FileDrift, who: str, why: str, done: ev.Draft) -> dict:
    """A file deleted on purpose: what only it held leaves the graph, and it is no longer mapped."""
    from metaforge.thread.commands import Change
    from metaforge.thread.policy import Source

    only_here = repo.index.entities_only_in(fd.path)
    live = [n.id for n in repo.index.load_nodes(only_here).values() if not n.deleted]
    unmapped = ev.Draft(ev.ARTIFACT_MAPPED, f"Artifact:{fd.path}", 1,
                        {"path": fd.path, "adapter": fd.adapter, "adapter_version": "", "sha256": "",
                         "how": "removed", "mappings": []})
    with repo.transaction(who, Source.DRIFT_ACCEPT) as tx:
        result = tx.change([Change("remove", e) for e in sorted(live)], why, extra=[unmapped, done],
                           proposal_records=[unmapped])
    return {"changes": len(result.drafts()), "warnings": result.warnings, "proposal": result.proposal,
            "version": None if result.proposal else tx.last_seq}


def _reproject(repo, fd: FileDrift, opened: dict | None, actor: str) -> dict:
    """Write the graph's values over the file. Only values the file owns can be written: an element
    added or removed in the file, or a value it only reports, is refused with what to do instead."""
    from metaforge.repo import git

    rel = fd.path
    if fd.direction == "unreadable":
        raise Refused(f"{rel} cannot be read, so it cannot be written: {fd.error}",
                      f"fix it, or put it back: git checkout -- {rel}")
    if fd.direction == "missing":
        if not git(["ls-tree", "--name-only", "HEAD", "--", rel], cwd=repo.root, check=False):
            raise Refused(f"{rel} is missing and not in the last commit: projection writes into a file, it "
                          "cannot make one", f"restore the file, or accept its removal: mf drift resolve {rel} "
                          "--accept-file")
        git(["checkout", "HEAD", "--", rel], cwd=repo.root)
        again = detect(repo, [rel]).drifts
        if not again:
            _append(repo, [resolved_draft(rel, "reproject", opened, fd, restored_from="HEAD")], actor)
            return {"path": rel, "how": "reproject", "resolved": True, "restored_from": "HEAD", "commit": None,
                    "drift": fd.as_dict()}
        fd = again[0]
        if fd.direction in ("missing", "unreadable"):
            raise Refused(f"{rel}: the last commit's copy cannot be read either")
    blockers = [i for i in fd.items if i.kind != "changed" or i.read_only]
    if blockers:
        raise Refused("--reproject cannot write this into " + rel + ": " + "; ".join(i.line(rel) for i in blockers),
                      _blocker_hint(rel, blockers), details={"drift": fd.as_dict()})
    clean = not git(["status", "--porcelain", "--", rel], cwd=repo.root, check=False)
    if clean and fd.sha256 == fd.mapped_sha256:  # only the graph moved: the ordinary projection
        from metaforge.thread.artifacts import project

        out = project(repo, [repo.root / rel], actor=actor)
        _append(repo, [resolved_draft(rel, "reproject", opened, fd, commit=out["commit"])], actor)
        return {"path": rel, "how": "reproject", "resolved": True, "commit": out["commit"], "drift": fd.as_dict()}
    _write_over_edit(repo, fd, opened, actor)
    return {"path": rel, "how": "reproject", "resolved": True, "commit": None, "drift": fd.as_dict(),
            "note": "the file has other edits of yours (kept): commit it when ready"}


def _blocker_hint(rel: str, items: list[Item]) -> str:
    if all(i.read_only for i in items):
        return ("the file only reports these values (a board's footprint is its schematic's: in KiCad, "
                f"Tools → Update PCB from Schematic); or take the file's value: mf drift resolve {rel} --accept-file")
    return f"put the file back (git checkout -- {rel}) or take it as it is: mf drift resolve {rel} --accept-file"


def _write_over_edit(repo, fd: FileDrift, opened: dict | None, actor: str) -> None:
    """The graph's values written into a file someone edited, keeping their other (cosmetic) edits;
    left uncommitted, like any edit in the working tree."""
    from metaforge.adapters import registry
    from metaforge.thread.artifacts import _mapping_draft, _parse, _write_atomic, mapping_entries
    from metaforge.thread.policy import Source

    rel, path = fd.path, repo.root / fd.path
    adapter = registry.get(fd.adapter)
    with repo.transaction(actor, Source.RECORD) as tx:
        entities = tx.index.entities_in(rel)
        props = {k: v for k, v in repo.index.props_of(entities).items() if v is not None}
        old = path.read_bytes()
        new = adapter.project(path, rel, props)
        _write_atomic(path, new)
        try:
            mappings = mapping_entries(repo, _parse(adapter, path, rel, repo.root), props)
            drafts = [_mapping_draft(rel, adapter, sha256(new), "project", mappings),
                      resolved_draft(rel, "reproject", opened, fd)]
            tx.record(drafts)
        except BaseException:
            _write_atomic(path, old)
            raise
