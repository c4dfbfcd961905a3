"""Figures for the simulation twin (issue 7). Run: .venv/bin/python benchmarks/bench_sim.py [--quick]

1. One what-if of the template drone (battery + thermal network + throttle state machine), 1 h
   with curves at 10 Hz: the simulation alone (library, median of 20), and `mf sim what-if` as a
   person types it, a new process each time (median of 7, wall clock).
2. The same what-if for 10,000 devices at once (`--model`): every device started from its own
   latest telemetry, vectorized; the library call and the command's wall time. For scale: one
   PyBaMM SPMe solve of the same hour, times 10,000.
3. Calibration on synthetic data from known parameters with 2 mV of noise: the largest error of a
   recovered parameter.
4. Against PyBaMM (SPMe and DFN, Chen2020 and Marquis2019, 25 °C and 5 °C; `pip install
   'metaforge[bench]'`, data made and cached by benchmarks/pybamm_data.py): `mf sim calibrate` of
   the template's battery (3S pack as shipped) on a pulse test, then the RMSE per cell on a drone
   flight it never saw, beside a two-RC circuit fitted with scipy on the same data.
   `--cases=SPMe-Chen2020-25,DFN-Marquis2019-5` runs some cases only. Skipped without PyBaMM.
   `--pybamm-only` runs this part alone (it takes 20-30 min on 2 cores: 8 calibrations).
5. A 10-day `mf sim what-if --json` at 10 Hz: the peak memory of the process (curves streamed).
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


def long_run_memory(base: Path) -> None:
    """A 10-day what-if with --json at 10 Hz (8.6 M points a curve), its peak memory (a new process)."""
    repo = template_repo(base / "long")
    root = repo.root
    repo.close()
    # a fresh parent whose only child is mf: its children's peak is mf's own
    probe = ("import resource, subprocess, sys\n"
             "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
             "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", probe, *mf_cmd(), "sim", "what-if", DEV, "--duration", "10d", "--json"],
                       cwd=root, capture_output=True, text=True)
    took = time.perf_counter() - t
    code, peak_kb = p.stdout.split()
    if code != "0":
        raise SystemExit(f"10-day what-if failed: {p.stderr}")
    print(f"5. `mf sim what-if {DEV} --duration 10d --json` (10 Hz, 2 GB of JSON to /dev/null, curves streamed "
          f"to disk): {took:.1f} s, peak memory {int(peak_kb) / 1024:.0f} MB   target < 500 MB")


def synthetic_calibration() -> None:
    from metaforge.sim.calibrate import fit
    from metaforge.sim.compose import from_models
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, Series, simulate

    model = load(MODELS / "battery-discharge.yaml")
    true = {"r0_ohm": 0.008, "r1_ohm": 0.006, "tau1_s": 20.0, "capacity_Ah": 2.0}
    t = np.arange(0, 1100.0)
    amps = np.where((t // 30) % 2 == 0, 9.0, 0.5)
    amps[(t > 600) & (t < 640)] = 25.0
    sc = Scenario(t[-1], 1.0, inputs={"load_current": Series(t, amps), "cell_temperature": 25.0},
                  parameters={"battery_discharge": true}, curves=False, step=1.0,
                  record={"battery_discharge.terminal_voltage"})
    out = simulate(from_models([model]), sc)
    v = np.interp(t, out.trace_t, out.traces["battery_discharge.terminal_voltage"])
    v = v + np.random.default_rng(11).normal(0, 0.002, len(v))
    r = fit(model, t, {"load_current": amps, "cell_temperature": np.full_like(t, 25.0), "terminal_voltage": v},
            names=list(true))
    errors = {k: abs(r.values[k] / true[k] - 1) * 100 for k in true}
    worst = max(errors, key=errors.get)
    print(f"3. calibration on synthetic data (template battery, {len(t)} samples, 2 mV noise), {r.seconds:.1f} s")
    print("   recovered: " + ", ".join(f"{k} {errors[k]:.2f} %" for k in true)
          + f"; largest error {errors[worst]:.2f} % ({worst})   target < 2 %")


def two_rc_scipy(t, amps, volts, temp_c):
    """The reference the issue names: a plain two-RC circuit (per cell: OCV on 21 knots, R0, two
    R||C pairs, capacity), simulated exactly for a held current, fitted with least_squares."""
    from scipy.optimize import least_squares

    t, amps, volts = (np.asarray(x, dtype=float) for x in (t, amps, volts))
    dt = np.diff(t, append=t[-1] + (t[-1] - t[-2]))
    knots = np.linspace(0, 1, 21)

    def simulate(p, t_, i_):
        q, r0, r1, tau1, r2, tau2 = p[:6]
        ocv = p[6:]
        d_ = np.diff(t_, append=t_[-1] + (t_[-1] - t_[-2]))
        soc = 1 - np.concatenate([[0], np.cumsum(i_[:-1] * d_[:-1])]) / (3600 * q)
        v1 = np.zeros_like(t_)
        v2 = np.zeros_like(t_)
        a1, a2 = np.exp(-d_ / tau1), np.exp(-d_ / tau2)
        for k in range(1, len(t_)):
            v1[k] = a1[k - 1] * v1[k - 1] + (1 - a1[k - 1]) * r1 * i_[k - 1]
            v2[k] = a2[k - 1] * v2[k - 1] + (1 - a2[k - 1]) * r2 * i_[k - 1]
        return np.interp(soc, knots, np.sort(ocv)) - i_ * r0 - v1 - v2

    q0 = 1.1 * float(np.sum(amps[:-1] * np.diff(t))) / 3600
    p0 = np.concatenate([[q0, 0.02, 0.01, 30, 0.01, 600], np.linspace(volts.min(), volts.max(), 21)])
    lo = np.concatenate([[0.3 * q0, 1e-4, 1e-5, 1, 1e-5, 60], np.full(21, 2.0)])
    hi = np.concatenate([[3 * q0, 0.5, 0.5, 300, 0.5, 5000], np.full(21, 4.6)])
    sol = least_squares(lambda p: simulate(p, t, amps) - volts, p0, bounds=(lo, hi), x_scale="jac", max_nfev=200)
    return lambda t_, i_: simulate(sol.x, np.asarray(t_, float), np.asarray(i_, float))


def against_pybamm(cases: list[tuple[str, str, float]]) -> None:
    """`mf sim calibrate battery-discharge` on the template's 3S pack as shipped (pack voltage =
    three identical cells), on a PyBaMM pulse test; RMSE per cell on an unseen PyBaMM flight,
    beside a two-RC circuit fitted with scipy on the same data."""
    try:
        import pybamm  # noqa: F401
    except ImportError:
        print("4. PyBaMM not installed (pip install 'metaforge[bench]'): no physics-model comparison")
        return
    import json

    import pybamm_data as data

    print("4. against PyBaMM (benchmarks/pybamm_data.py): `mf sim calibrate battery-discharge --data pulse.csv "
          "--validate flight.csv --dry-run` on the template's 3S pack as shipped; RMSE per cell (pack / 3)")
    print(f"   {'case':28s} {'structure':17s} {'fit':>6s} {'held-out':>8s} {'unseen':>7s}   {'2RC scipy fit':>13s} "
          f"{'unseen':>7s}  {'mf s':>5s}  landable")
    with tempfile.TemporaryDirectory() as tmp:
        repo = template_repo(Path(tmp) / "cal")
        root = repo.root
        repo.close()
        for model, params, temp_c in cases:
            tp, ip, vp, _ = data.case(model, params, temp_c, "pulse")
            tf, fi, vf, _ = data.case(model, params, temp_c, "flight")
            every = slice(None, None, 5)     # the pulse test logged at 0.2 Hz: 1,500 samples
            data.write_csv(root / "pulse.csv", tp[every], ip[every], temp_c, vp[every], cells=3)
            data.write_csv(root / "flight.csv", tf, fi, temp_c, vf, cells=3)
            t0 = time.perf_counter()
            p = subprocess.run(mf_cmd() + ["sim", "calibrate", "battery-discharge", "--data", "pulse.csv",
                                           "--validate", "flight.csv", "--dry-run", "--json"],
                               cwd=root, capture_output=True, text=True)
            took = time.perf_counter() - t0
            if p.returncode not in (0, 1):
                print(f"   {model} {params} {temp_c:g} °C: mf sim calibrate failed: {p.stderr.strip()[:300]}")
                continue
            out = json.loads(p.stdout)
            mv = lambda d: d["terminal_voltage"] * 1000 / 3 if d else float("nan")
            ref = two_rc_scipy(tp[every], ip[every], vp[every], temp_c)
            ref_fit = float(np.sqrt(np.mean((ref(tp[every], ip[every]) - vp[every]) ** 2))) * 1000
            ref_unseen = float(np.sqrt(np.mean((ref(tf, fi) - vf) ** 2))) * 1000
            print(f"   {model + ' ' + params + f' {temp_c:g} °C':28s} {out['structure'] or '-':17s} {mv(out['rmse']):5.1f}  "
                  f"{mv(out['held_out_rmse']):7.1f}  {mv(out['validation_rmse']):6.1f}   {ref_fit:12.1f}  {ref_unseen:6.1f}  "
                  f"{took:5.0f}  {'yes' if out['landable'] else 'no: ' + '; '.join(out['refusals'])[:80]}", flush=True)


def main() -> None:
    if "--pybamm-only" not in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            one_device(base)
            fleet(base, 1000 if QUICK else 10_000)
            long_run_memory(base)
        synthetic_calibration()
    if not QUICK:
        import pybamm_data as data

        only = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--cases=")]
        cases = [(m, p, temp) for m in data.MODELS for p in data.PARAMETER_SETS for temp in data.TEMPERATURES_C]
        if only:
            cases = [c for c in cases if f"{c[0]}-{c[1]}-{c[2]:g}" in only[0].split(",")]
        against_pybamm(cases)


if __name__ == "__main__":
    main()
