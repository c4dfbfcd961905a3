"""Reading a STEP file's assembly tree with OpenCascade's XCAF reader (through OCP).

Imported only when a STEP file is parsed: OCP takes a second or more to import. OCCT writes
its messages to the process's stdout, which `--json` keeps for JSON; they are captured here
and the reader's own words end up in the error message instead.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from OCP.Bnd import Bnd_Box
from OCP.BRepBndLib import BRepBndLib
from OCP.BRepMesh import BRepMesh_IncrementalMesh
from OCP.Quantity import Quantity_Color, Quantity_TOC_sRGB
from OCP.STEPCAFControl import STEPCAFControl_Reader
from OCP.TCollection import TCollection_AsciiString, TCollection_ExtendedString
from OCP.TDataStd import TDataStd_Name, TDataStd_TreeNode
from OCP.TDF import TDF_AttributeIterator, TDF_Label, TDF_LabelSequence, TDF_Tool
from OCP.TDocStd import TDocStd_Document
from OCP.XCAFApp import XCAFApp_Application
from OCP.XCAFDoc import (XCAFDoc, XCAFDoc_ColorCurv, XCAFDoc_ColorGen, XCAFDoc_ColorSurf, XCAFDoc_ColorTool,
                         XCAFDoc_DocumentTool, XCAFDoc_Material, XCAFDoc_ShapeTool)

from metaforge.adapters.base import AdapterError, id_segment


@dataclass
class Node:
    """One place in the assembly tree: a part or a sub-assembly where its parent uses it."""

    segment: str                 # unique among its siblings: "M3_screw", "M3_screw#2"
    name: str                    # the instance's name when it has a real one, else its product's
    product: str
    kind: str                    # "assembly" | "part"
    label: TDF_Label             # the label the GLB writer names the glTF node after
    proto: TDF_Label             # the product's own label (shared by every instance)
    color: str | None = None
    material: str | None = None
    size: tuple[float, float, float] | None = None   # bounding box x, y, z in mm, in the product's frame
    children: list["Node"] = field(default_factory=list)


@dataclass
class StepModel:
    doc: TDocStd_Document
    roots: list[Node]
    log: str                     # what OCCT said while reading


def read(path: Path, rel: str) -> StepModel:
    doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
    XCAFApp_Application.GetApplication_s().InitDocument(doc)
    reader = STEPCAFControl_Reader()
    for mode in ("SetColorMode", "SetNameMode", "SetLayerMode", "SetMatMode", "SetPropsMode"):
        if hasattr(reader, mode):
            getattr(reader, mode)(True)
    with captured_stdout() as said:
        status = reader.ReadFile(str(path))
        ok = status.name == "IFSelect_RetDone" and reader.Transfer(doc)
    log = said[0]
    if status.name != "IFSelect_RetDone":
        raise _read_error(rel, f"not a readable STEP file (OCP read status {status.name})", log)
    if not ok:
        if reader.Reader().NbRootsForTransfer() == 0:
            raise AdapterError(rel, "the STEP file holds no shapes: its assembly tree is empty")
        raise _read_error(rel, "OCP read the file but could not transfer its shapes", log)
    shapes = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    free = TDF_LabelSequence()
    shapes.GetFreeShapes(free)
    if free.Length() == 0:
        raise AdapterError(rel, "the STEP file holds no shapes: its assembly tree is empty")
    _mesh(free)
    roots = [_node(free.Value(i), {}) for i in range(1, free.Length() + 1)]
    _unique_segments(roots)
    return StepModel(doc, roots, log)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def reader_complaints(log: str) -> list[str]:
    """The errors and warnings OCCT printed while reading, without its colours and stars."""
    return [ln.strip(" *") for ln in _ANSI.sub("", log).splitlines()
            if any(word in ln for word in ("ERR", "Fail", "Warning", "WARN"))]


def _read_error(rel: str, message: str, log: str) -> AdapterError:
    """The first error OCCT printed, e.g. `Line 522: Incorrect syntax: unexpected end of file`."""
    said = reader_complaints(log)
    line = None
    if said:
        detail = re.sub(r"^ERR\s+\w+\s*:\s*", "", said[0]).strip()
        message += f": {detail}"
        m = re.search(r"Line (\d+)", detail)
        line = int(m.group(1)) if m else None
    return AdapterError(rel, message, line=line)


@contextmanager
def captured_stdout():
    """Everything written to file descriptor 1 inside the block, by Python or by C++."""
    sys.stdout.flush()
    saved = os.dup(1)
    out: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield out
        finally:
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


# ---- the tree -----------------------------------------------------------------------------------

_MEANINGLESS = re.compile(r"^(=>\[.*|NAUO\d*|\d+|)$", re.IGNORECASE)


def _node(label: TDF_Label, boxes: dict) -> Node:
    proto = label
    if XCAFDoc_ShapeTool.IsReference_s(label):
        proto = TDF_Label()
        XCAFDoc_ShapeTool.GetReferredShape_s(label, proto)
    product = label_name(proto)
    instance = label_name(label) if proto is not label else ""
    name = instance if not _MEANINGLESS.match(instance.strip()) else product or instance or "unnamed"
    components = TDF_LabelSequence()
    XCAFDoc_ShapeTool.GetComponents_s(proto, components, False)
    kind = "assembly" if components.Length() or XCAFDoc_ShapeTool.IsAssembly_s(proto) else "part"
    node = Node(segment=name, name=name.strip(), product=product.strip(), kind=kind, label=label, proto=proto,
                color=_color(label) or _color(proto) or _subshape_color(proto), material=_material(proto),
                size=_size(proto, boxes))
    node.children = [_node(components.Value(i), boxes) for i in range(1, components.Length() + 1)]
    _unique_segments(node.children)
    return node


def _unique_segments(siblings: list[Node]) -> None:
    """Names usable in an id, unique among siblings: the second "M3 screw" is "M3_screw#2"."""
    taken: set[str] = set()
    for node in siblings:
        base = id_segment(node.segment)
        segment, n = base, 1
        while segment in taken:
            n += 1
            segment = f"{base}#{n}"
        taken.add(segment)
        node.segment = segment


def attributes(label: TDF_Label):
    """The attributes of a label. (TDF_Label.FindAttribute crashes OCP on some attribute types.)"""
    it = TDF_AttributeIterator(label)
    while it.More():
        yield it.Value()
        it.Next()


def label_name(label: TDF_Label) -> str:
    for attr in attributes(label):
        if isinstance(attr, TDataStd_Name):
            return utf8_name(attr.Get().ToExtString())
    return ""


def utf8_name(name: str) -> str:
    """A name as its author wrote it. ISO 10303-21 strings are ASCII with `\\X2\\` escapes, which
    OCCT decodes; many exporters write raw UTF-8 instead, which OCCT takes byte by byte as
    Latin-1 ("GehÃ¤use"). Such a name is decoded again; a real Latin-1 name is no valid UTF-8."""
    if name.isascii() or max(name) > "\xff":
        return name
    try:
        return name.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return name


def set_label_name(label: TDF_Label, name: str) -> None:
    TDataStd_Name.Set_s(label, TCollection_ExtendedString(name))


def _color(label: TDF_Label) -> str | None:
    color = Quantity_Color()
    for kind in (XCAFDoc_ColorGen, XCAFDoc_ColorSurf, XCAFDoc_ColorCurv):
        if XCAFDoc_ColorTool.GetColor_s(label, kind, color):
            # the file's own numbers: OCCT keeps colours linear and the STEP file holds sRGB
            return "#" + "".join(f"{round(v * 255):02x}" for v in color.Values(Quantity_TOC_sRGB))
    return None


def _subshape_color(proto: TDF_Label) -> str | None:
    """Vendor parts often colour faces, not the part: the first face colour stands for it."""
    subs = TDF_LabelSequence()
    XCAFDoc_ShapeTool.GetSubShapes_s(proto, subs)
    for i in range(1, subs.Length() + 1):
        color = _color(subs.Value(i))
        if color:
            return color
    return None


def _material(proto: TDF_Label) -> str | None:
    ref = XCAFDoc.MaterialRefGUID_s()
    for attr in attributes(proto):
        if isinstance(attr, TDataStd_TreeNode) and attr.ID().IsSame(ref) and attr.HasFather():
            for mat in attributes(attr.Father().Label()):
                if isinstance(mat, XCAFDoc_Material):
                    name = mat.GetName().ToCString().strip()
                    return name or None
    return None


def _size(proto: TDF_Label, boxes: dict) -> tuple[float, float, float] | None:
    """The bounding box of the product in its own frame (once per product, shared by instances)."""
    key = _entry(proto)
    if key not in boxes:
        box = Bnd_Box()
        BRepBndLib.AddOptimal_s(XCAFDoc_ShapeTool.GetShape_s(proto), box, False, False)
        if box.IsVoid():
            boxes[key] = None
        else:
            x0, y0, z0, x1, y1, z1 = box.Get()
            boxes[key] = (round(x1 - x0, 3), round(y1 - y0, 3), round(z1 - z0, 3))
    return boxes[key]


def _entry(label: TDF_Label) -> str:
    entry = TCollection_AsciiString()
    TDF_Tool.Entry_s(label, entry)
    return entry.ToCString()


def _mesh(free: TDF_LabelSequence) -> None:
    """Triangulate every shape once, finer for small models: the boxes and the GLB use it."""
    for i in range(1, free.Length() + 1):
        shape = XCAFDoc_ShapeTool.GetShape_s(free.Value(i))
        box = Bnd_Box()
        BRepBndLib.Add_s(shape, box, False)
        if box.IsVoid():
            continue
        diagonal = box.CornerMin().Distance(box.CornerMax())
        BRepMesh_IncrementalMesh(shape, min(max(diagonal * 0.001, 0.005), 0.5), False, 0.35, True)
