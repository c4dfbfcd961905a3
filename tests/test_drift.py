"""Drift between files and graph on Debian's KiCad demo (real files nobody here wrote): what is
drift and what is not, its three directions and a missing file, the reconciler after a git
checkout, and both resolutions with their events (a person's edit lands, an agent's is refused)."""

import json

import pytest

from conftest import read_log
from kicad_edits import (C1, PCB, SCH, SOCKETS, add_symbol, commit_all, demo_twin, drift_events, git, move_symbol,
                         remove_symbol, set_value)


@pytest.fixture
def board(twin, mf):
    return demo_twin(twin, mf)


def drift(mf, cwd, *args):
    r = mf("drift", *args, "--json", cwd=cwd)
    assert r.code in (0, 1), r.err
    return r.code, r.json


def only(report):
    assert len(report["drifts"]) == 1, report["drifts"]
    return report["drifts"][0]


def test_a_value_change_is_drift_with_its_entity_property_and_values(board, mf):
    code, report = drift(mf, board)
    assert code == 0 and report["ok"] and report["parsed"] == 0  # clean: nothing even parsed
    set_value(board / SCH, "C1", "220uF")
    code, report = drift(mf, board)
    assert code == 1
    d = only(report)
    assert d["path"] == SCH and d["direction"] == "file"
    assert d["items"] == [{"kind": "changed", "entity": C1, "direction": "file", "key": "value",
                           "graph": "100µF", "file": "220uF"}]
    assert d["summary"] == [f"{C1}.value: 100µF → 220uF in {SCH}"]
    assert report["parsed"] == 1  # only the changed file was read
    r = mf("drift", cwd=board)  # the person's view: the same line, exit 1
    assert r.code == 1 and f"{C1}.value: 100µF → 220uF in {SCH}" in r.out and "file newer than graph" in r.out
    assert mf("drift", SOCKETS, cwd=board).code == 0  # other files: no drift
    assert mf("drift", "hw/nothing.kicad_sch", cwd=board).code == 2


def test_a_moved_symbol_and_reformatting_are_not_drift(board, mf):
    before = (board / SCH).read_bytes()
    move_symbol(board / SCH, "C1")
    assert (board / SCH).read_bytes() != before
    code, report = drift(mf, board)
    assert code == 0 and report["parsed"] == 1  # read, compared, nothing the graph owns changed
    set_value(board / SCH, "C1", "100 µF")  # the same value as the graph holds it? no: a new text
    code, report = drift(mf, board)
    assert code == 1 and only(report)["items"][0]["file"] == "100 µF"


def test_values_compare_as_the_graph_stores_them(board, mf):
    """A quantity in a file and in the graph are compared after the graph's own normalization."""
    from metaforge.repo import Repo
    from metaforge.thread.drift import normalized

    repo = Repo(board)
    assert normalized(repo, "DesignElement:x", {"capacitance": "10 uF", "tags": "a, b"}) == \
        {"capacitance": {"value": 10, "unit": "uF"}, "tags": ["a", "b"]}
    assert normalized(repo, "DesignElement:x", {"capacitance": "10 volts"}) == {"capacitance": "10 volts"}


def test_added_and_removed_symbols(board, mf):
    add_symbol(board / SCH, "C1", "C99", "1nF")
    remove_symbol(board / SCH, "C2")
    code, report = drift(mf, board)
    assert code == 1
    d = only(report)
    kinds = {(i["kind"], i["entity"], i["direction"]) for i in d["items"]}
    assert kinds == {("added", "DesignElement:pic_programmer/C99", "file"),
                     ("removed", "DesignElement:pic_programmer/C2", "file")}
    added = next(i for i in d["items"] if i["kind"] == "added")
    assert added["file"]["value"] == "1nF" and added["file"]["reference"] == "C99"
    assert f"DesignElement:pic_programmer/C99 added in {SCH}" in d["summary"]
    assert f"DesignElement:pic_programmer/C2 removed from {SCH}" in d["summary"]


