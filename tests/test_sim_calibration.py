"""Calibration against a physics model: an equivalent circuit fitted to one full pulse discharge
of PyBaMM's DFN (Chen2020 cell), then asked to predict a flight-like profile it never saw.

The DFN data is in tests/data/pybamm (made by `benchmarks/bench_sim.py --write-data`, so the test
needs no PyBaMM); the model is benchmarks/models/cell-ecm.yaml. The fit reads every second sample
to keep the test under a minute; the benchmark fits them all.
"""

from pathlib import Path

import numpy as np

from metaforge.sim.calibrate import fit, read_data
from metaforge.sim.definition import load

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "pybamm"


def test_fitted_on_a_pulse_discharge_it_predicts_an_unseen_flight_within_25_mV():
    model = load(ROOT / "benchmarks" / "models" / "cell-ecm.yaml")
    tp, pulse = read_data(DATA / "pulse-discharge.csv")
    tf, flight = read_data(DATA / "flight.csv")
    every = slice(None, None, 2)
    r = fit(model, np.asarray(tp)[every], {k: np.asarray(v)[every] for k, v in pulse.items()},
            validate=(tf, flight), tolerance=1e-6)
    assert r.rmse["terminal_voltage"] < 0.015                 # on its own data
    assert r.validation_rmse["terminal_voltage"] < 0.025      # on the flight it never saw: the figure
    assert 4.7 < r.values["capacity_Ah"] < 5.3                # Chen2020 is a 5 Ah cell
    ocv = [r.values[f"ocv_curve.volts[{i}]"] for i in range(21)]
    assert all(b > a for a, b in zip(ocv, ocv[1:]))           # a physical OCV: rising with the charge
