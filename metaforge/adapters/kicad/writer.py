"""Projection: write the graph's values into a KiCad file by editing only the string atoms the
graph owns, keeping every other byte. A value the file lacks becomes a new hidden property,
cloned from a hidden sibling so it looks like the lines KiCad wrote around it."""

from __future__ import annotations

import json
import re
from typing import Any

from metaforge.adapters import sexpr
from metaforge.adapters.base import AdapterError
from metaforge.adapters.kicad.files import PER_INSTANCE_VALUES_UNTIL, Doc
from metaforge.adapters.kicad.model import WRITABLE, Element, Slot
from metaforge.adapters.kicad.symbols import FIELD_FOR, field_role

_ID = re.compile(r"\(id (\d+)\)")
_HIDDEN = re.compile(r"\(hide yes\)|\shide[\s)]")  # KiCad 8+ `(hide yes)`, KiCad 6-7 a bare `hide`


def project_doc(doc: Doc, elements: list[Element], entities: dict[str, dict[str, Any]]) -> bytes:
    """The file's new bytes; the very same bytes when no owned value changed."""
    return project_and_read(doc, elements, entities)[0]


def project_and_read(doc: Doc, elements: list[Element],
                     entities: dict[str, dict[str, Any]]) -> tuple[bytes, bool]:
    """The file's new bytes, and whether `elements` now describe them too: values replaced in
    place move no line, so the read made before writing stands, with the new values, for the
    mappings (a 67 MB board is not parsed a second time). A property added shifts lines: False."""
    wanted: dict[tuple, tuple[Slot, str, str]] = {}     # slot key → (slot, text, entity id)
    additions: dict[int, tuple] = {}                    # block start → (block, [(field, text)])
    written: list[tuple[Element, str, str]] = []
    for el in elements:
        graph = entities.get(el.id)
        if not graph:
            continue
        for key, text in _changes(el, graph):
            slots = el.sources.get(key)
            if slots:
                for slot in slots:
                    _want(wanted, slot, text, el, key, doc)
                written.append((el, key, text))
            elif key not in el.values:
                for block in el.blocks:
                    additions.setdefault(block.start, (block, []))[1].append((_field_name(key), text))
    _check_sharers(doc, elements, entities, wanted)
    edits = [_replace(doc, slot, text) for slot, text, _ in wanted.values() if _current(doc, slot) != text]
    edits += [_insert(doc, block, fields) for block, fields in additions.values()]
    if not edits:
        return doc.data, True
    kept = {s.key for s, _, _ in wanted.values()}
    for el, key, text in written:  # a sharer's slot left alone (KiCad 6) keeps its value
        if all(s.key in kept for s in el.sources.get(key, ())):
            el.values[key] = text
    return doc.encode(sexpr.apply_edits(doc.text, edits)), not additions


