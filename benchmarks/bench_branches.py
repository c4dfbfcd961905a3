"""Figures for branches (issue 10). Run: .venv/bin/python benchmarks/bench_branches.py

1. `mf diff` between two commits 10,000 events apart on a 50,000-event log.
2. `git merge` of two branches with 5,000 events each beyond their merge base, through the mf
   merge driver, on the drone template plus 2,000 parts under a power-budget constraint that
   every replayed event is re-checked against.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd, timed  # noqa: E402


def run(path: Path, *args: str) -> None:
    subprocess.run(args, cwd=path, check=True, capture_output=True)


def grow(path: Path, changes: list[dict]) -> None:
    from metaforge.repo import Repo
    from metaforge.thread.changes_file import change_from_dict
    from metaforge.thread.commands import execute
    from metaforge.thread.policy import Source  # a bench's seed: decided, like a template

    repo = Repo(path)
    execute(repo, [change_from_dict(c, "bench") for c in changes], actor="agent:bench", source=Source.TEMPLATE)
    repo.close()


def commit(path: Path, message: str) -> str:
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", message)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()


def bench_diff(work: Path) -> float:
    repo = work / "diff"
    subprocess.run(mf_cmd() + ["init", str(repo)], check=True, capture_output=True)
    grow(repo, [{"add": f"BOMItem:R{i}", "props": {"resistance": f"{i % 900 + 1}ohm", "quantity": 1}}
                for i in range(10_000)])
    for round_ in range(3):
        grow(repo, [{"set": f"BOMItem:R{i}", "props": {"current": f"{round_ * 10 + i % 9 + 1}mA"}} for i in range(10_000)])
    a = commit(repo, "40k events")
    grow(repo, [{"set": f"BOMItem:R{i}", "props": {"current": f"{i % 13 + 50}mA"}} for i in range(10_000)])
    b = commit(repo, "50k events")
    timed(["status"], repo)
    return timed(["diff", a, b, "--json"], repo, runs=3, ok=(1,))  # 1: there is a difference


def bench_merge(work: Path) -> tuple[float, int]:
    repo = work / "merge"
    subprocess.run(mf_cmd() + ["init", str(repo), "--template", "drone-flight-controller"], check=True,
                   capture_output=True)
    grow(repo, [{"add": f"BOMItem:P{i}", "props": {"rail": "AUX", "current": "1mA"}} for i in range(2000)] +
         [{"add": "Constraint:aux-budget", "props": {"expression": 'sum(BOMItem.current where rail == "AUX") <= 100A'}}])
    commit(repo, "base")
    run(repo, "git", "branch", "feat")
    for branch, first in (("feat", 0), ("master", 1000)):
        run(repo, "git", "checkout", "-q", branch)
        for round_ in range(5):
            grow(repo, [{"set": f"BOMItem:P{first + i}", "props": {"current": f"{round_ + 2}mA"}} for i in range(1000)])
        commit(repo, f"{branch}: 5000 events")
    t = time.perf_counter()
    p = subprocess.run(["git", "merge", "feat", "-m", "merge"], cwd=repo, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"merge failed: {p.stdout}{p.stderr}")
    verify = subprocess.run(mf_cmd() + ["verify", "--json"], cwd=repo, capture_output=True, text=True)
    import json

    events = json.loads(verify.stdout)["events"]
    return seconds, events


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mf-bench-branches-"))
    diff_s = bench_diff(work)
    merge_s, events = bench_merge(work)
    rows = [("mf diff, commits 10,000 events apart on a 50,000-event log", diff_s, 2.0),
            (f"git merge, 5,000 + 5,000 events past the base, re-checked ({events} events after)", merge_s, 5.0)]
    print(f"\n{'figure':<78} {'measured':>9} {'target':>8}")
    ok = True
    for name, value, limit in rows:
        good = value < limit
        ok &= good
        print(f"{name:<78} {value:>7.3f} s {'< ' + str(limit) + ' s':>8}  {'ok' if good else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
