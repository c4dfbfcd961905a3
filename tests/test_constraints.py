"""Constraints: refused changes explain themselves, units convert, warnings land, only affected
constraints are checked, and every bad expression is refused with the constraint named."""

import pytest

from conftest import log_bytes, read_log

BUDGET = 'expression=sum(BOMItem.current where rail == "3V3") <= 0.5A'


@pytest.fixture
def budget(repo, mf):
    for name, current in (("U1", "250mA"), ("U3", "0.2A")):
        assert mf("mutate", "add", f"BOMItem:{name}", "rail=3V3", f"current={current}", cwd=repo).code == 0
    assert mf("mutate", "add", "BOMItem:U9", "rail=5V", "current=1A", cwd=repo).code == 0
    r = mf("mutate", "add", "Constraint:power-budget-3v3", BUDGET, "severity=error", cwd=repo)
    assert r.code == 0, r.err
    return repo


def test_a_violating_change_is_refused_with_numbers_and_contributors(budget, mf):
    before = log_bytes(budget)
    r = mf("mutate", "set", "BOMItem:U3", "current=362mA", "--json", cwd=budget)
    assert r.code == 1
    assert r.json["error"]["kind"] == "constraint_violation"
    assert "power-budget-3v3: 612 mA > 500 mA (BOMItem:U1 250 mA, BOMItem:U3 362 mA)" in r.err
    assert r.err.count("\n") == 1
    assert log_bytes(budget) == before
    assert mf("show", "BOMItem:U3", "--json", cwd=budget).json["properties"]["current"] == {"value": 0.2, "unit": "A"}


def test_units_convert_across_mA_and_A(budget, mf):
    # 250 mA + 0.25 A is exactly 0.5 A: allowed; 1 mA more is not
    assert mf("mutate", "set", "BOMItem:U3", "current=0.25A", cwd=budget).code == 0
    r = mf("mutate", "set", "BOMItem:U3", "current=251mA", cwd=budget)
    assert r.code == 1 and "501 mA > 500 mA" in r.err


def test_a_whole_batch_is_refused_when_its_end_state_violates(budget, mf):
    (budget / "c.yaml").write_text("- set: BOMItem:U1\n  props: {current: 100mA}\n"
                                   "- add: BOMItem:U4\n  props: {rail: 3V3, current: 300mA}\n")
    before = log_bytes(budget)
    r = mf("mutate", "apply", "c.yaml", cwd=budget)
    assert r.code == 1 and "600 mA > 500 mA" in r.err and "BOMItem:U4 300 mA" in r.err
    assert log_bytes(budget) == before
    # while a batch whose end state is fine lands, even if a step alone would not
    (budget / "d.yaml").write_text("- add: BOMItem:U4\n  props: {rail: 3V3, current: 300mA}\n"
                                   "- set: BOMItem:U1\n  props: {current: 0mA}\n")
    assert mf("mutate", "apply", "d.yaml", cwd=budget).code == 0


def test_a_warning_lands_and_is_shown(budget, mf):
    r = mf("mutate", "add", "Constraint:soft", "severity=warning", "expression=BOMItem:U1.current <= 100mA",
           "message=prefer a lower-power part", cwd=budget)
    assert r.code == 0
    assert "soft: 250 mA > 100 mA (BOMItem:U1.current 250 mA) — prefer a lower-power part" in r.err
    assert read_log(budget)[-1]["entity"] == "Constraint:soft"
    r = mf("mutate", "set", "BOMItem:U1", "current=260mA", "--json", cwd=budget)
    assert r.code == 0 and r.json["appended"] == 1
    assert [v["status"] for v in r.json["verdicts"] if v["constraint"] == "Constraint:soft"] == ["fail"]
    assert mf("check", cwd=budget).code == 0  # a warning does not fail the check


def test_dry_run_shows_verdicts_and_writes_nothing(budget, mf):
    before = log_bytes(budget)
    r = mf("mutate", "set", "BOMItem:U3", "current=400mA", "--dry-run", "--json", cwd=budget)
    assert r.code == 1 and r.json["refused"] is True and r.json["appended"] == 0
    assert r.json["verdicts"][0]["message"].startswith("power-budget-3v3: 650 mA > 500 mA")
    r = mf("mutate", "set", "BOMItem:U3", "current=100mA", "--dry-run", "--json", cwd=budget)
    assert r.code == 0 and r.json["verdicts"][0]["status"] == "pass"
    assert log_bytes(budget) == before


