"""Quantities as written (`1.2A`, `2200mAh`, `85C`): a number, a unit, and its dimension.

pint decides what a unit is. Loading pint costs ~0.35 s, more than a whole `mf mutate set`
may take, so the dimension pint gives for each unit string is memoized in the user's cache
directory; pint is imported only for a unit never seen before.
"""

from __future__ import annotations

import json
import math
import os
import re
from functools import lru_cache
from pathlib import Path

from metaforge import __version__

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")

# Dimension names used by the schemas, each with a reference unit: a value fits a dimension
# when pint gives its unit the same dimensionality as the reference unit.
DIMENSIONS = {
    "current": "A", "voltage": "V", "power": "W", "energy": "J", "charge": "C",
    "capacitance": "F", "resistance": "ohm", "inductance": "H", "temperature": "kelvin",
    "frequency": "Hz", "time": "s", "mass": "kg", "length": "m", "area": "m^2",
    "thermal_resistance": "K/W", "heat_capacity": "J/K", "angular_velocity": "rpm",
    "force": "N", "data_rate": "bit/s", "ratio": "percent",
}

# What a hardware engineer writes that pint reads otherwise: `85C` is 85 °C, not coulombs.
_TEMPERATURE_ALIASES = {"C": "degC", "°C": "degC", "F": "degF", "°F": "degF", "K": "kelvin"}
_UNIT_ALIASES = {"Ω": "ohm", "kΩ": "kohm", "MΩ": "Mohm", "mΩ": "mohm", "%": "percent", "µ": "u"}


class UnitError(ValueError):
    pass


_memo: dict[str, str] | None = None


def _memo_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metaforge" / f"units-{__version__}-2.json"


def _load_memo() -> dict[str, str]:
    global _memo
    if _memo is None:
        try:
            _memo = json.loads(_memo_path().read_text())
        except (OSError, ValueError):
            _memo = {}
    return _memo


def _save_memo() -> None:
    path = _memo_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_memo, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs speed


_registry = None


def registry():
    """pint's registry, created on first use (0.35 s)."""
    global _registry
    if _registry is None:
        import pint

        _registry = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
    return _registry


def _info(unit: str) -> list:
    """[dimensionality, factor, offset] of a unit: base value = value * factor + offset."""
    memo = _load_memo()
    info = memo.get(unit)
    if info is None:
        reg = registry()
        try:
            dims = reg.Unit(unit).dimensionality
            zero = reg.Quantity(0, unit).to_base_units().magnitude
            one = reg.Quantity(1, unit).to_base_units().magnitude
        except Exception as exc:  # pint raises several unrelated classes for a bad unit
            raise UnitError(f"unknown unit '{unit}'") from exc
        dim = " * ".join(f"{k}^{v:g}" for k, v in sorted(dims.items())) or "dimensionless"
        info = memo[unit] = [dim, float(one - zero), float(zero)]
        _save_memo()
    return info


def dimensionality(unit: str) -> str:
    """pint's dimensionality of a unit string, or UnitError if pint does not know it."""
    return _info(unit)[0]


def to_base(value: float, unit: str) -> float:
    """The value in SI base units (°C → K, mA → A), for comparing quantities."""
    _, factor, offset = _info(unit)
    return value * factor + offset


def from_base(value: float, unit: str) -> float:
    """The inverse of `to_base`: a value in SI base units, said in `unit` (K → °C)."""
    _, factor, offset = _info(unit)
    return (value - offset) / factor


def base_scale(unit: str) -> tuple[float, float]:
    """(factor, offset) of a unit: base value = value * factor + offset. For sums and extremes
    taken over many values at once (a SQL aggregate), where one `to_base` per value cannot go."""
    _, factor, offset = _info(unit)
    return factor, offset


def has_offset(unit: str) -> bool:
    """°C and °F have an offset from their base unit: a value in them is a temperature, not a
    difference of temperatures."""
    return _info(unit)[2] != 0


