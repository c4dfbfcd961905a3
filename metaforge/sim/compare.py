"""Prediction vs actual: the device's composition, driven by what the device measured and started
where its samples start, against what it measured of the outputs.

The composition's `telemetry` says which metrics drive (`drive`: a knob or a member's input, then
fed by the samples instead of its connection) and which compare (`compare`: member.output →
metric). Accuracy (RMSE, MAE, largest error, bias) lands on a SimulationRun; an RMSE past the
output's `divergence_threshold` appends `simulation.divergence_detected` on the DeviceInstance in
the same batch, for maintenance or a CAPA. An event rather than a property: the device's `health`
belongs to the live twin (it derives it from limits), and an alert is a fact in time that the
history, `mf log --type simulation.divergence_detected` and the knowledge index can show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from metaforge import events as ev
from metaforge.errors import BadInput
from metaforge.sim import record
from metaforge.sim.compose import driven
from metaforge.sim.engine import Scenario, Series, simulate

ALERT = ev.SIMULATION_DIVERGENCE_DETECTED


@dataclass
class Comparison:
    run_id: str
    device: str
    model: str
    since_us: int
    until_us: int
    duration: float
    metrics: dict[str, dict]            # member.output → {metric, n, rmse, mae, max_abs, bias, threshold, diverged}
    diverged: list[str]
    sim_seconds: float
    t: list = field(default_factory=list)
    series: dict[str, dict] = field(default_factory=dict)   # output → {"actual": [...], "predicted": [...]}

    def as_dict(self) -> dict:
        return {"run": self.run_id, "device": self.device, "model": self.model, "since_us": self.since_us,
                "until_us": self.until_us, "duration_s": round(self.duration, 3), "metrics": self.metrics,
                "diverged": self.diverged, "simulation_seconds": round(self.sim_seconds, 4)}


def compare(repo, device: str, *, actor: str, since_us: int, until_us: int | None = None) -> Comparison:
    import numpy as np

    from metaforge.store.telemetry import TelemetryStore
    from metaforge.thread.devices import require
    from metaforge.sim.whatif import _twin_of, composition_for

    name = require(repo, device)
    twin = _twin_of(repo, name)
    catalog, composed = composition_for(repo, twin, None)
    spec = composed.telemetry
    if not spec.compare:
        raise BadInput(f"{composed.name}: telemetry.compare names no metric to compare with")
    until_us = until_us or int(time.time() * 1e6) + 1
    if not (repo.mfdir / "telemetry.db").exists():
        raise BadInput(f"no telemetry for {name}", f"mf ingest telemetry FILE --device {name}")
    ts = TelemetryStore(repo.mfdir / "telemetry.db")
    try:
        actual = {out: ts.query(name, metric, since_us, until_us, None, "mean") for out, metric in spec.compare.items()}
        drives = {target: ts.query(name, metric, since_us, until_us, None, "mean") for target, metric in spec.drive.items()}
        starts = {metric: ts.query(name, metric, since_us, until_us, None, "mean")[:1] for metric in spec.start}
    finally:
        ts.close()
    actual = {k: v for k, v in actual.items() if len(v) >= 2}
    if not actual:
        metrics = ", ".join(spec.compare.values())
        raise BadInput(f"{name} has no samples of {metrics} in that window", "widen --since, or ingest telemetry")
    t0 = min(rows[0][0] for rows in [*actual.values(), *[d for d in drives.values() if d]])
    t_end = max(rows[-1][0] for rows in actual.values())
    duration = (t_end - t0) / 1e6
    if duration <= 0:
        raise BadInput(f"{name}: the samples in that window span no time")
    member_inputs = [k for k in drives if "." in k and drives[k]]
    model, knobs = driven(composed, member_inputs)
    inputs = {}
    for target, rows in drives.items():
        if not rows:
            continue
        key = knobs.get(target, target)
        inputs[key] = Series([(r[0] - t0) / 1e6 for r in rows], [r[1] for r in rows])
    initial, knob_start = {}, {}
    knob_names = {p.name for p in model.scenario}
    for metric, rows in starts.items():
        targets = spec.start[metric]
        for target in [targets] if isinstance(targets, str) else targets:
            if rows and target not in inputs:
                (knob_start if target in knob_names else initial)[target] = rows[0][1]
    targets = [f"DeviceInstance:{name}", f"BehavioralModel:{composed.name}", twin]
    run_id = record.start(repo, "compare", actor=actor, scenario=f"{name}: prediction vs actual over {duration:.0f} s",
                          composed=model, targets=targets,
                          props={"devices": [name], "initial": {k: float(v) for k, v in {**initial, **knob_start}.items()},
                                 "settings": {"since_us": since_us, "until_us": until_us, "drive": spec.drive,
                                              "compare": spec.compare}})
    try:
        sc = Scenario(duration, 1.0, inputs={**knob_start, **inputs}, initial=initial, curves=False,
                      record=set(actual))
        sim = simulate(model, sc, catalog.limit)
    except Exception as exc:
        record.complete(repo, run_id, actor=actor, props={}, payload={"error": str(exc)}, failed=True)
        raise
    metrics, series, diverged = {}, {}, []
    for out, rows in actual.items():
        t = np.array([(r[0] - t0) / 1e6 for r in rows])
        a = np.array([r[1] for r in rows])
        p = np.interp(t, sim.trace_t, sim.traces[out])
        err = p - a
        threshold = _threshold(model, out)
        rmse = float(np.sqrt(np.mean(err ** 2)))
        m = {"metric": spec.compare[out], "n": int(len(a)), "rmse": rmse, "mae": float(np.mean(np.abs(err))),
             "max_abs": float(np.max(np.abs(err))), "bias": float(np.mean(err)), "threshold": threshold,
             "unit": model.port_unit(out) or "", "diverged": threshold is not None and rmse > threshold}
        metrics[out] = m
        series[out] = {"t": t.tolist(), "actual": a.tolist(), "predicted": p.tolist()}
        if m["diverged"]:
            diverged.append(out)
    alerts = [ev.Draft(ALERT, f"DeviceInstance:{name}", 1,
                       {"run": run_id, "model": composed.members[out.split(".", 1)[0]].definition.name, "output": out,
                        "metric": "rmse", "value": metrics[out]["rmse"], "threshold": metrics[out]["threshold"],
                        "unit": metrics[out]["unit"], "since_us": since_us, "until_us": until_us,
                        "action": "maintenance / CAPA: the device no longer behaves like its model"},
                       f"{name}: {out} RMSE {metrics[out]['rmse']:.3g} > {metrics[out]['threshold']:.3g}")
              for out in diverged]
    record.complete(repo, run_id, actor=actor,
                    props={"metrics": metrics, "result": "diverged" if diverged else "ok",
                           "outputs": {"duration_s": duration, "samples": {k: v["n"] for k, v in metrics.items()}}},
                    payload={"diverged": diverged, "simulation_seconds": round(sim.seconds, 4)}, extra=alerts)
    return Comparison(run_id, name, composed.name, since_us, until_us, duration, metrics, diverged, sim.seconds,
                      series=series)


def _threshold(composed, out: str) -> float | None:
    alias, _, port = out.partition(".")
    for p in composed.members[alias].definition.outputs:
        if p.name == port:
            return p.divergence_threshold
    return None
