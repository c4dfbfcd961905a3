"""Landing model definitions as BehavioralModel entities: each file validated (a malformed one is
refused naming its field), then one command adds or updates every entity, atomically."""

from __future__ import annotations

from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sim.catalog import ENTITY, entity_props
from metaforge.sim.definition import load


def register(repo, paths: list[Path], *, actor: str, message: str | None = None):
    from metaforge.thread.commands import Change, execute

    from metaforge.sim.catalog import Catalog
    from metaforge.sim.dimensions import check_composition, check_model

    changes, batch = [], {}
    loaded_all = []
    for path in paths:
        try:
            rel = path.resolve().relative_to(repo.root.resolve()).as_posix()
        except ValueError:
            raise BadInput(f"{path}: a model definition lives inside the repository") from None
        loaded = load(path, rel)
        check_model(loaded)
        batch[loaded.definition.name] = loaded
        loaded_all.append((rel, loaded))
    catalog = Catalog(repo)
    for rel, loaded in loaded_all:   # a composition against its members: these files, then the twin's
        if loaded.definition.model_type == "composition":
            check_composition(loaded, lambda name: batch.get(name) or catalog.find(name, loaded))
    for rel, loaded in loaded_all:
        node = f"{ENTITY}:{loaded.definition.name}"
        props = entity_props(loaded, rel)
        changes.append(Change("set" if repo.index.exists(node) else "add", node, props=props))
        if loaded.definition.model_type == "composition":
            for member in dict.fromkeys(loaded.definition.members.values()):
                dst = f"{ENTITY}:{member}"
                if not repo.index.has_edge(node, "DEPENDS_ON", dst) and (
                        repo.index.exists(dst) or any(c.id == dst for c in changes)):
                    changes.append(Change("link", node, rel="DEPENDS_ON", dst=dst))
    return execute(repo, changes, actor=actor, message=message or f"model definitions: {', '.join(p.name for p in paths)}")