def test_three_directions_and_a_missing_file(board, mf):
    assert mf("mutate", "set", C1, "value=47uF", "-m", "less inrush", cwd=board).code == 0
    code, report = drift(mf, board)
    assert code == 1
    by_path = {d["path"]: d for d in report["drifts"]}
    assert set(by_path) == {SCH, PCB}  # C1's value lives in the schematic and on the board
    for d in by_path.values():
        assert d["direction"] == "graph"
        assert d["items"] == [{"kind": "changed", "entity": C1, "direction": "graph", "key": "value",
                               "graph": "47uF", "file": "100µF"}]
    assert by_path[SCH]["summary"] == [f"{C1}.value: 100µF → 47uF in the graph, not yet in {SCH}"]
    set_value(board / SCH, "C1", "68uF")  # and someone edits the same value in KiCad
    d = next(d for d in drift(mf, board)[1]["drifts"] if d["path"] == SCH)
    assert d["direction"] == "both" and d["items"][0]["file"] == "68uF" and d["items"][0]["graph"] == "47uF"
    git("checkout", "--", SCH, cwd=board)
    (board / SOCKETS).unlink()
    by_path = {d["path"]: d for d in drift(mf, board)[1]["drifts"]}
    assert by_path[SOCKETS]["direction"] == "missing" and by_path[SOCKETS]["entities"] > 0
    r = mf("drift", cwd=board)
    assert f"{SOCKETS} is missing" in r.out and "graph newer than file" in r.out


def test_accept_file_lands_a_persons_edit_by_its_author(board, mf):
    set_value(board / SCH, "C1", "220uF")
    commit_all(board, "C1 bigger", env={"GIT_AUTHOR_NAME": "Ada"})  # committed past the hook
    rec = mf("drift", "reconcile", "--json", cwd=board)
    assert rec.code == 1
    drift_id = rec.json["detected"][0]["id"]
    r = mf("drift", "resolve", str(drift_id), "--accept-file", "--json", cwd=board)
    assert r.code == 0, r.err
    assert r.json["actor"] == "user:Ada" and r.json["changes"] == 1
    c1 = mf("show", C1, "--json", cwd=board).json
    assert c1["properties"]["value"] == "220uF" and c1["updatedBy"] == "user:Ada"
    resolved = drift_events(read_log(board), "drift.resolved", SCH)
    assert len(resolved) == 1 and resolved[0]["payload"]["how"] == "accept-file"
    assert resolved[0]["payload"]["drift"] == drift_id and resolved[0]["actor"] == "user:Ada"
    # the board still says 100µF: now the graph is newer there, and re-projecting fixes it
    d = only(drift(mf, board)[1])
    assert d["path"] == PCB and d["direction"] == "graph"
    r = mf("drift", "resolve", PCB, "--reproject", "--json", cwd=board)
    assert r.code == 0, r.err
    assert r.json["commit"] and git("log", "-1", "--format=%H", cwd=board).stdout.strip() == r.json["commit"]
    assert '"220uF"' in (board / PCB).read_text()
    assert drift(mf, board)[0] == 0
    log = read_log(board)
    assert log[-1]["type"] == "drift.resolved" and log[-1]["payload"]["how"] == "reproject"
    assert log[-2]["type"] == "state.linked" and log[-2]["payload"]["git_commit"] == r.json["commit"]
    assert mf("drift", "resolve", PCB, "--reproject", cwd=board).code == 0  # nothing left: says so, exit 0


@pytest.fixture
def guarded(board, mf):
    """The board with a constraint a value edit in KiCad can break (approved: the template guards
    constraint changes)."""
    r = mf("mutate", "add", "Constraint:no-farad-caps", "severity=error",
           'expression=count(DesignElement where value == "1F") == 0', "message=no 1 F capacitor on this board",
           "--json", cwd=board)
    assert r.code == 0, r.err
    if r.json.get("proposal"):
        assert mf("approve", r.json["proposal"].split(":")[1], cwd=board).code == 0
    commit_all(board, "a constraint")
    return board


def test_assistant_mode_a_persons_edit_lands_loudly_an_agents_is_refused(guarded, mf, monkeypatch):
    board = guarded
    set_value(board / SCH, "C1", "1F")
    head = mf("status", "--json", cwd=board).json["semantic_version"]
    monkeypatch.setenv("MF_ACTOR", "agent:bom-sync")  # an agent saved the file: validated first
    r = mf("drift", "resolve", SCH, "--accept-file", cwd=board)
    assert r.code == 1 and "refused" in r.err and "no-farad-caps" in r.err
    assert mf("status", "--json", cwd=board).json["semantic_version"] == head
    assert drift(mf, board)[0] == 1  # still drift
    commit_all(board, "bot edit", env={"GIT_AUTHOR_NAME": "bom-sync[bot]"})  # a bot's commit: an agent too
    monkeypatch.setenv("MF_ACTOR", "user:tester")
    r = mf("drift", "resolve", SCH, "--accept-file", "--json", cwd=board)
    assert r.code == 1 and r.json["error"]["kind"] == "constraint_violation"
    # a person accepts it: it lands, the broken constraint is said loudly and stays in mf check
    r = mf("drift", "resolve", SCH, "--accept-file", "--actor", "user:alice", cwd=board)
    assert r.code == 0, r.err
    assert "constraint broken by this edit" in r.err and "no-farad-caps" in r.err
    assert mf("show", C1, "--json", cwd=board).json["properties"]["value"] == "1F"
    check = mf("check", "--json", cwd=board)
    assert check.code == 1 and any(v["constraint"] == "Constraint:no-farad-caps" and v["status"] == "fail"
                                   for v in check.json["verdicts"])
    assert drift(mf, board)[1]["drifts"][0]["path"] == PCB  # the schematic agrees now; the board lags


