"""Design files as KiCad users keep them (issue 19), each case on real files: KiCad 9 and 8.99
files saved by KiCad (tests/data/kicad), Debian's KiCad 6 demos and the 3D models they ship.

1. the schematic owns values: a board that disagrees is a file ↔ file disagreement, and
   projection writes only what a command changed
2. sheets in a sub-folder, from the folder or from the root schematic alone
3. a truncated STEP file that crashes OpenCascade is one refused file, not a dead mf
4. BOM quantity against references
5. two BOMs of one board
6. symlink loops, options before paths, a non-STEP .stp, UTF-8 names, one parse per command
7. 3D models of footprints are artifacts of their components
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import mf_process

DEMOS = Path("/usr/share/kicad/demos")
DATA = Path(__file__).parent / "data"
KICAD9 = DATA / "kicad" / "kicad9"
SHARED = DATA / "kicad" / "kicad8.99_shared_sheets"
CRYSTAL = DEMOS / "stickhub" / "3dmodels" / "Crystal_SMD_4P_2520.step"


@pytest.fixture(scope="module", autouse=True)
def _demos_installed():
    if not DEMOS.is_dir():
        pytest.fail("Debian's kicad-demos is not installed (apt-get install kicad-demos)")


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit_all(path: Path, message: str = "files") -> None:
    git("add", "-A", cwd=path)
    git("commit", "-qm", message, "--no-verify", cwd=path)


def props(mf, cwd, eid: str) -> dict:
    r = mf("show", eid, "--json", cwd=cwd)
    assert r.code == 0, r.err
    return r.json["properties"]


# ---- 1. one owner per value --------------------------------------------------------------------

@pytest.fixture
def kicad9(repo) -> Path:
    """KiCad 9's test_pads_inside_pads demo whose board says P1 is "CH1" where its schematic says
    "CONN_1" (as in the report: J6 "Out" in the schematic, "CH1" on the board)."""
    hw = repo / "hw"
    hw.mkdir()
    for f in KICAD9.iterdir():
        shutil.copy(f, hw / f.name)
    (hw / "test_pads_inside_pads.kicad_pro").write_text("{}\n")
    pcb = hw / "test_pads_inside_pads.kicad_pcb"
    text = pcb.read_text()
    at = text.index('(property "Reference" "P1"')
    value = text.index('(property "Value" "CONN_1"', at)
    pcb.write_text(text[:value] + '(property "Value" "CH1"' + text[value + len('(property "Value" "CONN_1"'):])
    commit_all(repo)
    return repo


def test_the_schematic_owns_values_and_a_board_that_disagrees_is_drift_between_files(kicad9, mf):
    repo = kicad9
    assert mf("ingest", "hw", cwd=repo).code == 0
    commit_all(repo, "in the twin")
    p1 = "DesignElement:test_pads_inside_pads/P1"
    assert props(mf, repo, p1)["value"] == "CONN_1"  # the schematic's, not the board's
    r = mf("drift", "--json", cwd=repo)
    assert r.code == 1, r.out
    report = r.json
    assert report["drifts"] == [] and not report["ok"]
    assert report["between_files"] == [{
        "entity": p1, "key": "value", "direction": "files", "path": "hw/test_pads_inside_pads.kicad_pcb",
        "value": "CH1", "owner": "hw/test_pads_inside_pads.kicad_sch", "graph": "CONN_1"}]
    text = mf("drift", cwd=repo).err
    assert "CONN_1 in hw/test_pads_inside_pads.kicad_sch, CH1 in hw/test_pads_inside_pads.kicad_pcb" in text
    assert "no drift" not in text and "two files disagree" in text  # never a tick beside a disagreement

    # an unrelated change, projected: only that value is written, P1 stays as each file has it
    sch, pcb = (repo / "hw" / f"test_pads_inside_pads.kicad_{s}" for s in ("sch", "pcb"))
    before = sch.read_text(), pcb.read_text()
    assert mf("mutate", "set", "DesignElement:test_pads_inside_pads/P2", "value=CONN_2", cwd=repo).code == 0
    r = mf("project", cwd=repo)
    assert r.code == 0, r.err
    for path, old in zip((sch, pcb), before):
        new = path.read_text()
        assert new.count('"CONN_2"') == 1 and new.replace('"CONN_2"', '"CONN_1"', 1) == old
    assert '(property "Value" "CH1"' in pcb.read_text()
    assert props(mf, repo, p1)["value"] == "CONN_1"
    assert len(mf("drift", "--json", cwd=repo).json["between_files"]) == 1  # still there, still named

    # the disagreement the committed files already have does not block the next commit of the board
    assert mf("hooks", "install", cwd=repo).code == 0
    pcb.write_text(pcb.read_text() + "\n")  # a save of the board that changes nothing
    git("add", "-A", cwd=repo)
    r = subprocess.run(["git", "commit", "-qm", "board saved"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # fixing the board (as KiCad's Update PCB from Schematic does) ends it
    pcb.write_text(pcb.read_text().replace('(property "Value" "CH1"', '(property "Value" "CONN_1"'))
    commit_all(repo, "board updated from the schematic")
    assert mf("ingest", "hw", cwd=repo).code == 0
    assert mf("drift", cwd=repo).code == 0


# ---- 2. sheets in a sub-folder -----------------------------------------------------------------

@pytest.fixture
def subfolder(repo) -> Path:
    """KiCad 8.99's shared-sheet project laid out as royalblue54L_feather is: the root beside its
    .kicad_pro, the sheets in sheets/ (one of them placed twice)."""
    hw = repo / "hw"
    (hw / "sheets").mkdir(parents=True)
    root = hw / "issue13212.kicad_sch"
    root.write_text((SHARED / "issue13212.kicad_sch").read_text()
                    .replace('"Sheetfile" "issue13212_sub', '"Sheetfile" "sheets/issue13212_sub'))
    for f in SHARED.glob("issue13212_sub*"):
        shutil.copy(f, hw / "sheets" / f.name)
    (hw / "issue13212.kicad_pro").write_text("{}\n")
    commit_all(repo)
    return repo


def _sheet_refs(mf, repo) -> dict[str, str]:
    out = {}
    for ref in ("R1", "R5", "R6", "R7", "R8"):
        p = props(mf, repo, f"DesignElement:issue13212/{ref}")
        out[ref] = p["sheet_path"]
    return out


WANT = {"R1": "/", "R5": "/issue13212_subsheet_1/", "R6": "/issue13212_subsheet_1/",
        "R7": "/issue13212_subsheet_2_1/", "R8": "/issue13212_subsheet_2_2/"}


@pytest.mark.parametrize("given", ["hw", "hw/issue13212.kicad_sch"])
def test_sheets_in_a_sub_folder_belong_to_the_root_project(subfolder, mf, given):
    r = mf("ingest", given, "--json", cwd=subfolder)
    assert r.code == 0, r.err
    assert sorted(f["path"] for f in r.json["files"]) == [
        "hw/issue13212.kicad_sch", "hw/sheets/issue13212_subsheet_1.kicad_sch",
        "hw/sheets/issue13212_subsheet_2.kicad_sch"]
    assert _sheet_refs(mf, subfolder) == WANT
    root = mf("show", "DesignElement:issue13212/sheet/issue13212", "--json", cwd=subfolder).json
    assert root["properties"]["kind"] == "schematic"
    commit_all(subfolder, "in the twin")
    assert mf("drift", cwd=subfolder).code == 0


def test_a_sub_folder_sheet_alone_still_finds_its_root(subfolder, mf):
    from metaforge.adapters.kicad import SchematicAdapter

    sheet = subfolder / "hw" / "sheets" / "issue13212_subsheet_2.kicad_sch"
    result = SchematicAdapter().parse(sheet, "hw/sheets/issue13212_subsheet_2.kicad_sch")
    assert result.extra["project"] == "issue13212"
    refs = {e.props["reference"]: e.props["sheet_path"] for e in result.entities if e.props["kind"] == "component"}
    assert refs == {"R7": "/issue13212_subsheet_2_1/", "R8": "/issue13212_subsheet_2_2/"}


# ---- 3. a STEP file that crashes OpenCascade ---------------------------------------------------

def truncated_step(path: Path, fraction: float = 0.9) -> Path:
    """A vendor model cut at an entity boundary and closed again, as a failed download or copy
    leaves it: OpenCascade 7.x dereferences a missing entity reading it (SIGSEGV)."""
    data = CRYSTAL.read_bytes()
    start = data.index(b"DATA;")
    ends = [i + 1 for i in range(start, len(data) - 1) if data[i:i + 1] == b";" and data[i + 1:i + 2] in b"\r\n"]
    path.write_bytes(data[:ends[int(len(ends) * fraction)]] + b"\nENDSEC;\nEND-ISO-10303-21;\n")
    return path


@pytest.fixture
def crashing(repo) -> Path:
    pytest.importorskip("OCP", reason="STEP support (cadquery-ocp) is needed to read STEP files")
    (repo / "mech").mkdir()
    truncated_step(repo / "mech" / "crystal_cut.step")
    shutil.copy(DATA / "step" / "Battery_CR1225.step", repo / "mech" / "battery.step")
    commit_all(repo)
    return repo


def test_a_step_file_that_crashes_opencascade_is_one_refused_file(crashing):
    r = mf_process("ingest", "mech/crystal_cut.step", cwd=crashing)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "mech/crystal_cut.step: OpenCascade crashed reading it (SIGSEGV)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = mf_process("ingest", "--keep-going", "mech", "--json", cwd=crashing)
    assert r.returncode == 1, r.stderr
    files = {f["path"]: f for f in json.loads(r.stdout)["files"]}
    assert files["mech/crystal_cut.step"]["status"] == "refused"
    assert files["mech/battery.step"]["status"] == "read"  # the next file got a fresh reader
    commit_all(crashing, "in the twin")
    r = mf_process("drift", "--json", cwd=crashing)
    assert r.returncode == 0, r.stderr
    # a mapped model saved truncated: drift and the pre-commit check name it, and live
    truncated_step(crashing / "mech" / "battery.step")
    r = mf_process("drift", "--json", cwd=crashing)
    assert r.returncode == 1, r.stderr
    (d,) = json.loads(r.stdout)["drifts"]
    assert d["direction"] == "unreadable" and "OpenCascade crashed reading it (SIGSEGV)" in d["error"]
    git("add", "mech/battery.step", cwd=crashing)
    r = mf_process("drift", "--staged", cwd=crashing)
    assert r.returncode == 1 and "mech/battery.step cannot be read" in r.stderr + r.stdout, r.stderr


def test_a_step_file_that_takes_too_long_is_refused(crashing):
    shutil.copy(DEMOS / "stickhub" / "3dmodels" / "APHB1608.step", crashing / "mech" / "big.step")
    r = mf_process("ingest", "mech/big.step", cwd=crashing, env={"MF_STEP_TIME_LIMIT": "0.05"})
    assert r.returncode == 2, r.stderr
    assert "OpenCascade took more than 0.05 s reading it: refused" in r.stderr


# ---- 6. bad paths, options, names, parse counts ------------------------------------------------

def test_a_symlink_loop_is_bad_input(subfolder, mf):
    hw = subfolder / "hw"
    (hw / "a.kicad_sch").symlink_to("b.kicad_sch")
    (hw / "b.kicad_sch").symlink_to("a.kicad_sch")
    for given in ("hw", "hw/a.kicad_sch"):
        r = mf("ingest", given, cwd=subfolder)
        assert r.code == 2 and "a symbolic link loop" in r.err, r.err


def test_options_before_the_paths(subfolder, mf):
    r = mf("ingest", "--keep-going", "--json", "hw", cwd=subfolder)
    assert r.code == 0, r.err
    assert len(r.json["files"]) == 3


def test_a_file_that_is_no_step_is_refused_before_opencascade_is_imported(repo):
    (repo / "mech").mkdir()
    (repo / "mech" / "notes.stp").write_text("STP: standard temperature and pressure\n")
    probe = ("import sys, pathlib\nfrom metaforge.adapters.step import StepAdapter\n"
             "try:\n    StepAdapter().parse(pathlib.Path(sys.argv[1]), 'mech/notes.stp')\n"
             "except Exception as e:\n    print(e)\nprint('OCP' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(repo / "mech" / "notes.stp")], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.splitlines() == ["mech/notes.stp: not a STEP file: it does not start with ISO-10303-21; "
                                     "(STEP AP203/AP214/AP242 text files start so; a compressed .stpZ must be "
                                     "unpacked)", "False"]


def test_utf8_names_read_as_latin1_come_back_as_written(tmp_path):
    pytest.importorskip("OCP", reason="STEP support (cadquery-ocp) is needed to read STEP files")
    from metaforge.adapters.step import StepAdapter

    (tmp_path / ".metaforge").mkdir()
    data = (DATA / "step" / "Battery_CR1225.step").read_bytes()
    old = b"PRODUCT('Battery_CR1225','Battery_CR1225'"
    # UTF-8 bytes escaped one by one (\X2\00C300A4\X0\ is the UTF-8 of "ä"), as some exporters do
    escaped = tmp_path / "escaped.step"
    escaped.write_bytes(data.replace(old, b"PRODUCT('Geh\\X2\\00C300A4\\X0\\use','Geh\\X2\\00C300A4\\X0\\use'"))
    result = StepAdapter().parse(escaped, "escaped.step", root=tmp_path)
    assert result.entities[0].props["description"] == "Gehäuse"


# ---- 4. BOM quantity against references ----------------------------------------------------------

KICAD_BOM = "hw/pic_programmer/pic_programmer_bom.csv"


@pytest.fixture
def pic(repo) -> Path:
    """Debian's pic_programmer demo with the BOM KiCad's bom_csv_grouped_by_value.py writes for it."""
    shutil.copytree(DEMOS / "pic_programmer", repo / "hw" / "pic_programmer",
                    ignore=shutil.ignore_patterns("*.pdf", "*.wrl", "*.step"))
    shutil.copy(DATA / "bom" / "pic_programmer_bom.csv", repo / KICAD_BOM)
    commit_all(repo)
    return repo


def test_a_quantity_that_disagrees_with_the_references_is_refused_with_both_numbers(pic, mf):
    assert mf("ingest", "hw", cwd=pic).code == 0
    commit_all(pic, "in the twin")
    r = mf("mutate", "set", "BOMItem:C3", "quantity=2", cwd=pic)
    assert r.code == 1 and "BOMItem:C3: quantity 2 but 1 references (C3)" in r.err, r.err
    assert mf("mutate", "set", "BOMItem:C3", "value=470uF", cwd=pic).code == 0  # later projections still go
    r = mf("project", cwd=pic)
    assert r.code == 0, r.err
    assert '"C3, ","1","470uF"' in (pic / KICAD_BOM).read_text()
    assert mf("drift", cwd=pic).code == 0
    # the references alone: the quantity follows, in the graph and in the file
    assert mf("mutate", "set", "BOMItem:C3", 'references:=["C3", "C9"]', cwd=pic).code == 0
    assert props(mf, pic, "BOMItem:C3")["quantity"] == 2
    assert mf("project", cwd=pic).code == 0
    assert '"C3, C9, ","2","470uF"' in (pic / KICAD_BOM).read_text()


def test_a_persons_inconsistent_quantity_is_a_drift_item_naming_the_row(pic, mf):
    assert mf("ingest", "hw", cwd=pic).code == 0
    commit_all(pic, "in the twin")
    bom = pic / KICAD_BOM
    bom.write_text(bom.read_text().replace('"C1, C2, ","2"', '"C1, C2, ","3"'))
    r = mf("drift", "--json", cwd=pic)
    assert r.code == 1
    (d,) = r.json["drifts"]
    assert d["direction"] == "file" and d["path"] == KICAD_BOM
    assert d["items"] == [{"kind": "changed", "entity": "BOMItem:C1", "direction": "file", "key": "quantity",
                           "graph": 2, "file": 3,
                           "note": "line 7: column 'Qnty': quantity 3 but 2 references (C1, C2)"}]
    r = mf("ingest", KICAD_BOM, cwd=pic)
    assert r.code == 2 and f"{KICAD_BOM}:7: column 'Qnty': quantity 3 but 2 references (C1, C2)" in r.err


# ---- 5. two BOMs of one board --------------------------------------------------------------------

JLC_BOM = "hw/pic_programmer/pic_programmer_jlcpcb_bom.csv"


def jlcpcb_bom(repo: Path) -> bytes:
    """The JLCPCB assembly BOM of the demo board (Comment, Designator, Footprint, LCSC Part #),
    grouped by value from the board's own footprints, CRLF as JLCPCB's template is."""
    from metaforge.adapters.kicad import BoardAdapter

    board = BoardAdapter().parse(repo / "hw/pic_programmer/pic_programmer.kicad_pcb", "pic_programmer.kicad_pcb")
    groups: dict[tuple, list[str]] = {}
    for e in board.entities:
        if e.props.get("kind") == "component":
            groups.setdefault((e.props.get("value", ""), e.props["footprint"].split(":")[-1]), []).append(
                e.props["reference"])
    lines = ["Comment,Designator,Footprint,LCSC Part #"]
    for (value, footprint), refs in sorted(groups.items()):
        lines.append(f'{value},"{",".join(sorted(refs))}",{footprint},')
    return ("\r\n".join(lines) + "\r\n").encode()


def test_two_boms_of_one_board_keep_their_own_items(pic, mf):
    (pic / JLC_BOM).write_bytes(jlcpcb_bom(pic))
    commit_all(pic, "the JLCPCB BOM beside KiCad's")
    r = mf("ingest", "hw", "--json", cwd=pic)
    assert r.code == 0, r.err
    commit_all(pic, "in the twin")
    assert mf("drift", cwd=pic).code == 0
    kicad = props(mf, pic, "BOMItem:pic_programmer_bom/C1")
    jlc = props(mf, pic, "BOMItem:pic_programmer_jlcpcb_bom/C1")
    assert kicad["footprint"].startswith("Capacitor_THT:") and ":" not in jlc["footprint"]
    # the one declared link between them: the board's component, by reference
    c1 = mf("show", "DesignElement:pic_programmer/C1", "--json", cwd=pic).json
    assert {e["id"] for e in c1["out"] if e["rel"] == "USES_COMPONENT"} == {
        "BOMItem:pic_programmer_bom/C1", "BOMItem:pic_programmer_jlcpcb_bom/C1"}
    before = {p: (pic / p).read_bytes() for p in (KICAD_BOM, JLC_BOM)}
    assert mf("mutate", "set", "BOMItem:pic_programmer_bom/C1", "value=1uF", cwd=pic).code == 0
    r = mf("project", cwd=pic)
    assert r.code == 0, r.err
    assert (pic / JLC_BOM).read_bytes() == before[JLC_BOM]  # not one cell of the other BOM
    assert (pic / KICAD_BOM).read_bytes() == before[KICAD_BOM].replace(b'"2","100nF"', b'"2","1uF"', 1)


# ---- 7. a footprint's 3D model is an artifact of its component -----------------------------------

def test_vendor_3d_models_are_artifacts_of_their_components_not_product_parts(repo, mf, monkeypatch):
    pytest.importorskip("OCP", reason="STEP support (cadquery-ocp) is needed to read STEP files")
    from step_models import rover

    from metaforge.adapters.kicad import board as board_module

    shutil.copytree(DEMOS / "stickhub", repo / "hw")
    (repo / "mech").mkdir()
    rover(repo / "mech" / "enclosure.step")  # the product's own mechanical design
    commit_all(repo)
    reads: list[str] = []
    real = board_module.read_doc
    monkeypatch.setattr(board_module, "read_doc", lambda path, rel, head, data=None: (
        reads.append(path.name), real(path, rel, head, data))[1])
    r = mf("ingest", ".", "--json", cwd=repo)
    assert r.code == 0, r.err
    assert reads == ["StickHub.kicad_pcb"]  # read once, for the board and for the models' users
    ids = {n["id"] for n in mf("query", "--json", cwd=repo).json}
    models = {i for i in ids if i.startswith("Artifact:3d/")}
    assert models == {f"Artifact:3d/hw/3dmodels/{n}" for n in (
        "APHB1608.step", "Crystal_SMD_4P_2520.step", "JST_SH_SM04B-SRSS-TB.STEP",
        "TDFN-8_1.5x2mm_Fused-Lead_MO-252-W2015D.step")}
    assert not {i for i in ids if "APHB1608" in i or "Crystal_SMD" in i} - models  # no DesignElement of them
    crystal = mf("show", "Artifact:3d/hw/3dmodels/Crystal_SMD_4P_2520.step", "--json", cwd=repo).json
    assert crystal["properties"]["kind"] == "3d-model"
    assert crystal["in"] == [{"rel": "DESCRIBED_BY", "id": "DesignElement:StickHub/Y1"}]
    enclosure = mf("show", "DesignElement:enclosure", "--json", cwd=repo).json
    assert enclosure["properties"]["kind"] == "assembly"  # an enclosure stays a product element


def test_project_parses_the_board_once(pic, mf, monkeypatch):
    from metaforge.adapters.kicad import board as board_module

    assert mf("ingest", "hw", cwd=pic).code == 0
    commit_all(pic, "in the twin")
    reads: list[str] = []
    real = board_module.read_doc
    monkeypatch.setattr(board_module, "read_doc", lambda path, rel, head, data=None: (
        reads.append(rel), real(path, rel, head, data))[1])
    assert mf("mutate", "set", "DesignElement:pic_programmer/C1", "value=47uF", cwd=pic).code == 0
    r = mf("project", "--json", cwd=pic)
    assert r.code == 0, r.err
    assert {f["path"] for f in r.json["files"] if f["status"] == "projected"} >= {
        "hw/pic_programmer/pic_programmer.kicad_pcb"}
    assert reads == ["hw/pic_programmer/pic_programmer.kicad_pcb"]
    monkeypatch.undo()
    assert mf("drift", cwd=pic).code == 0
    # the mappings kept from that one read are what a fresh read of the written file gives
    from metaforge.adapters.kicad import BoardAdapter

    rel = "hw/pic_programmer/pic_programmer.kicad_pcb"
    fresh = {e.id: (e.region, e.line) for e in BoardAdapter().parse(pic / rel, rel).entities}
    for eid in ("DesignElement:pic_programmer/C1", "DesignElement:pic_programmer/U1"):
        mapped = [(a["region"], a["line"]) for a in mf("show", eid, "--json", cwd=pic).json["artifacts"]
                  if a["path"] == rel]
        assert mapped == [fresh[eid]]


def test_a_sheet_kept_beside_the_project_folder_finds_its_root(repo, mf):
    """A sheet shared from a sibling folder (`../common/...`), as a board family keeps it."""
    proj, common = repo / "hw" / "proj", repo / "hw" / "common"
    proj.mkdir(parents=True)
    common.mkdir()
    (proj / "issue13212.kicad_sch").write_text((SHARED / "issue13212.kicad_sch").read_text()
                                               .replace('"Sheetfile" "issue13212_sub', '"Sheetfile" "../common/issue13212_sub'))
    (proj / "issue13212.kicad_pro").write_text("{}\n")
    for f in SHARED.glob("issue13212_sub*"):
        shutil.copy(f, common / f.name)
    commit_all(repo)
    r = mf("ingest", "hw", cwd=repo)
    assert r.code == 0, r.err
    assert _sheet_refs(mf, repo) == WANT


def test_models_read_before_their_board_are_linked_when_the_board_comes(repo, mf):
    pytest.importorskip("OCP", reason="STEP support (cadquery-ocp) is needed to read STEP files")
    shutil.copytree(DEMOS / "stickhub", repo / "hw")
    commit_all(repo)
    assert mf("ingest", "hw/3dmodels", cwd=repo).code == 0  # no component in the graph yet: no link
    assert mf("ingest", "hw", cwd=repo).code == 0
    y1 = mf("show", "DesignElement:StickHub/Y1", "--json", cwd=repo).json
    assert {"rel": "DESCRIBED_BY", "id": "Artifact:3d/hw/3dmodels/Crystal_SMD_4P_2520.step"} in y1["out"]

