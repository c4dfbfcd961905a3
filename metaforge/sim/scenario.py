"""What a person types, made into a scenario: durations, rates, `--set` overrides with units,
sweep ranges, and the start state read from a device's latest telemetry.

    --set ambient_temp_c=50            a knob of the composition (its inputs)
    --set battery.capacity=3000mAh     a member's parameter; `capacity` finds `capacity_Ah`, the
                                       unit converts (3000 mAh → 3.0 Ah)
    --set battery.soc=0.8              a member's state at the start
    --set power_path_ohm=0.006         the composition's own parameter
    --set ambient_temp_c=0..50:5       a range (sweep only): 0, 5, ..., 50
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from metaforge.errors import BadInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|min|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    m = _DURATION.match(str(text))
    if not m:
        raise BadInput(f"'{text}' is not a duration", "e.g. 90s, 10min, 1h")
    scale = {None: 1, "ms": 1e-3, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    value = float(m.group(1)) * scale
    if value <= 0:
        raise BadInput(f"'{text}': a duration must be positive")
    return value


def parse_rate(text: str) -> float:
    m = re.match(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(Hz|kHz|/s)?\s*$", str(text))
    if not m or float(m.group(1)) <= 0:
        raise BadInput(f"'{text}' is not a rate", "e.g. 10Hz, 1Hz, 0.1Hz")
    return float(m.group(1)) * (1000 if m.group(2) == "kHz" else 1)


@dataclass
class Overrides:
    inputs: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, dict] = field(default_factory=dict)   # alias ("" = composition) → {param: value}
    initial: dict[str, Any] = field(default_factory=dict)
    given: dict[str, str] = field(default_factory=dict)         # as typed, for the record
    where: dict[str, tuple] = field(default_factory=dict)       # as typed → ("inputs"|"initial", key) or ("parameters", alias, name)

    def value(self, key: str) -> float:
        w = self.where[key]
        return self.parameters[w[1]][w[2]] if w[0] == "parameters" else getattr(self, w[0])[w[1]]

    def as_record(self) -> dict:
        return dict(self.given)


def split_pairs(pairs: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BadInput(f"--set '{pair}' is not name=value")
        out.append((key.strip(), value.strip()))
    return out


def parse_overrides(composed, pairs: list[tuple[str, str]], build_params) -> Overrides:
    """Classify each name=value (knob, parameter, state) and convert its value to the model's unit.
    `build_params(alias)` gives a member's flattened parameters, to find `capacity` → `capacity_Ah`."""
    out = Overrides()
    knobs = {p.name: p for p in composed.scenario}
    for key, text in pairs:
        out.given[key] = text
        if key in knobs:
            out.inputs[key] = convert(text, knobs[key].unit, f"--set {key}")
            out.where[key] = ("inputs", key)
            continue
        if key in composed.parameters:
            out.parameters.setdefault("", {})[key] = convert(text, _suffix_unit(key), f"--set {key}")
            out.where[key] = ("parameters", "", key)
            continue
        alias, dot, rest = key.partition(".")
        alias = _alias(composed, alias) if dot else None
        if alias is None:
            members = ", ".join(composed.members)
            raise BadInput(f"--set {key}: not an input of {composed.name} "
                           f"(inputs: {', '.join(knobs) or 'none'}) nor member.parameter (members: {members})")
        states = _states(composed, alias)
        if rest in states:
            out.initial[f"{alias}.{rest}"] = convert(text, states[rest], f"--set {key}")
            out.where[key] = ("initial", f"{alias}.{rest}")
            continue
        params = build_params(alias)
        name = _param(rest, params, key)
        out.parameters.setdefault(alias, {})[name] = convert(text, _suffix_unit(name), f"--set {key}")
        out.where[key] = ("parameters", alias, name)
    return out


def _alias(composed, name: str) -> str | None:
    if name in composed.members:
        return name
    for alias, loaded in composed.members.items():
        if loaded.definition.name == name:
            return alias
    return None


def _states(composed, alias: str) -> dict[str, str]:
    """A member's state names and units (`battery.soc`, `thermal.board`, `throttle.state`)."""
    d = composed.members[alias].definition
    if d.model_type == "differential-equation":
        return {k: s.unit for k, s in d.states.items()}
    if d.model_type == "thermal-rc":
        return {k: "degC" for k in d.parameters["nodes"]}
    return {}


def _param(rest: str, params: dict, key: str) -> str:
    if rest in params:
        return rest
    found = [p for p in params if p.startswith(rest + "_") and _unit_of(p[len(rest) + 1:])]
    if len(found) == 1:
        return found[0]
    known = ", ".join(sorted(p for p in params if not isinstance(params[p], (list, tuple))))
    raise BadInput(f"--set {key}: no parameter '{rest}'" + (f" (did you mean {' or '.join(found)}?)" if found else
                                                             f" (parameters: {known})"))