def split_number(text: str) -> tuple[str, str] | None:
    """`"85 C"` → ("85", "C"), `"3"` → ("3", ""); None when the text does not start with a number."""
    m = _NUMBER.match(text)
    return (m.group(1), m.group(2)) if m else None


def dimension_name(unit: str) -> str | None:
    dim = dimensionality(unit)
    return next((n for n, ref in DIMENSIONS.items() if dimensionality(ref) == dim), None)

def normalize_unit(unit: str, dimension: str | None) -> str:
    unit = unit.replace("µ", "u").replace("μ", "u")
    if dimension == "temperature":
        unit = _TEMPERATURE_ALIASES.get(unit, unit)
    return _UNIT_ALIASES.get(unit, unit)


def parse_quantity(text: str, dimension: str) -> dict:
    """`"1.2A"` for dimension `current` → {"value": 1.2, "unit": "A"}; UnitError if it does not fit."""
    return dict(_parse_quantity(text, dimension))  # a copy: callers may keep and change it


@lru_cache(maxsize=65536)  # a BOM repeats its values (10uF, 3.3V) thousands of times
def _parse_quantity(text: str, dimension: str) -> dict:
    m = _NUMBER.match(text)
    if not m:
        raise UnitError(f"'{text}' is not a number with a unit (e.g. {example(dimension)})")
    number, unit = m.group(1), m.group(2)
    value = float(number)
    if not math.isfinite(value):
        raise UnitError(f"'{text}': {number} is not a finite number")
    if value.is_integer() and not any(c in number for c in ".eE"):
        value = int(value)
    if not unit:
        if dimension == "ratio":
            return {"value": value, "unit": ""}
        raise UnitError(f"'{text}' needs a unit of {dimension.replace('_', ' ')} (e.g. {example(dimension)})")
    unit = normalize_unit(unit, dimension)
    check_unit(unit, dimension, text)
    check_magnitude(value, unit, dimension, text)
    return {"value": value, "unit": unit}


def check_magnitude(value: float, unit: str, dimension: str, text: str) -> None:
    """A finite number, and a temperature no colder than absolute zero (0 K, -273.15 °C, -459.67 °F)."""
    if not math.isfinite(value):
        raise UnitError(f"'{text}' is not a finite number")
    if dimension == "temperature" and value < 0 and to_base(value, unit) < -1e-9:
        raise UnitError(f"'{text}' is below absolute zero (0 K = -273.15 °C = -459.67 °F)")


def check_unit(unit: str, dimension: str, text: str | None = None) -> None:
    dim = dimensionality(unit)
    if dim != dimensionality(DIMENSIONS[dimension]):
        shown = text or unit
        actual = dimension_name(unit)
        what = f"is a {actual.replace('_', ' ')}" if actual else f"has dimension {dim}"
        raise UnitError(f"'{shown}' {what}, not a {dimension.replace('_', ' ')} (e.g. {example(dimension)})")


_EXAMPLES = {
    "current": "1.2A", "voltage": "3.3V", "power": "250mW", "energy": "24Wh", "charge": "2200mAh",
    "capacitance": "10uF", "resistance": "4.7kohm", "inductance": "2.2uH", "temperature": "85C",
    "frequency": "168MHz", "time": "10min", "mass": "12g", "length": "36mm", "area": "100mm^2",
    "thermal_resistance": "40K/W", "heat_capacity": "15J/K", "angular_velocity": "12000rpm",
    "force": "9.8N", "data_rate": "1Mbit/s", "ratio": "5%",
}


def example(dimension: str) -> str:
    return _EXAMPLES.get(dimension, "1")


_SHOWN = {"degC": "°C", "degF": "°F", "percent": "%", "ohm": "Ω", "kohm": "kΩ", "Mohm": "MΩ", "mohm": "mΩ"}


def shown_unit(unit: str) -> str:
    return _SHOWN.get(unit, unit)


def format_quantity(q: dict) -> str:
    unit = _SHOWN.get(q.get("unit", ""), q.get("unit", ""))
    return f"{q['value']}{unit}" if unit else str(q["value"])
