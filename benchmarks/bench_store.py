"""Figures for the store under damage and hostile input (issue 16).
Run: .venv/bin/python benchmarks/bench_store.py [--runs 7] [--json FILE]

- `mf --help` beside `dvc --help`, timed alternately in the same run (target: at most 0.5 x dvc's).
  dvc is installed in the benchmark's own environment (a venv under /tmp, made on first use: it is
  not a dependency of mf).
- `mf mutate apply` of 100,000 additions in a fresh repository (target: under 4 s).
- what the fingerprint check costs a read: `mf status` on a 100,000-event log, and the same after
  `touch` of the log (the chain is verified again from the start of the segment).

Real processes on real repositories in a temporary directory; each figure is the median of its runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DVC_VENV = Path(os.environ.get("MF_BENCH_DVC_VENV", "/tmp/mf-bench-dvc"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import adds, write_changes  # noqa: E402  (the same 100,000 adds as bench_core)

# the console script's own three lines: what a user's `mf` runs (no runpy), from this checkout
MF = [sys.executable, "-c", "import sys; sys.argv[0] = 'mf'; from metaforge.cli import main; sys.exit(main())"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MF_ACTOR": "user:bench", "MF_NO_BACKGROUND": "1", "COLUMNS": "100"}


def dvc() -> list[str]:
    exe = DVC_VENV / "bin" / "dvc"
    if not exe.exists():
        print(f"installing dvc into {DVC_VENV} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(DVC_VENV)], check=True)
        subprocess.run([str(DVC_VENV / "bin" / "pip"), "install", "-q", "dvc"], check=True)
    return [str(exe)]


def once(cmd: list[str], cwd: Path, ok=(0,), env: dict | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t
    if p.returncode not in ok:
        sys.exit(f"{' '.join(cmd[-3:])} failed ({p.returncode}): {p.stderr}")
    return elapsed


def help_figures(runs: int, cwd: Path) -> dict:
    d = dvc()
    once(d + ["--help"], cwd)  # warm the page cache for both
    once(MF + ["--help"], cwd)
    mf_times, dvc_times = [], []
    for _ in range(runs):  # alternately, so both see the same load
        mf_times.append(once(MF + ["--help"], cwd))
        dvc_times.append(once(d + ["--help"], cwd))
    mf_s, dvc_s = statistics.median(mf_times), statistics.median(dvc_times)
    return {"mf --help": mf_s, "dvc --help": dvc_s, "mf / dvc": mf_s / dvc_s}


def apply_figures(runs: int, tmp: Path, baseline: Path | None) -> dict:
    changes = tmp / "adds.json"
    write_changes(changes, adds(0, 100_000))
    times, base_times = [], []
    base_env = {**ENV, "PYTHONPATH": str(baseline)} if baseline else None
    for i in range(runs):  # alternately with the baseline checkout, if given: the same load for both
        repo = tmp / f"apply{i}"
        subprocess.run(MF + ["init", str(repo)], env=ENV, check=True, capture_output=True)
        times.append(once(MF + ["mutate", "apply", str(changes)], repo))
        if base_env:
            other = tmp / f"base{i}"
            subprocess.run(MF + ["init", str(other)], env=base_env, check=True, capture_output=True)
            base_times.append(once(MF + ["mutate", "apply", str(changes)], other, env=base_env))
    last = tmp / f"apply{runs - 1}"
    status = [once(MF + ["status"], last) for _ in range(5)]
    seg = last / ".metaforge/events/000001.jsonl"
    touched = []
    for _ in range(3):
        os.utime(seg)
        touched.append(once(MF + ["status"], last))
    out = {"mutate apply 100k adds": statistics.median(times)}
    if base_times:
        out["mutate apply 100k adds, baseline"] = statistics.median(base_times)
    return {**out,
            "mf status, 100k events": statistics.median(status),
            "mf status after touch, 100k events": statistics.median(touched)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7, help="runs of each `--help` (apply: runs // 2, at least 2)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--baseline", type=Path, help="a checkout of mf to time `mutate apply` against, alternately")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mf-bench-store-") as tmp:
        tmp = Path(tmp)
        figures = help_figures(args.runs, tmp)
        figures.update(apply_figures(max(2, args.runs // 2), tmp, args.baseline))
    load = os.getloadavg()[0]
    print(f"{'figure':<38} {'value':>9}  target")
    targets = {"mf / dvc": "<= 0.5", "mutate apply 100k adds": "< 4 s"}
    for name, value in figures.items():
        shown = f"{value:.2f}" if name == "mf / dvc" else f"{value:.3f} s"
        print(f"{name:<38} {shown:>9}  {targets.get(name, '')}")
    print(f"(load average {load:.2f} on {os.cpu_count()} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "load": load}, indent=2))


if __name__ == "__main__":
    main()
