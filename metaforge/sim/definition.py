"""Model definitions: the YAML files under models/, validated with pydantic, errors naming the field.

Every kind shares `name`, `model_type`, `domain`, `inputs`/`outputs` (ports with units),
`parameters`, `calibration_source`, `valid_range` (input → [low, high]), `limits` (parameter →
[low, high]: its physical bounds, where its name's unit does not say them; see `physical`),
`parameter_units` (parameter → unit, where its name does not end with one; see `dimensions`) and
`calibrate`: the parameters a fit adjusts by default, their bounds, `structures` to choose among
(switch parameters `set`, the parameters each `fit`s), `start` values read from the data,
`increasing` tables, `max_rmse` per output (past it a fit does not land) and `identified_by` (the
test that pins each parameter). Each kind adds the fields of its structure:

- differential-equation: `states` (unit, initial, rate expression, an optional clamping `range`),
  `let` (intermediate expressions, in order), output ports with `expr`, `events` (latched 0/1
  outputs; lets and rates read their value from the step before), `stiff`.
- transfer-function: `parameters.numerator` / `denominator`, numbers or parameter expressions.
- thermal-rc: `parameters.nodes` (capacitances), `parameters.resistances_K_per_W` ("a-b",
  "b-ambient"), `heat_inputs` (node → input); the `ambient_temperature` input is the ambient.
- lookup-table: `parameters.axes` (input → grid) and `values` (output → N-D array), or `data:`
  a CSV of test data on a grid.
- state-machine: `states` (each with its output values), `initial`, `transitions` (from, to,
  when: a guard over inputs, parameters and `time_in_state`).
- composition: `members` (alias → model), `inputs` as the scenario's knobs with defaults,
  `connections` (member input ← expression), `results`, `telemetry`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from metaforge.errors import BadInput
from metaforge.sim.expr import ExprError, names_in

MODEL_TYPES = ("differential-equation", "transfer-function", "thermal-rc", "lookup-table", "state-machine",
               "composition")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = frozenset({"t", "time_in_state", "state"})


def _ident(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"'{value}' is not a name (letters, digits and _, not starting with a digit)")
    return value


def _expression(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError(f"expected a number or an expression, got {value!r}")
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a number or an expression, got {value!r}")
    try:
        names_in(value)
    except ExprError as exc:
        raise ValueError(str(exc)) from None
    return value


Expr = Annotated[str, BeforeValidator(_expression)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True, defer_build=True)


def _unit_text(value: str) -> str:
    from metaforge.thread import units

    if value in ("", "1"):
        return "1"
    try:
        units.dimensionality(units.normalize_unit(value, "temperature"))
    except units.UnitError:
        raise ValueError(f"unknown unit '{value}'") from None
    return value


class Port(_Strict):
    name: str
    unit: str = "1"
    default: Optional[float] = None
    description: Optional[str] = None
    expr: Optional[str] = None                    # differential-equation outputs
    node: Optional[str] = None                    # thermal-rc outputs: the node, when not <node>_temperature
    divergence_threshold: Optional[float] = Field(None, gt=0)  # RMSE past which prediction vs actual alerts

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _ident(value)

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        return _unit_text(value)

    @field_validator("expr")
    @classmethod
    def _expr(cls, value):
        return None if value is None else _expression(value)


class Structure(_Strict):
    """One candidate structure of a model: parameters set to switch parts off, and what it fits."""
    set: dict[str, float] = {}
    fit: Optional[list[str]] = None          # default: the calibration's parameters
    description: Optional[str] = None


class Calibrate(_Strict):
    parameters: list[str] = Field(min_length=1)
    bounds: dict[str, tuple[float, float]] = {}
    structures: dict[str, Structure] = {}    # calibration keeps the one with the least held-out error
    max_rmse: dict[str, float] = {}          # output → the largest fit RMSE a calibration may land
    identified_by: dict[str, str] = {}       # parameter → the test that pins it (said when it is not)
    start: dict[str, str] = {}               # parameter → its start value from the data: charge(load_current) * 1.1
    increasing: list[str] = []               # tables that must rise (an OCV curve): checked after a fit

    @field_validator("max_rmse")
    @classmethod
    def _positive(cls, value: dict) -> dict:
        for k, v in value.items():
            if not v > 0:
                raise ValueError(f"{k}: a threshold must be positive")
        return value


class _Base(_Strict):
    name: str
    domain: str = ""
    description: Optional[str] = None
    notes: Optional[str] = None
    inputs: list[Port] = []
    outputs: list[Port] = []
    parameters: dict[str, Any] = {}
    calibration_source: Optional[str] = None
    valid_range: dict[str, tuple[float, float]] = {}
    limits: dict[str, tuple[Optional[float], Optional[float]]] = {}   # physical bounds of parameters
    parameter_units: dict[str, str] = {}   # a parameter's unit where its name does not end with one
    calibrate: Optional[Calibrate] = None

    @field_validator("name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", value):
            raise ValueError(f"'{value}' is not a model name (letters, digits, _ . -)")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict) -> dict:
        for key, v in value.items():
            _check_parameter(key, v, key)
        return value

    @field_validator("valid_range")
    @classmethod
    def _ranges(cls, value: dict) -> dict:
        for key, (lo, hi) in value.items():
            if lo > hi:
                raise ValueError(f"{key}: low {lo} is above high {hi}")
        return value

    @model_validator(mode="after")
    def _ports(self):
        _unique([p.name for p in self.inputs], "inputs")
        _unique([p.name for p in self.outputs], "outputs")
        names = {p.name for p in self.inputs}
        for key in self.valid_range:
            if key not in names:
                raise _FieldError(("valid_range", key), f"'{key}' is not an input (inputs: {', '.join(sorted(names))})")
        for key in self.limits:
            if _lookup(self.parameters, key) is None:
                raise _FieldError(("limits", key), f"'{key}' is not a parameter")
        if self.calibrate:
            for key in self.calibrate.parameters:
                if _lookup(self.parameters, key) is None:
                    raise _FieldError(("calibrate", "parameters"), f"'{key}' is not a parameter")
            for field_name in ("bounds", "max_rmse", "identified_by", "start"):
                for key in getattr(self.calibrate, field_name):
                    known = self.output_names() if field_name == "max_rmse" else None
                    if (key not in known) if known is not None else _lookup(self.parameters, key) is None:
                        raise _FieldError(("calibrate", field_name, key),
                                          f"'{key}' is not {'an output' if known is not None else 'a parameter'}")
            for sname, st in self.calibrate.structures.items():
                for key in [*st.set, *(st.fit or [])]:
                    if _lookup(self.parameters, key) is None:
                        raise _FieldError(("calibrate", "structures", sname), f"'{key}' is not a parameter")
        return self

    def input_names(self) -> list[str]:
        return [p.name for p in self.inputs]

    def output_names(self) -> list[str]:
        return [p.name for p in self.outputs]


class _FieldError(ValueError):
    """A check across fields that still names the one at fault (pydantic would name the model)."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc, self.message = loc, message


