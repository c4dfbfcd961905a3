
import pytest

from conftest import log_bytes, read_log


def test_add_set_link_write_chained_events_with_versions(repo, mf):
    assert mf("mutate", "add", "BOMItem:C42", "capacitance=10uF", "max_voltage=16V", "-m", "decoupling", cwd=repo).code == 0
    assert mf("mutate", "add", "DesignElement:MCU", "kind=component", cwd=repo).code == 0
    assert mf("mutate", "link", "DesignElement:MCU", "USES_COMPONENT", "BOMItem:C42", cwd=repo).code == 0
    assert mf("mutate", "set", "BOMItem:C42", "capacitance=22uF", cwd=repo).code == 0
    events = read_log(repo)
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert [e["type"] for e in events] == ["node.created", "node.created", "edge.created", "property.set"]
    assert [(e["entity"], e["version"]) for e in events] == [
        ("BOMItem:C42", 1), ("DesignElement:MCU", 1), ("DesignElement:MCU", 2), ("BOMItem:C42", 2)]
    assert events[0]["msg"] == "decoupling" and events[0]["actor"] == "user:tester"
    assert events[0]["payload"]["properties"]["capacitance"] == {"value": 10, "unit": "uF"}
    assert events[3]["payload"] == {"key": "capacitance", "value": {"value": 22, "unit": "uF"}}
    assert events[0]["prev"] == "0" * 64
    for a, b in zip(events, events[1:]):
        assert b["prev"] == a["hash"]
    assert len({e["id"] for e in events}) == 4


def test_units_are_kept_and_a_unit_that_does_not_fit_is_refused(repo, mf):
    r = mf("mutate", "add", "BOMItem:U1", "current=1.2A", "capacity=2200mAh", "max_temp=85C", "--json", cwd=repo)
    assert r.code == 0, r.err
    props = mf("show", "BOMItem:U1", "--json", cwd=repo).json["properties"]
    assert props["current"] == {"value": 1.2, "unit": "A"}
    assert props["capacity"] == {"value": 2200, "unit": "mAh"}
    assert props["max_temp"] == {"value": 85, "unit": "degC"}
    before = log_bytes(repo)
    r = mf("mutate", "set", "BOMItem:U1", "current=1.2V", cwd=repo)
    assert r.code == 2
    assert "BOMItem.current: '1.2V' is a voltage, not a current" in r.err
    r = mf("mutate", "set", "BOMItem:U1", "current=12", cwd=repo)
    assert r.code == 2 and "needs a unit of current" in r.err
    r = mf("mutate", "set", "BOMItem:U1", "current=3zorks", cwd=repo)
    assert r.code == 2 and "unknown unit" in r.err
    assert log_bytes(repo) == before


@pytest.mark.parametrize("args, message", [
    (["mutate", "add", "Widget:W1"], "unknown entity type 'Widget'"),
    (["mutate", "add", "BOMItem"], "is not an entity id"),
    (["mutate", "add", "BOMItem:C1", "colour=red"], "BOMItem has no property 'colour'"),
    (["mutate", "add", "BOMItem:C1", "quantity=many"], "BOMItem.quantity"),
    (["mutate", "add", "Requirement:R1", "priority=urgent"], "must be one of"),
    (["mutate", "add", "BOMItem:C1", "quantity"], "is not key=value"),
    (["mutate", "set", "BOMItem:NOPE", "quantity=1"], "unknown entity BOMItem:NOPE"),
    (["mutate", "link", "BOMItem:U1", "OWNS", "BOMItem:U1"], "unknown relation 'OWNS'"),
    (["mutate", "link", "BOMItem:U1", "INSTANCE_OF", "BOMItem:U1"], "INSTANCE_OF cannot start at a BOMItem"),
    (["mutate", "link", "DesignElement:D1", "USES_COMPONENT", "BOMItem:GONE"], "link target BOMItem:GONE does not exist"),
])
def test_bad_input_is_refused_with_exit_2_and_nothing_appended(repo, mf, args, message):
    mf("mutate", "add", "BOMItem:U1", cwd=repo)
    mf("mutate", "add", "DesignElement:D1", cwd=repo)
    before = log_bytes(repo)
    r = mf(*args, cwd=repo)
    assert r.code == 2, (r.out, r.err)
    assert message in r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert log_bytes(repo) == before


def test_stale_expect_version_is_refused_and_nothing_appended(repo, mf):
    mf("mutate", "add", "BOMItem:C1", "quantity=1", cwd=repo)
    assert mf("mutate", "set", "BOMItem:C1", "quantity=2", "--expect-version", "1", cwd=repo).code == 0
    before = log_bytes(repo)
    r = mf("mutate", "set", "BOMItem:C1", "quantity=3", "--expect-version", "1", "--json", cwd=repo)
    assert r.code == 1
    assert r.json["error"]["kind"] == "version_conflict"
    assert "is at version 2, not 1" in r.err
    assert log_bytes(repo) == before
    assert mf("show", "BOMItem:C1", "--json", cwd=repo).json["properties"]["quantity"] == 2


def test_adding_an_existing_entity_is_refused(repo, mf):
    mf("mutate", "add", "BOMItem:C1", cwd=repo)
    r = mf("mutate", "add", "BOMItem:C1", cwd=repo)
    assert r.code == 1 and "already exists" in r.err


def test_dry_run_shows_the_events_and_writes_nothing(repo, mf):
    mf("mutate", "add", "BOMItem:C1", "quantity=1", cwd=repo)
    before = log_bytes(repo)
    r = mf("mutate", "set", "BOMItem:C1", "quantity=5", "--dry-run", "--json", cwd=repo)
    assert r.code == 0
    assert r.json["dry_run"] is True and r.json["appended"] == 0
    assert r.json["events"][0]["type"] == "property.set" and r.json["events"][0]["seq"] == 2
    assert log_bytes(repo) == before
    assert mf("show", "BOMItem:C1", "--json", cwd=repo).json["version"] == 1


