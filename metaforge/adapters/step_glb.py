"""The GLB a viewer shows for a STEP file, written by OCCT's glTF writer (through OCP).

Every label is first renamed to its unique segment, so the glTF node tree carries the same
names as the assembly tree; the adapter then renames each glTF node to its entity's path.
"""

from __future__ import annotations

from pathlib import Path

from OCP.Message import Message_ProgressRange
from OCP.RWGltf import RWGltf_CafWriter
from OCP.RWMesh import RWMesh_CoordinateSystem_Zup, RWMesh_NameFormat_InstanceOrProduct, RWMesh_NameFormat_Product
from OCP.TCollection import TCollection_AsciiString
from OCP.TColStd import TColStd_IndexedDataMapOfStringString

from metaforge.adapters.base import AdapterError
from metaforge.adapters.step_read import Node, StepModel, captured_stdout, set_label_name


def write_glb(model: StepModel, out: Path, rel: str) -> None:
    for node in walk(model.roots):
        set_label_name(node.label, node.segment)
    writer = RWGltf_CafWriter(TCollection_AsciiString(str(out)), True)
    writer.SetNodeNameFormat(RWMesh_NameFormat_InstanceOrProduct)
    writer.SetMeshNameFormat(RWMesh_NameFormat_Product)
    # STEP models stand on Z; glTF viewers expect Y up (lengths go from mm to m on the way)
    writer.ChangeCoordinateSystemConverter().SetInputCoordinateSystem(RWMesh_CoordinateSystem_Zup)
    with captured_stdout() as said:
        ok = writer.Perform(model.doc, TColStd_IndexedDataMapOfStringString(), Message_ProgressRange())
    if not ok or not out.is_file():
        detail = said[0].strip().splitlines()[:1]
        raise AdapterError(rel, "OCP could not write the GLB for viewers" + (f": {detail[0]}" if detail else ""))


def walk(nodes: list[Node]):
    for node in nodes:
        yield node
        yield from walk(node.children)
