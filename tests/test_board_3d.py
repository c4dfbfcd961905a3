"""The board in 3D: `mf ingest` of a .kicad_pcb leaves a GLB and ModelManifest beside the STEP
files' ones, with one glTF node and mesh per placed component named by its DesignElement, each
footprint at its place and on its side, with its STEP model when the file is found (Debian's
StickHub demo keeps some in its project), else a box from its courtyard."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from metaforge.adapters.glb import node_boxes, read_json
from tests.conftest import mf_process

DEMOS = Path("/usr/share/kicad/demos")
BOARD = "kicad/flight-controller.kicad_pcb"
needs_demos = pytest.mark.skipif(not DEMOS.is_dir(), reason="Debian's kicad-demos is not installed")


def _artifacts(root: Path, rel: str) -> tuple[dict, dict]:
    base = root / ".metaforge" / "artifacts" / rel.replace("/", "__")
    manifest = json.loads(base.with_name(base.name + ".manifest.json").read_text())
    gltf = read_json((root / manifest["glb_url"]).read_bytes())
    return manifest, gltf


def _triangles(gltf: dict, node: dict) -> int:
    return sum(gltf["accessors"][p["indices"]]["count"] // 3 for p in gltf["meshes"][node["mesh"]]["primitives"])


def test_the_template_board_has_one_mesh_per_placed_component_named_by_entity(twin, mf):
    r = mf("ingest", ".", cwd=twin)
    assert r.code == 0, r.err
    manifest, gltf = _artifacts(twin, BOARD)
    assert manifest["source"] == BOARD and manifest["adapter"] == "kicad_pcb"
    # every footprint of the board file is one node with a mesh, named by its entity's path
    footprints = (twin / BOARD).read_text().count("\n\t(footprint ")
    meshes = [n for n in gltf["nodes"] if "mesh" in n and not n["name"].endswith("/outline")]
    assert len(meshes) == footprints == 36  # 32 parts and 4 mounting holes
    assert len({n["mesh"] for n in meshes}) == len(meshes)  # a mesh of its own each
    for node in meshes:
        assert gltf["meshes"][node["mesh"]]["name"] == node["name"]
        eid = manifest["mesh_to_node_map"][node["name"]]
        assert eid == "DesignElement:" + node["name"]
        shown = mf("show", eid, "--json", cwd=twin)
        assert shown.code == 0 and shown.json["properties"]["kind"] == "component", eid
    tree = manifest["component_tree"]
    assert tree["id"] == "DesignElement:flight-controller/pcb/flight-controller"
    assert {c["mesh_name"] for c in tree["children"]} == {n["name"] for n in meshes}

    # the outline is 36 × 36 mm, 1.6 mm thick, centred; U1 sits on top at its place, turned 45°
    boxes = node_boxes(gltf)
    lo, hi = boxes["flight-controller/pcb/flight-controller/outline"]
    assert [round(v * 1000, 2) for v in lo] == [-18.0, 0.0, -18.0]
    assert [round(v * 1000, 2) for v in hi] == [18.0, 1.6, 18.0]
    lo, hi = boxes["flight-controller/U1"]
    assert round(lo[1] * 1000, 3) == 1.6  # on the top copper
    centre = [(a + b) / 2 * 1000 for a, b in zip(lo, hi)]
    assert centre[0] == pytest.approx(0.0, abs=0.01) and centre[2] == pytest.approx(1.5, abs=0.01)  # KiCad y 101.5: 1.5 mm south, +z in glTF
    assert hi[0] - lo[0] == pytest.approx(0.0134 * 2 ** 0.5, rel=0.01)  # the 13.4 mm courtyard turned 45°

    # the project's 3D models: the board comes first, the enclosure beside it
    from metaforge.repo import Repo
    from metaforge.serve import manifests

    projects = manifests.projects(Repo.find(twin))
    assert projects[0]["models"] == ["kicad__flight-controller.kicad_pcb", "mech__enclosure.step"]


@needs_demos
def test_a_library_model_found_through_kicad9_3dmodel_dir_replaces_the_box_with_its_offset(twin, mf, tmp_path):
    """U1's model is `${KICAD9_3DMODEL_DIR}/Package_QFP.3dshapes/LQFP-64_10x10mm_P0.5mm.step`: a
    STEP file there (here a Debian demo's) is used, moved by the footprint's model offset."""
    lib = tmp_path / "kicad-3d" / "Package_QFP.3dshapes"
    lib.mkdir(parents=True)
    shutil.copy(DEMOS / "stickhub" / "3dmodels" / "APHB1608.step", lib / "LQFP-64_10x10mm_P0.5mm.step")
    env = {"KICAD9_3DMODEL_DIR": str(tmp_path / "kicad-3d")}
    p = mf_process("ingest", ".", cwd=twin, env=env)
    assert p.returncode == 0, p.stderr
    manifest, gltf = _artifacts(twin, BOARD)
    assert manifest["models_seen"] == [str((lib / "LQFP-64_10x10mm_P0.5mm.step").resolve())]
    assert "U1" not in manifest["boxes"] and "U2" in manifest["boxes"]
    u1 = next(n for n in gltf["nodes"] if n["name"] == "flight-controller/U1")
    assert _triangles(gltf, u1) > 12  # the model's faces, not a box's 12 triangles
    before = node_boxes(gltf)["flight-controller/U1"][0][1]

    text = (twin / BOARD).read_text()
    at = text.index('(model "${KICAD9_3DMODEL_DIR}/Package_QFP.3dshapes/LQFP-64_10x10mm_P0.5mm.step"')
    text = text[:at] + text[at:].replace("(xyz 0 0 0)", "(xyz 0 0 2)", 1)  # the model's offset: 2 mm up
    (twin / BOARD).write_text(text)
    p = mf_process("ingest", ".", cwd=twin, env=env)
    assert p.returncode == 0, p.stderr
    manifest, gltf = _artifacts(twin, BOARD)
    lo, hi = node_boxes(gltf)["flight-controller/U1"]
    assert (lo[1] - before) * 1000 == pytest.approx(2.0, abs=0.01)
    assert (hi[0] - lo[0]) * 1000 < 3  # the 1.6 × 0.8 mm LED, not the QFP's courtyard


@needs_demos
def test_a_debian_demo_board_with_its_own_step_models_and_parts_on_both_sides(tmp_path, mf):
    repo = tmp_path / "hub"
    assert mf("init", str(repo)).code == 0
    shutil.copytree(DEMOS / "stickhub", repo / "stickhub")
    p = mf_process("ingest", "stickhub/StickHub.kicad_pcb", cwd=repo)
    assert p.returncode == 0, p.stderr
    manifest, gltf = _artifacts(repo, "stickhub/StickHub.kicad_pcb")
    assert len(manifest["models_seen"]) == 4 and all("/stickhub/3dmodels/" in m for m in manifest["models_seen"])
    boxes = node_boxes(gltf)
    lo, hi = boxes["StickHub/pcb/StickHub/outline"]
    thickness = hi[1] - lo[1]
    assert thickness * 1000 == pytest.approx(1.6, abs=0.01)
    text = (repo / "stickhub" / "StickHub.kicad_pcb").read_text()
    sides = {}
    for chunk in re.split(r"\n(?:\t|  )\(footprint ", text)[1:]:
        layer = chunk.split('(layer "', 1)[1].split('"', 1)[0]
        ref = chunk.split('"Reference" "', 1)[1].split('"', 1)[0] if '"Reference" "' in chunk else \
            chunk.split('(fp_text reference "', 1)[1].split('"', 1)[0]
        sides[ref] = layer
    names = {n.rsplit("/", 1)[-1]: n for n in manifest["mesh_to_node_map"]}
    checked = {"F.Cu": 0, "B.Cu": 0}
    for ref, layer in sides.items():
        if ref not in names:
            continue
        lo, hi = boxes[names[ref]]
        if layer == "F.Cu":
            assert lo[1] >= thickness - 1e-4, ref  # above the top copper
        else:
            assert hi[1] <= 1e-4, ref  # under the board
        checked[layer] += 1
    assert checked["F.Cu"] > 20 and checked["B.Cu"] > 20
    with_models = [n for n in gltf["nodes"] if "mesh" in n and _triangles(gltf, n) > 12]
    assert len(with_models) >= 16


@needs_demos
def test_a_model_file_opencascade_cannot_read_leaves_a_box_and_a_warning(tmp_path, mf):
    repo = tmp_path / "hub"
    assert mf("init", str(repo)).code == 0
    shutil.copytree(DEMOS / "stickhub", repo / "stickhub")
    broken = repo / "stickhub" / "3dmodels" / "APHB1608.step"
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 3])  # cut mid-file
    p = mf_process("ingest", "stickhub/StickHub.kicad_pcb", cwd=repo)
    assert p.returncode == 0, p.stderr
    manifest, _ = _artifacts(repo, "stickhub/StickHub.kicad_pcb")
    assert any("APHB1608.step" in w for w in manifest.get("warnings", []))
    assert len(manifest["models_seen"]) == 4  # found, if not readable: its parts are boxes
    # and the person running ingest is told, not only the manifest
    assert "stickhub/StickHub.kicad_pcb: " in p.stderr and "APHB1608.step" in p.stderr, p.stderr


@needs_demos
def test_a_model_file_that_crashes_opencascade_leaves_the_board_in_boxes(tmp_path, mf):
    """Crystal_SMD_4P_2520.step cut at an entity boundary makes OpenCascade dereference a
    missing entity (SIGSEGV): the child dies, the board is built again without its models."""
    from tests.test_artifacts_as_kept import truncated_step

    repo = tmp_path / "hub"
    assert mf("init", str(repo)).code == 0
    shutil.copytree(DEMOS / "stickhub", repo / "stickhub")
    truncated_step(repo / "stickhub" / "3dmodels" / "Crystal_SMD_4P_2520.step")
    p = mf_process("ingest", "stickhub/StickHub.kicad_pcb", cwd=repo)
    assert p.returncode == 0, p.stderr
    assert mf("show", "DesignElement:StickHub/Y1", cwd=repo).code == 0  # the board's entities are in
    manifest, gltf = _artifacts(repo, "stickhub/StickHub.kicad_pcb")
    assert "OpenCascade crashed" in manifest["warnings"][0] and "SIGSEGV" in manifest["warnings"][0]
    assert "every part a box" in p.stderr
    assert manifest["models_seen"] == [] and len(manifest["boxes"]) == len(manifest["component_tree"]["children"])
    y1 = next(n for n in gltf["nodes"] if n["name"] == "StickHub/Y1")
    assert _triangles(gltf, y1) == 12  # the crystal whose model crashed: its courtyard's box
