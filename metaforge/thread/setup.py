"""`mf init`: make `.metaforge/` in a git repository, optionally from a template."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from metaforge import templates
from metaforge.errors import BadInput, MetaforgeError
from metaforge.repo import MFDIR, Repo, git

GITIGNORE = """\
# Derived from events/ and rebuilt by any mf command (or `mf rebuild`): never committed.
index.db*
telemetry.db*
knowledge.db*
cache/
artifacts/
log.lock
log.journal
"""

CONFIG = """\
# mf project settings, committed with the repository.
[project]
name = "{name}"

# Entity types and properties of your own, beside the built-in ones. A kind is str, int,
# float, bool, list, dict, enum:a|b|c, or a dimension (current, voltage, power, energy,
# charge, capacitance, resistance, temperature, frequency, time, mass, length, ratio, ...).
#
# [types.BOMItem]
# ripple = "voltage"
#
# [types.Supplier]
# country = "str"
"""


@dataclass
class InitResult:
    root: Path
    created: bool
    git_initialized: bool = False
    template: str | None = None
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    events: int = 0

    def as_dict(self) -> dict:
        return {"root": str(self.root), "created": self.created, "git_initialized": self.git_initialized,
                "template": self.template, "files": self.files, "skipped": self.skipped, "events": self.events}


def init(path: Path, template: str | None = None, actor: str | None = None) -> InitResult:
    root = path.resolve()
    if (root / MFDIR).is_dir():
        return InitResult(root, created=False)
    tpl = templates.find(template) if template else None
    root.mkdir(parents=True, exist_ok=True)
    top = git(["rev-parse", "--show-toplevel"], cwd=root, check=False)
    git_initialized = False
    if not top:
        git(["init", "-q"], cwd=root)
        git_initialized = True
    elif Path(top).resolve() != root:
        raise BadInput(f"{root} is inside the git repository {top}", f"run `mf init {top}`")
    mfdir = root / MFDIR
    (mfdir / "events").mkdir(parents=True)
    try:
        (mfdir / "events" / ".gitkeep").write_text("")
        (mfdir / ".gitignore").write_text(GITIGNORE)
        (mfdir / "config.toml").write_text(CONFIG.format(name=root.name))
        result = InitResult(root, created=True, git_initialized=git_initialized)
        from metaforge.thread.merge import install

        install(Repo(root))  # so branches of this repository merge their twin
        if tpl:
            _apply_template(Repo(root), tpl, result, actor)
    except BaseException:
        shutil.rmtree(mfdir, ignore_errors=True)  # nothing half made: init again after the fix
        raise
    return result


def _apply_template(repo: Repo, tpl: Path, result: InitResult, actor: str | None) -> None:
    from metaforge.repo import default_actor
    from metaforge.thread.changes_file import read_changes
    from metaforge.thread.commands import execute
    from metaforge.thread.policy import Source

    result.template = tpl.name
    extra_config = tpl / "config.toml"
    if extra_config.is_file():  # the template's approval rules, types, ...
        config = repo.mfdir / "config.toml"
        config.write_text(config.read_text() + extra_config.read_text())
    files = tpl / "files"
    if files.is_dir():
        for src in sorted(p for p in files.rglob("*") if p.is_file()):
            rel = src.relative_to(files)
            dst = repo.root / rel
            if dst.exists():
                result.skipped.append(str(rel))
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            result.files.append(str(rel))
    changes, message = read_changes(tpl / "twin.yaml", f"template {tpl.name}/twin.yaml")
    try:
        # the template is the starting point: its own constraints are not proposals
        out = execute(repo, changes, actor=actor or default_actor(repo.root),
                      message=message or f"created from template {tpl.name}", source=Source.TEMPLATE)
    except MetaforgeError:
        for rel in result.files:
            (repo.root / rel).unlink(missing_ok=True)
        raise
    finally:
        repo.close()
    result.events = out.appended
