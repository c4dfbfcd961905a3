"""Figures for the constraint engine (issue 3). Run: .venv/bin/python benchmarks/bench_constraints.py

A graph of 10,000 entities (9,000 BOM items on 30 rails, 30 regulators, 969 pin assignments,
one twin model) with 300 constraints: 30 power budgets, 30 part counts per rail, 238 per-part
thermal limits, a total mass budget and a pin-uniqueness rule. Times one real `mf mutate set`
(process wall time, including its constraint check) and the check alone, in process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd, timed  # noqa: E402

RAILS = 30


def build(path: Path) -> None:
    from metaforge.repo import Repo
    from metaforge.thread.changes_file import change_from_dict
    from metaforge.thread.commands import execute

    subprocess.run(mf_cmd() + ["init", str(path)], check=True, capture_output=True)
    changes = [{"add": "TwinModel:TM", "props": {"max_temp": "50C", "phase": "EVT"}}]
    changes += [{"add": f"DesignElement:REG-{k}", "props": {"max_current": "12A", "kind": "component"}}
                for k in range(RAILS)]
    changes += [{"add": f"BOMItem:P{i}", "props": {"rail": f"R{i % RAILS}", "current": f"{i % 50 + 1}mA",
                                                   "voltage": "3.3V", "max_temp": "85C", "mass": "2g"}}
                for i in range(9000)]
    changes += [{"add": f"DesignElement:D{i}", "props": {"kind": "pin", "pin": f"U{i // 64}.P{i % 64}", "net": f"N{i}"}}
                for i in range(969)]
    constraints = [f'sum(BOMItem.current where rail == "R{k}") <= 0.8 * DesignElement:REG-{k}.max_current'
                   for k in range(RAILS)]
    constraints += [f'count(BOMItem where rail == "R{k}") <= 400' for k in range(RAILS)]
    constraints += [f"TwinModel:TM.max_temp + BOMItem:P{j}.voltage * BOMItem:P{j}.current * 100K/W "
                    f"<= BOMItem:P{j}.max_temp - 10K" for j in range(0, 9000, 37)][:238]
    constraints += ["sum(BOMItem.mass) <= 50kg", 'unique(DesignElement.pin where kind == "pin")']
    assert len(constraints) == 300
    changes += [{"add": f"Constraint:C{n}", "props": {"expression": e, "severity": "error"}}
                for n, e in enumerate(constraints)]
    repo = Repo(path)
    execute(repo, [change_from_dict(c, "bench") for c in changes], actor="agent:bench")
    repo.close()


def check_in_process(path: Path, part: str, runs: int = 30) -> tuple[float, int]:
    """Median time of the constraint check of one `set`, and how many constraints it checked."""
    from metaforge.repo import Repo
    from metaforge.thread.commands import Change, plan
    from metaforge.thread.constraints.engine import check_change

    repo = Repo(path)
    times = []
    with repo.log.lock():
        planned = plan(repo, [Change("set", part, props={"current": "31mA"})], actor="agent:bench", message=None)
        dirty = list(planned.state.dirty)
        for _ in range(runs):
            t = time.perf_counter()
            verdicts, _ = check_change(repo.index, planned.state, repo.types, dirty)
            times.append(time.perf_counter() - t)
    repo.close()
    assert all(v.status == "pass" for v in verdicts), [v.message for v in verdicts if v.status != "pass"]
    return statistics.median(times), len(verdicts)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mf-bench-constraints-"))
    repo = work / "big"
    t = time.perf_counter()
    build(repo)
    print(f"  built 10,000 entities and 300 constraints in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    part = "BOMItem:P37"  # on rail R7, named by a thermal constraint, under the mass budget
    timed(["status"], repo)
    check_s, checked = check_in_process(repo, part)
    set_s = statistics.median(timed(["mutate", "set", part, f"current={20 + i}mA"], repo) for i in range(7))
    check_all_s = timed(["check"], repo, runs=3)
    rows = [("mutate set with its constraint check (10k entities, 300 constraints)", set_s, 0.5, "s"),
            (f"the check itself, in process ({checked} constraints affected)", check_s * 1000, 20, "ms"),
            ("mf check of all 300 constraints", check_all_s, None, "s")]
    print(f"\n{'figure':<72} {'measured':>10} {'target':>9}")
    ok = True
    for name, value, limit, unit in rows:
        good = limit is None or value < limit
        ok &= good
        target = f"< {limit} {unit}" if limit else ""
        print(f"{name:<72} {value:>7.3f} {unit:<2} {target:>9}{'' if limit is None else '  ok' if good else '  MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
