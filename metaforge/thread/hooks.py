"""mf's git hooks: pre-commit checks drift and constraints, post-commit records the commit.

A hook already there is kept: mf's lines go in a marked block right after its `#!` line (so
they run before any `exit` in it), or, for a hook that is not a shell script, the hook is moved
aside and a small shell hook runs mf's block and then it. `uninstall` takes out only the block
(and puts a moved hook back). The block runs the Python that installed it, as the merge driver
does, and stands aside for the commits mf makes itself (`mf project`), which check and record
their own.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from metaforge.thread.artifacts import MF_COMMIT_ENV

BEGIN = "# >>> mf hooks >>>"
END = "# <<< mf hooks <<<"
CHAINED = ".mf-chained"  # suffix of a non-shell hook moved aside, run after mf's block
HOOKS = ("pre-commit", "post-commit")


def hooks_dir(repo) -> Path:
    from metaforge.repo import git

    path = Path(git(["rev-parse", "--git-path", "hooks"], cwd=repo.root))
    return path if path.is_absolute() else (repo.root / path).resolve()


def _block(hook: str) -> str:
    run = f"{shlex.quote(sys.executable)} -m metaforge hooks run {hook}"
    # pre-commit: a finding blocks the commit; post-commit: git ignores the status anyway
    tail = "|| exit $?" if hook == "pre-commit" else "|| true"
    return (f"{BEGIN} added by `mf hooks install`; `mf hooks uninstall` removes this block\n"
            f'if [ -z "${MF_COMMIT_ENV}" ]; then\n'
            f"  {run} {tail}\n"
            f"fi\n"
            f"{END}\n")


def _is_shell(text: str) -> bool:
    first = text.split("\n", 1)[0]
    if not first.startswith("#!"):
        return True  # git runs such a hook with sh
    words = first[2:].replace("/", " ").split()
    return any(w in ("sh", "bash", "dash", "zsh", "ksh", "ash") for w in words)


def _strip(text: str) -> str:
    """The text without mf's (first) block and the blank line `_insert` put after it."""
    start = text.find(BEGIN)
    if start < 0:
        return text
    end = text.find(END, start)
    if end < 0:
        return text[:start]
    nl = text.find("\n", end)
    end = len(text) if nl < 0 else nl + 1
    if text[end:end + 1] == "\n":
        end += 1
    return text[:start] + text[end:]


def install(repo) -> dict:
    """Write or update mf's block in each hook; idempotent. Returns {hook: what was done}."""
    folder = hooks_dir(repo)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for hook in HOOKS:
        path = folder / hook
        block = _block(hook)
        if not path.exists():
            _write(path, "#!/bin/sh\n" + block)
            out[hook] = "created"
            continue
        text = path.read_text()
        if BEGIN in text:
            new = _strip(text)
            new = _insert(new, block)
            out[hook] = "unchanged" if new == text else "updated"
        elif _is_shell(text):
            new = _insert(text, block)
            out[hook] = "chained"
        else:  # a Python or binary hook: moved aside, run after mf's block
            os.replace(path, path.with_name(hook + CHAINED))
            new = _insert(f'#!/bin/sh\n{BEGIN} chained\nexec "$(dirname "$0")/{hook}{CHAINED}" "$@"\n{END}\n', block)
            out[hook] = "chained"
        if new != text:
            _write(path, new)
    return {"hooks_dir": str(folder), "hooks": out}


def _insert(text: str, block: str) -> str:
    if not text.startswith("#!"):
        return "#!/bin/sh\n" + block + "\n" + text
    first, _, rest = text.partition("\n")
    return first + "\n" + block + ("\n" + rest if rest.strip() else "")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.mf-tmp")
    tmp.write_text(text)
    mode = path.stat().st_mode if path.exists() else 0o755
    os.chmod(tmp, mode | 0o111)
    os.replace(tmp, path)


