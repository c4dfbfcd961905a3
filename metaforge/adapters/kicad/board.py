"""A board's footprints (tied to their symbols), its nets, and the board itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metaforge.adapters.base import AdapterError, safe_name
from metaforge.adapters.kicad import hierarchy
from metaforge.adapters.kicad.files import Doc, board_project, read_bytes, read_doc, rel_of
from metaforge.adapters.kicad.model import Element, Slot
from metaforge.adapters.kicad.schematic import element_id
from metaforge.adapters.kicad.symbols import references_by_path
from metaforge.adapters.sexpr import Node

_COPPER_TYPES = {"signal", "power", "mixed", "jumper"}


@dataclass
class BoardRead:
    doc: Doc
    elements: list[Element]
    skipped: int = 0
    has_schematic: bool = False   # the project's schematic owns the symbols' fields
    models: dict[str, list[str]] = field(default_factory=dict)  # 3D model path as written → component ids


_last: list[tuple[tuple, bytes, BoardRead]] = []


def read_board_shared(path: Path, rel: str) -> BoardRead:
    """`read_board` for readers that leave what they get unchanged (parsing, the 3D-model map):
    within one command a board is read once, however many of them ask, while its bytes and its
    schematics (which give its references; a long-running `mf drift watch` sees them change) stay."""
    data = read_bytes(path, rel)
    key = (str(path.resolve()), _sheets_state(path.parent))
    if _last and _last[0][0] == key and _last[0][1] == data:
        return _last[0][2]
    read = read_board(path, rel, data)
    _last[:] = [(key, data, read)]
    return read


def _sheets_state(folder: Path) -> tuple:
    out = []
    for sheet in sorted([*folder.glob("*.kicad_sch"), *folder.glob("*/*.kicad_sch")]):
        try:
            st = sheet.stat()
        except OSError:
            continue
        out.append((sheet.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def read_board(path: Path, rel: str, data: bytes | None = None) -> BoardRead:
    doc = read_doc(path, rel, "kicad_pcb", data)
    project = board_project(path)
    by_path = {}
    if project.root is not None:  # the footprint's (path ...) names its symbol: take the symbol's reference
        try:
            by_path = references_by_path(hierarchy.build(project.root, rel_of(project.root, path, rel), project.name))
        except AdapterError:
            pass  # an unreadable schematic is refused when it is read; the board's own references stand
    nets = _Nets(project.name, doc)
    by_ref: dict[str, Element] = {}
    models: dict[str, list[str]] = {}
    skipped = 0
    for fp in doc.root.all("footprint"):
        reference = by_path.get(fp.value("path", "")) or _text_of(fp, "reference")[0]
        if not reference or "*" in reference or reference.startswith("#"):
            skipped += 1  # logos and board-only art: "REF**", "G***"
            continue
        el = by_ref.get(reference)
        if el is None:
            el = by_ref[reference] = _component(project.name, doc, fp, reference)
        value, node = _text_of(fp, "value")
        if node is not None:
            el.add_source("value", Slot(node, 2), value)
        el.links.extend(("CONNECTED_TO", nets.id_for(name, pad)) for name, pad in _pad_nets(fp))
        for model in fp.all("model"):
            if model.text(1):
                models.setdefault(model.text(1), []).append(el.id)
    components = sorted(by_ref.values(), key=lambda e: e.line)
    board = _board_element(project.name, doc, path, components, nets.elements())
    return BoardRead(doc, [board, *components, *nets.elements()], skipped, project.root is not None, models)


def _component(project: str, doc: Doc, fp: Node, reference: str) -> Element:
    uid = fp.value("uuid") or fp.value("tstamp") or reference
    el = Element(element_id(project, reference), f"footprint:{uid}", doc.line(fp))
    el.props = {"kind": "component", "reference": reference, "footprint": fp.text(1, ""),
                "layer": fp.value("layer", "")}
    return el


def _text_of(fp: Node, which: str) -> tuple[str, Node | None]:
    """A footprint's reference or value: (fp_text reference "R1") in KiCad 6-7, (property "Reference" "R1") after."""
    for item in fp:
        if type(item) is not Node or len(item) < 3:
            continue
        if item[0] == "fp_text" and item[1] == which:
            return item.text(2, ""), item
        if item[0] == "property" and item.text(1) == which.capitalize():
            return item.text(2, ""), item
    return "", None


def _pad_nets(fp: Node):
    for pad in fp.all("pad"):
        net = pad.get("net")
        if net is None:
            continue
        name = net.text(2) if len(net) > 2 else net.text(1)  # (net 3 "GND"); KiCad 10: (net "GND")
        if name:
            yield name, pad


