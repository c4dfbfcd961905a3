"""Entity and relationship types of the twin, and the validation of their properties.

Each entity type is a pydantic model built from a property table (name → kind), so the
built-in types and the ones a project adds in `config.toml` go through the same code. A kind
is `str`, `int`, `float`, `bool`, `list`, `dict`, `enum:a|b|c`, or a dimension from
`units.DIMENSIONS` (`current`, `voltage`, ...) for a quantity that keeps its unit.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError, create_model

from metaforge.errors import BadInput
from metaforge.limits import MAX_ID_CHARS, check_id, check_value
from metaforge.thread import units

_COMMON = {"description": "str", "tags": "list", "status": "str", "notes": "str", "url": "str"}
_ELECTRICAL = {
    "voltage": "voltage", "min_voltage": "voltage", "max_voltage": "voltage",
    "current": "current", "max_current": "current", "quiescent_current": "current",
    "power": "power", "max_power": "power", "rail": "str",
    "min_temp": "temperature", "max_temp": "temperature", "thermal_resistance": "thermal_resistance",
}
_PART = {"value": "str", "mpn": "str", "manufacturer": "str", "footprint": "str", "package": "str",
         "datasheet": "str", "mass": "mass", "capacity": "charge", "energy": "energy",
         "capacitance": "capacitance", "resistance": "resistance", "inductance": "inductance",
         "frequency": "frequency", "cells": "int", "efficiency": "ratio", "tolerance": "ratio"}
_PHASES = "concept|EVT|DVT|PVT|production|retired"

ENTITY_TYPES: dict[str, dict[str, str]] = {
    "TwinModel": {"product": "str", "revision": "str", "phase": f"enum:{_PHASES}", "owner": "str",
                  "mass": "mass", "max_power": "power", "min_temp": "temperature", "max_temp": "temperature"},
    "DesignElement": {"kind": "enum:schematic|pcb|enclosure|firmware|mechanical|subsystem|component|assembly|part|net|pin|sheet|other",
                      "reference": "str", "lib_id": "str", "sheet_path": "str", "artifact_path": "str",
                      "pin": "str", "net": "str", "layer": "str", "layers": "int", "thickness": "length",
                      "width": "length", "height": "length", "depth": "length", "material": "str",
                      "version": "str", "clock": "frequency", "fields": "dict",
                      **_PART, **_ELECTRICAL},
    "BOMItem": {"references": "list", "quantity": "int", "supplier": "str", "supplier_pn": "str",
                "unit_cost": "float", "currency": "str", "lifecycle": "str", "dnp": "bool",
                **_PART, **_ELECTRICAL},
    "Requirement": {"text": "str", "priority": "enum:must|should|may", "category": "str", "source": "str",
                    "verification": "enum:test|analysis|inspection|demonstration", "rationale": "str"},
    "Constraint": {"expression": "str", "severity": "enum:error|warning", "message": "str",
                   "category": "str", "enabled": "bool"},
    "BehavioralModel": {"model_type": "enum:differential-equation|transfer-function|thermal-rc|lookup-table|state-machine|composition",
                        "domain": "str", "definition": "str", "inputs": "list", "outputs": "list",
                        "parameters": "dict", "calibration_source": "str", "valid_range": "dict"},
    "TestProcedure": {"phase": f"enum:{_PHASES}", "method": "str", "steps": "list", "equipment": "list",
                      "duration": "time", "pass_criteria": "str", "sample_size": "int"},
    "TestExecution": {"result": "enum:pass|fail|blocked|aborted|running", "executed_at": "str",
                      "operator": "str", "data_path": "str", "measurements": "dict", "duration": "time"},
    "DeviceInstance": {"serial": "str", "firmware_version": "str", "hw_revision": "str", "location": "str",
                       "commissioned_at": "str", "state": "dict", "telemetry_sources": "list",
                       "health": "enum:unknown|nominal|warning|critical|stale"},
    # devices that share a sync policy and telemetry sources (a production batch, a test fleet)
    "FleetGroup": {"sync_policy": "dict", "telemetry_sources": "list"},
    "SimulationRun": {"scenario": "str", "started_at": "str", "finished_at": "str", "overrides": "dict",
                      "inputs": "dict", "outputs": "dict", "result": "str", "duration": "time",
                      "kind": "enum:run|what-if|sweep|calibration|compare", "models": "dict",
                      "semantic_version": "int", "git_commit": "str", "devices": "list", "metrics": "dict",
                      "initial": "dict", "settings": "dict"},
    "Artifact": {"path": "str", "format": "str", "adapter": "str", "git_commit": "str", "sha256": "str",
                 "kind": "str", "size": "int"},
}
for _props in ENTITY_TYPES.values():
    for _k, _v in _COMMON.items():
        _props.setdefault(_k, _v)

ANY = None
# relation → (allowed source types, allowed target types); None allows any type.
RELATIONS: dict[str, tuple[frozenset | None, frozenset | None]] = {
    "HAS_ELEMENT": (frozenset({"TwinModel", "DesignElement"}), frozenset({"DesignElement", "BOMItem"})),
    "USES_COMPONENT": (frozenset({"DesignElement", "TwinModel"}), frozenset({"BOMItem"})),
    "CONSTRAINS": (frozenset({"Constraint"}), ANY),
    "SATISFIES": (ANY, frozenset({"Requirement"})),
    "VERIFIED_BY": (ANY, frozenset({"TestProcedure", "TestExecution", "SimulationRun"})),
    "INSTANCE_OF": (frozenset({"DeviceInstance"}), frozenset({"TwinModel"})),
    "MEMBER_OF": (frozenset({"DeviceInstance"}), frozenset({"FleetGroup"})),
    "MODELED_BY": (ANY, frozenset({"BehavioralModel"})),
    "CALIBRATED_BY": (frozenset({"BehavioralModel"}), frozenset({"TestExecution", "Artifact", "SimulationRun"})),
    "DEPENDS_ON": (ANY, ANY),
    "DERIVED_FROM": (frozenset({"Requirement", "Constraint"}), frozenset({"Requirement"})),
    "EXECUTES": (frozenset({"TestExecution"}), frozenset({"TestProcedure"})),
    "TESTED_ON": (frozenset({"TestExecution"}), frozenset({"DeviceInstance"})),
    "SIMULATES": (frozenset({"SimulationRun"}), frozenset({"BehavioralModel", "DeviceInstance", "TwinModel"})),
    "DESCRIBED_BY": (ANY, frozenset({"Artifact"})),
    # a component's pad on a net (from the board), or a sub-part of an assembly
    "CONNECTED_TO": (frozenset({"DesignElement"}), frozenset({"DesignElement"})),
}

_ID_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]*):([A-Za-z0-9_][A-Za-z0-9_.\-+/#@]*)$")


def parse_id(text: str, types: dict | None = None) -> tuple[str, str]:
    """`BOMItem:C42` → ("BOMItem", "C42"), refusing a malformed id or an unknown type."""
    if len(text) > MAX_ID_CHARS:
        check_id(text)
    m = _ID_RE.fullmatch(text)
    if not m:
        check_id(text)  # says which control character, if that is why
        raise BadInput(f"'{text}' is not an entity id", "ids are Type:name, e.g. BOMItem:C42")
    known = ENTITY_TYPES if types is None else types
    if m.group(1) not in known:
        raise BadInput(f"unknown entity type '{m.group(1)}' in '{text}'",
                       "known types: " + ", ".join(sorted(known)))
    return m.group(1), m.group(2)


def check_relation(rel: str, src_type: str, dst_type: str) -> None:
    if rel not in RELATIONS:
        raise BadInput(f"unknown relation '{rel}'", "known relations: " + ", ".join(sorted(RELATIONS)))
    srcs, dsts = RELATIONS[rel]
    if srcs is not None and src_type not in srcs:
        raise BadInput(f"{rel} cannot start at a {src_type}", "it starts at " + " or ".join(sorted(srcs)))
    if dsts is not None and dst_type not in dsts:
        raise BadInput(f"{rel} cannot point to a {dst_type}", "it points to " + " or ".join(sorted(dsts)))


# ---- property validation ------------------------------------------------------------------

def _quantity(dimension: str):
    def parse(v: Any) -> dict:
        if isinstance(v, dict) and set(v) == {"value", "unit"}:
            if not isinstance(v["value"], (int, float)) or isinstance(v["value"], bool):
                raise ValueError("a quantity's value must be a number")
            unit = units.normalize_unit(str(v["unit"]), dimension)
            if unit or dimension != "ratio":
                units.check_unit(unit, dimension)
            units.check_magnitude(v["value"], unit, dimension, f"{v['value']}{unit}")
            return {"value": v["value"], "unit": unit}
        if isinstance(v, str):
            return units.parse_quantity(v, dimension)
        raise ValueError(f"needs a {dimension.replace('_', ' ')} with its unit, e.g. {units.example(dimension)}")
    return Annotated[dict, BeforeValidator(parse)]


def _split_list(v: Any) -> Any:
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return v


def _json_dict(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError as exc:
            raise ValueError(f"not a JSON object: {exc}") from None
    return v


_SIMPLE = {"str": str, "int": int, "float": float, "bool": bool}


def _annotation(kind: str):
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "list":
        return Annotated[list, BeforeValidator(_split_list)]
    if kind == "dict":
        return Annotated[dict, BeforeValidator(_json_dict)]
    if kind.startswith("enum:"):
        return Literal[tuple(kind[5:].split("|"))]
    if kind in units.DIMENSIONS:
        return _quantity(kind)
    raise BadInput(f"unknown property kind '{kind}'",
                   "kinds: str int float bool list dict enum:a|b " + " ".join(units.DIMENSIONS))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@lru_cache(maxsize=64)
def _model(type_name: str, props: tuple[tuple[str, str], ...]) -> type[BaseModel]:
    fields = {k: (Optional[_annotation(kind)], None) for k, kind in props}
    return create_model(type_name, __base__=_Strict, **fields)


_models: dict[tuple[int, str], type[BaseModel]] = {}


def model_for(type_name: str, types: dict[str, dict[str, str]] | None = None) -> type[BaseModel]:
    """The pydantic model of an entity type (the built-in table, or a project's extended one)."""
    table = types or ENTITY_TYPES
    key = (id(table), type_name)
    model = _models.get(key)
    if model is None:  # tables are built once per process and never changed, so id() is a safe key
        model = _models[key] = _model(type_name, tuple(sorted(table[type_name].items())))
    return model


@lru_cache(maxsize=None)
def _adapter(kind: str) -> TypeAdapter:
    return TypeAdapter(_annotation(kind), config=ConfigDict(allow_inf_nan=False))


def validate_properties(type_name: str, props: dict[str, Any], types: dict | None = None) -> dict[str, Any]:
    """Check and normalize properties of one entity; BadInput names the first bad field.

    Each value goes through the pydantic adapter of its kind, the same annotation the type's
    model uses: validating field by field costs a third of building the 40-field model.
    """
    table = (types or ENTITY_TYPES)[type_name]
    out = {}
    for key, value in props.items():
        kind = table.get(key)
        if kind is None:
            raise BadInput(f"{type_name} has no property '{key}' (known: {', '.join(sorted(table))}; "
                           "add more in .metaforge/config.toml)")
        vtype = type(value)
        # the shapes a BOM is made of, checked here as pydantic would (a third of a big apply's time)
        if vtype is str and len(value) <= _SHORT:
            if kind == "str":
                out[key] = value
                continue
            if kind in units.DIMENSIONS:
                out[key] = _quantity_of(type_name, key, value, kind)
                continue
        elif vtype is int and kind == "int" and -_INT64 <= value < _INT64:
            out[key] = value
            continue
        check_value(f"{type_name}.{key}", value)
        try:
            out[key] = _adapter(kind).validate_python(value)
        except ValidationError as exc:
            raise BadInput(_explain(type_name, key, exc)) from None
    return out


_INT64 = 1 << 63
_SHORT = 4096  # a string this short is within every limit (MAX_VALUE_BYTES counts 4 bytes a character)


def _quantity_of(type_name: str, key: str, text: str, dimension: str) -> dict:
    """A quantity written as text ("1.2A"), with the error pydantic's path would give."""
    try:
        return units.parse_quantity(text, dimension)
    except ValueError as exc:
        msg, shown = str(exc), repr(text)
        raise BadInput(f"{type_name}.{key}: {msg}" + ("" if shown in msg else f" (got {shown})")) from None


def _explain(type_name: str, key: str, exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error":
        msg = "must be one of " + msg.removeprefix("Input should be ")
    shown = repr(err.get("input"))
    return f"{type_name}.{key}: {msg}" + ("" if shown in msg else f" (got {shown})")


def merged_types(extra: dict[str, dict[str, str]] | None) -> dict[str, dict[str, str]]:
    """The built-in types plus a project's additions (new types, new properties)."""
    if not extra:
        return ENTITY_TYPES
    out = {k: dict(v) for k, v in ENTITY_TYPES.items()}
    for name, props in extra.items():
        if not re.match(r"^[A-Z][A-Za-z0-9]*$", name):
            raise BadInput(f".metaforge/config.toml: [types.{name}]: a type name is CamelCase letters and digits")
        target = out.setdefault(name, dict(_COMMON))
        for key, kind in props.items():
            _annotation(kind)
            target[key] = kind
    return out


def describe_types(types: dict | None = None, only: str | None = None) -> dict:
    """The schema of every entity type (its pydantic model's properties) and of the relations."""
    table = types or ENTITY_TYPES
    if only is not None and only not in table:
        raise BadInput(f"unknown entity type '{only}'", "known types: " + ", ".join(sorted(table)))
    out: dict = {"types": {}}
    for name in sorted(table) if only is None else [only]:
        fields = model_for(name, table).model_fields
        out["types"][name] = {"properties": {k: table[name][k] for k in sorted(fields)}}
    if only is None:
        out["relations"] = {rel: {"from": sorted(src) if src else ["any"], "to": sorted(dst) if dst else ["any"]}
                            for rel, (src, dst) in sorted(RELATIONS.items())}
    return out
