"""`mf sim run`: one model, several wired by port name, or a composition, with inputs given as
numbers or as measured profiles (CSV), optionally started from a device's telemetry.
"""

from __future__ import annotations

import csv
from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sim import record
from metaforge.sim.catalog import Catalog
from metaforge.sim.compose import from_composition, from_models
from metaforge.sim.engine import Scenario, Series, simulate
from metaforge.sim.scenario import convert, parse_overrides, split_pairs, start_from_telemetry

TIME_COLUMNS = ("t", "t_s", "time", "time_s", "ts", "timestamp")


def read_table(path: Path, display: str | None = None) -> tuple[list[float], dict[str, list[float]]]:
    """A CSV of samples: a time column (seconds, or epoch/ISO `ts` made relative) and number columns."""
    display = display or str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise BadInput(f"{display}: cannot read: {exc}") from None
    if len(rows) < 3:
        raise BadInput(f"{display}: needs a header and at least two rows")
    header = [h.strip() for h in rows[0]]
    tcol = next((i for i, h in enumerate(header) if h.lower() in TIME_COLUMNS), None)
    if tcol is None:
        raise BadInput(f"{display}: no time column (one of {', '.join(TIME_COLUMNS)})")
    times, cols = [], {h: [] for i, h in enumerate(header) if i != tcol}
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            times.append(_time(row[tcol]))
            for i, h in enumerate(header):
                if i != tcol:
                    cols[h].append(float(row[i]) if i < len(row) and row[i].strip() else float("nan"))
        except ValueError as exc:
            raise BadInput(f"{display}:{line_no}: {exc}") from None
    t0 = times[0]
    times = [x - t0 for x in times]
    if any(b <= a for a, b in zip(times, times[1:])):
        raise BadInput(f"{display}: the time column must increase")
    return times, cols


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        from metaforge.sync.files import to_us

        return to_us(text.strip()) / 1e6


def input_values(composed, given: list[str] | None, base: Path) -> tuple[dict, float | None]:
    """`--input name=value` or `name=file.csv` (the column `name`, or the file's only column)."""
    knobs = {p.name: p for p in composed.scenario}
    out, longest = {}, None
    for key, text in split_pairs(given):
        if key not in knobs:
            raise BadInput(f"--input {key}: no such input (inputs: {', '.join(knobs)})")
        if text.lower().endswith(".csv"):
            t, cols = read_table(base / text, text)
            col = cols.get(key) if key in cols else (next(iter(cols.values())) if len(cols) == 1 else None)
            if col is None:
                raise BadInput(f"--input {key}={text}: no column '{key}' (columns: {', '.join(cols)})")
            out[key] = Series(t, col)
            longest = max(longest or 0.0, t[-1])
        else:
            out[key] = convert(text, knobs[key].unit, f"--input {key}")
    return out, longest


def run_models(repo, refs: list[str], *, actor: str, inputs=None, sets=None, device: str | None = None,
               duration: float | None = None, rate_hz: float = 10.0, step: float | None = None, base: Path = Path(".")):
    from metaforge.sim.params import flatten
    from metaforge.sim.whatif import _outcome

    catalog = Catalog(repo)
    loaded = [catalog.find(r) for r in refs]
    if len(loaded) == 1 and loaded[0].definition.model_type == "composition":
        composed = from_composition(loaded[0], catalog.find)
    else:
        composed = from_models(loaded)
    values, longest = input_values(composed, inputs, base)
    if duration is None:
        if longest is None:
            raise BadInput("give --duration (or an --input profile, whose length is the run's)")
        duration = longest
    over = parse_overrides(composed, split_pairs(sets), lambda a: flatten(composed.members[a].definition.parameters))
    initial, knobs, sources = {}, {}, []
    targets = [f"BehavioralModel:{m.definition.name}" for m in loaded if m.entity_version is not None]
    if device:
        from metaforge.thread.devices import require

        name = require(repo, device)
        initial, knobs, sources = start_from_telemetry(repo, composed, [name])
        targets.append(f"DeviceInstance:{name}")
    label = device.removeprefix("DeviceInstance:") if device else composed.name
    text = ", ".join([*(f"{k}={v}" for k, v in split_pairs(inputs)), *(f"{k}={v}" for k, v in over.given.items())])
    run_id = record.start(repo, "run", actor=actor, scenario=f"{composed.name}: {text or 'defaults'}", composed=composed,
                          targets=targets, props={"inputs": dict(split_pairs(inputs)), "overrides": over.as_record(),
                                                  "devices": [label] if device else [],
                                                  "settings": {"duration_s": duration, "rate_hz": rate_hz, "step_s": step}})
    try:
        sc = Scenario(duration, rate_hz, inputs={**knobs, **values, **over.inputs}, parameters=over.parameters,
                      initial={**initial, **over.initial}, step=step)
        out = simulate(composed, sc, catalog.limit)
    except Exception as exc:
        record.complete(repo, run_id, actor=actor, props={}, payload={"error": str(exc)}, failed=True)
        raise
    outcome = _outcome(run_id, "run", composed, [label], [out], False, duration, rate_hz, over.as_record(), sources)
    outcome.subject = label
    record.complete(repo, run_id, actor=actor, props={"outputs": {"results": outcome.summary(), "units": outcome.units}},
                    payload={"simulation_seconds": round(outcome.sim_seconds, 4), "steps": outcome.steps})
    return outcome