def test_only_the_constraints_a_change_can_affect_are_checked(budget, mf):
    mf("mutate", "add", "Constraint:five-volt", 'expression=sum(BOMItem.current where rail == "5V") <= 2A', cwd=budget)
    mf("mutate", "add", "Requirement:R1", cwd=budget)
    checked = lambda *args: sorted(v["constraint"] for v in mf("mutate", *args, "--json", cwd=budget).json["verdicts"])
    assert checked("set", "Requirement:R1", "text=unrelated") == []
    assert checked("set", "BOMItem:U9", "current=1.5A") == ["Constraint:five-volt"]
    assert checked("set", "BOMItem:U1", "current=240mA") == ["Constraint:power-budget-3v3"]
    # moving a part between rails touches both budgets: before and after the change count
    assert checked("set", "BOMItem:U1", "rail=5V") == ["Constraint:five-volt", "Constraint:power-budget-3v3"]


def test_removing_what_a_constraint_reads_is_refused(budget, mf):
    mf("mutate", "add", "DesignElement:LDO", "max_current=600mA", cwd=budget)
    mf("mutate", "add", "Constraint:ldo", "expression=BOMItem:U1.current <= DesignElement:LDO.max_current", cwd=budget)
    r = mf("mutate", "remove", "DesignElement:LDO", cwd=budget)
    assert r.code == 1 and "ldo: cannot evaluate: DesignElement:LDO does not exist" in r.err
    r = mf("mutate", "unset", "DesignElement:LDO", "max_current", cwd=budget)
    assert r.code == 1 and "DesignElement:LDO has no value for max_current" in r.err
    # disabled, it no longer guards anything
    assert mf("mutate", "set", "Constraint:ldo", "enabled=false", cwd=budget).code == 0
    assert mf("mutate", "remove", "DesignElement:LDO", cwd=budget).code == 0


@pytest.mark.parametrize("expression, message", [
    ("BOMItem:U1.current <= ", "unexpected 'end of expression' at column"),
    ("BOMItem:U1.current <= 500mA)", "unexpected ')' at column 28"),
    ("sum(Widget.current) < 1A", "unknown entity type 'Widget'"),
    ("BOMItem:U1.colour == \"red\"", "BOMItem has no property 'colour'"),
    ("BOMItem:U1.current <= 3.3V", "cannot compare a current with a voltage"),
    ("BOMItem:U1.current + 1V > 0A", "cannot add a voltage to a current"),
    ("BOMItem:NOPE.current <= 1A", "cannot evaluate: BOMItem:NOPE does not exist"),
    ("BOMItem:U1.current / 0A > 1", "cannot evaluate: division by zero"),
    ("BOMItem:U1.current", "the expression must be a condition"),
    ("import_os(1) > 0", "unknown function 'import_os'"),
    ("__import__", "unknown name '__import__'"),
    ("1 < 2 < 3", "chained comparison"),
    ("BOMItem:U1.current <= 5zorks", "unknown unit 'zorks'"),
    ("", "it has no expression"),
])
def test_a_bad_expression_is_refused_naming_the_constraint(budget, mf, expression, message):
    before = log_bytes(budget)
    r = mf("mutate", "add", "Constraint:bad", f"expression={expression}", cwd=budget)
    assert r.code == 2, r.err
    assert r.err.startswith("mf: error: Constraint:bad: ") and message in r.err, r.err
    assert log_bytes(budget) == before


def test_a_division_by_zero_that_appears_later_is_a_refusal_not_a_pass(budget, mf):
    mf("mutate", "add", "BOMItem:K1", "quantity=2", cwd=budget)
    assert mf("mutate", "add", "Constraint:per-unit", "expression=BOMItem:U1.current / BOMItem:K1.quantity <= 1A",
              cwd=budget).code == 0
    r = mf("mutate", "set", "BOMItem:K1", "quantity=0", cwd=budget)
    assert r.code == 1 and "per-unit: cannot evaluate: division by zero" in r.err