def _changes(el: Element, graph: dict[str, Any]):
    """(key, text) for each owned value the graph holds differently from the file."""
    for key in WRITABLE:
        if graph.get(key) is None:
            continue
        text = _as_text(graph[key])
        if key in el.values:
            if text != el.values[key]:
                yield key, text
        elif text and el.blocks:
            yield key, text  # a value the file lacks: it becomes a new property
    fields = graph.get("fields")
    if isinstance(fields, dict) and el.blocks:
        for name, value in fields.items():
            if value is None or field_role(name) is not None:
                continue  # MPN, Value... are written through their own property, never as a second field
            text = _as_text(value)
            if text != el.values.get(f"fields/{name}"):
                yield f"fields/{name}", text


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"value", "unit"}:
        return f"{value['value']} {value['unit']}".strip()
    if isinstance(value, (int, float, bool)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def _field_name(key: str) -> str:
    return key[7:] if key.startswith("fields/") else FIELD_FOR[key]


def _want(wanted: dict, slot: Slot, text: str, el: Element, key: str, doc: Doc) -> None:
    prior = wanted.get(slot.key)
    if prior is not None and prior[1] != text:
        raise AdapterError(doc.rel, f"{prior[2]} and {el.id} share one {key} in this file and the graph gives "
                           f"them different values ({prior[1]!r}, {text!r})", doc.line(slot.node))
    wanted[slot.key] = (slot, text, el.id)


def _check_sharers(doc: Doc, elements: list[Element], entities: dict, wanted: dict) -> None:
    """A symbol of a sheet placed twice holds one value for both placements: writing it for one
    would change the other. KiCad 6 files keep per-placement values (written in the root's
    symbol_instances), so there the shared property is left alone; later formats refuse."""
    sharers: dict[tuple, list[tuple[Element, str]]] = {}
    for el in elements:
        for key, slots in el.sources.items():
            for slot in slots:
                if slot.key in wanted:
                    sharers.setdefault(slot.key, []).append((el, key))
    for skey, users in sharers.items():
        slot, text, who = wanted[skey]
        differ = [el for el, key in users if _desired(el, key, entities) != text]
        if not differ:
            continue
        if doc.version < PER_INSTANCE_VALUES_UNTIL and not slot.per_instance:
            del wanted[skey]
            continue
        names = ", ".join(sorted({who, *(el.id for el in differ)}))
        raise AdapterError(doc.rel, f"{names} are one symbol in this file (its sheet is placed more than once) "
                           f"and KiCad keeps one {users[0][1]} for all placements: set the same value on all "
                           f"of them", doc.line(slot.node))


def _desired(el: Element, key: str, entities: dict) -> str | None:
    graph = entities.get(el.id) or {}
    if key.startswith("fields/"):
        fields = graph.get("fields")
        value = fields.get(key[7:]) if isinstance(fields, dict) else None
    else:
        value = graph.get(key)
    return el.values.get(key) if value is None else _as_text(value)


def _current(doc: Doc, slot: Slot) -> str:
    text = slot.node.text(slot.index, "")
    return "" if text == "~" and doc.tilde_is_empty else text


def _replace(doc: Doc, slot: Slot, text: str) -> tuple[int, int, str]:
    start, end = sexpr.atom_span(doc.text, slot.node, slot.index)
    return start, end, sexpr.quote(text)


# ---- a property the file does not have yet ---------------------------------------------------

def _insert(doc: Doc, block: sexpr.Node, fields: list[tuple[str, str]]) -> tuple[int, int, str]:
    props = block.all("property")
    if not props:
        raise AdapterError(doc.rel, "a symbol without any property: cannot add one in its style", doc.line(block))
    model = _hidden_model(doc, props)
    last = props[-1]
    indent = _indent(doc.text, model.start)
    newline = "\r\n" if doc.text[last.end:last.end + 2] == "\r\n" else "\n"
    next_id = max((int(m.group(1)) for p in props for m in _ID.finditer(doc.text, p.start, p.end)), default=-1) + 1
    out = []
    for name, value in fields:
        out.append(newline + indent + _clone(doc.text, model, name, value, next_id))
        next_id += 1
    return last.end, last.end, "".join(out)


def _hidden_model(doc: Doc, props: list[sexpr.Node]) -> sexpr.Node:
    """The sibling to copy: a hidden one (Datasheet or Footprint usually are), else the last."""
    hidden = [p for p in props if _HIDDEN.search(doc.text, p.start, p.end)]
    for name in ("Datasheet", "Footprint"):
        for p in hidden:
            if p.text(1) == name:
                return p
    return hidden[-1] if hidden else props[-1]


def _indent(text: str, start: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    lead = text[line_start:start]
    return lead if not lead.strip() else ""


def _clone(text: str, model: sexpr.Node, name: str, value: str, new_id: int) -> str:
    body = text[model.start:model.end]
    (n0, n1), (v0, v1) = (sexpr.atom_span(text, model, i) for i in (1, 2))
    out = body[: n0 - model.start] + sexpr.quote(name) + body[n1 - model.start: v0 - model.start] + sexpr.quote(value)
    rest = _ID.sub(f"(id {new_id})", body[v1 - model.start:], count=1)
    return out + rest
