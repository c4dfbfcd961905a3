"""Files into the graph and back: `mf ingest PATH`, `mf project`, ArtifactMappings and StateLinks,
on Debian's KiCad demos (real projects nobody here wrote), a BOM and a STEP assembly."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

DEMOS = Path("/usr/share/kicad/demos")
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module", autouse=True)
def _demos_installed():
    if not DEMOS.is_dir():
        pytest.fail("Debian's kicad-demos is not installed (.ci/run installs it: apt-get install kicad-demos)")


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit_all(path: Path, message: str = "files") -> None:
    git("add", "-A", cwd=path)
    git("commit", "-qm", message, cwd=path)


@pytest.fixture
def board(twin):
    """The template twin with the pic_programmer demo (schematic, sub-sheet, board) committed."""
    shutil.copytree(DEMOS / "pic_programmer", twin / "hw" / "pic_programmer",
                    ignore=shutil.ignore_patterns("*.pdf", "*.wrl", "*.step"))
    commit_all(twin)
    return twin


def events(mf, cwd, n=5):
    return mf("log", "--limit", str(n), "--json", cwd=cwd).json


def test_ingest_reads_the_demo_once_and_maps_every_entity(board, mf):
    r = mf("ingest", "hw", "--json", cwd=board)
    assert r.code == 0, r.err
    files = {f["path"]: f for f in r.json["files"]}
    assert set(files) == {"hw/pic_programmer/pic_programmer.kicad_sch", "hw/pic_programmer/pic_sockets.kicad_sch",
                          "hw/pic_programmer/pic_programmer.kicad_pcb"}
    assert all(f["status"] == "read" for f in files.values())
    mapped = [e for e in events(mf, board, 3) if e["type"] == "artifact.mapped"]
    assert len(mapped) == 3  # one per file, in the same batch as the entity changes
    c1 = mf("show", "DesignElement:pic_programmer/C1", "--json", cwd=board).json
    assert c1["properties"]["value"] == "100µF" and c1["properties"]["layer"] == "F.Cu"
    assert {a["path"] for a in c1["artifacts"]} == {"hw/pic_programmer/pic_programmer.kicad_sch",
                                                     "hw/pic_programmer/pic_programmer.kicad_pcb"}
    assert any(a["line"] and a["region"].startswith("symbol:") for a in c1["artifacts"])
    assert {"rel": "CONNECTED_TO", "id": "DesignElement:pic_programmer/net/GND"} in c1["out"]
    head = mf("status", "--json", cwd=board).json["semantic_version"]
    again = mf("ingest", "hw", "--json", cwd=board).json  # idempotent: unchanged files are not even parsed
    assert {f["status"] for f in again["files"]} == {"unchanged"} and again["appended"] == 0
    assert mf("status", "--json", cwd=board).json["semantic_version"] == head


def test_every_demo_round_trips_through_the_graph_byte_for_byte(twin, mf):
    """All demo projects read into one twin; each file written back from the graph's (validated,
    normalized) values is the same bytes. The KiCad 5 board is refused by name, the rest land."""
    from metaforge.adapters import registry
    from metaforge.repo import Repo

    shutil.copytree(DEMOS, twin / "demos", ignore=shutil.ignore_patterns("*.pdf", "*.wrl", "*.step", "*.stp"))
    commit_all(twin)
    r = mf("ingest", "demos", "--keep-going", "--json", cwd=twin)
    assert r.code == 1, r.err  # something was refused: a hook can tell
    refused = [f for f in r.json["files"] if f["status"] == "refused"]
    assert [f["path"] for f in refused] == ["demos/microwave/microwave.kicad_pcb"]
    assert "KiCad" in refused[0]["error"] and "microwave.kicad_pcb:" in refused[0]["error"]
    read = [f for f in r.json["files"] if f["status"] == "read"]
    assert len(read) >= 40
    repo = Repo(twin)
    rows = repo.index.conn.execute("SELECT path, adapter FROM artifacts").fetchall()
    assert len(rows) == len(read)
    for rel, name in rows:
        entities = [e for (e,) in repo.index.conn.execute("SELECT entity FROM artifact_map WHERE path = ?", (rel,))]
        props = {k: v for k, v in repo.index.props_of(entities).items() if v is not None}
        path = twin / rel
        assert registry.get(name).project(path, rel, props) == path.read_bytes(), rel
    assert mf("project", "--json", cwd=twin).json["commit"] is None  # nothing changed: nothing written


def test_project_writes_in_place_commits_and_links_the_version(board, mf):
    assert mf("ingest", "hw", cwd=board).code == 0
    commit_all(board, "twin after ingest")
    sch = board / "hw/pic_programmer/pic_programmer.kicad_sch"
    before = sch.read_bytes()
    assert mf("mutate", "set", "DesignElement:pic_programmer/C1", "value=220uF", "-m", "more bulk", cwd=board).code == 0
    version = mf("status", "--json", cwd=board).json["semantic_version"]
    r = mf("project", "--json", cwd=board)
    assert r.code == 0, r.err
    out = r.json
    assert out["semantic_version"] == version and out["commit"]
    projected = sorted(f["path"] for f in out["files"] if f["status"] == "projected")
    assert projected == ["hw/pic_programmer/pic_programmer.kicad_pcb", "hw/pic_programmer/pic_programmer.kicad_sch"]
    # the commit holds exactly those files, and in them only the owned tokens changed
    assert git("show", "--name-only", "--format=", "HEAD", cwd=board).split() == projected
    assert f"semantic version {version}" in git("log", "-1", "--format=%s", cwd=board)
    after = sch.read_bytes()
    changed = [(a, b) for a, b in zip(before.decode().splitlines(), after.decode().splitlines()) if a != b]
    assert len(changed) == 2 and all("100µF" in a and "220uF" in b for a, b in changed)
    link = events(mf, board, 1)[0]
    assert link["type"] == "state.linked" and link["payload"]["git_commit"] == out["commit"]
    assert link["payload"]["semantic_version"] == version and link["payload"]["projected_by"] == "user:tester"
    at_head = mf("status", "--commit", "HEAD", "--json", cwd=board).json
    assert at_head["semantic_version"] == version and at_head["commits_after_link"] == 0
    assert mf("status", "--version", str(version), "--json", cwd=board).json["git_commit"] == out["commit"]
    assert mf("status", "--json", cwd=board).json["files"]["entities_changed_since"] == 0
    # the new content is what the graph now maps: reading it in again changes nothing
    again = mf("ingest", "hw", "--json", cwd=board).json
    assert again["appended"] == 0 and {f["status"] for f in again["files"]} == {"unchanged"}
    assert mf("project", "--json", cwd=board).json["commit"] is None


def test_project_refuses_dirty_files_a_detached_head_and_leaves_no_trace(board, mf):
    assert mf("ingest", "hw", cwd=board).code == 0
    commit_all(board, "twin")
    assert mf("mutate", "set", "DesignElement:pic_programmer/C1", "value=220uF", cwd=board).code == 0
    sch = board / "hw/pic_programmer/pic_programmer.kicad_sch"
    sch.write_bytes(sch.read_bytes() + b"\n")  # someone's unsaved work in KiCad
    head, n = git("rev-parse", "HEAD", cwd=board), len(events(mf, board, 0))
    r = mf("project", cwd=board)
    assert r.code == 1 and "hw/pic_programmer/pic_programmer.kicad_sch has uncommitted changes" in r.err
    assert git("rev-parse", "HEAD", cwd=board) == head and len(events(mf, board, 0)) == n
    git("checkout", "--", "hw", cwd=board)
    git("checkout", "-q", "--detach", cwd=board)
    r = mf("project", cwd=board)
    assert r.code == 1 and "HEAD is detached" in r.err
    assert len(events(mf, board, 0)) == n


def test_ingest_refuses_a_broken_file_with_its_line_and_lands_nothing(board, mf):
    head = mf("status", "--json", cwd=board).json["semantic_version"]
    broken = board / "hw" / "broken.kicad_sch"
    text = (board / "hw/pic_programmer/pic_sockets.kicad_sch").read_text()
    broken.write_text(text[: len(text) // 2])  # cut off mid-file, as a crashed save leaves it
    r = mf("ingest", "hw", cwd=board)
    assert r.code == 2 and "hw/broken.kicad_sch:" in r.err
    assert mf("status", "--json", cwd=board).json["semantic_version"] == head  # nothing of the good files either
    r = mf("ingest", str(DEMOS / "pic_programmer"), cwd=board)
    assert r.code == 2 and "outside the repository" in r.err
    (board / "notes.txt").write_text("hello")
    r = mf("ingest", "notes.txt", cwd=board)
    assert r.code == 2 and "no adapter reads this kind of file" in r.err


def test_a_part_deleted_in_the_file_leaves_the_graph(board, mf):
    assert mf("ingest", "hw/pic_programmer/pic_sockets.kicad_sch", cwd=board).code == 0
    sub = board / "hw/pic_programmer/pic_sockets.kicad_sch"
    ids = [a for a in mf("query", "--type", "DesignElement", "--json", cwd=board).json
           if any(x["path"].endswith("pic_sockets.kicad_sch") for x in
                  mf("show", a["id"], "--json", cwd=board).json["artifacts"]) and a["properties"].get("kind") == "component"]
    assert ids
    from metaforge.adapters.kicad import SchematicAdapter

    victim = ids[0]["id"]
    parsed = SchematicAdapter().parse(sub, "hw/pic_programmer/pic_sockets.kicad_sch")
    region = next(p.region for p in parsed.entities if p.id == victim)
    # take the placed symbol out of the file, as deleting it in KiCad does
    text = sub.read_text()
    uuid = region.split(":", 1)[1]
    start = text.rfind("\n  (symbol (lib_id", 0, text.index(uuid))
    end = text.index("\n  (", text.index(uuid))
    sub.write_text(text[:start] + text[end:])
    r = mf("ingest", "hw/pic_programmer/pic_sockets.kicad_sch", "--json", cwd=board)
    assert r.code == 0, r.err
    r = mf("show", victim, cwd=board)
    assert r.code == 2 and "was removed" in r.err


def test_bom_and_step_files_through_ingest_and_project(twin, mf):
    (twin / "hw").mkdir()
    shutil.copy(DATA / "bom" / "pic_programmer_bom.csv", twin / "hw" / "pic_programmer_bom.csv")
    shutil.copy(DATA / "step" / "Connfly_Plug_WF2_2.54.stp", twin / "hw" / "plug.stp")
    commit_all(twin)
    r = mf("ingest", "hw", "--json", cwd=twin)
    assert r.code == 0, r.err
    manifest = json.loads((twin / ".metaforge/artifacts/hw__plug.stp.manifest.json").read_text())
    assert manifest["mesh_to_node_map"] and manifest["component_tree"]
    assert (twin / ".metaforge/artifacts/hw__plug.stp.glb").stat().st_size > 1000
    items = mf("query", "--type", "BOMItem", "--where", "references~C", "--json", cwd=twin).json
    target = next(i for i in items if any(a["path"].endswith("_bom.csv") for a in
                                          mf("show", i["id"], "--json", cwd=twin).json["artifacts"]))
    commit_all(twin, "twin")
    assert mf("mutate", "set", target["id"], "value=4.7uF-TEST", cwd=twin).code == 0
    out = mf("project", "--json", cwd=twin).json
    assert [f["path"] for f in out["files"] if f["status"] == "projected"] == ["hw/pic_programmer_bom.csv"]
    assert "4.7uF-TEST" in (twin / "hw/pic_programmer_bom.csv").read_text()
    assert git("status", "--porcelain", "--", "hw", cwd=twin) == ""


PLUGIN = '''
from pathlib import Path
from metaforge.adapters import Adapter, Parsed, ParseResult


class DrillAdapter(Adapter):
    """A third party's adapter: an Excellon drill file's tool table becomes one element."""
    name, version, patterns = "drill", "0.1", ("*.drl",)

    def parse(self, path: Path, rel: str) -> ParseResult:
        tools = [l for l in path.read_text().splitlines() if l.startswith("T") and "C" in l]
        return ParseResult(rel, [Parsed(f"DesignElement:{path.stem}/drill", {"kind": "pcb", "fields": {"tools": len(tools)}},
                                        "tools", 1)])

    def project(self, path, rel, entities):
        return path.read_bytes()
'''


def test_a_third_party_adapter_plugs_in_through_its_entry_point(twin, tmp_path):
    """A package installed beside mf (here: a dist-info folder on PYTHONPATH, which is what pip
    makes) adds an adapter without touching mf; a broken one is named and does not stop the rest."""
    import os
    import sys

    site = tmp_path / "site"
    (site / "mf_drill-0.1.dist-info").mkdir(parents=True)
    (site / "mf_drill.py").write_text(PLUGIN)
    (site / "mf_drill-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mf-drill\nVersion: 0.1\n")
    (site / "mf_drill-0.1.dist-info" / "entry_points.txt").write_text(
        "[metaforge.adapters]\ndrill = mf_drill:DrillAdapter\nbroken = mf_drill_missing:Nothing\n")
    (twin / "fab").mkdir()
    (twin / "fab" / "board.drl").write_text("M48\nT1C0.300\nT2C0.800\n%\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "metaforge", "ingest", "fab", "--json"], cwd=twin, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["files"] == [{"path": "fab/board.drl", "adapter": "drill", "status": "read", "entities": 1}]
    assert "adapter plug-in 'broken' could not be loaded" in p.stderr and "mf_drill_missing" in p.stderr
    p = subprocess.run([sys.executable, "-m", "metaforge", "show", "DesignElement:board/drill", "--json"], cwd=twin,
                       env=env, capture_output=True, text=True)
    assert json.loads(p.stdout)["properties"]["fields"] == {"tools": 2}
