"""Figures for the board in 3D (issue 18). Run: .venv/bin/python benchmarks/bench_board_3d.py [RUNS]

For the template's board and every readable Debian KiCad demo board (/usr/share/kicad/demos):
the time to build its GLB and ModelManifest from scratch (no cached GLB), which is what
`mf ingest` adds for a new or changed board, split into the plan (the s-expression read, in
this process) and the whole build (through the STEP reader's child, which imports OpenCascade
once: the first build pays for that import and is reported apart). Also the GLB's size, its
parts, how many had a STEP model and the peak RSS of the child.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMOS = Path("/usr/share/kicad/demos")


def main(runs: int) -> None:
    from metaforge.adapters import pcb_3d, step_child
    from metaforge.adapters.base import AdapterError

    work = Path(tempfile.mkdtemp(prefix="mf-bench-board3d-"))
    (work / ".metaforge").mkdir()
    boards = [ROOT / "templates/drone-flight-controller/files/kicad/flight-controller.kicad_pcb"]
    boards += sorted(DEMOS.glob("*/*.kicad_pcb"), key=lambda p: p.stat().st_size)
    copies = []
    for board in boards:
        dest = work / board.parent.name
        if not dest.exists():
            shutil.copytree(board.parent, dest)
        copies.append(dest / board.name)

    t = time.perf_counter()
    pcb_3d.build(copies[0], f"{copies[0].parent.name}/{copies[0].name}", work)
    print(f"first build (forks the child, imports OpenCascade): {time.perf_counter() - t:.2f} s")
    print(f"{'board':<46} {'MB':>5} {'parts':>5} {'STEP':>4} {'plan s':>7} {'build s':>8} {'GLB MB':>7}")
    for path in copies:
        rel = f"{path.parent.name}/{path.name}"
        try:
            plan_s = _median(lambda: pcb_3d.plan(path, rel), runs)
        except AdapterError as exc:
            print(f"{rel:<46} refused: {exc.reason[:60]}")
            continue

        def build():
            shutil.rmtree(work / ".metaforge" / "artifacts", ignore_errors=True)
            return pcb_3d.build(path, rel, work)

        build_s = _median(build, runs)
        manifest = build()
        glb = work / manifest["glb_url"]
        parts = len(manifest["component_tree"]["children"])
        print(f"{rel:<46} {path.stat().st_size / 1e6:5.2f} {parts:5d} {parts - len(manifest['boxes']):4d} "
              f"{plan_s:7.2f} {build_s:8.2f} {glb.stat().st_size / 1e6:7.2f}")
    child = step_child._child
    if child is not None:
        child.stop()
    print(f"peak RSS of the children: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")
    shutil.rmtree(work, ignore_errors=True)


def _median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
