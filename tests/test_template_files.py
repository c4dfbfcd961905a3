"""The drone-flight-controller template's own design files: a KiCad 9 project (root schematic,
sheets in a sub-folder, a placed board), a BOM in KiCad's export format and an enclosure STEP,
written by `templates/drone-flight-controller/generate.py`, read by kiutils and by mf's adapters,
and in agreement with the template's graph."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import read_log

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "drone-flight-controller"
FILES = TEMPLATE / "files"
KICAD = FILES / "kicad"
SCH = "kicad/flight-controller.kicad_sch"
PCB = "kicad/flight-controller.kicad_pcb"
BOM = "kicad/flight-controller-bom.csv"
STEP = "mech/enclosure.step"
SHEETS = ["sheets/mcu.kicad_sch", "sheets/sensors.kicad_sch", "sheets/power.kicad_sch", "sheets/connectors.kicad_sch"]


def _graph() -> dict[str, dict]:
    """The template's entities as twin.yaml adds them: id → props."""
    doc = yaml.safe_load((TEMPLATE / "twin.yaml").read_text())
    return {c["add"]: c.get("props", {}) for c in doc["changes"] if "add" in c}


def _symbols() -> dict[str, dict]:
    """Every placed symbol of the project, by reference: its fields, lib_id, sheet file, on_board."""
    from kiutils.schematic import Schematic

    out = {}
    for path in [KICAD / "flight-controller.kicad_sch"] + [KICAD / s for s in SHEETS]:
        sch = Schematic.from_file(str(path))
        embedded = {s.libId for s in sch.libSymbols}
        for sym in sch.schematicSymbols:
            assert sym.libId in embedded, f"{path.name}: {sym.libId} is not in lib_symbols"
            fields = {p.key: p.value for p in sym.properties}
            out[fields["Reference"]] = {**fields, "lib_id": sym.libId, "file": path.name, "on_board": sym.onBoard}
    return out


# ---- the files themselves ------------------------------------------------------------------------

