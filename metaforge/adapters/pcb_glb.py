"""The shapes of a board's 3D view (see pcb_3d), built and written to GLB with OpenCascade (OCP).

Runs in the STEP reader's child process only. One XCAF document: an assembly named after the
board's DesignElement, holding the extruded outline (`<board>/outline`) and one product per
placed component (named by its DesignElement's path, so each component is its own glTF node
and mesh); RWGltf_CafWriter writes it as the STEP adapter's GLB is written (Z up → Y up, mm → m).
"""

from __future__ import annotations

import math
from pathlib import Path

from OCP.BRep import BRep_Builder
from OCP.BRepAlgoAPI import BRepAlgoAPI_Cut
from OCP.BRepBuilderAPI import BRepBuilderAPI_GTransform, BRepBuilderAPI_MakeEdge, BRepBuilderAPI_MakeFace
from OCP.BRepMesh import BRepMesh_IncrementalMesh
from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox, BRepPrimAPI_MakeCylinder, BRepPrimAPI_MakePrism
from OCP.GC import GC_MakeArcOfCircle
from OCP.gp import gp_Ax1, gp_Ax2, gp_Circ, gp_Dir, gp_GTrsf, gp_Pnt, gp_Trsf, gp_Vec
from OCP.Message import Message_ProgressRange
from OCP.Quantity import Quantity_Color, Quantity_TOC_sRGB
from OCP.RWGltf import RWGltf_CafWriter
from OCP.RWMesh import RWMesh_CoordinateSystem_Zup, RWMesh_NameFormat_InstanceOrProduct, RWMesh_NameFormat_Product
from OCP.ShapeAnalysis import ShapeAnalysis_FreeBounds
from OCP.TCollection import TCollection_AsciiString, TCollection_ExtendedString
from OCP.TColStd import TColStd_IndexedDataMapOfStringString
from OCP.TDocStd import TDocStd_Document
from OCP.TopLoc import TopLoc_Location
from OCP.TopoDS import TopoDS, TopoDS_Compound
from OCP.TopTools import TopTools_HSequenceOfShape
from OCP.XCAFApp import XCAFApp_Application
from OCP.XCAFDoc import XCAFDoc_ColorGen, XCAFDoc_ColorTool, XCAFDoc_DocumentTool, XCAFDoc_ShapeTool

from metaforge.adapters.base import AdapterError
from metaforge.adapters.step_read import captured_stdout, set_label_name

BOARD_COLOR = "#1d5e33"
_BOX_COLORS = {"C": "#c8a070", "R": "#202020", "L": "#404040", "U": "#2a2a2a", "Y": "#b0b0b0", "J": "#e8e0d0",
               "P": "#e8e0d0", "D": "#303060", "H": "#c0a040", "Q": "#2a2a2a", "SW": "#d0d0d0"}
_DEFAULT_COLOR = "#606060"


def write_glb(plan, out: Path, rel: str) -> list[str]:
    """Write the GLB of `plan` to `out`; the warnings (models that could not be read) come back."""
    from metaforge.adapters import step_read

    warnings: list[str] = []
    doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
    XCAFApp_Application.GetApplication_s().InitDocument(doc)
    shapes = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    colors = XCAFDoc_DocumentTool.ColorTool_s(doc.Main())
    board_name = plan.board.split(":", 1)[1]
    top = shapes.NewShape()
    set_label_name(top, board_name)

    outline = _board_shape(plan, rel)
    BRepMesh_IncrementalMesh(outline, 0.05, False, 0.3, True)
    _add(shapes, colors, top, outline, board_name + "/outline", BOARD_COLOR)

    models: dict[str, tuple | None] = {}   # path → (shape, colour) read once per board
    for part in plan.parts:
        name = part.entity.split(":", 1)[1]
        pieces, color = [], None
        for m in part.models:
            if m.path not in models:
                models[m.path] = _read_model(step_read, m.path, warnings)
            got = models[m.path]
            if got is None:
                continue
            shape, model_color = got
            pieces.append(_placed(shape, _model_trsf(m)))
            color = color or model_color
        if not pieces:
            pieces = [_box(part)] if part.box else [_box_of(part, (-0.5, -0.5, 0.5, 0.5))]
            color = _box_color(part.reference)
        _add(shapes, colors, top, _compound(pieces, always=True), name, color or _DEFAULT_COLOR,
             _place_trsf(part, plan.thickness))
    shapes.UpdateAssemblies()

    writer = RWGltf_CafWriter(TCollection_AsciiString(str(out)), True)
    writer.SetNodeNameFormat(RWMesh_NameFormat_InstanceOrProduct)
    writer.SetMeshNameFormat(RWMesh_NameFormat_Product)
    converter = writer.ChangeCoordinateSystemConverter()
    converter.SetInputLengthUnit(0.001)
    converter.SetInputCoordinateSystem(RWMesh_CoordinateSystem_Zup)
    with captured_stdout() as said:
        ok = writer.Perform(doc, TColStd_IndexedDataMapOfStringString(), Message_ProgressRange())
    if not ok or not out.is_file():
        detail = said[0].strip().splitlines()[:1]
        raise AdapterError(rel, "OCP could not write the board's GLB" + (f": {detail[0]}" if detail else ""))
    return warnings


