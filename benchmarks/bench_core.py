"""Figures for the digital thread core (issue 2). Run: .venv/bin/python benchmarks/bench_core.py

Times real `mf` processes (what a user or hook waits for) on real repositories made in a
temporary directory; prints a table and, with --json FILE, writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {  # figure: (limit, unit)
    "mf --version": (0.1, "s"), "mf --help": (0.2, "s"), "mf status": (0.3, "s"),
    "mutate set on 100k events": (0.4, "s"), "mutate apply 100k changes": (4.0, "s"),
    "rebuild index from 1M events": (20.0, "s"), "mf show on 1M events": (0.3, "s"),
    "bytes per set event": (500, "B"),
}


def mf_cmd() -> list[str]:
    script = Path(sys.executable).with_name("mf")
    return [str(script)] if script.exists() else [sys.executable, "-m", "metaforge"]


def timed(args: list[str], cwd: Path, runs: int = 1, ok: tuple[int, ...] = (0,)) -> float:
    """Median wall time of `mf ARGS` over `runs` runs (a failure stops the benchmark)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(mf_cmd() + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t)
        if p.returncode not in ok:
            sys.exit(f"mf {' '.join(args)} failed: {p.stderr}")
    return statistics.median(times)


def init(path: Path) -> None:
    subprocess.run(mf_cmd() + ["init", str(path)], check=True, capture_output=True)


def write_changes(path: Path, changes: list[dict]) -> None:
    path.write_text(json.dumps(changes))


def adds(start: int, n: int) -> list[dict]:
    return [{"add": f"BOMItem:R{i}", "props": {"resistance": f"{i % 1000 + 1}ohm", "quantity": i % 7 + 1,
                                             "mpn": f"RC0402FR-07{i}L"}} for i in range(start, start + n)]


def sets(n: int, entities: int, round_: int) -> list[dict]:
    return [{"set": f"BOMItem:R{i % entities}", "props": {"current": f"{round_ * 7 + i % 97 + 1}mA"}}
            for i in range(n)]


def grow_in_process(path: Path, changes: list[dict]) -> None:
    """Append through the library (the same command path, without a process per batch)."""
    from metaforge.repo import Repo
    from metaforge.thread.changes_file import change_from_dict
    from metaforge.thread.commands import execute

    repo = Repo(path)
    execute(repo, [change_from_dict(c, "bench") for c in changes], actor="agent:bench")
    repo.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--events", type=int, default=1_000_000, help="size of the large log (default 1,000,000)")
    ap.add_argument("--keep", action="store_true", help="keep the repositories (printed) for a look")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-bench-"))
    figures: dict[str, float] = {}
    try:
        # start-up, on the template twin
        small = work / "small"
        subprocess.run(mf_cmd() + ["init", str(small), "--template", "drone-flight-controller"], check=True,
                       capture_output=True)
        timed(["status"], small)  # warm the unit cache and the page cache once
        figures["mf --version"] = timed(["--version"], small, runs=21)
        figures["mf --help"] = timed(["--help"], small, runs=21)
        figures["mf status"] = timed(["status"], small, runs=21)

        # 100,000 changes in one apply, then one set on that 100k-event log
        mid = work / "mid"
        init(mid)
        write_changes(mid / "adds.json", adds(0, 100_000))
        figures["mutate apply 100k changes"] = timed(["mutate", "apply", "adds.json"], mid)
        mid_events = sum(sum(1 for _ in open(p)) for p in (mid / ".metaforge/events").glob("*.jsonl"))
        assert mid_events == 100_000, mid_events
        figures["mutate set on 100k events"] = statistics.median(
            timed(["mutate", "set", f"BOMItem:R{i}", "current=12mA", "-m", "bench"], mid) for i in range(7))

        # log size of simple set events
        write_changes(mid / "sets.json", sets(10_000, 100_000, 0))
        before = sum(p.stat().st_size for p in (mid / ".metaforge/events").glob("*.jsonl"))
        timed(["mutate", "apply", "sets.json"], mid)
        after = sum(p.stat().st_size for p in (mid / ".metaforge/events").glob("*.jsonl"))
        figures["bytes per set event"] = (after - before) / 10_000

        # a large log: 100k entities, the rest property sets
        big = work / "big"
        init(big)
        entities = min(100_000, args.events)
        t = time.perf_counter()
        grow_in_process(big, adds(0, entities))
        done, round_ = entities, 1
        while done < args.events:
            n = min(100_000, args.events - done)
            grow_in_process(big, sets(n, entities, round_))
            done, round_ = done + n, round_ + 1
            print(f"  built {done:,} events ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        size = sum(p.stat().st_size for p in (big / ".metaforge/events").glob("*.jsonl"))
        figures["log size of the large log (MB)"] = size / 1e6
        figures["rebuild index from 1M events"] = timed(["rebuild"], big)
        figures["mf show on 1M events"] = timed(["show", "BOMItem:R4242"], big, runs=11)
        figures["mf status on 1M events"] = timed(["status"], big, runs=11)
        figures["mutate set on 1M events"] = timed(["mutate", "set", "BOMItem:R7", "current=1mA"], big, runs=5)
        figures["mf verify on 1M events"] = timed(["verify"], big)
        os.unlink(big / ".metaforge/index.db")
        figures["first mf show after deleting the index (1M)"] = timed(["show", "BOMItem:R4242"], big)
    finally:
        if args.keep:
            print(f"repositories kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'figure':<46} {'measured':>10} {'target':>10}")
    ok = True
    for name, value in figures.items():
        limit, unit = TARGETS.get(name, (None, ""))
        mark = "" if limit is None else ("  ok" if value < limit else "  MISSED")
        ok &= limit is None or value < limit
        shown = f"{value:.0f} {unit}" if unit == "B" else (f"{value:.3f} s" if unit == "s" or "MB" not in name else f"{value:.1f}")
        target = "" if limit is None else (f"< {limit} {unit}")
        print(f"{name:<46} {shown:>10} {target:>10}{mark}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
