"""Placed symbols of a schematic sheet, the reference each one has in each placement of the
sheet, and what their fields mean (value, footprint, MPN, manufacturer...)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from metaforge.adapters.kicad.files import Doc, load_schematic, rel_of
from metaforge.adapters.kicad.hierarchy import Hierarchy, SheetUse
from metaforge.adapters.sexpr import Node

# field name → property, compared without case, spaces or punctuation ("Mfr. Part #" → "mfrpart")
_STANDARD = {"Reference": "reference", "Value": "value", "Footprint": "footprint",
             "Datasheet": "datasheet", "Description": "description"}
_MPN = {"mpn", "manufacturerpartnumber", "manufacturerpartno", "manufacturerpn", "mfrpn", "mfrpartnumber",
        "mfrpartno", "mfrpart", "mfrno", "mfgpn", "mfgpartnumber", "mfgpartno", "mpnmanufacturer"}
_MANUFACTURER = {"manufacturer", "manufacturername", "mfr", "mfrname", "mfg", "mfgname", "maker"}
# the field name projection gives a property the file lacks
FIELD_FOR = {"value": "Value", "footprint": "Footprint", "datasheet": "Datasheet",
             "description": "Description", "mpn": "MPN", "manufacturer": "Manufacturer"}


def field_role(name: str) -> str | None:
    """'value', 'mpn'... for a field the twin knows by name; None for a user field; '' to ignore."""
    if name.startswith("ki_"):
        return ""  # KiCad's own keywords and filters
    if name in _STANDARD:
        return _STANDARD[name]
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key in _MPN:
        return "mpn"
    if key in _MANUFACTURER:
        return "manufacturer"
    return None


@dataclass
class Instance:
    """A symbol's annotation in one placement: KiCad 7+ `(path ...)` inside the symbol, or a
    KiCad 6 `symbol_instances` entry of the root (which may also hold a value and footprint)."""

    reference: str
    unit: int
    node: Node | None = None     # the (path ...) node, if any
    doc: Doc | None = None       # the file that node is in


@dataclass
class Placed:
    node: Node
    lib_id: str
    uuid: str
    unit: int
    properties: list[Node] = field(default_factory=list)
    instances: list[tuple[str, str, Node]] = field(default_factory=list)  # (project, path, node)

    def property(self, name: str) -> Node | None:
        for prop in self.properties:
            if prop.text(1) == name:
                return prop
        return None


def placed_symbols(doc: Doc) -> list[Placed]:
    out = []
    for node in doc.root.all("symbol"):
        sym = Placed(node, "", "", 1)
        for item in node:
            if type(item) is not Node or not item:
                continue
            head = item[0]
            if head == "property":
                sym.properties.append(item)
            elif head == "lib_id":
                sym.lib_id = item.text(1, "")
            elif head == "uuid":
                sym.uuid = item.text(1, "")
            elif head == "unit":
                sym.unit = _int(item.text(1))
            elif head == "instances":
                for project in item.all("project"):
                    sym.instances.extend((project.text(1, ""), path.text(1, ""), path) for path in project.all("path"))
        out.append(sym)
    return out


def _int(text: str | None) -> int:
    return int(text) if text and text.lstrip("-").isdigit() else 1


def instance_key(use: SheetUse, sym: Placed) -> str:
    """The KiCad 6 `symbol_instances` path, which is also a board footprint's `(path ...)`."""
    return "/" + "/".join(use.uuids + (sym.uuid,))


def annotations(h: Hierarchy, doc: Doc, use: SheetUse, sym: Placed) -> list[Instance]:
    """The reference (and unit) of `sym` in placement `use`; several when a sheet on its own
    carries the annotations of placements we cannot see (its root is elsewhere)."""
    if sym.instances:
        want = "/" + "/".join((h.root_uuid,) + use.uuids)
        hits = [i for i in sym.instances if i[1] == want]
        if not hits and h.root is doc and not use.uuids:
            hits = [i for i in sym.instances if i[0] == h.project] or sym.instances
        hits.sort(key=lambda i: i[0] != h.project)
        if hits and len({i[1] for i in hits}) < len(hits):
            hits = hits[:1]  # the same path listed under two projects: ours first
        found = [_from_path(node, doc) for _, _, node in hits]
        if found:
            return found
    node = h.instances6.get(instance_key(use, sym))
    if node is not None:
        return [_from_path(node, h.root)]
    ref = sym.property("Reference")
    return [Instance(ref.text(2, "") if ref is not None else "", sym.unit)]


def _from_path(node: Node, doc: Doc) -> Instance:
    return Instance(node.value("reference", ""), _int(node.value("unit")), node, doc)


def references_by_path(h: Hierarchy) -> dict[str, str]:
    """Every symbol of the project: board-style path ("/sheet.../symbol") → reference."""
    out: dict[str, str] = {}
    for use in h.uses:
        if not use.file.exists():
            continue
        doc = load_schematic(use.file, rel_of(use.file, h.root.path, h.root.rel))
        for sym in placed_symbols(doc):
            found = annotations(h, doc, use, sym)
            if found and found[0].reference:
                out[instance_key(use, sym)] = found[0].reference
    return out