def _add(shapes, colors, top, shape, name: str, color: str, place=None) -> None:
    """One product per component (its own glTF mesh), placed in the board's assembly."""
    proto = shapes.AddShape(shape, False, False)
    set_label_name(proto, name)
    comp = shapes.AddComponent(top, proto, TopLoc_Location(place) if place is not None else TopLoc_Location())
    set_label_name(comp, name)
    colors.SetColor(proto, _color(color), XCAFDoc_ColorGen)


def _color(hex_color: str) -> Quantity_Color:
    r, g, b = (int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return Quantity_Color(r, g, b, Quantity_TOC_sRGB)


def _box_color(reference: str) -> str:
    letters = "".join(ch for ch in reference if ch.isalpha()).upper()
    return _BOX_COLORS.get(letters) or _BOX_COLORS.get(letters[:1]) or _DEFAULT_COLOR


# ---- the board ------------------------------------------------------------------------------------

def _board_shape(plan, rel: str):
    edges = TopTools_HSequenceOfShape()
    for seg in plan.outline:
        edge = _edge(seg)
        if edge is not None:
            edges.Append(edge)
    wires = TopTools_HSequenceOfShape()
    ShapeAnalysis_FreeBounds.ConnectEdgesToWires_s(edges, 0.01, False, wires)
    closed = []
    for i in range(1, wires.Length() + 1):
        wire = TopoDS.Wire_s(wires.Value(i))
        face = BRepBuilderAPI_MakeFace(wire, True)
        if wire.Closed() and face.IsDone():
            closed.append(face.Face())
    if not closed:  # an open outline: its extent stands for the board
        return _slab(plan)
    closed.sort(key=_area, reverse=True)
    up = gp_Vec(0, 0, plan.thickness)
    board = BRepPrimAPI_MakePrism(closed[0], up).Shape()
    for hole in closed[1:]:
        cut = BRepAlgoAPI_Cut(board, BRepPrimAPI_MakePrism(hole, up).Shape())
        if cut.IsDone():
            board = cut.Shape()
    return board


def _area(face) -> float:
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps

    props = GProp_GProps()
    BRepGProp.SurfaceProperties_s(face, props)
    return abs(props.Mass())


def _slab(plan):
    pts = [p for seg in plan.outline for p in (seg[1:] if seg[0] != "circle" else [seg[1]])]
    xs, ys = zip(*pts)
    return BRepPrimAPI_MakeBox(gp_Pnt(min(xs), min(ys), 0), gp_Pnt(max(xs), max(ys), plan.thickness)).Shape()


def _edge(seg):
    try:
        if seg[0] == "line":
            (x0, y0), (x1, y1) = seg[1], seg[2]
            if math.dist(seg[1], seg[2]) < 1e-6:
                return None
            return BRepBuilderAPI_MakeEdge(gp_Pnt(x0, y0, 0), gp_Pnt(x1, y1, 0)).Edge()
        if seg[0] == "arc":
            a, m, b = (gp_Pnt(p[0], p[1], 0) for p in seg[1:])
            arc = GC_MakeArcOfCircle(a, m, b)
            if not arc.IsDone():
                return BRepBuilderAPI_MakeEdge(a, b).Edge()
            return BRepBuilderAPI_MakeEdge(arc.Value()).Edge()
        if seg[0] == "circle":
            (cx, cy), r = seg[1], seg[2]
            if r <= 0:
                return None
            return BRepBuilderAPI_MakeEdge(gp_Circ(gp_Ax2(gp_Pnt(cx, cy, 0), gp_Dir(0, 0, 1)), r)).Edge()
    except Exception:  # noqa: BLE001 — a degenerate segment is left out of the outline
        return None
    return None


# ---- the parts -------------------------------------------------------------------------------------

def _read_model(step_read, path: str, warnings: list[str]):
    try:
        model = step_read.read(Path(path), path)
    except AdapterError as exc:
        warnings.append(f"3D model {path}: {exc.reason}")
        return None
    pieces = [XCAFDoc_ShapeTool.GetShape_s(node.label) for node in model.roots]
    color = next((node.color for node in _walk(model.roots) if node.color), None)
    return _compound(pieces), color


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _compound(pieces, always: bool = False):
    """The pieces as one shape; `always` keeps each piece's own placement (a located shape given
    to XCAF alone loses it)."""
    if len(pieces) == 1 and not always:
        return pieces[0]
    comp = TopoDS_Compound()
    builder = BRep_Builder()
    builder.MakeCompound(comp)
    for piece in pieces:
        builder.Add(comp, piece)
    return comp


def _scaled(m) -> bool:
    return any(abs(s - 1.0) > 1e-9 for s in m.scale)


def _model_trsf(m):
    """KiCad's model matrix: translate(offset) · rotZ(-rz) · rotY(-ry) · rotX(-rx) · scale."""
    t = gp_Trsf()
    t.SetTranslation(gp_Vec(*m.offset))
    for axis, deg in ((gp_Dir(0, 0, 1), m.rotate[2]), (gp_Dir(0, 1, 0), m.rotate[1]), (gp_Dir(1, 0, 0), m.rotate[0])):
        if deg:
            r = gp_Trsf()
            r.SetRotation(gp_Ax1(gp_Pnt(0, 0, 0), axis), math.radians(-deg))
            t.Multiply(r)
    if _scaled(m):
        g = gp_GTrsf()
        g.SetValue(1, 1, m.scale[0])
        g.SetValue(2, 2, m.scale[1])
        g.SetValue(3, 3, m.scale[2])
        return (t, g)
    return t


def _placed(shape, trsf):
    """`shape` moved by `trsf` (a (rigid, scale) pair is applied as a copy, then meshed again)."""
    if isinstance(trsf, tuple):
        rigid, scale = trsf
        shape = BRepBuilderAPI_GTransform(shape, scale, True).Shape()
        BRepMesh_IncrementalMesh(shape, 0.02, False, 0.35, True)
        trsf = rigid
    return shape.Moved(TopLoc_Location(trsf))


def _place_trsf(part, thickness: float):
    t = gp_Trsf()
    t.SetTranslation(gp_Vec(part.x, part.y, 0.0 if part.bottom else thickness))
    r = gp_Trsf()
    r.SetRotation(gp_Ax1(gp_Pnt(0, 0, 0), gp_Dir(0, 0, 1)), math.radians(part.angle))
    t.Multiply(r)
    if part.bottom and part.models:  # a library model stands on the top side: turned under the board
        for axis in (gp_Dir(0, 1, 0), gp_Dir(0, 0, 1)):  # as KiCad's 3D viewer: π about Y, then π about Z
            f = gp_Trsf()
            f.SetRotation(gp_Ax1(gp_Pnt(0, 0, 0), axis), math.pi)
            t.Multiply(f)
    return t


def _box(part):
    return _box_of(part, part.box)


def _box_of(part, box):
    x0, y0, x1, y1 = box
    z0, z1 = (-part.height, 0.0) if part.bottom else (0.0, part.height)
    if part.round:  # a mounting hole's ring of copper
        axis = gp_Ax2(gp_Pnt((x0 + x1) / 2, (y0 + y1) / 2, z0), gp_Dir(0, 0, 1))
        shape = BRepPrimAPI_MakeCylinder(axis, min(x1 - x0, y1 - y0) / 2, z1 - z0).Shape()
        BRepMesh_IncrementalMesh(shape, 0.02, False, 0.3, True)
        return shape
    shape = BRepPrimAPI_MakeBox(gp_Pnt(x0, y0, z0), gp_Pnt(x1, y1, z1)).Shape()
    BRepMesh_IncrementalMesh(shape, 0.05, False, 0.5, True)
    return shape
