"""STEP adapter: assembly trees made with OCP and a real KiCad library model, the GLB and its
manifest checked against each other, the refusals, and a clean stdout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import OCP  # noqa: E402,F401  (a dependency of mf: a missing one fails here, it is not skipped)

from step_models import AssemblyBuilder, rover  # noqa: E402

from metaforge.adapters import AdapterError  # noqa: E402
from metaforge.adapters.glb import node_paths, read_json  # noqa: E402
from metaforge.adapters.step import StepAdapter, artifact_paths  # noqa: E402
from metaforge.thread.entities import parse_id, validate_properties  # noqa: E402

DATA = Path(__file__).parent / "data" / "step"
step = StepAdapter()


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A folder that counts as an mf repository for the adapter (it holds .metaforge/)."""
    (tmp_path / ".metaforge").mkdir()
    (tmp_path / "mech").mkdir()
    return tmp_path


@pytest.fixture
def rover_step(workspace) -> Path:
    return rover(workspace / "mech" / "rover.step")


def by_id(result) -> dict:
    return {e.id: e for e in result.entities}


def mm(value: float) -> dict:
    return {"value": value, "unit": "mm"}


def test_the_assembly_tree_becomes_design_elements(rover_step):
    result = step.parse(rover_step, "mech/rover.step")
    items = by_id(result)
    assert list(items) == [
        "DesignElement:rover", "DesignElement:rover/chassis_plate",
        "DesignElement:rover/M3_screw", "DesignElement:rover/M3_screw#2",
        "DesignElement:rover/M3_screw#3", "DesignElement:rover/M3_screw#4",
        "DesignElement:rover/left_wheel", "DesignElement:rover/left_wheel/hub", "DesignElement:rover/left_wheel/tyre",
        "DesignElement:rover/wheel", "DesignElement:rover/wheel/hub", "DesignElement:rover/wheel/tyre",
        "DesignElement:rover/sensor_mast", "DesignElement:rover/sensor_mast/pole",
        "DesignElement:rover/sensor_mast/lidar_dome",
    ]
    for e in result.entities:
        parse_id(e.id)
        validate_properties("DesignElement", e.props)  # the graph accepts every property as read
        assert e.region == "node:" + e.id.split(":", 1)[1]
    top = items["DesignElement:rover"]
    assert top.props["kind"] == "assembly"
    assert (top.props["width"], top.props["depth"], top.props["height"]) == (mm(200.0), mm(80.0), mm(57.0))
    assert [t for _, t in top.links] == ["DesignElement:rover/chassis_plate", "DesignElement:rover/M3_screw",
                                         "DesignElement:rover/M3_screw#2", "DesignElement:rover/M3_screw#3",
                                         "DesignElement:rover/M3_screw#4", "DesignElement:rover/left_wheel",
                                         "DesignElement:rover/wheel", "DesignElement:rover/sensor_mast"]
    assert {r for r, _ in top.links} == {"HAS_ELEMENT"}
    plate = items["DesignElement:rover/chassis_plate"].props
    assert plate == {"kind": "part", "description": "chassis plate", "width": mm(100.0), "depth": mm(80.0),
                     "height": mm(5.0), "material": "aluminium 6061", "fields": {"color": "#3366cc"}}
    left = items["DesignElement:rover/left_wheel"]
    assert left.props["description"] == "left wheel" and left.props["fields"] == {"product": "wheel"}
    assert left.links == [("HAS_ELEMENT", "DesignElement:rover/left_wheel/hub"),
                          ("HAS_ELEMENT", "DesignElement:rover/left_wheel/tyre")]
    assert items["DesignElement:rover/wheel/tyre"].props["fields"] == {"color": "#1a1a1a"}
    assert items["DesignElement:rover/M3_screw#3"].props["height"] == mm(10.0)
    dome = items["DesignElement:rover/sensor_mast/lidar_dome"].props  # a '/' in a name stays in its segment
    assert dome["description"] == "lidar/dome" and dome["width"] == mm(12.0)