def test_the_generator_makes_exactly_the_files_in_the_repository():
    """Run again, the generator would change no byte: the files are its output, and deterministic."""
    r = subprocess.run([sys.executable, str(TEMPLATE / "generate.py"), "--check"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_schematic_is_a_kicad_9_hierarchy_with_sheets_in_a_sub_folder():
    from kiutils.schematic import Schematic

    root = Schematic.from_file(str(KICAD / "flight-controller.kicad_sch"))
    assert root.version == 20250114 and root.generator == "eeschema"
    files = sorted(s.fileName.value for s in root.sheets)
    assert files == sorted(SHEETS) and all((KICAD / f).is_file() for f in files)
    symbols = _symbols()
    # annotated: every reference is a prefix and a number, none twice (a dict would hide a repeat)
    assert all(re.fullmatch(r"[A-Z]+\d+", ref) for ref in symbols)
    count = sum(len(Schematic.from_file(str(p)).schematicSymbols)
                for p in [KICAD / "flight-controller.kicad_sch"] + [KICAD / s for s in SHEETS])
    assert count == len(symbols) == 40
    assert symbols["U1"]["file"] == "mcu.kicad_sch" and symbols["U4"]["file"] == "power.kicad_sch"
    # parts not on the board (pack, ESC, motors, GPS, receiver) are in the schematic and BOM only
    assert {r for r, s in symbols.items() if not s["on_board"]} == {"BT1", "ESC1", "M1", "M2", "M3", "M4", "GPS1", "RX1"}


def test_the_board_is_placed_outlined_and_every_footprint_has_its_3d_model():
    from kiutils.board import Board

    board = Board.from_file(str(KICAD / "flight-controller.kicad_pcb"))
    assert board.version == 20241229
    copper = [layer for layer in board.layers if layer.name.endswith(".Cu")]
    assert len(copper) == 6 and board.general.thickness == 1.6
    edges = [g for g in board.graphicItems if getattr(g, "layer", None) == "Edge.Cuts"]
    xs = [c for g in edges for c in (g.start.X, g.end.X)]
    ys = [c for g in edges for c in (g.start.Y, g.end.Y)]
    assert max(xs) - min(xs) == pytest.approx(36.0) and max(ys) - min(ys) == pytest.approx(36.0)
    refs = {}
    for fp in board.footprints:
        ref = fp.properties["Reference"]  # KiCad 8+: (property "Reference" ...), a dict in kiutils
        refs[ref] = fp
        assert min(xs) < fp.position.X < max(xs) and min(ys) < fp.position.Y < max(ys), ref
        if ref.startswith("H"):
            continue  # mounting holes: a drilled hole, no part
        lib, name = fp.libId.split(":")
        assert [m.path for m in fp.models] == [f"${{KICAD9_3DMODEL_DIR}}/{lib}.3dshapes/{name}.step"]
    holes = sorted((round(refs[f"H{i}"].position.X - 100, 2), round(refs[f"H{i}"].position.Y - 100, 2)) for i in range(1, 5))
    assert holes == [(-15.25, -15.25), (-15.25, 15.25), (15.25, -15.25), (15.25, 15.25)]  # the 30.5 mm stack pattern
    symbols = _symbols()
    on_board = {r for r, s in symbols.items() if s["on_board"]}
    assert set(refs) == on_board | {"H1", "H2", "H3", "H4"}
    for ref in on_board:  # the board's footprint is the schematic's: same footprint, value and MPN
        fp = refs[ref]
        fields = fp.properties
        assert fp.libId == symbols[ref]["Footprint"] and fields["Value"] == symbols[ref]["Value"]
        assert fields["MPN"] == symbols[ref]["MPN"]


def test_the_bom_is_kicads_grouped_export_of_the_schematic():
    from metaforge.adapters.bom import parse_references

    lines = (KICAD / "flight-controller-bom.csv").read_text().splitlines()
    assert lines[0] == '"Reference","Value","Footprint","Qty","MPN","Manufacturer"'
    symbols = _symbols()
    seen = []
    for line in lines[1:]:
        cells = json.loads(f"[{line}]")  # every cell quoted, as kicad-cli writes them
        refs = parse_references(cells[0])
        seen += refs
        assert int(cells[3]) == len(refs)
        for ref in refs:
            assert (symbols[ref]["Value"], symbols[ref]["Footprint"], symbols[ref]["MPN"],
                    symbols[ref]["Manufacturer"]) == tuple(cells[1:3] + cells[4:6])
    assert sorted(seen) == sorted(symbols)


def test_the_enclosure_step_is_an_assembly_of_named_parts():
    text = (FILES / STEP).read_text()
    assert text.startswith("ISO-10303-21;") and "FILE_NAME('enclosure.step','2026-03-01T00:00:00'" in text
    for name in ("enclosure", "tray", "lid", "standoff"):
        assert f"PRODUCT('{name}'" in text


# ---- the files and the graph -------------------------------------------------------------------

def test_values_mpns_and_pins_match_the_templates_graph():
    from kiutils.board import Board

    graph = _graph()
    symbols = _symbols()
    for eid, props in graph.items():
        if eid.startswith("BOMItem:"):
            for ref in props["references"]:
                assert symbols[ref]["Value"] == str(props["value"]), (eid, ref)
                assert symbols[ref]["MPN"] == props["mpn"] and symbols[ref]["Manufacturer"] == props["manufacturer"]
                if "footprint" in props:
                    assert symbols[ref]["Footprint"] == props["footprint"]
        elif props.get("kind") == "component":
            assert symbols[props["reference"]]["MPN"] == props["mpn"], eid
    board = Board.from_file(str(KICAD / "flight-controller.kicad_pcb"))
    u1 = next(fp for fp in board.footprints if fp.properties.get("Reference") == "U1")
    net_of_pin = {pad.pinFunction: pad.net.name for pad in u1.pads if pad.net}
    pins = {p["pin"]: p["net"] for p in graph.values() if p.get("kind") == "pin"}
    assert len(pins) == 8
    for pin, net in pins.items():  # DesignElement:U1-PA4 says U1.PA4 carries IMU_CS: so does the board
        assert net_of_pin[pin.split(".")[1]] == net, pin
    pcb = graph["DesignElement:pcb"]
    assert pcb["artifact_path"] == PCB and pcb["layers"] == 6 and graph["DesignElement:schematic"]["artifact_path"] == SCH


def test_board_bom_and_enclosure_ingest_into_the_template_without_changing_a_value(twin, mf):
    """What the graph says, the files say: ingest adds the files' own elements (footprints, nets,
    the parts twin.yaml does not list) and their mappings, and changes no value of the template."""
    before = {e["seq"] for e in read_log(twin)}
    template_entities = {e["entity"] for e in read_log(twin)}
    r = mf("ingest", PCB, BOM, STEP, "--json", cwd=twin)
    assert r.code == 0, r.err
    assert {f["path"]: f["status"] for f in r.json["files"]} == {PCB: "read", BOM: "read", STEP: "read"}
    new = [e for e in read_log(twin) if e["seq"] not in before]
    touched = sorted({e["entity"] for e in new if e["entity"] in template_entities and e["type"] != "edge.created"})
    assert touched == [], touched
    ids = {e["entity"] for e in new if e["type"] == "node.created"}
    assert {f"DesignElement:flight-controller/{r}" for r in ("U1", "U2", "U3", "U4", "U5", "U6", "H1")} <= ids
    assert "DesignElement:flight-controller/net/IMU_CS" in ids and "DesignElement:enclosure/tray" in ids
    assert mf("drift", cwd=twin).code == 0
    # and back out: projection writes every file byte for byte as it is
    subprocess.run(["git", "add", "-A"], cwd=twin, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "files"], cwd=twin, check=True, capture_output=True)
    files = {p: (twin / p).read_bytes() for p in (PCB, BOM, STEP)}
    r = mf("project", "--json", cwd=twin)
    assert r.code == 0, r.err
    assert {p: (twin / p).read_bytes() for p in files} == files


def test_a_bom_value_changed_in_the_graph_is_projected_and_back_byte_for_byte(twin, mf):
    assert mf("ingest", BOM, cwd=twin).code == 0
    subprocess.run(["git", "add", "-A"], cwd=twin, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "files"], cwd=twin, check=True, capture_output=True)
    original = (twin / BOM).read_bytes()
    assert mf("mutate", "set", "BOMItem:C7", "value=220nF", "-m", "stiffer decoupling", cwd=twin).code == 0
    assert mf("project", cwd=twin).code == 0
    changed = (twin / BOM).read_bytes()
    assert changed == original.replace(b'"100nF"', b'"220nF"')
    assert mf("mutate", "set", "BOMItem:C7", "value=100nF", "-m", "back", cwd=twin).code == 0
    assert mf("project", cwd=twin).code == 0
    assert (twin / BOM).read_bytes() == original