def _unit_of(tail: str) -> str | None:
    """The unit a name's tail spells: `Ah`, `ohm`, `per_K` (1/K), `V_per_cell` (V), `C` (°C)."""
    from metaforge.thread import units

    if tail.startswith("per_"):
        candidates = ["1/" + tail[4:]]
    else:
        candidates = [tail.replace("_per_", "/")] + ([tail.split("_per_")[0]] if "_per_" in tail else [])
    for candidate in candidates:
        unit = "degC" if candidate == "C" else units.normalize_unit(candidate, None)
        try:
            units.dimensionality(unit)
            return unit
        except units.UnitError:
            continue
    return None


def _suffix_unit(name: str) -> str | None:
    """The unit of a parameter from its name: `capacity_Ah` → Ah, `r0_ohm` → ohm, `throttle_at_C` → °C."""
    parts = name.split(".")[-1].split("_")
    for i in range(1, len(parts)):
        unit = _unit_of("_".join(parts[i:]))
        if unit:
            return unit
    return None


def convert(text: str, unit: str | None, where: str) -> float:
    """A number as typed, with or without a unit, in `unit` (the port's or the parameter's)."""
    from metaforge.thread import units

    split = units.split_number(str(text))
    if not split:
        raise BadInput(f"{where}: '{text}' is not a number")
    value, given = float(split[0]), split[1]
    if not given:
        return value
    if not unit or unit == "1":
        raise BadInput(f"{where}: '{text}' has a unit, but this value has none")
    src, dst = units.normalize_unit(given, "temperature"), units.normalize_unit(unit, "temperature")
    try:
        if units.dimensionality(src) != units.dimensionality(dst):
            raise BadInput(f"{where}: '{text}' is not in {unit} or a unit like it")
    except units.UnitError:
        raise BadInput(f"{where}: unknown unit '{given}'") from None
    base = units.to_base(value, src)
    offset, factor = units.to_base(0.0, dst), units.to_base(1.0, dst) - units.to_base(0.0, dst)
    return (base - offset) / factor


def parse_range(text: str) -> list[str] | None:
    """`0..50:5` → ["0", "5", ..., "50"] (a unit after the last number applies to all); None if not a range."""
    m = re.match(r"^\s*([-+]?[\d.]+)\s*\.\.\s*([-+]?[\d.]+)\s*:\s*([\d.]+)\s*([^\d\s].*)?$", text)
    if not m:
        return None
    lo, hi, step, unit = float(m.group(1)), float(m.group(2)), float(m.group(3)), (m.group(4) or "").strip()
    if step <= 0 or hi < lo:
        raise BadInput(f"'{text}': a range is LOW..HIGH:STEP with LOW <= HIGH and STEP > 0")
    count = int(round((hi - lo) / step)) + 1
    if count > 10_000:
        raise BadInput(f"'{text}': {count} values; a sweep takes up to 10,000")
    return [f"{lo + i * step:g}{unit}" for i in range(count)]


# ---- the start state from telemetry ---------------------------------------------------------

def start_from_telemetry(repo, composed, devices: list[str]) -> tuple[dict, dict, list[dict]]:
    """(initial states, knob values, sources) from each device's latest sample of the metrics the
    composition's `telemetry.start` names. One device: numbers; several: arrays, NaN where a
    device has no sample (the model's own start stands in)."""
    import numpy as np

    from metaforge.store.telemetry import TelemetryStore

    spec = composed.telemetry.start
    if not spec or not devices or not (repo.mfdir / "telemetry.db").exists():
        return {}, {}, []
    ts = TelemetryStore(repo.mfdir / "telemetry.db")
    try:
        latest = {metric: ts.latest_of(devices, metric) for metric in spec}
    finally:
        ts.close()
    initial, inputs, sources = {}, {}, []
    knobs = {p.name for p in composed.scenario}
    for metric, targets in spec.items():
        found = latest[metric]
        if not found:
            continue
        for target in [targets] if isinstance(targets, str) else targets:
            alias = target.split(".", 1)[0]
            if target not in knobs and alias not in composed.members:
                continue  # a member this run leaves out
            if len(devices) == 1:
                at, value = found[devices[0]]
            else:
                value = np.array([found[d][1] if d in found else np.nan for d in devices])
                at = max(t for t, _ in found.values())
            (inputs if target in knobs else initial)[target] = value
            sources.append({"metric": metric, "target": target, "devices": len(found), "latest_us": at})
    return initial, inputs, sources


def fill_missing(composed, initial: dict) -> dict:
    """Per-device starts with NaN where a device had no sample: the model's own start value."""
    import numpy as np

    out = {}
    for key, value in initial.items():
        if np.ndim(value) and np.isnan(value).any():
            alias, _, state = key.partition(".")
            d = composed.members[alias].definition
            default = d.states[state].initial if d.model_type == "differential-equation" else None
            if isinstance(default, (int, float)):
                value = np.where(np.isnan(value), float(default), value)
        out[key] = value
    return out