def test_glb_node_and_mesh_names_are_the_manifests(rover_step, workspace):
    result = step.parse(rover_step, "mech/rover.step")
    manifest = result.extra["manifest"]
    glb_path, manifest_path = artifact_paths(workspace, "mech/rover.step")
    assert manifest["glb_url"] == ".metaforge/artifacts/mech__rover.step.glb"
    assert (workspace / manifest["glb_url"]) == glb_path
    assert json.loads(manifest_path.read_text()) == manifest
    assert manifest["artifact_id"] == "Artifact:mech/rover.step" and manifest["last_updated"].endswith("+00:00")

    data = glb_path.read_bytes()
    gltf = read_json(data)  # checks magic, version and total length too
    nodes = gltf["nodes"]
    names = [n["name"] for n in nodes]
    assert len(names) == len(set(names)), "every GLB node has its own name"
    ids = set(by_id(result))
    assert set(names) == set(manifest["mesh_to_node_map"])
    assert set(manifest["mesh_to_node_map"].values()) == ids
    for name, eid in manifest["mesh_to_node_map"].items():
        assert eid == "DesignElement:" + name
    # a node's place in the glTF tree is its entity's place in the assembly tree
    for index, path in node_paths(gltf).items():
        assert path[-1] == names[index]
        assert "/".join(p.rsplit("/", 1)[-1] for p in path) == names[index]
    # parts carry meshes; a mesh used by one node carries that node's name
    with_mesh = [n for n in nodes if "mesh" in n]
    assert {n["name"] for n in with_mesh} == {e.id.split(":", 1)[1] for e in result.entities if e.props["kind"] == "part"}
    for n in with_mesh:
        assert gltf["meshes"][n["mesh"]]["name"] == n["name"]
    # glTF is Y up in metres: the screw at (95, 5, 5) mm in the Z-up model
    screw2 = nodes[names.index("rover/M3_screw#2")]
    assert screw2["translation"] == pytest.approx([0.095, 0.005, -0.005])


def test_the_component_tree_follows_the_entities(rover_step):
    result = step.parse(rover_step, "mech/rover.step")
    manifest = result.extra["manifest"]
    mesh_of = {v: k for k, v in manifest["mesh_to_node_map"].items()}
    items = by_id(result)
    seen = []

    def check(node):
        seen.append(node["id"])
        entity = items[node["id"]]
        assert set(node) == {"id", "name", "mesh_name", "children", "node_type"}
        assert node["name"] == entity.props["description"] and node["node_type"] == entity.props["kind"]
        assert node["mesh_name"] == mesh_of[node["id"]]
        assert [c["id"] for c in node["children"]] == [t for _, t in entity.links]
        for child in node["children"]:
            check(child)

    check(manifest["component_tree"])
    assert seen == list(items)


def test_a_file_with_several_top_shapes_gets_one_root_for_the_file(workspace):
    b = AssemblyBuilder()
    from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox

    b.part("bracket", BRepPrimAPI_MakeBox(10, 20, 3).Shape())
    b.part("bracket", BRepPrimAPI_MakeBox(10, 20, 4).Shape())
    path = b.write(workspace / "mech" / "loose-parts.stp")
    result = step.parse(path, "mech/loose-parts.stp")
    items = by_id(result)
    assert list(items) == ["DesignElement:loose-parts", "DesignElement:loose-parts/bracket",
                           "DesignElement:loose-parts/bracket#2"]
    assert items["DesignElement:loose-parts"].props == {"kind": "assembly", "description": "loose-parts"}
    assert items["DesignElement:loose-parts/bracket#2"].props["height"] == mm(4.0)
    manifest = result.extra["manifest"]
    assert manifest["component_tree"]["mesh_name"] is None  # the file itself is no GLB node
    assert set(manifest["mesh_to_node_map"]) == {"loose-parts/bracket", "loose-parts/bracket#2"}


def test_a_model_saved_in_inches_is_measured_in_mm(workspace):
    path = rover(workspace / "mech" / "rover_in.step", unit="INCH")
    assert "INCH" in path.read_text()
    items = by_id(step.parse(path, "mech/rover_in.step"))
    assert items["DesignElement:rover_in/chassis_plate"].props["width"] == mm(100.0)


def test_a_file_name_with_accents_and_spaces(workspace):
    path = rover(workspace / "mech" / "Gehäuse v2 (Entwurf).step")
    result = step.parse(path, "mech/Gehäuse v2 (Entwurf).step")
    assert result.entities[0].id == "DesignElement:Gehause_v2__Entwurf_"
    assert result.extra["manifest"]["glb_url"] == ".metaforge/artifacts/mech__Gehäuse v2 (Entwurf).step.glb"
    assert (workspace / result.extra["manifest"]["glb_url"]).is_file()