def uninstall(repo) -> dict:
    """Take mf's blocks out; a hook mf created is deleted, a moved one put back."""
    folder = hooks_dir(repo)
    out = {}
    for hook in HOOKS:
        path = folder / hook
        chained = path.with_name(hook + CHAINED)
        if not path.exists() or BEGIN not in path.read_text():
            out[hook] = "absent"
            continue
        if chained.exists():
            os.replace(chained, path)
            out[hook] = "restored"
            continue
        rest = _strip(path.read_text())
        if rest.strip() in ("", "#!/bin/sh"):
            path.unlink()
            out[hook] = "removed"
        else:
            _write(path, rest)
            out[hook] = "unchained"
    return {"hooks_dir": str(folder), "hooks": out}


# ---- what the hooks run -------------------------------------------------------------------------

def staged_files(repo) -> list[str]:
    from metaforge.repo import git

    out = git(["diff", "--cached", "--name-only", "--relative", "--no-renames", "-z"], cwd=repo.root)
    return sorted(p for p in out.split("\0") if p)


def pre_commit(repo) -> dict:
    """Drift of the staged files the graph maps, and every constraint: what a commit must pass."""
    from metaforge.repo import git
    from metaforge.thread import drift
    from metaforge.thread.constraints.engine import check_all

    repo.index.sync(repo.log, locked=False)
    mapped = {a.path for a in repo.index.artifacts()}
    staged = [p for p in staged_files(repo) if p in mapped]
    report = drift.detect(repo, staged) if staged else drift.Report()
    unstaged = git(["diff", "--name-only", "--relative", "--", *staged], cwd=repo.root).split() if staged else []
    verdicts = check_all(repo.index, repo.types)
    return {"ok": not report.drifts and not any(v.blocking for v in verdicts), "staged": staged,
            "unstaged_changes": unstaged, "drift": report, "verdicts": verdicts}


def post_commit(repo) -> dict:
    """Link the commit to the semantic version when the design files it holds agree with the
    graph (a `state.linked` by the commit's author), re-mapping those that changed only
    cosmetically, so later checks of them take the fast path again."""
    from metaforge import events as ev
    from metaforge.adapters import registry
    from metaforge.repo import git
    from metaforge.thread import drift
    from metaforge.thread.artifacts import _mapping_draft, _parse, mapping_entries
    from metaforge.thread.policy import Source

    commit = git(["rev-parse", "HEAD"], cwd=repo.root)
    files = git(["diff-tree", "--no-commit-id", "--name-only", "--relative", "-r", "--root", "HEAD"],
                cwd=repo.root).split("\n")
    actor = _commit_author(repo)
    with repo.transaction(actor, Source.RECORD) as tx:
        rows = {a.path: a for a in tx.index.artifacts()}
        design = sorted(p for p in files if p in rows)
        if not design:
            return {"commit": commit, "linked": False, "files": []}
        report = drift.detect(repo, design, locked=True)
        if report.drifts:
            return {"commit": commit, "linked": False, "files": design, "drift": report.as_dict()}
        drafts = []
        for rel in design:
            path = repo.root / rel
            if path.exists() and drift.sha256(path.read_bytes()) != rows[rel][3]:
                adapter = registry.get(rows[rel][1])
                result = _parse(adapter, path, rel, repo.root)
                maps = mapping_entries(repo, result, repo.index.props_of(sorted({p.id for p in result.entities})))
                drafts.append(_mapping_draft(rel, adapter, drift.sha256(path.read_bytes()), "commit", maps))
        version = repo.index.position().seq
        drafts.append(ev.Draft(ev.STATE_LINKED, f"StateLink:{commit[:12]}", 1, {
            "semantic_version": version, "git_commit": commit, "projected_at": ev.now(), "projected_by": actor,
            "artifacts": design, "how": "commit"}, f"commit {commit[:12]} holds semantic version {version}"))
        tx.record(drafts)
    return {"commit": commit, "linked": True, "semantic_version": version, "files": design}


def _commit_author(repo) -> str:
    from metaforge.repo import git

    name = git(["log", "-1", "--format=%an"], cwd=repo.root)
    return f"agent:{name[:-5]}" if name.endswith("[bot]") else f"user:{name}"
