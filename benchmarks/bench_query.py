"""Figures for the read side on a large twin (issue 15). Run: .venv/bin/python benchmarks/bench_query.py

A twin of 100,000 entities (a twin model, 1,000 design elements, 1,000 requirements each
satisfied by one element, 97,999 BOM items used by the elements, with a unique `mpn` and a
`current` written in mA, A or uA). Times real `mf` processes, wall time including process start:
`mf query --where mpn=X` (one hit), a comparison across units (`current>=999mA`: a few hundred
hits, some written in A) and `mf trace` on a requirement (a short walk: the element that satisfies it and the twin model).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd, timed  # noqa: E402

ELEMENTS = 1_000
PARTS = 100_000 - 1 - 2 * ELEMENTS


def _current(i: int) -> str:
    """Mostly mA; every 50th part in A and every 70th in uA, so a comparison must convert."""
    if i % 50 == 0:
        return f"{(i % 1300) / 1000:g}A"
    if i % 70 == 0:
        return f"{i % 997 * 1000}uA"
    return f"{i % 1000 + 1}mA"


def changes() -> list[dict]:
    out: list[dict] = [{"add": "TwinModel:TM", "props": {"phase": "EVT"}}]
    for k in range(ELEMENTS):
        out.append({"add": f"DesignElement:D{k}", "props": {"kind": "subsystem"}})
        out.append({"add": f"Requirement:REQ-{k}", "props": {"text": f"block {k} shall draw under 2A"}})
        out.append({"link": ["TwinModel:TM", "HAS_ELEMENT", f"DesignElement:D{k}"]})
        out.append({"link": [f"DesignElement:D{k}", "SATISFIES", f"Requirement:REQ-{k}"]})
    for i in range(PARTS):
        out.append({"add": f"BOMItem:P{i}", "props": {"mpn": f"RC0402FR-07{i}L", "current": _current(i),
                                                      "quantity": i % 7 + 1, "rail": f"R{i % 30}"}})
        out.append({"link": [f"DesignElement:D{i % ELEMENTS}", "USES_COMPONENT", f"BOMItem:P{i}"]})
    return out


def build(path: Path) -> None:
    """Through the library (the same command path, without a process per batch)."""
    from metaforge.repo import Repo
    from metaforge.thread.changes_file import change_from_dict
    from metaforge.thread.commands import execute

    subprocess.run(mf_cmd() + ["init", str(path)], check=True, capture_output=True)
    repo = Repo(path)
    execute(repo, [change_from_dict(c, "bench") for c in changes()], actor="agent:bench")
    repo.close()


def hits(path: Path, *args: str) -> int:
    import json

    p = subprocess.run(mf_cmd() + ["query", "--json", *args], cwd=path, capture_output=True, text=True, check=True)
    return len(json.loads(p.stdout))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the repository (printed) for a look")
    ap.add_argument("--runs", type=int, default=11, help="runs of each command (the median is shown)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-bench-query-"))
    twin = work / "twin"
    try:
        t = time.perf_counter()
        build(twin)
        print(f"  built 100,000 entities in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        timed(["status"], twin)  # warm the unit cache and the page cache once
        mpn = ["--where", "mpn=RC0402FR-0742424L"]
        unit = ["--type", "BOMItem", "--where", "current>=999mA"]
        rows = [
            (f"mf query --where mpn=X ({hits(twin, *mpn)} hit)", timed(["query", *mpn], twin, runs=args.runs), 0.3),
            (f"mf query --type BOMItem --where current>=999mA ({hits(twin, *unit)} hits)",
             timed(["query", *unit], twin, runs=args.runs), None),
            ("  the same with --json (without drawing the table)", timed(["query", "--json", *unit], twin, runs=args.runs),
             None),
            ("mf trace Requirement:REQ-7", timed(["trace", "Requirement:REQ-7"], twin, runs=args.runs), None),
            ("mf status (for scale: process start and one index read)", timed(["status"], twin, runs=args.runs), None),
        ]
    finally:
        if args.keep:
            print(f"repository kept in {twin}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'figure (100,000 entities, wall time of the process)':<72} {'measured':>10} {'target':>9}")
    ok = True
    for name, value, limit in rows:
        good = limit is None or value < limit
        ok &= good
        target = f"< {limit} s" if limit else ""
        print(f"{name:<72} {value:>8.3f} s {target:>9}{'' if limit is None else '  ok' if good else '  MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
