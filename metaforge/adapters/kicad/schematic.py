"""A schematic sheet's components (one per reference, whatever its units), and the sheet itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metaforge.adapters.base import safe_name
from metaforge.adapters.kicad import hierarchy
from metaforge.adapters.kicad.files import Doc, load_schematic
from metaforge.adapters.kicad.hierarchy import Hierarchy, SheetUse, sheet_fields
from metaforge.adapters.kicad.model import Element, Slot
from metaforge.adapters.kicad.symbols import Instance, Placed, annotations, field_role, instance_key, placed_symbols


@dataclass
class SheetRead:
    doc: Doc
    hierarchy: Hierarchy
    elements: list[Element]
    skipped: dict[str, int] = field(default_factory=dict)


def element_id(project: str, reference: str) -> str:
    return f"DesignElement:{safe_name(project)}/{safe_name(reference)}"


def sheet_id(project: str, path: Path) -> str:
    return f"DesignElement:{safe_name(project)}/sheet/{safe_name(path.stem)}"


def read_sheet(path: Path, rel: str) -> SheetRead:
    h = hierarchy.for_schematic(path, rel)
    doc = load_schematic(path, rel)
    uses = h.uses_of(path) or [SheetUse(path.resolve(), (), "/")]
    by_ref: dict[str, Element] = {}
    skipped = {"power": 0, "unannotated": 0}
    consumed: set[str] = set()
    symbols = sorted(placed_symbols(doc), key=lambda s: s.unit)
    for use in uses:
        for sym in symbols:
            consumed.add(instance_key(use, sym))
            for inst in annotations(h, doc, use, sym):
                if _skip(inst.reference, skipped):
                    continue
                _add_symbol(by_ref, h, doc, use, sym, inst, len(uses) > 1)
    if h.root is doc:
        _add_root_instances(by_ref, h, doc, consumed, skipped)
    components = sorted(by_ref.values(), key=lambda e: e.line)
    sheet = _sheet_element(h, doc, path, [e for e in components if e.blocks])
    return SheetRead(doc, h, [sheet, *components], {k: v for k, v in skipped.items() if v})


def _skip(reference: str, skipped: dict) -> bool:
    if reference.startswith("#"):
        skipped["power"] += 1  # power symbols and flags are not parts
        return True
    if not reference or reference.endswith("?"):
        skipped["unannotated"] += 1
        return True
    return False


def _add_symbol(by_ref: dict, h: Hierarchy, doc: Doc, use: SheetUse, sym: Placed, inst: Instance,
                shared: bool) -> None:
    el = by_ref.get(inst.reference)
    if el is None:
        region = f"symbol:{sym.uuid}" + (f"@/{'/'.join(use.uuids)}" if shared else "")
        el = by_ref[inst.reference] = Element(element_id(h.project, inst.reference), region, doc.line(sym.node))
        el.props = {"kind": "component", "reference": inst.reference, "lib_id": sym.lib_id,
                    "sheet_path": use.names}
    el.blocks.append(sym.node)
    _read_fields(el, doc, sym)
    if inst.node is not None:
        _read_instance_values(el, doc, inst)


def _read_fields(el: Element, doc: Doc, sym: Placed) -> None:
    taken: set[str] = set()
    for prop in sym.properties:
        name = prop.text(1, "")
        role = field_role(name)
        if role == "" or role == "reference":
            continue
        if role is None or role in taken:  # a second MPN-like field stays a field of its own
            role = f"fields/{name}"
        taken.add(role)
        el.add_source(role, Slot(prop, 2), _field_text(doc, prop.text(2, "")))


def _field_text(doc: Doc, text: str) -> str:
    return "" if text == "~" and doc.tilde_is_empty else text


def _read_instance_values(el: Element, doc: Doc, inst: Instance) -> None:
    """KiCad 6 keeps a value and footprint per placement; when set they are what KiCad shows."""
    for key in ("value", "footprint"):
        node = inst.node.get(key)
        if node is None:
            continue
        text = _field_text(doc, node.text(1, ""))
        if not text:
            continue  # empty: the symbol's own property holds it
        if inst.doc is doc:
            el.add_source(key, Slot(node, 1, per_instance=True), text, override=True)
        else:
            el.values[key] = text


def _add_root_instances(by_ref: dict, h: Hierarchy, doc: Doc, consumed: set, skipped: dict) -> None:
    """KiCad 6: the root's `symbol_instances` also hold the value and footprint of every symbol of
    the sub-sheets, so the root owns those too (the sub-sheet owns the rest)."""
    for key, node in h.instances6.items():
        if key in consumed:
            continue
        inst = Instance(node.value("reference", ""), 1, node, doc)
        if _skip(inst.reference, skipped):
            continue
        el = by_ref.get(inst.reference)
        if el is None:
            el = by_ref[inst.reference] = Element(element_id(h.project, inst.reference), f"instance:{key}",
                                                  doc.line(node))
            el.props = {"kind": "component", "reference": inst.reference}
        _read_instance_values(el, doc, inst)


def _sheet_element(h: Hierarchy, doc: Doc, path: Path, components: list[Element]) -> Element:
    el = Element(sheet_id(h.project, path), "schematic", 1)
    el.props = {"kind": "schematic"}
    el.links = [("HAS_ELEMENT", c.id) for c in components]
    for sheet in doc.root.all("sheet"):
        _, file = sheet_fields(sheet)
        if file:
            el.links.append(("HAS_ELEMENT", sheet_id(h.project, Path(file))))
    return el
