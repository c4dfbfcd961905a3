"""The approval workflow: a proposal approved, one rejected, one refused because the state moved,
one refused because a constraint fails at approval time; who proposed and who approved is kept."""

import pytest

from conftest import log_bytes, read_log

RULES = '\n[[approval.rules]]\ntypes = ["Constraint"]\n\n[[approval.rules]]\ntypes = ["BOMItem"]\nphase_at_least = "DVT"\n'


@pytest.fixture
def gated(twin, mf):
    cfg = twin / ".metaforge" / "config.toml"
    if "approval.rules" not in cfg.read_text():
        cfg.write_text(cfg.read_text() + RULES)
    return twin


def _propose(mf, path, *args):
    r = mf("mutate", *args, "--json", cwd=path)
    assert r.code == 0, r.err
    assert r.json["proposal"] and r.json["appended"] == 0
    return r.json["proposal"]


def test_the_template_brings_its_approval_rules(twin):
    assert "approval.rules" in (twin / ".metaforge" / "config.toml").read_text()


def test_a_proposal_approved(gated, mf):
    pid = _propose(mf, gated, "set", "Constraint:power-budget-5v", "severity=warning", "-m", "relax during bring-up")
    assert read_log(gated)[-1]["type"] == "proposal.created"
    assert mf("show", "Constraint:power-budget-5v", "--json", cwd=gated).json["properties"]["severity"] == "error"
    listed = mf("proposals", "--json", cwd=gated).json
    assert [p["id"] for p in listed] == [pid]
    assert listed[0]["rule"] == "changes to Constraint" and listed[0]["proposed_by"] == "user:tester"
    assert listed[0]["events"][0]["payload"] == {"key": "severity", "value": "warning"}
    assert "relax during bring-up" in mf("proposals", cwd=gated).out
    r = mf("approve", pid.split(":")[1], "--actor", "user:lead", "-m", "ok for EVT", cwd=gated)
    assert r.code == 0, r.err
    change, approval = read_log(gated)[-2:]
    assert (change["type"], change["actor"]) == ("property.set", "user:tester")
    assert change["msg"] == f"relax during bring-up (approved in {pid} by user:lead)"
    assert (approval["type"], approval["actor"], approval["msg"]) == ("proposal.approved", "user:lead", "ok for EVT")
    assert mf("show", "Constraint:power-budget-5v", "--json", cwd=gated).json["properties"]["severity"] == "warning"
    assert mf("proposals", "--json", cwd=gated).json == []
    assert mf("proposals", "--all", "--json", cwd=gated).json[0]["decided_by"] == "user:lead"
    assert mf("approve", pid, cwd=gated).code == 1  # not twice
    assert mf("verify", cwd=gated).code == 0


def test_a_proposal_rejected(gated, mf):
    pid = _propose(mf, gated, "add", "Constraint:extra", "expression=BOMItem:U1.current <= 1A")
    assert mf("reject", pid, cwd=gated).code == 2  # a rejection says why
    r = mf("reject", pid, "-m", "covered by thermal-mcu", "--actor", "user:lead", cwd=gated)
    assert r.code == 0
    last = read_log(gated)[-1]
    assert (last["type"], last["actor"], last["msg"]) == ("proposal.rejected", "user:lead", "covered by thermal-mcu")
    assert mf("show", "Constraint:extra", cwd=gated).code == 2
    r = mf("approve", pid, cwd=gated)
    assert r.code == 1 and "already rejected by user:lead" in r.err
    assert mf("proposals", "--all", "--json", cwd=gated).json[0]["decision"] == "covered by thermal-mcu"


def test_a_proposal_refused_because_the_state_moved(gated, mf):
    first = _propose(mf, gated, "set", "Constraint:battery-temperature", "expression=BOMItem:BT1.max_temp - TwinModel:DroneFlightController-v2.1.max_temp >= 8K")
    second = _propose(mf, gated, "set", "Constraint:battery-temperature", "expression=BOMItem:BT1.max_temp - TwinModel:DroneFlightController-v2.1.max_temp >= 2K")
    assert mf("approve", first, cwd=gated).code == 0
    before = log_bytes(gated)
    r = mf("approve", second, "--json", cwd=gated)
    assert r.code == 1 and r.json["error"]["kind"] == "version_conflict"
    assert "the state moved underneath it: Constraint:battery-temperature is at version 3, was 2 when proposed" in r.err
    assert log_bytes(gated) == before
    assert [p["id"] for p in mf("proposals", "--json", cwd=gated).json] == [second]  # still pending


def test_a_proposal_refused_because_a_constraint_fails_at_approval_time(gated, mf):
    assert mf("mutate", "set", "TwinModel:DroneFlightController-v2.1", "phase=DVT", cwd=gated).code == 0
    # each alone keeps the LDO junction under 115 °C at 50 °C ambient; together they do not
    a = _propose(mf, gated, "set", "BOMItem:U6", "current=75mA", "-m", "faster flash")
    b = _propose(mf, gated, "set", "BOMItem:U2", "current=60mA", "-m", "second IMU")
    assert mf("approve", a, cwd=gated).code == 0
    before = log_bytes(gated)
    r = mf("approve", b, cwd=gated)
    assert r.code == 1 and "thermal-ldo: 118.3 °C > 115 °C" in r.err and "BOMItem:U2 60 mA" in r.err
    assert log_bytes(gated) == before


def test_below_the_phase_a_bom_change_lands_directly(gated, mf):
    r = mf("mutate", "set", "BOMItem:U6", "current=30mA", "--json", cwd=gated)
    assert r.code == 0 and r.json["proposal"] is None and r.json["appended"] == 1


def test_a_change_that_fails_a_constraint_is_refused_not_proposed(gated, mf):
    mf("mutate", "set", "TwinModel:DroneFlightController-v2.1", "phase=PVT", cwd=gated)
    before = log_bytes(gated)
    r = mf("mutate", "set", "BOMItem:U6", "current=900mA", cwd=gated)
    assert r.code == 1 and "refused" in r.err
    assert log_bytes(gated) == before


def test_template_save_round_trip(twin, mf, tmp_path):
    r = mf("template", "save", "my-fc", "--to", str(tmp_path / "tpl"), "--json", cwd=twin)
    assert r.code == 0, r.err
    assert "models/battery-discharge.yaml" in r.json["files"]
    copy = tmp_path / "copy"
    assert mf("init", str(copy), "--template", str(tmp_path / "tpl" / "my-fc"), cwd=twin).code == 0
    a = mf("query", "--json", cwd=twin).json
    b = mf("query", "--json", cwd=copy).json
    strip = lambda nodes: [(n["id"], n["properties"]) for n in nodes]
    assert strip(a) == strip(b)
    assert (copy / "models" / "battery-discharge.yaml").is_file()
    assert mf("check", cwd=copy).code == 0
    assert "approval.rules" in (copy / ".metaforge" / "config.toml").read_text()