def test_set_of_an_unchanged_value_appends_nothing(repo, mf):
    mf("mutate", "add", "BOMItem:C1", "quantity=1", cwd=repo)
    r = mf("mutate", "set", "BOMItem:C1", "quantity=1", "--json", cwd=repo)
    assert r.code == 0 and r.json["appended"] == 0 and r.json["unchanged"] == ["set BOMItem:C1"]


def test_set_of_several_keys_is_one_event_and_one_version(repo, mf):
    mf("mutate", "add", "BOMItem:C1", cwd=repo)
    mf("mutate", "set", "BOMItem:C1", "quantity=2", "mpn=GRM188", "tags=a,b", 'unit_cost:=0.05', cwd=repo)
    last = read_log(repo)[-1]
    assert last["type"] == "node.updated" and last["version"] == 2
    assert last["payload"]["set"] == {"quantity": 2, "mpn": "GRM188", "tags": ["a", "b"], "unit_cost": 0.05}


def test_unset_and_remove_cascade_relationships_as_events(repo, mf):
    mf("mutate", "add", "BOMItem:C1", "quantity=1", "notes=x", cwd=repo)
    mf("mutate", "add", "DesignElement:P", cwd=repo)
    mf("mutate", "add", "Requirement:R", cwd=repo)
    mf("mutate", "link", "DesignElement:P", "USES_COMPONENT", "BOMItem:C1", cwd=repo)
    mf("mutate", "link", "BOMItem:C1", "SATISFIES", "Requirement:R", cwd=repo)
    assert mf("mutate", "unset", "BOMItem:C1", "notes", cwd=repo).code == 0
    assert "notes" not in mf("show", "BOMItem:C1", "--json", cwd=repo).json["properties"]
    assert mf("mutate", "remove", "BOMItem:C1", cwd=repo).code == 0
    tail = read_log(repo)[-3:]
    assert [e["type"] for e in tail] == ["edge.deleted", "edge.deleted", "node.deleted"]
    assert {(e["entity"], e["payload"]["to"]) for e in tail[:2]} == {
        ("BOMItem:C1", "Requirement:R"), ("DesignElement:P", "BOMItem:C1")}
    r = mf("show", "BOMItem:C1", cwd=repo)
    assert r.code == 2 and "was removed" in r.err
    assert mf("show", "DesignElement:P", "--json", cwd=repo).json["out"] == []
    # an id can come back; its version goes on from where it stopped
    assert mf("mutate", "add", "BOMItem:C1", cwd=repo).code == 0
    assert mf("show", "BOMItem:C1", "--json", cwd=repo).json["version"] == 6


def test_unlink_removes_one_relationship(repo, mf):
    mf("mutate", "add", "BOMItem:C1", cwd=repo)
    mf("mutate", "add", "DesignElement:P", cwd=repo)
    mf("mutate", "link", "DesignElement:P", "uses_component", "BOMItem:C1", cwd=repo)
    r = mf("mutate", "link", "DesignElement:P", "USES_COMPONENT", "BOMItem:C1", cwd=repo)
    assert r.code == 1 and "already exists" in r.err
    assert mf("mutate", "unlink", "DesignElement:P", "USES_COMPONENT", "BOMItem:C1", cwd=repo).code == 0
    assert mf("show", "BOMItem:C1", "--json", cwd=repo).json["in"] == []
    r = mf("mutate", "unlink", "DesignElement:P", "USES_COMPONENT", "BOMItem:C1", cwd=repo)
    assert r.code == 2 and "does not exist" in r.err


def test_project_types_and_properties_from_config(repo, mf):
    cfg = repo / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + '\n[types.BOMItem]\nripple = "voltage"\n\n[types.Supplier]\ncountry = "str"\n')
    assert mf("mutate", "add", "BOMItem:C1", "ripple=80mV", cwd=repo).code == 0
    assert mf("mutate", "add", "Supplier:digikey", "country=US", cwd=repo).code == 0
    r = mf("mutate", "add", "BOMItem:C2", "ripple=80mA", cwd=repo)
    assert r.code == 2 and "is a current, not a voltage" in r.err
    cfg.write_text(cfg.read_text() + '\n[types.Broken]\nx = "furlong"\n')
    r = mf("mutate", "add", "BOMItem:C3", cwd=repo)
    assert r.code == 2 and "unknown property kind 'furlong'" in r.err


def test_actor_is_a_user_or_an_agent(repo, mf, monkeypatch):
    assert mf("mutate", "add", "BOMItem:C1", "--actor", "agent:bom-sync", cwd=repo).code == 0
    assert read_log(repo)[-1]["actor"] == "agent:bom-sync"
    r = mf("mutate", "add", "BOMItem:C2", "--actor", "robot", cwd=repo)
    assert r.code == 2 and "user:<name> or agent:<code>" in r.err
    monkeypatch.delenv("MF_ACTOR")
    import subprocess
    subprocess.run(["git", "config", "user.name", "Ada Lovelace"], cwd=repo, check=True)
    mf("mutate", "add", "BOMItem:C3", cwd=repo)
    assert read_log(repo)[-1]["actor"] == "user:Ada Lovelace"


def test_log_stays_compact(repo, mf):
    mf("mutate", "add", "BOMItem:C1", cwd=repo)
    sizes = []
    for i in range(20):
        before = len(log_bytes(repo))
        mf("mutate", "set", "BOMItem:C1", f"current={i + 1}mA", "-m", "measured on the bench", cwd=repo)
        sizes.append(len(log_bytes(repo)) - before)
    assert max(sizes) < 500, sizes