def test_reproject_over_a_persons_edit_keeps_their_cosmetic_changes(board, mf):
    move_symbol(board / SCH, "C1")
    set_value(board / SCH, "C1", "221uF")
    moved = (board / SCH).read_text()
    head = git("rev-parse", "HEAD", cwd=board).stdout
    r = mf("drift", "resolve", SCH, "--reproject", "--json", cwd=board)
    assert r.code == 0, r.err
    text = (board / SCH).read_text()
    assert '"221uF"' not in text and text.count('"100µF"') == 2
    assert text == moved.replace('"221uF"', '"100µF"')  # the move is kept, only the value went back
    assert r.json["commit"] is None and git("rev-parse", "HEAD", cwd=board).stdout == head
    assert drift(mf, board)[0] == 0
    log = read_log(board)
    assert [e["type"] for e in log[-2:]] == ["artifact.mapped", "drift.resolved"]
    assert log[-1]["payload"]["how"] == "reproject"
    assert mf("show", C1, "--json", cwd=board).json["properties"]["value"] == "100µF"


def test_reproject_refuses_what_it_cannot_write_and_says_what_to_do(board, mf):
    add_symbol(board / SCH, "C1", "C99", "1nF")
    r = mf("drift", "resolve", SCH, "--reproject", cwd=board)
    assert r.code == 1 and "C99 added" in r.err and "git checkout" in r.err
    git("checkout", "--", SCH, cwd=board)
    # a board's footprint is the schematic's: the board only reports it
    pcb = board / PCB
    old = "Capacitor_THT:CP_Axial_L18.0mm_D6.5mm_P25.00mm_Horizontal"
    text = pcb.read_text()
    assert text.count(f'"{old}"') == 2
    pcb.write_text(text.replace(f'"{old}"', '"Capacitor_THT:CP_Axial_L20.0mm_D8.0mm_P26.00mm_Horizontal"'))
    d = only(drift(mf, board)[1])
    assert {(i["key"], i.get("read_only")) for i in d["items"]} == {("footprint", True)}
    r = mf("drift", "resolve", PCB, "--reproject", cwd=board)
    assert r.code == 1 and "Update PCB from Schematic" in r.err
    # taking the board's footprint moves the graph: then the schematic is behind, and takes it
    assert mf("drift", "resolve", PCB, "--accept-file", cwd=board).code == 0
    d = only(drift(mf, board)[1])
    assert d["path"] == SCH and d["direction"] == "graph" and d["items"][0]["key"] == "footprint"
    assert mf("drift", "resolve", SCH, "--reproject", cwd=board).code == 0
    assert "CP_Axial_L20.0mm_D8.0mm_P26.00mm" in (board / SCH).read_text()
    assert drift(mf, board)[0] == 0


def test_missing_file_restored_by_reproject_or_its_removal_accepted(board, mf):
    (board / SOCKETS).unlink()
    r = mf("drift", "resolve", SOCKETS, "--reproject", "--json", cwd=board)
    assert r.code == 0 and r.json["restored_from"] == "HEAD" and (board / SOCKETS).exists()
    assert drift(mf, board)[0] == 0
    (board / SOCKETS).unlink()
    r = mf("drift", "resolve", SOCKETS, "--accept-file", "--json", cwd=board)
    assert r.code == 0, r.err
    assert drift(mf, board)[0] == 0  # no longer mapped: nothing to miss
    mapped = [e for e in read_log(board) if e["type"] == "artifact.mapped" and e["payload"]["path"] == SOCKETS]
    assert mapped[-1]["payload"]["how"] == "removed" and mapped[-1]["payload"]["mappings"] == []


