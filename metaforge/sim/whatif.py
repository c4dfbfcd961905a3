"""What-if, fleet and sweep: a device's (or every device's) composition, started from telemetry,
run under overrides, recorded as a SimulationRun.

    what_if(repo, device="FC-SN-...", sets=["ambient_temp_c=50"], duration=3600)     one device
    what_if(repo, twin_model="DroneFlightController-v2.1", sets=[...])                every device, at once
    sweep(repo, "FC-SN-...", sets=["ambient_temp_c=0..50:5"])                          a table over a range
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from metaforge.errors import BadInput
from metaforge.sim import record
from metaforge.sim.catalog import Catalog
from metaforge.sim.compose import from_composition
from metaforge.sim.engine import Scenario, simulate
from metaforge.sim.scenario import (fill_missing, parse_overrides, parse_range, split_pairs,
                                    start_from_telemetry)


@dataclass
class Outcome:
    run_id: str
    kind: str
    model: str
    labels: list[str]                       # one per column: devices, sweep points, baseline/scenario
    results: dict[str, Any]                 # name → list (one value per label)
    units: dict[str, str]
    margins_at: dict[str, list]
    ranges: list[dict]
    duration: float
    rate_hz: float
    step: float
    steps: int
    sim_seconds: float
    overrides: dict
    start: list[dict] = field(default_factory=list)
    t: Any = None
    curves: dict[str, Any] = field(default_factory=dict)   # name → list of arrays, one per label
    curve_units: dict[str, str] = field(default_factory=dict)
    swept: dict[str, list] = field(default_factory=dict)
    subject: str = ""                       # the device (or fleet, or model) the run is about
    curve_file: Any = None                  # a long run's curves, streamed to disk (curves then empty)
    limits: dict = field(default_factory=dict)   # curve → the ratings and thresholds that limit it

    def view(self, points: int | None = None) -> tuple[Any, dict[str, Any]]:
        """(t, curves): the curves in memory, or every k-th point of a streamed run's (about
        `points` of them; all of them when None)."""
        if self.curve_file is None:
            return self.t, self.curves
        cf = self.curve_file
        every = cf.every_for(points) if points else 1
        return cf.t[::every], {k: [cf.column(k, every)] for k in cf.keys}

    def summary(self) -> dict:
        """Results of one column, or fleet statistics of many (what the SimulationRun keeps)."""
        import numpy as np

        if len(self.labels) == 1:
            return {k: _plain(v[0]) for k, v in self.results.items()}
        out = {}
        for k, values in self.results.items():
            arr = np.asarray(values, dtype=float)
            ok = arr[~np.isnan(arr)]
            out[k] = {"n": int(ok.size), "min": _plain(ok.min()) if ok.size else None,
                      "median": _plain(np.median(ok)) if ok.size else None,
                      "max": _plain(ok.max()) if ok.size else None}
        return out

    def as_dict(self, curves: bool = True) -> dict:
        out = {"run": self.run_id, "kind": self.kind, "model": self.model, "duration_s": self.duration,
               "rate_hz": self.rate_hz, "step_s": self.step, "steps": self.steps,
               "simulation_seconds": round(self.sim_seconds, 4), "overrides": self.overrides, "start": self.start,
               "columns": self.labels, "units": self.units,
               "results": {k: [_plain(x) for x in v] for k, v in self.results.items()},
               "limited_by": {k: [str(x) for x in v] for k, v in self.margins_at.items()},
               "out_of_range": self.ranges}
        if self.swept:
            out["swept"] = self.swept
        if len(self.labels) > 1:
            out["statistics"] = self.summary()
        if curves and self.t is not None:
            out["curves"] = {"t_s": self.t, "units": self.curve_units, "values": self.curves}
        return out


def _plain(v):
    import math

    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return None if math.isnan(f) else round(f, 6)


# ---- the twin behind a device --------------------------------------------------------------

def _twin_of(repo, device: str) -> str:
    from metaforge.thread.devices import require

    name = require(repo, device)
    models = repo.index.edges_from(f"DeviceInstance:{name}", "INSTANCE_OF")
    if not models:
        raise BadInput(f"device {name} is INSTANCE_OF no TwinModel")
    return models[0][1]


def devices_of(repo, twin_model: str) -> list[str]:
    tid = twin_model if twin_model.startswith("TwinModel:") else f"TwinModel:{twin_model}"
    if not repo.index.exists(tid):
        raise BadInput(f"unknown twin model {tid}")
    return [d.split(":", 1)[1] for d in repo.index.devices_in_service(tid)]


def composition_for(repo, twin_model: str, models: list[str] | None):
    catalog = Catalog(repo)
    name = catalog.composition_of(twin_model if twin_model.startswith("TwinModel:") else f"TwinModel:{twin_model}")
    return catalog, from_composition(catalog.find(name), catalog.find, models)


def _params_of(composed):
    from metaforge.sim.params import flatten

    return lambda alias: flatten(composed.members[alias].definition.parameters)


# ---- what-if ----------------------------------------------------------------------------------

def what_if(repo, *, actor: str, device: str | None = None, twin_model: str | None = None, sets=None,
            duration: float = 3600.0, rate_hz: float = 10.0, models: list[str] | None = None,
            compare: bool = False, curves: bool = True) -> Outcome:
    if (device is None) == (twin_model is None):
        raise BadInput("give a device, or --model TWIN_MODEL for every device of a twin model")
    twin = _twin_of(repo, device) if device else (twin_model if twin_model.startswith("TwinModel:")
                                                   else f"TwinModel:{twin_model}")
    devices = [device.removeprefix("DeviceInstance:")] if device else devices_of(repo, twin)
    if not devices:
        raise BadInput(f"{twin} has no devices", "register some: mf device register ID --model ...")
    catalog, composed = composition_for(repo, twin, models)
    initial, knobs, sources = start_from_telemetry(repo, composed, devices)
    over = parse_overrides(composed, split_pairs(sets), _params_of(composed))
    fleet = device is None
    scenario_text = ", ".join(f"{k}={v}" for k, v in over.given.items()) or "as is"
    label = twin.split(":", 1)[1] + f" ({len(devices)} devices)" if fleet else devices[0]
    targets = [f"BehavioralModel:{composed.name}"] + [f"BehavioralModel:{m.definition.name}" for m in composed.members.values()
                                                      if m.entity_version is not None]
    targets += [twin] + [f"DeviceInstance:{d}" for d in devices]
    run_id = record.start(repo, "what-if", actor=actor, scenario=f"{label}: {scenario_text}", composed=composed,
                          targets=[t for t in targets if repo.index.exists(t)],
                          props={"overrides": over.as_record(), "devices": devices if len(devices) <= record.MAX_LISTED_DEVICES else [],
                                 "initial": _describe_start(sources),
                                 "settings": {"duration_s": duration, "rate_hz": rate_hz, "models": models or [],
                                              "compare": compare, "twin_model": twin, "device_count": len(devices)}})
    try:
        base_initial = fill_missing(composed, initial)
        columns = [("baseline", {}, {}, {})] if compare else []
        columns.append(("scenario" if compare else label, over.inputs, over.parameters, over.initial))
        outs = []
        for _, inputs, params, init in columns:
            sc = Scenario(duration, rate_hz, n=len(devices), inputs={**knobs, **inputs}, parameters=params,
                          initial={**base_initial, **init}, curves=curves and not fleet)
            outs.append(simulate(composed, sc, catalog.limit))
    except Exception as exc:
        record.complete(repo, run_id, actor=actor, props={}, payload={"error": str(exc)}, failed=True)
        raise
    labels = [c[0] for c in columns] if not fleet else devices
    outcome = _outcome(run_id, "what-if", composed, labels, outs, fleet, duration, rate_hz, over.as_record(), sources)
    outcome.subject = label
    record.complete(repo, run_id, actor=actor, props={"outputs": _summary_for_record(outcome)},
                    payload={"simulation_seconds": round(outcome.sim_seconds, 4), "steps": outcome.steps})
    return outcome


def _describe_start(sources: list[dict]) -> dict:
    return {s["target"]: {"metric": s["metric"], "devices": s["devices"]} for s in sources}


def _summary_for_record(outcome: Outcome) -> dict:
    out = {"results": outcome.summary(), "units": outcome.units}
    if outcome.ranges:
        out["out_of_range"] = [{k: r[k] for k in ("input", "range", "min", "max", "devices_outside")} for r in outcome.ranges]
    if len(outcome.labels) == 2 and outcome.labels[0] == "baseline":
        out["baseline"] = {k: _plain(v[0]) for k, v in outcome.results.items()}
        out["results"] = {k: _plain(v[1]) for k, v in outcome.results.items()}
    return out


def _outcome(run_id, kind, composed, labels, outs, vectorized, duration, rate_hz, overrides, sources) -> Outcome:
    import numpy as np

    first = outs[0]
    results: dict[str, list] = {}
    margins: dict[str, list] = {}
    for r in outs:
        for k, v in r.results.items():
            results.setdefault(k, []).extend(np.atleast_1d(v).tolist())
        for k, v in r.margins_at.items():
            margins.setdefault(k, []).extend(np.atleast_1d(v).tolist())
    curves: dict[str, list] = {}
    for r in outs:
        for k, arr in r.curves.items():
            cols = [arr] if arr.ndim == 1 else [arr[:, i] for i in range(arr.shape[1])]
            curves.setdefault(k, []).extend(cols)
    ranges = [dict(x, column=labels[i] if not vectorized else None) for i, r in enumerate(outs) for x in r.ranges]
    out = Outcome(run_id, kind, composed.name, labels, results, first.result_units, margins, ranges, duration,
                  rate_hz, first.step, first.steps, sum(r.seconds for r in outs), overrides, sources,
                  first.t if first.curves else None, curves, {k: first.units.get(k, "") for k in curves})
    out.limits = first.limits
    if first.curve_file is not None and len(outs) == 1:
        out.curve_file = first.curve_file
        out.curve_units = {k: first.units.get(k, "") for k in first.curve_file.keys}
    return out


# ---- sweep ------------------------------------------------------------------------------------

def sweep(repo, device: str, *, actor: str, sets=None, duration: float = 3600.0, rate_hz: float = 10.0,
          models: list[str] | None = None) -> Outcome:
    """Every combination of the ranges in `sets` (`ambient_temp_c=0..50:5`), run side by side."""
    twin = _twin_of(repo, device)
    name = device.removeprefix("DeviceInstance:")
    catalog, composed = composition_for(repo, twin, models)
    pairs = split_pairs(sets)
    axes = [(k, parse_range(v) or [v]) for k, v in pairs]
    if not any(len(values) > 1 for _, values in axes):
        raise BadInput("a sweep needs a range: --set NAME=LOW..HIGH:STEP (e.g. ambient_temp_c=0..50:5)")
    grid = list(itertools.product(*[values for _, values in axes]))
    keys = [k for k, _ in axes]
    parsed = [parse_overrides(composed, list(zip(keys, point)), _params_of(composed)) for point in grid]
    inputs = _stack([p.inputs for p in parsed])
    params = {a: _stack([p.parameters.get(a, {}) for p in parsed]) for a in {a for p in parsed for a in p.parameters}}
    initial, knobs, sources = start_from_telemetry(repo, composed, [name])
    init = {**initial, **_stack([p.initial for p in parsed])}
    swept = {k: [float(parsed[i].value(k)) for i in range(len(grid))] for k, values in axes if len(values) > 1}
    text = ", ".join(f"{k}={v}" for k, v in pairs)
    run_id = record.start(repo, "sweep", actor=actor, scenario=f"{name}: {text}", composed=composed,
                          targets=[t for t in (f"BehavioralModel:{composed.name}", twin, f"DeviceInstance:{name}")
                                   if repo.index.exists(t)],
                          props={"overrides": dict(pairs), "devices": [name], "initial": _describe_start(sources),
                                 "settings": {"duration_s": duration, "points": len(grid), "models": models or []}})
    try:
        sc = Scenario(duration, rate_hz, n=len(grid), inputs={**knobs, **inputs}, parameters=params, initial=init,
                      curves=False)
        out = simulate(composed, sc, catalog.limit)
    except Exception as exc:
        record.complete(repo, run_id, actor=actor, props={}, payload={"error": str(exc)}, failed=True)
        raise
    labels = [", ".join(f"{k}={v}" for k, v in zip(keys, point) if len(dict(axes)[k]) > 1) for point in grid]
    outcome = _outcome(run_id, "sweep", composed, labels, [out], True, duration, rate_hz, dict(pairs), sources)
    outcome.swept, outcome.subject = swept, name
    table = {k: [_plain(x) for x in v] for k, v in outcome.results.items()}
    record.complete(repo, run_id, actor=actor, props={"outputs": {"swept": swept, "results": table,
                                                                  "units": outcome.units}},
                    payload={"simulation_seconds": round(outcome.sim_seconds, 4), "points": len(grid)})
    return outcome


def _stack(dicts: list[dict]) -> dict:
    import numpy as np

    keys = {k for d in dicts for k in d}
    out = {}
    for k in keys:
        if any(k not in d for d in dicts):
            raise BadInput(f"--set {k}: give it for every point of the sweep")
        out[k] = np.array([d[k] for d in dicts], dtype=float)
    return out