def test_the_root_schematic_reads_as_the_hierarchy_of_the_board():
    """The KiCad adapter reads the root: its parts off the board, and the four sheets it places;
    the board's footprints take their references from the schematic through it."""
    from metaforge.adapters.kicad import BoardAdapter, SchematicAdapter

    root = SchematicAdapter().parse(KICAD / "flight-controller.kicad_sch", SCH)
    sheet = root.entities[0]
    assert sheet.id == "DesignElement:flight-controller/sheet/flight-controller"
    links = {dst for rel, dst in sheet.links if rel == "HAS_ELEMENT"}
    assert {f"DesignElement:flight-controller/{r}" for r in ("BT1", "ESC1", "GPS1", "RX1", "M1")} <= links
    assert {f"DesignElement:flight-controller/sheet/{s}" for s in ("mcu", "sensors", "power", "connectors")} <= links
    bt1 = next(e for e in root.entities if e.id.endswith("/BT1"))
    assert bt1.props["mpn"] == "TA-45C-2200-3S1P" and bt1.props["value"] == "3S LiPo 2200mAh"
    board = BoardAdapter().parse(KICAD / "flight-controller.kicad_pcb", PCB)
    components = {e.id for e in board.entities if e.props.get("kind") == "component"}
    assert len(components) == 36 and "DesignElement:flight-controller/U1" in components


def test_with_the_sheets_beside_the_root_the_whole_project_ingests_and_agrees(twin, mf):
    """The same files with the sheets moved beside the root (the one change: the root's Sheetfile
    paths) go through `mf ingest .`, `mf drift` and `mf project` byte for byte too."""
    kicad = twin / "kicad"
    for sheet in SHEETS:
        (kicad / sheet).rename(kicad / Path(sheet).name)
    (kicad / "sheets").rmdir()
    root = kicad / "flight-controller.kicad_sch"
    root.write_text(root.read_text().replace('"sheets/', '"'))
    r = mf("ingest", ".", "--json", cwd=twin)
    assert r.code == 0, r.err
    assert len(r.json["files"]) == 8 and {f["status"] for f in r.json["files"]} == {"read"}
    assert mf("drift", cwd=twin).code == 0
    u1 = mf("show", "DesignElement:flight-controller/U1", "--json", cwd=twin).json
    assert json.dumps(u1).count("STM32F405RGT6") >= 2  # value and MPN, from the sheet
    subprocess.run(["git", "add", "-A"], cwd=twin, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "files"], cwd=twin, check=True, capture_output=True)
    files = {p: p.read_bytes() for p in kicad.iterdir()}
    assert mf("project", cwd=twin).code == 0
    assert {p: p.read_bytes() for p in kicad.iterdir()} == files


def test_init_ingest_drift_on_the_template_exits_0(tmp_path):
    """The issue's 'done when': mf init X --template drone-flight-controller && cd X && mf ingest . && mf drift."""
    run = lambda *a, cwd: subprocess.run([sys.executable, "-m", "metaforge", *a], cwd=cwd, capture_output=True, text=True)
    assert run("init", "X", "--template", "drone-flight-controller", cwd=tmp_path).returncode == 0
    x = tmp_path / "X"
    ingest = run("ingest", ".", "--json", cwd=x)
    assert ingest.returncode == 0, ingest.stderr
    statuses = {f["path"]: f["status"] for f in json.loads(ingest.stdout)["files"]}
    assert statuses[SCH] == "read" and all(statuses[f"kicad/{s}"] == "read" for s in SHEETS)
    assert run("drift", cwd=x).returncode == 0