def test_reconcile_after_a_git_checkout_makes_the_open_drifts_the_real_ones(board, mf):
    git("checkout", "-qb", "feature", cwd=board)
    set_value(board / SCH, "C1", "330uF")
    git("commit", "-qam", "C1 in KiCad, graph not told", "--no-verify", cwd=board)
    git("checkout", "-q", "master", cwd=board)
    r = mf("drift", "reconcile", "--json", cwd=board)
    assert r.code == 0 and r.json["detected"] == [] and r.json["open"] == []
    git("checkout", "-q", "feature", cwd=board)  # nothing watched this checkout
    r = mf("drift", "reconcile", "--json", cwd=board)
    assert r.code == 1
    assert [(d["path"], d["direction"]) for d in r.json["detected"]] == [(SCH, "file")]
    assert [o["path"] for o in r.json["open"]] == [SCH]
    again = mf("drift", "reconcile", "--json", cwd=board).json  # nothing new: nothing appended
    assert again["detected"] == [] and again["resolved"] == []
    assert len(drift_events(read_log(board), "drift.detected")) == 1
    git("checkout", "-q", "master", cwd=board)
    r = mf("drift", "reconcile", "--json", cwd=board)
    assert r.code == 0 and r.json["open"] == []
    assert r.json["resolved"] == [{"path": SCH, "how": "reverted", "drift": r.json["resolved"][0]["drift"]}]
    # the log's open drifts are what the files say, after a rebuild too
    assert mf("rebuild", cwd=board).code == 0
    assert mf("drift", "reconcile", "--json", cwd=board).json["open"] == []


def test_mf_log_and_json_of_drift_events(board, mf):
    set_value(board / SCH, "C1", "220uF")
    assert mf("drift", "reconcile", cwd=board).code == 1
    out = mf("log", "--limit", "1", cwd=board).out
    assert "drift.detected" in out and "file, 1 item(s)" in out
    event = read_log(board)[-1]
    assert event["entity"] == f"Artifact:{SCH}" and event["payload"]["items"][0]["key"] == "value"
    json.dumps(event)


def test_a_board_that_disagreed_when_read_in_is_named_between_the_files_not_as_file_drift(twin, mf):
    """5 of the 13 readable demo boards name other footprints than their schematics: the board
    only reports a footprint, so the disagreement is one between the two files (file ↔ file, kept
    apart from file ↔ graph drift, which hooks act on), not news on every save of the board."""
    import shutil

    from kicad_edits import DEMOS

    shutil.copytree(DEMOS / "pic_programmer", twin / "hw" / "pic_programmer",
                    ignore=shutil.ignore_patterns("*.pdf", "*.wrl", "*.step"))
    pcb = twin / PCB
    old = "Capacitor_THT:CP_Axial_L18.0mm_D6.5mm_P25.00mm_Horizontal"
    pcb.write_text(pcb.read_text().replace(f'"{old}"', '"Old_Lib:CP_Axial"'))
    commit_all(twin)
    assert mf("ingest", "hw", cwd=twin).code == 0
    commit_all(twin, "in the twin")
    assert mf("show", C1, "--json", cwd=twin).json["properties"]["footprint"] == old  # the schematic's
    code, report = drift(mf, twin)
    assert code == 1 and report["drifts"] == []
    assert {(d["entity"], d["key"], d["value"], d["owner"]) for d in report["between_files"]} == {
        (c, "footprint", "Old_Lib:CP_Axial", SCH) for c in (C1, "DesignElement:pic_programmer/C2")}
    pcb.write_text(pcb.read_text() + "\n")  # a save of the board that changes nothing
    code, report = drift(mf, twin)
    assert report["drifts"] == [] and report["parsed"] == 1 and len(report["between_files"]) == 2
    pcb.write_text(pcb.read_text().replace('"Old_Lib:CP_Axial"', '"New_Lib:CP_Axial"'))  # a new footprint there
    d = only(drift(mf, twin)[1])  # C1 and C2 share that footprint
    assert {i["entity"] for i in d["items"]} == {C1, "DesignElement:pic_programmer/C2"}
    assert all(i == {"kind": "changed", "entity": i["entity"], "direction": "file", "key": "footprint",
                     "graph": old, "file": "New_Lib:CP_Axial", "read_only": True} for i in d["items"])


def test_files_untouched_since_are_not_read_and_a_same_size_edit_is_still_seen(board, mf):
    import os
    import time

    time.sleep(2.1)  # older than the racy window: now the hashes may be kept
    assert drift(mf, board)[0] == 0
    cache = json.loads((board / ".metaforge/cache/drift-sha256.json").read_text())
    assert {SCH, SOCKETS, PCB} <= set(cache)
    sch = board / SCH
    st = sch.stat()
    set_value(sch, "C1", "330µF")  # as many bytes as 100µF
    assert sch.stat().st_size == st.st_size
    os.utime(sch, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time
    d = only(drift(mf, board)[1])
    assert d["path"] == SCH and d["items"][0]["file"] == "330µF"
