"""Figures for the simulation twin (issue 7). Run: .venv/bin/python benchmarks/bench_sim.py [--quick]

1. One what-if of the template drone (battery + thermal network + throttle state machine), 1 h
   with curves at 10 Hz: the simulation alone (library, median of 20), and `mf sim what-if` as a
   person types it, a new process each time (median of 7, wall clock).
2. The same what-if for 10,000 devices at once (`--model`): every device started from its own
   latest telemetry, vectorized; the library call and the command's wall time. For scale: one
   PyBaMM SPMe solve of the same hour, times 10,000.
3. Calibration on synthetic data from known parameters with 2 mV of noise: the largest error of a
   recovered parameter.
4. Against PyBaMM's DFN (Chen2020 cell, a physics model; `pip install 'metaforge[bench]'`):
   calibrate an equivalent circuit (benchmarks/models/) on one full pulse discharge, then predict
   a flight-like profile it never saw; voltage RMSE on both. Skipped when PyBaMM is missing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "templates" / "drone-flight-controller" / "files" / "models"
DEV = "FC-SN-20260301-001"
QUICK = "--quick" in sys.argv


def wall(args: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(mf_cmd() + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(f"mf {' '.join(args)} failed: {p.stderr}")
    return statistics.median(times)


def template_repo(path: Path):
    from metaforge.repo import Repo

    subprocess.run(mf_cmd() + ["init", str(path), "--template", "drone-flight-controller"], check=True,
                   capture_output=True)
    return Repo(path)


def one_device(base: Path) -> None:
    from metaforge.sim.catalog import Catalog
    from metaforge.sim.compose import from_composition
    from metaforge.sim.engine import Scenario, simulate

    repo = template_repo(base / "one")
    catalog = Catalog(repo)
    composed = from_composition(catalog.find("drone-flight"), catalog.find)
    sc = Scenario(3600, 10.0, inputs={"ambient_temp_c": 50.0})
    runs = []
    for _ in range(20):
        out = simulate(composed, sc, catalog.limit)
        runs.append(out.seconds)
    points = len(out.t)
    print(f"1. one what-if, 1 h, {points} points a curve at 10 Hz ({out.steps} engine steps of {out.step:.2f} s)")
    print(f"   simulation (library, median of 20):           {statistics.median(runs) * 1000:7.1f} ms   target < 100 ms")
    args = ["sim", "what-if", DEV, "--set", "ambient_temp_c=50", "--duration", "1h"]
    wall(args, repo.root, 1)  # the definitions' cache, the unit memo
    print(f"   `mf {' '.join(args)}` (wall, median of 7):  {wall(args, repo.root, 7):6.3f} s    target < 1 s")
    print(f"   the same with --json (36,001 points x 16 curves):  {wall(args + ['--json'], repo.root, 3):6.3f} s")
    # the machine's speed right now: README's figure for `mf status` was measured on a quiet one
    print(f"   for scale, `mf status` on this machine now:     {wall(['status'], repo.root, 7):6.3f} s    (README: 0.138 s)")
    repo.close()


def fleet(base: Path, n: int) -> None:
    from metaforge.repo import Repo
    from metaforge.sim.whatif import what_if
    from metaforge.store.telemetry import TelemetryStore
    from metaforge.thread.commands import Change, execute

    repo = template_repo(base / "fleet")
    names = [f"FC-SN-2026{i:06d}" for i in range(n)]
    changes = []
    for name in names:
        node = f"DeviceInstance:{name}"
        changes += [Change("add", node, props={"serial": name, "status": "active"}),
                    Change("link", node, rel="INSTANCE_OF", dst="TwinModel:DroneFlightController-v2.1")]
    t = time.perf_counter()
    execute(repo, changes, actor="agent:bench", message=f"{n} devices")
    made = time.perf_counter() - t
    rng = np.random.default_rng(1)
    now = int(time.time() * 1e6)
    store = TelemetryStore(repo.mfdir / "telemetry.db")
    rows = [(d, "battery_status.remaining", now - 60_000_000, float(rng.uniform(0.3, 1.0))) for d in names]
    rows += [(d, "board_temp_c", now - 60_000_000, float(rng.uniform(20, 45))) for d in names]
    store.write(rows)
    store.close()
    repo.close()
    repo = Repo(repo.root)
    t = time.perf_counter()
    out = what_if(repo, actor="agent:bench", twin_model="DroneFlightController-v2.1", sets=["ambient_temp_c=40"],
                  duration=3600, curves=False)
    call = time.perf_counter() - t
    flights = np.array([x for x in out.results["flight_time"] if x is not None])
    print(f"2. fleet what-if, {len(out.labels):,} devices started from their telemetry ({n:,} registered in {made:.1f} s)")
    print(f"   simulation alone:                             {out.sim_seconds:7.2f} s    ({out.steps} steps, vectorized)")
    print(f"   library call (telemetry, record, simulate):   {call:7.2f} s    target < 5 s")
    args = ["sim", "what-if", "--model", "DroneFlightController-v2.1", "--set", "ambient_temp_c=40", "--duration", "1h"]
    print(f"   `mf {' '.join(args[:4])} ...` (wall, median of 3): {wall(args, repo.root, 3):5.2f} s")
    print(f"   flight time over the fleet: {flights.min() / 60:.1f} .. {np.median(flights) / 60:.1f} .. "
          f"{flights.max() / 60:.1f} min")
    pybamm_per_solve()
    repo.close()


def pybamm_per_solve() -> None:
    try:
        os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")
        import pybamm
    except ImportError:
        print("   (PyBaMM not installed: no per-solve comparison)")
        return
    pybamm.set_logging_level("ERROR")
    pv = pybamm.ParameterValues("Chen2020")
    pv["Current function [A]"] = 5.0
    sim = pybamm.Simulation(pybamm.lithium_ion.SPMe(), parameter_values=pv)
    sim.solve([0, 3600])
    times = []
    for _ in range(5):
        t = time.perf_counter()
        sim.solve([0, 3600])
        times.append(time.perf_counter() - t)
    per = statistics.median(times)
    print(f"   PyBaMM SPMe, one cell, the same hour: {per * 1000:.1f} ms a solve, x 10,000 = {per * 1e4:.0f} s")


def synthetic_calibration() -> None:
    from metaforge.sim.calibrate import fit
    from metaforge.sim.compose import from_models
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, Series, simulate

    model = load(MODELS / "battery-discharge.yaml")
    true = {"r0_ohm": 0.025, "r1_ohm": 0.02, "c1_F": 1500.0, "capacity_Ah": 2.0}
    t = np.arange(0, 1100.0)
    amps = np.where((t // 30) % 2 == 0, 9.0, 0.5)
    amps[(t > 600) & (t < 640)] = 25.0
    sc = Scenario(t[-1], 1.0, inputs={"load_current": Series(t, amps), "cell_temperature": 25.0},
                  parameters={"battery_discharge": true}, curves=False, step=1.0,
                  record={"battery_discharge.terminal_voltage"})
    out = simulate(from_models([model]), sc)
    v = np.interp(t, out.trace_t, out.traces["battery_discharge.terminal_voltage"])
    v = v + np.random.default_rng(11).normal(0, 0.002, len(v))
    r = fit(model, t, {"load_current": amps, "cell_temperature": np.full_like(t, 25.0), "terminal_voltage": v})
    errors = {k: abs(r.values[k] / true[k] - 1) * 100 for k in true}
    worst = max(errors, key=errors.get)
    print(f"3. calibration on synthetic data (template battery, {len(t)} samples, 2 mV noise), {r.seconds:.1f} s")
    print("   recovered: " + ", ".join(f"{k} {errors[k]:.2f} %" for k in true)
          + f"; largest error {errors[worst]:.2f} % ({worst})   target < 2 %")


def pybamm_profiles():
    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")
    import pybamm

    pybamm.set_logging_level("ERROR")

    def solve(t, amps):
        pv = pybamm.ParameterValues("Chen2020")
        pv["Lower voltage cut-off [V]"] = 2.6
        pv["Current function [A]"] = pybamm.Interpolant(t, amps, pybamm.t)
        sim = pybamm.Simulation(pybamm.lithium_ion.DFN(), parameter_values=pv, solver=pybamm.IDAKLUSolver())
        grid = np.arange(0, t[-1] + 1, 1.0)
        sol = sim.solve(grid, t_interp=grid)
        return sol["Time [s]"].entries, sol["Current [A]"].entries, sol["Voltage [V]"].entries

    # calibration: one full pulse discharge, repeated to cut-off: 4 min at 8 A (1.6C), a 20 s 18 A
    # pulse, 4 min at 8 A, 1 min of rest, 30 s at 3 A, 2 min of rest
    cycle = [(240, 8.0), (20, 18.0), (240, 8.0), (60, 0.0), (30, 3.0), (120, 0.0)]
    ip = np.array([a for _ in range(12) for d, a in cycle for _ in range(d)], dtype=float)
    tp = np.arange(len(ip), dtype=float)
    # unseen: a flight, hover with punch-outs and descents, changing every 2-6 s
    rng = np.random.default_rng(7)
    tf = np.arange(0, 2400.0)
    fi = np.empty_like(tf)
    k = 0
    while k < len(tf):
        d = int(rng.integers(2, 7))
        fi[k:k + d] = max(float(rng.choice([7.0, 7.0, 7.0, 12.0, 18.0, 3.0]) + rng.normal(0, 0.8)), 0.5)
        k += d
    return solve(tp, ip), solve(tf, fi)


def against_pybamm() -> None:
    try:
        import pybamm  # noqa: F401
    except ImportError:
        print("4. PyBaMM not installed (pip install 'metaforge[bench]'): no physics-model comparison")
        return
    from metaforge.sim.calibrate import fit
    from metaforge.sim.definition import load

    t0 = time.perf_counter()
    (tp, ip, vp), (tf, fi, vf) = pybamm_profiles()
    made = time.perf_counter() - t0
    if "--write-data" in sys.argv:   # the files tests/test_sim_calibration.py fits
        out = ROOT / "tests" / "data" / "pybamm"
        out.mkdir(parents=True, exist_ok=True)
        for name, (t, i, v) in (("pulse-discharge.csv", (tp, ip, vp)), ("flight.csv", (tf, fi, vf))):
            np.savetxt(out / name, np.column_stack([t, i, v]), delimiter=",", fmt=["%.3f", "%.4f", "%.6f"],
                       header="t,load_current,terminal_voltage", comments="")
    print(f"4. against PyBaMM DFN (Chen2020, 5 Ah): a pulse discharge ({tp[-1] / 60:.0f} min, {ip.mean():.1f} A mean) "
          f"to calibrate, a flight ({tf[-1] / 60:.0f} min, {fi.mean():.1f} A mean, {fi.max():.0f} A peaks) to predict; "
          f"made in {made:.0f} s")
    for name in ("cell-1rc.yaml", "cell-ecm.yaml"):
        model = load(Path(__file__).parent / "models" / name)
        r = fit(model, tp, {"load_current": ip, "terminal_voltage": vp},
                validate=(tf, {"load_current": fi, "terminal_voltage": vf}))
        fit_mv, unseen_mv = r.rmse["terminal_voltage"] * 1000, r.validation_rmse["terminal_voltage"] * 1000
        print(f"   {name:14s} ({len(r.values)} parameters, {r.seconds:5.1f} s): RMSE on its own pulse data {fit_mv:5.1f} mV, "
              f"on the unseen flight {unseen_mv:5.1f} mV   target < 25 mV")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        one_device(base)
        fleet(base, 1000 if QUICK else 10_000)
    synthetic_calibration()
    if not QUICK:
        against_pybamm()


if __name__ == "__main__":
    main()