def _unique(names: list[str], where: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise _FieldError((where,), f"'{n}' is listed twice")
        seen.add(n)


def _check_parameter(key: str, value: Any, path: str) -> None:
    if isinstance(value, bool):
        raise ValueError(f"{path}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return
    if isinstance(value, str):
        _expression(value)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_parameter(key, v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_parameter(key, v, f"{path}.{k}")
        return
    raise ValueError(f"{path}: expected a number, a list or a mapping, got {value!r}")


def _lookup(params: dict, dotted: str):
    cur: Any = params
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


# ---- the kinds ------------------------------------------------------------------------------

class State(_Strict):
    unit: str = "1"
    initial: Union[float, str] = 0.0
    rate: str
    range: Optional[tuple[float, float]] = None   # clamped there (a state of charge: [0, 1])

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        return _unit_text(value)

    @field_validator("range")
    @classmethod
    def _range(cls, value):
        if value is not None and value[0] >= value[1]:
            raise ValueError(f"low {value[0]} is not below high {value[1]}")
        return value

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value):
        return _expression(value)


class DifferentialEquation(_Base):
    model_type: Literal["differential-equation"]
    states: dict[str, State] = Field(min_length=1)
    let: dict[str, Expr] = {}
    events: dict[str, Expr] = {}
    stiff: bool = False

    @model_validator(mode="after")
    def _names(self):
        params = set(self.parameters)
        # an event is latched: its value from the step before, so lets and rates may read it
        known = params | set(self.input_names()) | set(self.states) | set(self.events) | {"t"}
        for group, names in (("states", self.states), ("let", self.let), ("events", self.events)):
            for n in names:
                if not _IDENT.match(n) or n in RESERVED:
                    raise _FieldError((group, n), f"'{n}' cannot be a name here")
        for n, s in self.states.items():
            _refs(("states", n, "rate"), s.rate, known | set(self.let), params)
        for n, text in self.let.items():
            _refs(("let", n), text, known, params)
            known = known | {n}
        outs = known | set(self.events)
        for i, p in enumerate(self.outputs):
            if p.expr is None and p.name not in self.states and p.name not in self.let and p.name not in self.events:
                raise _FieldError(("outputs", i, "expr"), f"output '{p.name}' needs an expression "
                                  "(or the name of a state, a let or an event)")
            if p.expr is not None:
                _refs(("outputs", i, "expr"), p.expr, known | set(self.events), params)
            outs = outs | {p.name}
        for n, text in self.events.items():
            _refs(("events", n), text, outs, params)
        return self


class TransferFunction(_Base):
    model_type: Literal["transfer-function"]

    @model_validator(mode="after")
    def _tf(self):
        for key in ("numerator", "denominator"):
            v = self.parameters.get(key)
            if not isinstance(v, list) or not v:
                raise _FieldError(("parameters", key), "a list of coefficients (highest power of s first)")
        if len(self.parameters["numerator"]) > len(self.parameters["denominator"]):
            raise _FieldError(("parameters", "numerator"), "more zeros than poles: H(s) must be proper")
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise _FieldError(("inputs",), "a transfer function has one input and one output")
        return self


class ThermalRC(_Base):
    model_type: Literal["thermal-rc"]
    heat_inputs: dict[str, str] = {}      # node → the input that heats it (W)

    @model_validator(mode="after")
    def _network(self):
        p = self.parameters
        nodes = p.get("nodes")
        if not isinstance(nodes, dict) or not nodes:
            raise _FieldError(("parameters", "nodes"), "a mapping of node: {capacitance_J_per_K: ...}")
        for n, spec in nodes.items():
            if not isinstance(spec, dict) or "capacitance_J_per_K" not in spec:
                raise _FieldError(("parameters", "nodes", n), "needs capacitance_J_per_K")
            extra = set(spec) - {"capacitance_J_per_K", "initial_C"}
            if extra:
                raise _FieldError(("parameters", "nodes", n), f"unknown key '{sorted(extra)[0]}'")
        res = p.get("resistances_K_per_W")
        if not isinstance(res, dict) or not res:
            raise _FieldError(("parameters", "resistances_K_per_W"), "a mapping of 'a-b': K/W")
        for link in res:
            a, sep, b = str(link).partition("-")
            if not sep or a not in nodes or (b not in nodes and b != "ambient"):
                raise _FieldError(("parameters", "resistances_K_per_W", link),
                                  f"'{link}' is not 'node-node' or 'node-ambient' (nodes: {', '.join(nodes)})")
        inputs = set(self.input_names())
        for node, source in self.heat_inputs.items():
            if node not in nodes:
                raise _FieldError(("heat_inputs", node), f"'{node}' is not a node")
            if source not in inputs:
                raise _FieldError(("heat_inputs", node), f"'{source}' is not an input")
        for i, port in enumerate(self.outputs):
            node = port.node or port.name.removesuffix("_temperature")
            if node not in nodes:
                raise _FieldError(("outputs", i, "name"), f"'{port.name}' names no node (nodes: {', '.join(nodes)})")
        return self


class LookupTable(_Base):
    model_type: Literal["lookup-table"]
    data: Optional[str] = None   # a CSV of test data on a grid, relative to the definition file

    @model_validator(mode="after")
    def _table(self):
        if self.data is not None:
            return self
        axes, values = self.parameters.get("axes"), self.parameters.get("values")
        if not isinstance(axes, dict) or list(axes) != self.input_names():
            raise _FieldError(("parameters", "axes"), "one grid per input, in the order of `inputs`")
        for name, grid in axes.items():
            if not isinstance(grid, list) or len(grid) < 2 or any(b <= a for a, b in zip(grid, grid[1:])):
                raise _FieldError(("parameters", "axes", name), "at least two increasing numbers")
        if not isinstance(values, dict) or set(values) != set(self.output_names()):
            raise _FieldError(("parameters", "values"), "one table per output")
        shape = tuple(len(g) for g in axes.values())
        for name, table in values.items():
            got = _shape(table)
            if got != shape:
                raise _FieldError(("parameters", "values", name), f"shape {got} does not match the axes {shape}")
        return self


def _shape(table) -> tuple:
    if isinstance(table, list):
        inner = {_shape(t) for t in table}
        return (len(table),) + (inner.pop() if len(inner) == 1 else (-1,))
    return ()


class Transition(_Strict):
    from_: Union[str, list[str]] = Field(alias="from")
    to: str
    when: str

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value):
        return _expression(value)


class MachineState(_Strict):
    outputs: dict[str, Union[float, str]] = {}


class StateMachine(_Base):
    model_type: Literal["state-machine"]
    states: dict[str, MachineState] = Field(min_length=1)
    initial: str
    transitions: list[Transition] = []

    @model_validator(mode="after")
    def _machine(self):
        names = set(self.states)
        if self.initial not in names:
            raise _FieldError(("initial",), f"'{self.initial}' is not a state (states: {', '.join(self.states)})")
        known = set(self.input_names()) | set(self.parameters) | {"time_in_state", "t"}
        for i, tr in enumerate(self.transitions):
            sources = [tr.from_] if isinstance(tr.from_, str) else tr.from_
            for s in sources:
                if s != "*" and s not in names:
                    raise _FieldError(("transitions", i, "from"), f"'{s}' is not a state")
            if tr.to not in names:
                raise _FieldError(("transitions", i, "to"), f"'{tr.to}' is not a state")
            _refs(("transitions", i, "when"), tr.when, known, set(self.parameters))
        outs = set(self.output_names())
        for s, spec in self.states.items():
            _ident(s)
            for k, v in spec.outputs.items():
                if k not in outs:
                    raise _FieldError(("states", s, "outputs", k), f"'{k}' is not an output")
                if isinstance(v, str):
                    _refs(("states", s, "outputs", k), v, set(self.parameters), set(self.parameters))
        for port in self.outputs:
            if port.default is None and any(port.name not in spec.outputs for spec in self.states.values()):
                missing = next(s for s, spec in self.states.items() if port.name not in spec.outputs)
                raise _FieldError(("states", missing, "outputs"), f"no value for output '{port.name}' "
                                  "(give one, or a default on the port)")
        return self


class Connection(_Strict):
    expr: str
    fallback: Optional[str] = Field(None, alias="else")

    @field_validator("expr", "fallback", mode="before")
    @classmethod
    def _exprs(cls, value):
        return None if value is None else _expression(value)


class Result(_Strict):
    first: Optional[str] = None
    max: Optional[str] = None
    min: Optional[str] = None
    final: Optional[str] = None
    mean: Optional[str] = None
    margin: Optional[dict[str, Union[float, str]]] = None
    unit: Optional[str] = None
    description: Optional[str] = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("first", "max", "min", "final", "mean", "margin") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of first, max, min, final, mean, margin")
        for k in ("first", "max", "min", "final", "mean"):
            if getattr(self, k) is not None:
                _expression(getattr(self, k))
        for k in self.margin or {}:
            _expression(k)
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("first", "max", "min", "final", "mean", "margin") if getattr(self, k) is not None)


