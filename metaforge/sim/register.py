"""Landing model definitions as BehavioralModel entities: each file validated (a malformed one is
refused naming its field), then one command adds or updates every entity, atomically."""

from __future__ import annotations

from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sim.catalog import ENTITY, entity_props
from metaforge.sim.definition import load


def register(repo, paths: list[Path], *, actor: str, message: str | None = None):
    from metaforge.thread.commands import Change, execute

    changes = []
    for path in paths:
        try:
            rel = path.resolve().relative_to(repo.root.resolve()).as_posix()
        except ValueError:
            raise BadInput(f"{path}: a model definition lives inside the repository") from None
        loaded = load(path, rel)
        node = f"{ENTITY}:{loaded.definition.name}"
        props = entity_props(loaded, rel)
        row = repo.index.conn.execute("SELECT deleted FROM nodes WHERE id = ?", (node,)).fetchone()
        changes.append(Change("add" if row is None or row[0] else "set", node, props=props))
        if loaded.definition.model_type == "composition":
            for member in dict.fromkeys(loaded.definition.members.values()):
                dst = f"{ENTITY}:{member}"
                has = repo.index.conn.execute("SELECT 1 FROM edges WHERE src = ? AND rel = 'DEPENDS_ON' AND dst = ?",
                                              (node, dst)).fetchone()
                if not has and (repo.index.conn.execute("SELECT 1 FROM nodes WHERE id = ? AND deleted = 0", (dst,))
                                .fetchone() or any(c.id == dst for c in changes)):
                    changes.append(Change("link", node, rel="DEPENDS_ON", dst=dst))
    return execute(repo, changes, actor=actor, message=message or f"model definitions: {', '.join(p.name for p in paths)}")
