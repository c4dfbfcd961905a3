"""Finding adapters: the `metaforge.adapters` entry-point group, built-in ones included.

A third-party package adds an adapter with, in its pyproject.toml:

    [project.entry-points."metaforge.adapters"]
    gerber = "mypkg.gerber:GerberAdapter"
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from metaforge.adapters.base import Adapter
from metaforge.errors import BadInput

GROUP = "metaforge.adapters"


BROKEN: dict[str, str] = {}  # entry point → why it could not be loaded


@lru_cache(maxsize=1)
def adapters() -> dict[str, Adapter]:
    """Every adapter that loads; one that does not (a broken plug-in) is named in BROKEN, not fatal."""
    found: dict[str, Adapter] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            cls = ep.load()
            found[cls.name] = cls()
        except Exception as exc:  # noqa: BLE001 — a third party's bug must not stop the built-in adapters
            BROKEN[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
    return found


def get(name: str) -> Adapter:
    table = adapters()
    if name not in table:
        raise BadInput(f"no adapter named '{name}'", "adapters: " + ", ".join(sorted(table)))
    return table[name]


def for_file(rel: str) -> Adapter | None:
    for adapter in adapters().values():
        if adapter.owns(rel):
            return adapter
    return None