class Telemetry(_Strict):
    start: dict[str, Union[str, list[str]]] = {}    # metric → targets (member.state or scenario input)
    drive: dict[str, str] = {}                      # scenario input → metric
    compare: dict[str, str] = {}                    # member.output → metric


class Composition(_Base):
    model_type: Literal["composition"]
    members: dict[str, str] = Field(min_length=1)
    connections: dict[str, Union[str, float, Connection]] = {}
    results: dict[str, Result] = {}
    telemetry: Telemetry = Field(default_factory=Telemetry)

    @field_validator("members")
    @classmethod
    def _aliases(cls, value: dict) -> dict:
        for alias in value:
            _ident(alias)
        return value

    @field_validator("connections", mode="before")
    @classmethod
    def _conns(cls, value):
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of member.input: expression")
        out = {}
        for k, v in value.items():
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                v = {"expr": v}
            out[k] = v
        return out

    @model_validator(mode="after")
    def _wiring(self):
        for target in self.connections:
            alias, sep, port = target.partition(".")
            if not sep or alias not in self.members:
                raise _FieldError(("connections", target), f"'{target}' is not member.input "
                                  f"(members: {', '.join(self.members)})")
        for i, p in enumerate(self.inputs):
            if p.default is None:
                raise _FieldError(("inputs", i, "default"), f"scenario input '{p.name}' needs a default")
        return self


