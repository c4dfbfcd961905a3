"""STEP assemblies made with OCP for the tests and the benchmark (named sub-assemblies, parts
used several times, colours, a material), written by OCCT's own STEP writer."""

from __future__ import annotations

from pathlib import Path

from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox, BRepPrimAPI_MakeCylinder, BRepPrimAPI_MakeSphere
from OCP.gp import gp_Ax1, gp_Dir, gp_Pnt, gp_Trsf, gp_Vec
from OCP.Interface import Interface_Static
from OCP.Quantity import Quantity_Color, Quantity_TOC_sRGB
from OCP.STEPCAFControl import STEPCAFControl_Writer
from OCP.STEPControl import STEPControl_AsIs
from OCP.TCollection import TCollection_ExtendedString, TCollection_HAsciiString
from OCP.TDataStd import TDataStd_Name
from OCP.TDocStd import TDocStd_Document
from OCP.TopLoc import TopLoc_Location
from OCP.XCAFApp import XCAFApp_Application
from OCP.XCAFDoc import XCAFDoc_ColorGen, XCAFDoc_DocumentTool

from metaforge.adapters.step_read import captured_stdout


class AssemblyBuilder:
    def __init__(self):
        self.doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
        XCAFApp_Application.GetApplication_s().InitDocument(self.doc)
        self.shapes = XCAFDoc_DocumentTool.ShapeTool_s(self.doc.Main())
        self.colors = XCAFDoc_DocumentTool.ColorTool_s(self.doc.Main())
        self.materials = XCAFDoc_DocumentTool.MaterialTool_s(self.doc.Main())

    def part(self, name: str, shape, color: str | None = None, material: str | None = None):
        label = self.shapes.AddShape(shape, False)
        self._name(label, name)
        if color:
            r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
            self.colors.SetColor(label, Quantity_Color(r, g, b, Quantity_TOC_sRGB), XCAFDoc_ColorGen)
        if material:
            self.materials.SetMaterial(label, TCollection_HAsciiString(material), TCollection_HAsciiString(""),
                                       2.7, TCollection_HAsciiString("density"),
                                       TCollection_HAsciiString("POSITIVE_RATIO_MEASURE"))
        return label

    def assembly(self, name: str):
        label = self.shapes.NewShape()
        self._name(label, name)
        return label

    def add(self, parent, child, at=(0.0, 0.0, 0.0), turn_z: float = 0.0, name: str | None = None):
        trsf = gp_Trsf()
        if turn_z:
            trsf.SetRotation(gp_Ax1(gp_Pnt(0, 0, 0), gp_Dir(0, 0, 1)), turn_z)
        move = gp_Trsf()
        move.SetTranslation(gp_Vec(*at))
        component = self.shapes.AddComponent(parent, child, TopLoc_Location(move.Multiplied(trsf)))
        if name:
            self._name(component, name)
        return component

    def write(self, path: Path, unit: str = "MM") -> Path:
        self.shapes.UpdateAssemblies()
        Interface_Static.SetCVal_s("write.step.unit", unit)
        try:
            writer = STEPCAFControl_Writer()
            writer.SetColorMode(True)
            writer.SetNameMode(True)
            with captured_stdout():
                assert writer.Transfer(self.doc, STEPControl_AsIs)
                assert writer.Write(str(path)).name == "IFSelect_RetDone"
        finally:
            Interface_Static.SetCVal_s("write.step.unit", "MM")
        return path

    @staticmethod
    def _name(label, name: str) -> None:
        TDataStd_Name.Set_s(label, TCollection_ExtendedString(name))


def rover(path: Path, unit: str = "MM") -> Path:
    """rover ─ chassis plate (aluminium, blue), 4 × M3 screw (one product), left wheel + an
    unnamed second wheel (one sub-assembly: hub + black tyre), a sensor mast sub-assembly."""
    b = AssemblyBuilder()
    plate = b.part("chassis plate", BRepPrimAPI_MakeBox(100, 80, 5).Shape(), color="#3366cc", material="aluminium 6061")
    screw = b.part("M3 screw", BRepPrimAPI_MakeCylinder(1.5, 10).Shape())
    hub = b.part("hub", BRepPrimAPI_MakeCylinder(10, 20).Shape())
    tyre = b.part("tyre", BRepPrimAPI_MakeCylinder(30, 15).Shape(), color="#1a1a1a")
    wheel = b.assembly("wheel")
    b.add(wheel, hub)
    b.add(wheel, tyre, at=(0, 0, 2))
    mast = b.assembly("sensor mast")
    b.add(mast, b.part("pole", BRepPrimAPI_MakeCylinder(2, 40).Shape()))
    b.add(mast, b.part("lidar/dome", BRepPrimAPI_MakeSphere(6).Shape(), color="#ff8800"), at=(0, 0, 46))
    rover = b.assembly("rover")
    b.add(rover, plate)
    for x, y in ((5, 5), (95, 5), (5, 75), (95, 75)):
        b.add(rover, screw, at=(x, y, 5))
    b.add(rover, wheel, at=(-20, 40, 0), name="left wheel")
    b.add(rover, wheel, at=(120, 40, 0))
    b.add(rover, mast, at=(50, 40, 5))
    return b.write(path, unit)


def fleet(path: Path, parts: int, kinds: int = 20) -> Path:
    """A larger assembly for the benchmark: `parts` instances of `kinds` products in modules."""
    b = AssemblyBuilder()
    products = []
    for k in range(kinds):
        shape = (BRepPrimAPI_MakeBox(5 + k, 4 + k % 7, 2 + k % 3).Shape() if k % 2 else
                 BRepPrimAPI_MakeCylinder(1 + k % 5, 3 + k).Shape())
        products.append(b.part(f"part {k}", shape, color=f"#{(k * 37) % 256:02x}80{(k * 91) % 256:02x}"))
    top = b.assembly("fleet")
    per_module = 50
    for m in range(0, parts, per_module):
        module = b.assembly(f"module {m // per_module}")
        for i in range(m, min(m + per_module, parts)):
            b.add(module, products[i % kinds], at=((i % 10) * 30, (i // 10 % 5) * 30, 0), turn_z=0.1 * (i % 4))
        b.add(top, module, at=(0, (m // per_module) * 200, 0))
    return b.write(path)
