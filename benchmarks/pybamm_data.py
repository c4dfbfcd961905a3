"""Test data from physics models: a lab pulse test and an unseen drone flight, made with PyBaMM.

    python benchmarks/pybamm_data.py [--write-tests]

Every case is one PyBaMM model (SPMe, DFN) × one parameter set (Chen2020: LG M50, a 5 Ah NMC811
cylinder; Marquis2019: a 0.68 Ah LCO pouch) × one ambient temperature (25 °C, 5 °C), isothermal,
driven by two current profiles written in C-rates (so each cell gets the same test):

- pulse test (what a lab calibrates on, README "Calibrating a battery model"): from full, steps
  of 1C discharge of 10 % of the capacity, each followed by 10 min of rest and a 10 s 2C pulse with
  40 s of rest; once, at about 40 % depth, one sustained 1.8C segment of 10 min. Down to 85 %
  depth of discharge. (The rates suit both cells: Chen2020's energy cell falls to its cut-off
  past about 2.5C.)
- flight (never fitted): hover at 1.1C with punch-outs to 1.6C and 2C and descents to 0.4C, a
  new level every 2 to 6 s (seeded), for 36 minutes.

A case is solved once and kept in the cache (~/.cache/metaforge/pybamm, or $MF_PYBAMM_CACHE) as a
CSV of t, load_current (A), cell_temperature (°C), terminal_voltage (V, one cell), keyed by the
PyBaMM version and a hash of this file. `--write-tests` writes the small copies the test suite
fits (tests/data/pybamm: SPMe, Chen2020, 25 °C; the pulse test sampled every 5 s, the flight every 1 s), with no PyBaMM needed there.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("SPMe", "DFN")
PARAMETER_SETS = ("Chen2020", "Marquis2019")
TEMPERATURES_C = (25.0, 5.0)


def pulse_test_c_rates() -> np.ndarray:
    """C-rate each second of the pulse test (positive: discharge)."""
    out: list[float] = []
    depth, sustained_done = 0.0, False

    def hold(seconds: int, c: float) -> None:
        nonlocal depth
        out.extend([c] * seconds)
        depth += c * seconds / 3600

    hold(120, 0.0)
    while depth < 0.85:
        if not sustained_done and depth >= 0.38:
            hold(600, 1.8)                        # the one sustained segment: diffusion shows
            sustained_done = True
        else:
            hold(int(0.10 * 3600), 1.0)
        hold(600, 0.0)                            # rest: the voltage relaxes toward OCV
        hold(10, 2.0)                             # a short pulse: R0 and the fast polarization
        hold(40, 0.0)
    return np.array(out)


def flight_c_rates(seconds: int = 36 * 60, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(seconds)
    k = 0
    while k < seconds:
        d = int(rng.integers(2, 7))
        level = float(rng.choice([1.1, 1.1, 1.1, 1.1, 1.6, 2.0, 0.4]))
        out[k:k + d] = max(level + float(rng.normal(0, 0.12)), 0.1)
        k += d
    return out


def cache_dir() -> Path:
    base = os.environ.get("MF_PYBAMM_CACHE")
    if base:
        return Path(base)
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(home) / "metaforge" / "pybamm"


def _key(model: str, params: str, temp_c: float, profile: str) -> Path:
    import pybamm

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    return cache_dir() / f"{model}-{params}-{temp_c:g}C-{profile}-{pybamm.__version__}-{digest}.csv"


def solve(model: str, params: str, temp_c: float, c_rates: np.ndarray):
    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")
    import pybamm

    pybamm.set_logging_level("ERROR")
    pv = pybamm.ParameterValues(params)
    capacity = float(pv["Nominal cell capacity [A.h]"])
    amps = c_rates * capacity
    t = np.arange(len(amps), dtype=float)
    kelvin = 273.15 + temp_c
    pv["Ambient temperature [K]"] = kelvin
    pv["Initial temperature [K]"] = kelvin
    pv["Lower voltage cut-off [V]"] = 2.5
    # a zero-order hold of the profile: the current changes at whole seconds
    tt = np.repeat(t, 2)[1:]
    aa = np.repeat(amps, 2)[:-1]
    tt = np.concatenate([tt, [t[-1] + 1]])
    aa = np.concatenate([aa, [amps[-1]]])
    tt[1::2] -= 1e-3
    pv["Current function [A]"] = pybamm.Interpolant(tt, aa, pybamm.t, interpolator="linear")
    sim = pybamm.Simulation(getattr(pybamm.lithium_ion, model)(), parameter_values=pv, solver=pybamm.IDAKLUSolver())
    sol = sim.solve([0, t[-1]], t_interp=t)
    ts = sol["Time [s]"].entries
    return ts, np.interp(ts, t, amps), sol["Voltage [V]"].entries, capacity


def case(model: str, params: str, temp_c: float, profile: str):
    """(t, amps, volts, capacity_Ah) of one case, from the cache or solved now."""
    path = _key(model, params, temp_c, profile)
    if path.exists():
        data = np.loadtxt(path, delimiter=",", skiprows=1)
        capacity = float(path.with_suffix(".capacity").read_text())
        return data[:, 0], data[:, 1], data[:, 3], capacity
    rates = pulse_test_c_rates() if profile == "pulse" else flight_c_rates()
    t, amps, volts, capacity = solve(model, params, temp_c, rates)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, t, amps, temp_c, volts)
    path.with_suffix(".capacity").write_text(repr(capacity))
    return t, amps, volts, capacity


def write_csv(path: Path, t, amps, temp_c: float, volts, cells: int = 1) -> None:
    np.savetxt(path, np.column_stack([t, amps, np.full_like(t, temp_c), np.asarray(volts) * cells]), delimiter=",",
               fmt=["%.3f", "%.5f", "%.2f", "%.6f"], header="t,load_current,cell_temperature,terminal_voltage",
               comments="")


def write_tests() -> None:
    """The test suite's copies: SPMe, Chen2020, 25 °C, as the template's 3S pack."""
    out = ROOT / "tests" / "data" / "pybamm"
    out.mkdir(parents=True, exist_ok=True)
    for profile, name, step in (("pulse", "pack-pulse-test.csv", 5), ("flight", "pack-flight.csv", 1)):
        t, amps, volts, _ = case("SPMe", "Chen2020", 25.0, profile)
        every = slice(None, None, step)   # the pulse test's steps all start at multiples of 10 s
        write_csv(out / name, t[every], amps[every], 25.0, volts[every], cells=3)


if __name__ == "__main__":
    for m in MODELS:
        for p in PARAMETER_SETS:
            for temp in TEMPERATURES_C:
                for prof in ("pulse", "flight"):
                    t, a, v, q = case(m, p, temp, prof)
                    print(f"{m:5s} {p:12s} {temp:4g} °C {prof:6s}: {len(t)} s, {a.mean():.2f} A mean, "
                          f"{v.min():.3f}..{v.max():.3f} V, {q:g} Ah", flush=True)
    if "--write-tests" in sys.argv:
        write_tests()
