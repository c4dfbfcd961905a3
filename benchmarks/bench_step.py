"""Figures for the STEP and BOM adapters (issue 4). Run: .venv/bin/python benchmarks/bench_step.py

STEP: OCP's import time in a fresh process, its install size, and for each model the time to
read the assembly tree (parse outside a repository: no GLB) and to parse with the GLB export
and its manifest (inside a repository, no cached GLB). Models: the test rover, generated
assemblies of 500 and 2,000 placed parts, and the real files in tests/data/step.
BOM: parse and unchanged projection of a 2,000-row KiCad BOM.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def ocp_import_seconds(runs: int = 3) -> float:
    code = ("import time; t = time.perf_counter(); "
            "from metaforge.adapters import step_read, step_glb; print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  cwd=ROOT).stdout) for _ in range(runs)]
    return statistics.median(times)


def ocp_install_mb() -> float:
    import OCP

    site = Path(OCP.__file__).resolve().parents[1]
    total = 0
    for name in ("OCP", "cadquery_ocp_novtk.libs", "cadquery_ocp_proxy"):
        folder = site / name
        if folder.exists():
            total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return total / 1e6


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_model(adapter, path: Path, rel: str, repo: Path, runs: int) -> dict:
    glb_dir = repo / ".metaforge" / "artifacts"

    def with_glb():
        shutil.rmtree(glb_dir, ignore_errors=True)  # no cached GLB: the export is timed
        return adapter.parse(repo / rel, rel)

    read_only = timed(lambda: adapter.parse(path, path.name), runs)
    full = timed(with_glb, runs)
    result = with_glb()
    glb = repo / result.extra["manifest"]["glb_url"]
    return {"entities": len(result.entities), "size_kb": path.stat().st_size / 1e3, "read_s": read_only,
            "read_glb_s": full, "glb_kb": glb.stat().st_size / 1e3}


def bench_bom(work: Path, rows: int, runs: int) -> dict:
    from metaforge.adapters.bom import BomAdapter

    lines = ['"Reference","Value","Datasheet","Footprint","Qty","DNP"']
    for i in range(rows):
        refs = ",".join(f"C{i * 3 + k + 1}" for k in range(3))
        lines.append(f'"{refs}","{i}nF","~","Capacitor_SMD:C_0402_1005Metric","3",""')
    path = work / "big_bom.csv"
    path.write_text("\n".join(lines) + "\n")
    adapter = BomAdapter()
    parsed = adapter.parse(path, path.name)
    entities = {e.id: dict(e.props) for e in parsed.entities}
    assert adapter.project(path, path.name, entities) == path.read_bytes()
    entities[parsed.entities[rows // 2].id]["value"] = "changed"
    return {"rows": rows, "size_kb": path.stat().st_size / 1e3,
            "parse_s": timed(lambda: adapter.parse(path, path.name), runs),
            "project_one_change_s": timed(lambda: adapter.project(path, path.name, entities), runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from step_models import fleet, rover

    from metaforge.adapters.step import StepAdapter

    work = Path(tempfile.mkdtemp(prefix="mf-bench-step-"))
    figures: dict = {}
    try:
        figures["OCP import (fresh process)"] = {"s": ocp_import_seconds()}
        figures["OCP install size"] = {"MB": ocp_install_mb()}
        repo = work / "repo"
        (repo / ".metaforge").mkdir(parents=True)
        (repo / "mech").mkdir()
        models = {
            "rover (test assembly, 15 elements)": rover(repo / "mech" / "rover.step"),
            "fleet, 500 placed parts": fleet(repo / "mech" / "fleet500.step", 500),
            "fleet, 2000 placed parts": fleet(repo / "mech" / "fleet2000.step", 2000),
        }
        for real in sorted((ROOT / "tests" / "data" / "step").glob("*.st*p")):
            models[f"real: {real.name}"] = shutil.copy(real, repo / "mech" / real.name)
        adapter = StepAdapter()
        adapter.parse(models["rover (test assembly, 15 elements)"], "warm-up.step")  # import OCP once
        outside = work / "outside"
        outside.mkdir()
        for name, path in models.items():
            path = Path(path)
            loose = shutil.copy(path, outside / path.name)
            figures[name] = bench_model(adapter, Path(loose), f"mech/{path.name}", repo, args.runs)
        figures["BOM: KiCad CSV, 2000 rows"] = bench_bom(work, 2000, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, values in figures.items():
        shown = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        print(f"{name:<42} {shown}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
