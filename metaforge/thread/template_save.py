"""`mf template save`: a template made from a repository's current twin.

The twin.yaml it writes is the current state as one list of changes (every live entity with
its properties, then every relationship), so `mf init --template` gives a new repository the
same graph with a fresh history. The project's config.toml sections for types and approval
rules come along, and so do the files the twin points to (`definition`, `artifact_path`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import orjson

from metaforge.errors import BadInput


def user_templates_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "metaforge" / "templates"


def save(repo, name: str, dest: Path | None = None, description: str = "", force: bool = False) -> dict:
    import yaml

    if not re.match(r"^[a-z0-9][a-z0-9._-]*$", name):
        raise BadInput(f"template name '{name}': lowercase letters, digits, '.', '_' and '-'")
    target = (dest or user_templates_dir()) / name
    if target.exists() and not force:
        raise BadInput(f"{target} exists", "pass --force to replace it")
    changes, files = [], []
    for node in sorted(repo.index.live_nodes(), key=lambda n: (n.type, n.id)):
        nid, props = node.id, node.props
        change = {"add": nid}
        if props:
            change["props"] = {k: _as_text(v) for k, v in props.items()}
        changes.append(change)
        for key in ("definition", "artifact_path"):
            path = props.get(key)
            if isinstance(path, str) and (repo.root / path).is_file():
                files.append(path)
    for src, rel, dst in repo.index.all_edges():
        changes.append({"link": [src, rel, dst]})
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    header = f"# Template {name}, saved from {repo.root.name} at semantic version {repo.index.position().seq}.\n"
    body = yaml.safe_dump({"message": f"created from template {name}", "changes": changes},
                          sort_keys=False, allow_unicode=True, width=120)
    (target / "twin.yaml").write_text(header + body)
    (target / "template.toml").write_text(f"description = {orjson.dumps(description or f'saved from {repo.root.name}').decode()}\n")
    config = _portable_config(repo.mfdir / "config.toml")
    if config:
        (target / "config.toml").write_text(config)
    for rel in sorted(set(files)):
        out = target / "files" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo.root / rel, out)
    return {"template": name, "path": str(target), "entities": sum(1 for c in changes if "add" in c),
            "relationships": sum(1 for c in changes if "link" in c), "files": sorted(set(files))}


def _as_text(value):
    """Quantities go back to how a person writes them (`10uF`), so the template reads well."""
    if isinstance(value, dict) and set(value) == {"value", "unit"}:
        return f"{value['value']}{value['unit']}"
    return value


def _portable_config(path: Path) -> str:
    """The [types.*] and [approval] sections of a config.toml, as written."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    keep, out = False, []
    for line in text.splitlines():
        header = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?", line)
        if header:
            keep = header.group(1).split(".")[0] in ("types", "approval")
        if keep:
            out.append(line)
    return ("\n" + "\n".join(out) + "\n") if out else ""