def test_pin_assignments_are_unique(repo, mf):
    for name, pin, net in (("A", "U1.PA5", "SCK"), ("B", "U1.PA6", "MISO")):
        mf("mutate", "add", f"DesignElement:{name}", "kind=pin", f"pin={pin}", f"net={net}", cwd=repo)
    assert mf("mutate", "add", "Constraint:pins", 'expression=unique(DesignElement.pin where kind == "pin")',
              cwd=repo).code == 0
    r = mf("mutate", "add", "DesignElement:C", "kind=pin", "pin=U1.PA5", "net=LED", cwd=repo)
    assert r.code == 1 and "pins: values are not unique (pin U1.PA5 is used by DesignElement:A, DesignElement:C)" in r.err


def test_check_exit_codes(budget, mf):
    r = mf("check", "--json", cwd=budget)
    assert r.code == 0 and r.json["ok"] is True and r.json["constraints"] == 1
    # events that arrive without the command path (a merged branch, another tool) can break a constraint:
    from metaforge.events import Draft
    from metaforge.repo import Repo

    repo = Repo.find(budget)
    with repo.log.lock():
        repo.index.sync(repo.log, locked=True)
        head = repo.index.position()
        repo.log.append(head, [Draft("property.set", "BOMItem:U1", 2, {"key": "current", "value": {"value": 2, "unit": "A"}})],
                        "agent:merge", "2026-01-01T00:00:00.000Z")
    repo.close()
    r = mf("check", cwd=budget)
    assert r.code == 1 and "✗ error   power-budget-3v3: 2.2 A > 0.5 A" in r.out
    # an invalid constraint fails the check too (its property left the project's types)
    cfg = budget / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + '\n[types.BOMItem]\nripple = "voltage"\n')
    mf("mutate", "set", "BOMItem:U1", "current=1mA", "ripple=30mV", cwd=budget)
    mf("mutate", "add", "Constraint:ripple", "severity=warning", "expression=BOMItem:U1.ripple <= 50mV", cwd=budget)
    cfg.write_text(cfg.read_text().replace('ripple = "voltage"', ""))
    r = mf("check", "--json", cwd=budget)
    assert r.code == 0  # a warning-level constraint that cannot be read is reported, not fatal
    assert [v["status"] for v in r.json["verdicts"] if v["constraint"] == "Constraint:ripple"] == ["invalid"]


def test_the_template_passes_check_right_after_init(twin, mf):
    r = mf("check", "--json", cwd=twin)
    assert r.code == 0, r.out
    assert r.json["constraints"] >= 10 and r.json["errors"] == 0 and r.json["warnings"] == 0
    messages = {v["constraint"]: v["message"] for v in r.json["verdicts"]}
    assert messages["Constraint:power-budget-3v3"] == "power-budget-3v3: 116.6 mA <= 480 mA"
    assert messages["Constraint:thermal-mcu"] == "thermal-mcu: 63.66 °C <= 75 °C"
    # the template's limits bite: the LDO overheats if the 3V3 load triples
    r = mf("mutate", "set", "BOMItem:U6", "current=260mA", cwd=twin)
    assert r.code == 1 and "thermal-ldo" in r.err and "power-budget-3v3" not in r.err


def test_sums_kept_between_commands_equal_a_fresh_scan(repo, mf):
    """Property-style: after any run of changes, the engine's kept sums and counts equal a rescan."""
    import random

    from metaforge.errors import MetaforgeError
    from metaforge.repo import Repo
    from metaforge.thread.commands import Change, execute
    from metaforge.thread.constraints.engine import check_all

    r = Repo.find(repo)
    execute(r, [Change("add", "Constraint:budget", props={
        "expression": 'sum(BOMItem.current where rail == "A") + count(BOMItem where rail == "B") * 1mA <= 100A'})],
        actor="agent:t")
    rnd = random.Random(7)
    for _step in range(120):
        name = f"BOMItem:P{rnd.randrange(12)}"
        props = {"rail": rnd.choice("AB"), "current": f"{rnd.randrange(1, 900)}{rnd.choice(['mA', 'uA', 'A'])}"}
        op = rnd.choice(["add", "set", "set", "remove"])
        try:
            execute(r, [Change(op, name, props={} if op == "remove" else props)], actor="agent:t")
        except MetaforgeError:
            pass  # adding what exists, changing what does not: refused, nothing changed
    kept = check_all(r.index, r.types)[0].message
    r.index.conn.execute("DELETE FROM aggregates")
    rescanned = check_all(r.index, r.types)[0].message
    assert kept == rescanned and "<=" in kept
    rows = r.index.conn.execute("SELECT count(*) FROM aggregates").fetchone()[0]
    assert rows == 0  # reading never writes the kept sums
    r.close()