class _Nets:
    """Net entities, named by the net, with a unique id even when two names make the same safe name."""

    def __init__(self, project: str, doc: Doc):
        self.project, self.doc = project, doc
        self._by_name: dict[str, Element] = {}
        self._ids: set[str] = set()
        for node in doc.root.all("net"):
            name = node.text(2, "")
            if name:
                self.id_for(name, node)

    def id_for(self, name: str, where: Node) -> str:
        el = self._by_name.get(name)
        if el is None:
            base = f"DesignElement:{safe_name(self.project)}/net/{safe_name(name)}"
            uid, n = base, 1
            while uid in self._ids:
                n += 1
                uid = f"{base}_{n}"
            self._ids.add(uid)
            el = self._by_name[name] = Element(uid, f"net:{name}", self.doc.line(where))
            el.props = {"kind": "net", "net": name}
        return el.id

    def elements(self) -> list[Element]:
        return list(self._by_name.values())


def _board_element(project: str, doc: Doc, path: Path, components: list[Element], nets: list[Element]) -> Element:
    el = Element(f"DesignElement:{safe_name(project)}/pcb/{safe_name(path.stem)}", "board", 1)
    el.props = {"kind": "pcb", "layers": _copper_layers(doc)}
    thickness = doc.root.get("general")
    thickness = thickness.value("thickness") if thickness is not None else None
    if thickness:
        try:
            el.props["thickness"] = {"value": float(thickness), "unit": "mm"}
        except ValueError:
            pass
    el.links = [("HAS_ELEMENT", e.id) for e in components + nets]
    return el


def _copper_layers(doc: Doc) -> int:
    layers = doc.root.get("layers")
    if layers is None:
        return 0
    return sum(1 for item in layers[1:] if type(item) is Node and len(item) > 2
               and item.text(1, "").endswith(".Cu") and item.text(2, "") in _COPPER_TYPES)


# ---- the 3D models footprints use ----------------------------------------------------------------

_MODEL_VARS = ("${KIPRJMOD}", "$(KIPRJMOD)")
_models_cache: dict[tuple, dict[str, list[str]]] = {}


def component_models(board: Path) -> dict[str, list[str]]:
    """The 3D models a board's footprints use: the model's resolved path (inside the project:
    `${KIPRJMOD}/3dmodels/X.step`, or relative), its lower-case file name and its stem (a library
    model, `${KICAD9_3DMODEL_DIR}/.../X.wrl`, of which the project may keep X.step) → component ids.
    Kept per board file and content, so a command reading many models reads the board once."""
    st = board.stat()
    key = (str(board.resolve()), st.st_size, st.st_mtime_ns)
    found = _models_cache.get(key)
    if found is None:
        found = {}
        try:
            read = read_board_shared(board, board.name)
        except AdapterError:
            read = None
        for written, ids in (read.models if read else {}).items():
            for name in _model_keys(board.parent, written):
                found.setdefault(name, []).extend(ids)
        if len(_models_cache) >= 16:
            _models_cache.clear()
        _models_cache[key] = found
    return found


def _model_keys(folder: Path, written: str) -> list[str]:
    text = written
    for var in _MODEL_VARS:
        text = text.replace(var, str(folder))
    name = written.replace("\\", "/").rsplit("/", 1)[-1].lower()
    keys = [name, "stem:" + name.rsplit(".", 1)[0]]  # KiCad's STEP export takes X.step for X.wrl
    if "$" not in text:
        target = Path(text) if Path(text).is_absolute() else folder / text
        keys.append(str(target.resolve()))
    return keys


_STEP_SUFFIXES = (".step", ".stp", ".STEP", ".STP")


def model_links(path: Path, rel: str, models: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(component, DESCRIBED_BY, model Artifact) for each model file of the project a footprint
    uses (X.step beside an X.wrl counts): linked when that Artifact is in the graph."""
    from metaforge.adapters.base import model_artifact_id

    out = []
    for written, ids in models.items():
        text = written
        for var in _MODEL_VARS:
            text = text.replace(var, str(path.parent))
        if "$" in text:
            continue  # a library folder outside the project
        target = Path(text) if Path(text).is_absolute() else path.parent / text
        found = next((c for c in [target, *(target.with_suffix(s) for s in _STEP_SUFFIXES)]
                      if c.suffix in _STEP_SUFFIXES and c.is_file()), None)
        if found is None:
            continue
        model_rel = rel_of(found.resolve(), path.resolve(), rel)
        if not model_rel.startswith("../"):
            out += [(cid, "DESCRIBED_BY", model_artifact_id(model_rel)) for cid in ids]
    return out
