"""What a physical model refuses before it runs: values no part can have.

A parameter's unit is in its name (`capacity_Ah`, `r1_ohm`, `c1_F`, `tau1_s`, `throttle_at_C`,
`resistances_K_per_W.board-ambient`, `nodes.mcu.capacitance_J_per_K`): capacities, resistances,
capacitances, heat capacities, thermal resistances, masses and time constants must be positive,
temperatures above absolute zero. A definition may state other bounds (`limits: {name: [lo, hi]}`,
either end null). Inputs and states whose unit is a temperature must be above absolute zero too.
Every refusal is BadInput (exit 2) naming the parameter, the input or the state, and the value.
"""

from __future__ import annotations

import re
from typing import Any

from metaforge.errors import BadInput

ABSOLUTE_ZERO_C = -273.15
# name endings → (what it is, exclusive lower bound)
_POSITIVE = re.compile(r"(_m?Ah|_Wh|_ohm|_mohm|_F|_J_per_K|_K_per_W|_kg|_g|_s|^tau\w*|capacitance|capacity)$")
_TEMPERATURE_C = re.compile(r"(?<!_per)(_C|_degC)$")
_TEMPERATURE_UNITS = {"degC": ABSOLUTE_ZERO_C, "°C": ABSOLUTE_ZERO_C, "C": ABSOLUTE_ZERO_C, "K": 0.0, "kelvin": 0.0}


def rule_for(dotted: str) -> tuple[float | None, float | None, bool] | None:
    """(low, high, low exclusive) that a parameter's name implies, or None."""
    for part in reversed(dotted.split(".")):
        if part.endswith(("_per_K", "_per_C", "_per_mol")) and not part.endswith("_J_per_K"):   # a coefficient
            return None
        if _POSITIVE.search(part):
            return 0.0, None, True
        if _TEMPERATURE_C.search(part):
            return ABSOLUTE_ZERO_C, None, True
    return None


def check_parameters(values: dict[str, Any], limits: dict, where: str) -> None:
    """`values`: resolved parameters (floats, tuples or arrays, one per device)."""
    import numpy as np

    for name, value in values.items():
        stated = limits.get(name)
        if stated is not None:
            lo, hi = stated
            rule = (lo, hi, False)
        else:
            rule = rule_for(name)
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise BadInput(f"{where}: parameter {name} is not a finite number ({_show(arr)})")
        if rule is None:
            continue
        lo, hi, exclusive = rule
        bad = None
        if lo is not None:
            low = arr <= lo if exclusive else arr < lo
            if np.any(low):
                bad = arr[low].flat[0]
        if bad is None and hi is not None and np.any(arr > hi):
            bad = arr[arr > hi].flat[0]
        if bad is not None:
            raise BadInput(f"{where}: parameter {name} = {bad:g} is not physical ({_range_text(name, lo, hi, exclusive)})",
                           "fix the value, or state other bounds under `limits:` in the definition")


def _range_text(name: str, lo, hi, exclusive: bool) -> str:
    if lo == 0.0 and hi is None and exclusive:
        return "it must be positive"
    if lo == ABSOLUTE_ZERO_C and hi is None:
        return "a temperature above absolute zero, -273.15 °C"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if exclusive else '≥'} {lo:g}")
    if hi is not None:
        parts.append(f"≤ {hi:g}")
    return "it must be " + " and ".join(parts)


def _show(arr) -> str:
    import numpy as np

    flat = arr.ravel()
    return str(flat[~np.isfinite(flat)][0])


def check_value(kind: str, name: str, value: Any, unit: str, where: str) -> None:
    """An input or a start state: finite, and above absolute zero when it is a temperature. A start
    state may be NaN for some devices of a fleet: no telemetry, the model's own start there."""
    import numpy as np

    arr = np.asarray(value, dtype=float)
    if kind == "state":
        arr = arr[~np.isnan(arr)]
    if arr.size and not np.all(np.isfinite(arr)):
        raise BadInput(f"{where}: {kind} {name} is not a finite number")
    floor = _TEMPERATURE_UNITS.get(unit)
    if floor is not None and arr.size and np.any(arr <= floor):
        low = float(arr.min())
        raise BadInput(f"{where}: {kind} {name} = {low:g} {unit} is below absolute zero")