def test_a_real_kicad_library_model(workspace):
    path = workspace / "mech" / "Battery_CR1225.step"
    shutil.copyfile(DATA / "Battery_CR1225.step", path)
    result = step.parse(path, "mech/Battery_CR1225.step")
    (cell,) = result.entities
    assert cell.id == "DesignElement:Battery_CR1225"
    assert cell.props == {"kind": "part", "description": "Battery_CR1225", "width": mm(12.5), "depth": mm(12.5),
                          "height": mm(2.5), "fields": {"color": "#4c4c4c"}}
    gltf = read_json((workspace / result.extra["manifest"]["glb_url"]).read_bytes())
    assert [n["name"] for n in gltf["nodes"]] == ["Battery_CR1225"]
    assert gltf["accessors"] and gltf["buffers"][0]["byteLength"] > 1000  # real triangles


def test_a_real_assembly_from_another_cad_system(workspace):
    """T-FLEX CAD wrote it: Cyrillic names, one pin product placed twice, an empty product."""
    path = workspace / "mech" / "Connfly_Plug_WF2_2.54.stp"
    shutil.copyfile(DATA / "Connfly_Plug_WF2_2.54.stp", path)
    result = step.parse(path, "mech/Connfly_Plug_WF2_2.54.stp")
    items = by_id(result)
    root = items["DesignElement:Connfly_Plug_WF2_2.54"]
    assert root.props["kind"] == "assembly" and root.props["description"] == "Вилка Connfly WF-2"
    assert (root.props["width"], root.props["depth"], root.props["height"]) == (mm(5.08), mm(5.8), mm(14.7))
    pins = [e for e in result.entities if e.props["description"].startswith("Тело_4")]
    assert len(pins) == 2 and len({p.id for p in pins}) == 2
    for pin in pins:
        assert (pin.props["width"], pin.props["height"]) == (mm(0.6), mm(13.55))
        assert pin.props["fields"]["color"] == "#bfad6f"
    assert pins[1].props["fields"]["product"] == "Тело_4:2"  # the second placement has its own name
    for e in result.entities:
        validate_properties("DesignElement", e.props)
    assert {t for _, t in root.links} == set(items) - {root.id}
    manifest = result.extra["manifest"]
    gltf = read_json((workspace / manifest["glb_url"]).read_bytes())
    assert {n["name"] for n in gltf["nodes"]} == set(manifest["mesh_to_node_map"])
    placed = {n["name"]: n.get("translation") for n in gltf["nodes"]}
    assert placed[pins[1].id.split(":", 1)[1]] == pytest.approx([-0.00254, 0.0, 0.0])


def test_projection_gives_the_file_back_unchanged(rover_step):
    result = step.parse(rover_step, "mech/rover.step")
    entities = {e.id: dict(e.props, description="renamed") for e in result.entities}
    assert step.project(rover_step, "mech/rover.step", entities) == rover_step.read_bytes()


def test_an_unchanged_file_reuses_its_glb_and_a_changed_one_gets_a_new_one(rover_step, workspace):
    first = step.parse(rover_step, "mech/rover.step").extra["manifest"]
    glb_path, _ = artifact_paths(workspace, "mech/rover.step")
    stamp = glb_path.stat().st_mtime_ns
    again = step.parse(rover_step, "mech/rover.step").extra["manifest"]
    assert again == first and glb_path.stat().st_mtime_ns == stamp
    rover_step.write_bytes(rover_step.read_bytes().replace(b"M3 screw", b"M4 screw"))
    changed = step.parse(rover_step, "mech/rover.step").extra["manifest"]
    assert "rover/M4_screw#4" in changed["mesh_to_node_map"] and "rover/M3_screw" not in changed["mesh_to_node_map"]
    assert "rover/M4_screw" in [n["name"] for n in read_json(glb_path.read_bytes())["nodes"]]
    assert not list(glb_path.parent.glob("*.tmp"))


def test_outside_a_repository_the_tree_is_read_and_no_glb_written(tmp_path):
    path = rover(tmp_path / "rover.step")
    result = step.parse(path, "rover.step")
    assert len(result.entities) == 15
    assert result.extra["manifest"] is None and "no GLB written" in result.extra["warnings"][0]
    assert not (tmp_path / ".metaforge").exists()


