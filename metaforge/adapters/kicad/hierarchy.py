"""A KiCad project's sheet hierarchy: where each sheet file is placed, and so which reference
each symbol has in each place.

A sheet file placed twice holds its symbols once; the references of each placement live in the
root schematic's `symbol_instances` (KiCad 6) or in each symbol's `(instances (project ...
(path "/root/sheet" (reference ...))))` (KiCad 7 and later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metaforge.adapters.base import AdapterError
from metaforge.adapters.kicad.files import Doc, load_schematic, rel_of, schematic_roots
from metaforge.adapters.sexpr import Node

_MAX_DEPTH = 32


@dataclass(frozen=True)
class SheetUse:
    """One placement of a sheet file in the hierarchy."""

    file: Path                   # the sheet file (resolved)
    uuids: tuple[str, ...]       # uuids of the sheet symbols leading to it (the root excluded)
    names: str                   # KiCad's sheet path: "/" for the root, "/power/" below it


@dataclass
class Hierarchy:
    project: str
    root: Doc
    uses: list[SheetUse]
    instances6: dict[str, Node] = field(default_factory=dict)  # KiCad 6: "/sheet.../symbol" → (path ...)

    @property
    def root_uuid(self) -> str:
        return self.root.root.value("uuid") or ""

    def uses_of(self, path: Path) -> list[SheetUse]:
        key = path.resolve()
        return [u for u in self.uses if u.file == key]

    def children(self, use: SheetUse) -> list[SheetUse]:
        depth = len(use.uuids) + 1
        return [u for u in self.uses if len(u.uuids) == depth and u.uuids[:-1] == use.uuids]


def sheet_fields(sheet: Node) -> tuple[str, str]:
    """(name, file) of a `(sheet ...)` node: 'Sheet name'/'Sheet file' in KiCad 6, 'Sheetname'
    after; some KiCad 6 files carry them translated ("Fichier de feuille"), known then by
    their `(id 0)`/`(id 1)`, which is also their order."""
    props = sheet.all("property")
    found: dict[int, str] = {}
    for pos, prop in enumerate(props):
        key = prop.text(1, "")
        ident = prop.value("id")
        if key in ("Sheet name", "Sheetname"):
            found[0] = prop.text(2, "")
        elif key in ("Sheet file", "Sheetfile"):
            found[1] = prop.text(2, "")
        elif ident in ("0", "1") or (ident is None and pos < 2):
            found.setdefault(int(ident) if ident else pos, prop.text(2, ""))
    return found.get(0, ""), found.get(1, "")


def build(root_path: Path, rel: str, project: str) -> Hierarchy:
    root = load_schematic(root_path, rel)
    uses = [SheetUse(root_path.resolve(), (), "/")]
    _walk(root, root_path.parent, (), "/", uses, {root_path.resolve()})
    table = root.root.get("symbol_instances")
    instances6 = {p.text(1, ""): p for p in table.all("path")} if table is not None else {}
    return Hierarchy(project, root, uses, instances6)


def _walk(doc: Doc, project_dir: Path, uuids: tuple, names: str, uses: list, ancestors: set) -> None:
    if len(uuids) >= _MAX_DEPTH:
        return
    for sheet in doc.root.all("sheet"):
        name, file = sheet_fields(sheet)
        if not file:
            continue
        child = project_dir / file
        if not child.exists():
            child = doc.path.parent / file
        child = child.resolve()
        use = SheetUse(child, uuids + (sheet.value("uuid", ""),), names + name + "/")
        uses.append(use)
        if child.exists() and child not in ancestors:
            sub = load_schematic(child, rel_of(child, doc.path, doc.rel))
            _walk(sub, project_dir, use.uuids, use.names, uses, ancestors | {child})


def for_schematic(path: Path, rel: str) -> Hierarchy:
    """The hierarchy `path` belongs to: its own project's, the one of a root that places it, or
    its own (a schematic on its own is its root)."""
    if path.with_suffix(".kicad_pro").exists():
        return build(path, rel, path.stem)
    for root in schematic_roots(path):
        own = root.with_suffix(".kicad_pro").exists() and root.parent == path.resolve().parent
        try:
            found = build(root, rel_of(root, path, rel), root.stem)
        except AdapterError:
            if own:
                raise  # the project's own root is broken: its sheets' references cannot be known
            continue
        if found.uses_of(path):
            return found
    return build(path, rel, path.stem)