Definition = Annotated[Union[DifferentialEquation, TransferFunction, ThermalRC, LookupTable, StateMachine,
                             Composition], Field(discriminator="model_type")]


def _refs(loc: tuple, text: str, known: set, params: set) -> None:
    """Every name an expression reads is one it may read (dotted: a mapping parameter's key)."""
    for name in names_in(text):
        head = name.split(".", 1)[0]
        if name in known or (head in params and "." in name):
            continue
        raise _FieldError(loc, f"unknown name '{name}' in '{text}'")


# ---- loading --------------------------------------------------------------------------------

class Loaded:
    """A validated definition, where it came from, and the hash of its bytes (for reproducing a run)."""

    def __init__(self, definition, path: Path | None, sha256: str, display: str):
        self.definition, self.path, self.sha256, self.display = definition, path, sha256, display
        self.entity_version: int | None = None   # of its BehavioralModel, when it has one


def load(path: Path, display: str | None = None) -> Loaded:
    display = display or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{display}: no such model definition") from None
    except OSError as exc:
        raise BadInput(f"{display}: cannot read: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    definition = _cached(digest)
    if definition is None:
        definition = validate(_yaml(data, display), display)
        _remember(digest, definition)
    return Loaded(definition, path, digest, display)


# A definition that validated once is kept, by the hash of its bytes and of this module, in the
# user's cache: a what-if then skips YAML and pydantic (0.1 s of the second it may take).
def _cache_file(digest: str) -> Path:
    import os

    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metaforge" / "sim" / f"{digest[:32]}-{_SCHEMA}.pickle"


_SCHEMA: str | None = None


def _cached(digest: str):
    import pickle

    try:
        return pickle.loads(_cache_file(digest).read_bytes())
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None


def _remember(digest: str, definition) -> None:
    import os
    import pickle

    path = _cache_file(digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(definition))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs speed


def _yaml(data: bytes, display: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        raw = yaml.load(data, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise BadInput(f"{display}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{display}: a model definition is a mapping (name, model_type, inputs, ...)")
    return raw


def validate(raw: dict, display: str):
    """The definition, or BadInput naming the file and the field at fault."""
    kind = raw.get("model_type")
    if kind not in MODEL_TYPES:
        shown = "missing" if kind is None else f"'{kind}' is not one of {', '.join(MODEL_TYPES)}"
        raise BadInput(f"{display}: model_type: {shown}")
    try:
        return _adapter().validate_python(raw)
    except ValidationError as exc:
        raise BadInput(f"{display}: {_explain(exc, kind)}") from None


_ADAPTER = None


def _adapter():
    global _ADAPTER
    if _ADAPTER is None:
        from pydantic import TypeAdapter

        _ADAPTER = TypeAdapter(Definition)
    return _ADAPTER


def _explain(exc: ValidationError, kind: str) -> str:
    err = exc.errors(include_url=False)[0]
    loc = [str(x) for x in err["loc"]]
    if loc and loc[0] == kind:
        loc = loc[1:]
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _FieldError):
        loc, msg = loc + [str(x) for x in ctx_error.loc], ctx_error.message
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "missing"
    return f"{'.'.join(loc) or kind}: {msg}"