def test_when_the_glb_cannot_be_written_the_tree_still_counts(rover_step, workspace):
    (workspace / ".metaforge" / "artifacts").write_text("a file where the folder should be")
    result = step.parse(rover_step, "mech/rover.step")
    assert len(result.entities) == 15 and result.extra["manifest"] is None
    assert result.extra["warnings"][0].startswith("mech/rover.step: no GLB written: ")


def test_the_caller_may_name_the_repository_root(tmp_path):
    path = rover(tmp_path / "rover.step")
    (tmp_path / "elsewhere").mkdir()
    result = step.parse(path, "rover.step", root=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / result.extra["manifest"]["glb_url"]).is_file()


_EMPTY_TREE = """ISO-10303-21;
HEADER;
FILE_DESCRIPTION(('empty'),'2;1');
FILE_NAME('empty.step','2024-01-01T00:00:00',(''),(''),'','','');
FILE_SCHEMA(('AUTOMOTIVE_DESIGN { 1 0 10303 214 1 1 1 1 }'));
ENDSEC;
DATA;
#1 = APPLICATION_PROTOCOL_DEFINITION('international standard','automotive_design',2000,#2);
#2 = APPLICATION_CONTEXT('core data for automotive mechanical design processes');
#3 = PRODUCT('nothing','nothing','',(#4));
#4 = PRODUCT_CONTEXT('',#2,'mechanical');
ENDSEC;
END-ISO-10303-21;
"""


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"solid cube\n  facet normal 0 0 1\nendsolid\n"),
     r"^mech/part\.step: not a STEP file: it does not start with ISO-10303-21;"),
    (lambda p: p.write_bytes(b""), r"^mech/part\.step: empty file"),
    (lambda p: p.write_bytes((DATA / "Battery_CR1225.step").read_bytes()[:4000]),
     r"^mech/part\.step:\d+: not a readable STEP file \(OCP read status IFSelect_RetFail\): .*Line \d+: "
     r"Incorrect syntax: unexpected end of file"),
    (lambda p: p.write_text(_EMPTY_TREE), r"^mech/part\.step: the STEP file holds no shapes: its assembly tree is empty"),
    (lambda p: None, r"^mech/part\.step: cannot read"),
])
def test_bad_files_are_refused_naming_the_file(workspace, make, message, capfd):
    path = workspace / "mech" / "part.step"
    make(path)
    with pytest.raises(AdapterError, match=message):
        step.parse(path, "mech/part.step")
    out, _ = capfd.readouterr()
    assert out == "", "OCCT's messages must not reach stdout (--json owns it)"
    assert not list((workspace / ".metaforge").rglob("*.glb"))


def test_a_parse_prints_nothing_on_stdout(rover_step, capfd):
    capfd.readouterr()
    step.parse(rover_step, "mech/rover.step")
    out, _ = capfd.readouterr()
    assert out == ""


def test_without_ocp_the_error_says_how_to_install_it(rover_step, tmp_path):
    # an OCP that is not there, first on the path of mf and of the STEP reader it spawns
    blocked = tmp_path / "no-ocp" / "OCP"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'OCP'\", name='OCP')\n")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from metaforge.adapters.step import StepAdapter\n"
        "from metaforge.adapters.base import AdapterError\n"
        "try:\n"
        "    StepAdapter().parse(Path(sys.argv[1]), 'mech/rover.step')\n"
        "except AdapterError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked.parent), str(Path(__file__).resolve().parents[1])])}
    p = subprocess.run([sys.executable, "-c", code, str(rover_step)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ("mech/rover.step: reading STEP files needs OpenCascade (the OCP package), which is "
                                "not installed (cadquery-ocp-novtk, a dependency of mf, is missing: reinstall mf)")


def test_glb_artifacts_stay_out_of_git_in_an_mf_repository(repo):
    (repo / "mech").mkdir()
    path = rover(repo / "mech" / "rover.step")
    step.parse(path, "mech/rover.step")
    assert (repo / ".metaforge" / "artifacts" / "mech__rover.step.glb").is_file()
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout
    assert "mech/rover.step" in out and "artifacts" not in out
    assert "artifacts/" in (repo / ".metaforge" / ".gitignore").read_text().splitlines()


def test_the_adapter_is_registered_for_step_file_names():
    from importlib.metadata import entry_points

    from metaforge.adapters.registry import GROUP

    (ep,) = [e for e in entry_points(group=GROUP) if e.name == "step"]
    adapter = ep.load()()
    assert adapter.owns("mech/frame.STEP") and adapter.owns("mech/frame.stp") and not adapter.owns("a.stl")
