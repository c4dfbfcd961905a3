"""The engine: a composition, a scenario and a duration in; curves, results and range reports out.

It picks a step from the members' fastest dynamics (a tenth of the shortest time constant:
linear members are exact at any step, RK4 members sub-step for stability), writes the step
loop (see `codegen`), runs it on floats for one device or on arrays for many, and reads the
traces: results (first crossing times interpolated between steps, extremes, margins), the
inputs that left a model's valid range, and curves resampled at the output rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from metaforge.errors import BadInput
from metaforge.sim.codegen import Code, pvar, var
from metaforge.sim.compose import Composed
from metaforge.sim.expr import ExprError, names_in, parse

MAX_TRACE_BYTES = 256 * 2 ** 20   # a fleet larger than this runs in chunks of devices


@dataclass
class Series:
    """A time-varying input: values at times (s from the start), one column per device or one."""
    t: Any
    values: Any


@dataclass
class Scenario:
    duration: float
    rate_hz: float = 10.0
    n: int = 1                                           # devices or scenarios, run side by side
    inputs: dict[str, Any] = field(default_factory=dict)         # knob → number, (n,) array or Series
    parameters: dict[str, dict] = field(default_factory=dict)    # alias ("" for the composition) → {param: value}
    initial: dict[str, Any] = field(default_factory=dict)        # alias.state → value
    step: float | None = None
    curves: bool = True                                  # resample every port at the output rate
    record: set[str] = field(default_factory=set)        # extra traces to keep (compare)


@dataclass
class SimResult:
    t: Any                      # output times (s)
    curves: dict[str, Any]      # alias.port → (T,) or (T, n)
    units: dict[str, str]
    results: dict[str, Any]     # name → float or (n,) array; NaN where it never happened
    result_units: dict[str, str]
    margins_at: dict[str, Any]  # margin result → the port that limits it (per device)
    ranges: list[dict]
    step: float
    steps: int
    mode: str
    seconds: float
    traces: dict[str, Any] = field(default_factory=dict)   # at the step grid, for compare
    trace_t: Any = None


def simulate(composed: Composed, sc: Scenario, limits: Callable[[str], tuple[float, str]] | None = None) -> SimResult:
    started = time.perf_counter()
    if sc.duration <= 0:
        raise BadInput("the duration must be positive")
    chunk = _chunk_size(composed, sc)
    if chunk < sc.n:
        return _in_chunks(composed, sc, limits, chunk, started)
    run = _Build(composed, sc)
    traces = run.execute()
    out = _read(run, traces, limits)
    out.seconds = time.perf_counter() - started
    return out


# ---- building the loop --------------------------------------------------------------------

class _Build:
    def __init__(self, composed: Composed, sc: Scenario):
        from metaforge.sim.params import resolve

        self.c, self.sc = composed, sc
        self.mode = "scalar" if sc.n == 1 and not _has_arrays(sc) else "array"
        array = self.mode == "array"
        self.members = {}
        for alias, loaded in composed.members.items():
            params = resolve(loaded.definition.parameters, sc.parameters.get(alias), loaded.display, array)
            self.members[alias] = _member(alias, loaded, params, self.mode, sc.n)
        where = composed.source.display if composed.source else composed.name
        self.params = resolve(composed.parameters, sc.parameters.get(""), where, array)
        self.h, self.steps = self._step()

    def _step(self) -> tuple[float, int]:
        if self.sc.step:
            h = self.sc.step
        else:
            rates = [r for r in (m.fastest_rate() for m in self.members.values()) if r]
            h = 0.1 / max(rates) if rates else self.sc.duration / 100
            h = min(h, self.sc.duration / 20, 60.0)
            for value in self.sc.inputs.values():  # a measured profile: no coarser than its samples
                if isinstance(value, Series) and len(value.t) > 1:
                    import numpy as np

                    h = min(h, float(np.median(np.diff(value.t))))
        steps = max(1, math.ceil(self.sc.duration / h - 1e-9))
        return self.sc.duration / steps, steps

    # -- names ---------------------------------------------------------------------------------
    def names(self) -> dict[str, str]:
        out = {p.name: f"in__{p.name}" for p in self.c.scenario}
        for alias, m in self.members.items():
            for port in [*m.inputs, *m.outputs]:
                out[f"{alias}.{port.name}"] = var(alias, port.name)
            for extra in getattr(m, "all_outputs", lambda: [])():
                out[f"{alias}.{extra}"] = var(alias, extra)
            for e in getattr(m, "events", {}):
                out[f"{alias}.{e}"] = var(alias, e)
        return out

    def resolver(self, where: str, allow_member_params: bool = True):
        names = self.names()

        def resolve(name: str) -> str:
            if name in names:
                return names[name]
            if name in self.params:
                return pvar("", name)
            alias, _, rest = name.partition(".")
            if allow_member_params and alias in self.members and rest in self.members[alias].params:
                return pvar(alias, rest)
            if alias in self.c.omitted:
                from metaforge.sim.compose import default_of

                default = default_of(self.c.omitted[alias], rest)
                if default is not None:
                    return repr(float(default))
                raise ExprError(f"{where}: '{name}' belongs to {alias}, which this run leaves out, "
                                "and has no default")
            raise ExprError(f"{where}: unknown name '{name}'")
        return resolve

    # -- the order of one step -------------------------------------------------------------------
    def connections(self) -> dict[str, str]:
        """member.input → expression, with defaults for inputs nobody feeds."""
        out = {}
        for alias, m in self.members.items():
            for p in m.inputs:
                key = f"{alias}.{p.name}"
                if key in self.c.connections:
                    expr, fallback = self.c.connections[key]
                    if fallback is not None and any(n.split(".", 1)[0] in self.c.omitted and self._no_default(n)
                                                    for n in names_in(expr)):
                        expr = fallback
                    out[key] = expr
                elif p.default is not None:
                    out[key] = repr(float(p.default))
                else:
                    raise BadInput(f"{self.c.name}: {key} is not connected and has no default")
        return out

    def _no_default(self, name: str) -> bool:
        from metaforge.sim.compose import default_of

        alias, _, port = name.partition(".")
        return default_of(self.c.omitted[alias], port) is None

    def order(self, conns: dict[str, str]) -> list[tuple[str, str]]:
        """("conn", member.input) and ("direct", alias) in an order where everything read is ready."""
        deps: dict[tuple, set] = {}
        for key, expr in conns.items():
            needs = set()
            for n in names_in(expr):
                alias, _, port = n.partition(".")
                if f"{alias}.{port}" in conns:
                    needs.add(("conn", n))
                elif alias in self.members and port in self.members[alias].direct_outputs():
                    needs.add(("direct", alias))
            deps[("conn", key)] = needs
        for alias in self.members:
            deps[("direct", alias)] = {("conn", k) for k in conns if k.split(".", 1)[0] == alias}
        ordered, state = [], {}

        def visit(node, path):
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                loop = " → ".join(n[1] for n in path[path.index(node):] + [node])
                raise BadInput(f"{self.c.name}: algebraic loop: {loop} (feed one of them through a state)")
            state[node] = 1
            for d in sorted(deps[node]):
                visit(d, path + [node])
            state[node] = 2
            ordered.append(node)

        for node in deps:
            visit(node, [])
        return ordered

    def code(self) -> tuple[Code, list[str]]:
        code = Code(self.mode)
        code.namespace["_h"] = self.h
        for m in self.members.values():
            m.emit_setup(code)
        for name, value in self.params.items():
            code.namespace["g_" + pvar("", name)] = value
            code.setup.append(f"{pvar('', name)} = g_{pvar('', name)}")
        conns = self.connections()
        for key, expr in conns.items():
            try:
                compile_check = self.resolver(f"connections.{key}")
                code.expr(expr, compile_check)
            except ExprError as exc:
                raise BadInput(f"{self._where()}: {exc}") from None
        for m in self.members.values():
            m.emit_state_outputs(code)
        for kind, key in self.order(conns):
            if kind == "conn":
                src, _ = code.expr(conns[key], self.resolver(f"connections.{key}"))
                code.step.append(f"{self.names()[key]} = {src}")
            else:
                self.members[key].emit_direct_outputs(code)
        for m in self.members.values():
            m.emit_advance(code)
        return code, list(conns)

    def _where(self) -> str:
        return self.c.source.display if self.c.source else self.c.name

    # -- states, inputs, traces ------------------------------------------------------------------
    def initial_states(self) -> dict[str, Any]:
        import numpy as np

        out: dict[str, Any] = {}
        given = dict(self.sc.initial)
        for alias, m in self.members.items():
            for name, value in m.states().items():
                key = f"{alias}.{name}"
                v = given.pop(key, value)
                if v is None:
                    continue
                if self.mode == "array":
                    v = np.broadcast_to(np.asarray(v, dtype=float), (self.sc.n,)).copy()
                out[key] = v if self.mode == "array" else float(v)
        if given:
            key = sorted(given)[0]
            known = sorted(f"{a}.{s}" for a, m in self.members.items() for s in m.states())
            raise BadInput(f"no state '{key}' to start from (states: {', '.join(known)})")
        return out

    def scenario_values(self) -> tuple[dict, dict]:
        """Constants and per-step series of the knobs (a series averaged over each step, so the
        charge a current profile carries is kept exactly)."""
        import numpy as np

        knobs = {p.name: p for p in self.c.scenario}
        unknown = [k for k in self.sc.inputs if k not in knobs]
        if unknown:
            raise BadInput(f"{self._where()}: no input '{unknown[0]}' (inputs: {', '.join(knobs)})")
        consts, series = {}, {}
        grid = np.arange(self.steps + 1) * self.h
        for name, port in knobs.items():
            value = self.sc.inputs.get(name, port.default)
            if isinstance(value, Series):
                series[name] = _step_average(value, grid, self.h)
            elif self.mode == "array" and np.ndim(value):
                consts[name] = np.asarray(value, dtype=float)
            else:
                consts[name] = float(value)
        return consts, series

    def recorded(self, conns: list[str]) -> list[str]:
        names = self.names()
        keep: set[str] = set(self.sc.record)
        if self.sc.curves:
            for alias, m in self.members.items():
                keep |= {f"{alias}.{p.name}" for p in m.outputs}
                keep |= {f"{alias}.{x}" for x in getattr(m, "all_outputs", lambda: [])()}
            keep |= set(conns)
            keep |= {p.name for p in self.c.scenario}
        for r in self.c.results.values():
            for text in ([getattr(r, r.kind)] if r.kind != "margin" else list(r.margin)):
                keep |= {n for n in names_in(text) if n in names}
        keep |= {key for key, _ in self._ranges()}
        return sorted(k for k in keep if k in names)

    def _ranges(self) -> list[tuple[str, tuple[float, float]]]:
        out = []
        for alias, m in self.members.items():
            ranges = dict(getattr(m, "valid_range", lambda: {})())
            ranges.update(m.definition.valid_range)
            out += [(f"{alias}.{name}", tuple(r)) for name, r in ranges.items()]
        out += [(name, tuple(r)) for name, r in self.c.valid_range.items()]
        return out

    def execute(self) -> dict[str, Any]:
        import numpy as np

        code, conns = self.code()
        consts, series = self.scenario_values()
        states = self.initial_states()
        recorded = self.recorded(conns)
        names = self.names()
        lines = list(code.setup)
        for name, value in consts.items():
            code.namespace[f"g_in__{name}"] = value
            lines.append(f"in__{name} = g_in__{name}")
        for name in series:
            lines.append(f"SER_{name} = SER[{name!r}]")
        for key in states:
            alias, _, state = key.partition(".")
            lines.append(f"{var(alias, state)} = S0[{key!r}]")
        placeholders = [f"{var(a, s)} = {'25.0' if self.mode == 'scalar' else f'{25.0} + ZERO'}"
                        for a, m in self.members.items() for s in m.states() if f"{a}.{s}" not in states]
        code.namespace["ZERO"] = np.zeros(self.sc.n)
        lines += placeholders
        for k in recorded:
            lines.append(f"TR_{names[k]} = TR[{k!r}]")
        body = [f"in__{name} = SER_{name}[k]" for name in series] + code.step
        init = [line for a, m in self.members.items() for line in m.emit_init(code, {s for s in m.states()
                                                                                     if f"{a}.{s}" in states})]
        src = ["def _run(S0, SER, TR, n):", *("    " + x for x in lines), "    k = 0", "    t = 0.0"]
        src += ["    " + x for x in body + init]
        src += ["    for k in range(n + 1):", "        t = k * _h"]
        src += ["        " + x for x in body]
        src += [f"        TR_{names[k]}[k] = {names[k]}" for k in recorded]
        src += ["        if k == n:", "            break"]
        src += ["        " + x for x in code.advance]
        src += ["    return None"]
        self.source = "\n".join(src)
        exec(compile(self.source, f"<sim {self.c.name}>", "exec"), code.namespace)  # noqa: S102 - checked ASTs
        n = self.steps
        if self.mode == "scalar":
            traces = {k: [0.0] * (n + 1) for k in recorded}
        else:
            traces = {k: np.empty((n + 1, self.sc.n)) for k in recorded}
        try:
            with np.errstate(all="ignore"):
                code.namespace["_run"](states, series, traces, n)
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            raise BadInput(f"{self._where()}: the model failed during the run: {exc} "
                           "(check the parameters and the inputs)") from None
        return {k: np.asarray(v, dtype=float) for k, v in traces.items()}


def _member(alias, loaded, params, mode, n):
    from metaforge.sim.lookup import LookupMember
    from metaforge.sim.machine import MachineMember
    from metaforge.sim.ode import OdeMember
    from metaforge.sim.thermal import ThermalMember
    from metaforge.sim.transfer import TransferMember

    kinds = {"differential-equation": OdeMember, "transfer-function": TransferMember, "thermal-rc": ThermalMember,
             "lookup-table": LookupMember, "state-machine": MachineMember}
    kind = loaded.definition.model_type
    if kind not in kinds:
        raise BadInput(f"{loaded.display}: a {kind} cannot be a member of another composition")
    return kinds[kind](alias, loaded, params, mode, n)


def _has_arrays(sc: Scenario) -> bool:
    import numpy as np

    values = list(sc.inputs.values()) + list(sc.initial.values())
    values += [v for d in sc.parameters.values() for v in d.values()]
    return any(isinstance(v, Series) and np.ndim(v.values) > 1 or not isinstance(v, Series) and np.ndim(v) > 0
               and not isinstance(v, (list, tuple)) for v in values)


def _step_average(s: Series, grid, h: float):
    """The mean of a sampled signal (held between samples) over each step [t, t + h)."""
    import numpy as np

    t = np.asarray(s.t, dtype=float)
    v = np.asarray(s.values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    # integral of the zero-order-hold signal, then differences over each step
    seg = np.diff(t)
    cum = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(v[:-1] * seg[:, None], axis=0)])
    ends = np.concatenate([grid, [grid[-1] + h]])

    def integral(x):
        i = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 1)
        return cum[i] + v[i] * (x - t[i])[:, None]

    avg = np.diff(integral(ends), axis=0) / h
    return avg[:, 0] if np.ndim(s.values) == 1 else avg


def _chunk_size(composed: Composed, sc: Scenario) -> int:
    per_device = 8 * (sc.duration / (sc.step or 1.0) + 1) * (12 + len(sc.record))
    return max(1, int(MAX_TRACE_BYTES // per_device)) if not sc.curves else sc.n


def _in_chunks(composed, sc, limits, chunk, started):
    import numpy as np

    parts = []
    for lo in range(0, sc.n, chunk):
        hi = min(sc.n, lo + chunk)
        part = Scenario(sc.duration, sc.rate_hz, hi - lo, _slice(sc.inputs, lo, hi, sc.n),
                        {a: _slice(p, lo, hi, sc.n) for a, p in sc.parameters.items()},
                        _slice(sc.initial, lo, hi, sc.n), sc.step, sc.curves, sc.record)
        parts.append(simulate(composed, part, limits))
    first = parts[0]
    join = lambda arrs: np.concatenate([np.atleast_1d(a) for a in arrs], axis=-1)
    results = {k: join([p.results[k] for p in parts]) for k in first.results}
    margins = {k: join([np.broadcast_to(p.margins_at[k], (p.results[k].shape if np.ndim(p.results[k]) else (1,)))
                        for p in parts]) for k in first.margins_at}
    ranges = _merge_ranges([p.ranges for p in parts])
    return SimResult(first.t, {}, first.units, results, first.result_units, margins, ranges, first.step, first.steps,
                     first.mode, time.perf_counter() - started)


def _slice(values: dict, lo: int, hi: int, n: int) -> dict:
    import numpy as np

    out = {}
    for k, v in values.items():
        if isinstance(v, Series):
            vals = np.asarray(v.values)
            out[k] = Series(v.t, vals[:, lo:hi] if vals.ndim == 2 else vals)
        elif np.ndim(v) >= 1 and np.shape(v)[0] == n:
            out[k] = np.asarray(v)[lo:hi]
        else:
            out[k] = v
    return out


def _merge_ranges(parts: list[list[dict]]) -> list[dict]:
    merged: dict[str, dict] = {}
    for ranges in parts:
        for r in ranges:
            m = merged.setdefault(r["input"], dict(r, devices_outside=0))
            m["min"], m["max"] = min(m["min"], r["min"]), max(m["max"], r["max"])
            m["devices_outside"] = m.get("devices_outside", 0) + r.get("devices_outside", 0)
    return [m for m in merged.values()]


# ---- reading the traces -------------------------------------------------------------------

def _read(run: _Build, traces: dict, limits) -> SimResult:
    import numpy as np

    grid = np.arange(run.steps + 1) * run.h
    units = {}
    for key in traces:
        unit = run.c.port_unit(key)
        units[key] = unit or ""
    for alias, m in run.members.items():  # the states of a machine and latched events are discrete
        for x in m.discrete:
            units.setdefault(f"{alias}.{x}", "1")
    results, result_units, margins_at = _results(run, traces, grid, limits)
    ranges = _range_report(run, traces, grid)
    t_out, curves = grid, {}
    if run.sc.curves:
        t_out, curves = _resample(run, traces, grid)
    keep = {k: traces[k] for k in run.sc.record if k in traces}
    return SimResult(t_out, curves, units, results, result_units, margins_at, ranges, run.h, run.steps, run.mode,
                     0.0, keep, grid)


def _env(run: _Build, traces: dict) -> dict:
    """Names → trace arrays, for evaluating result expressions over the whole run at once."""
    from metaforge.sim.expr import array_functions

    env = dict(array_functions())
    names = run.names()
    for key, arr in traces.items():
        env[names[key]] = arr
    for alias, m in run.members.items():
        for p, v in m.params.items():
            env[pvar(alias, p)] = v
    for p, v in run.params.items():
        env[pvar("", p)] = v
    return env


def _evaluate(run: _Build, text: str, env: dict, where: str):
    import numpy as np

    from metaforge.sim.expr import compile_expr

    try:
        c = compile_expr(text, run.resolver(where), "array")
    except ExprError as exc:
        raise BadInput(f"{run._where()}: {exc}") from None
    return np.asarray(eval(c.source, {"__builtins__": {}}, env), dtype=float)  # noqa: S307 - checked AST


def _results(run: _Build, traces: dict, grid, limits):
    import ast

    import numpy as np

    env = _env(run, traces)
    out, units, margins_at = {}, {}, {}
    for name, r in run.c.results.items():
        where = f"results.{name}"
        texts = [getattr(r, r.kind)] if r.kind != "margin" else list(r.margin)
        if any(n.split(".", 1)[0] in run.c.omitted for t in texts for n in names_in(t)):
            continue  # it reads a member this run leaves out
        units[name] = r.unit or ""
        if r.kind == "first":
            node = parse(r.first)
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and not isinstance(node.ops[0], (ast.Eq, ast.NotEq)):
                left = _evaluate(run, ast.unparse(node.left), env, where)
                right = _evaluate(run, ast.unparse(node.comparators[0]), env, where)
                sign = 1.0 if isinstance(node.ops[0], (ast.Gt, ast.GtE)) else -1.0
                inclusive = isinstance(node.ops[0], (ast.GtE, ast.LtE))
                out[name] = _crossing(sign * (left - right), grid, inclusive)
            else:
                out[name] = _first(_evaluate(run, r.first, env, where) > 0.5, grid)
            units[name] = "s"
        elif r.kind == "margin":
            values, labels = [], []
            for text, limit in r.margin.items():
                peak = _evaluate(run, text, env, where).max(axis=0)
                lim_value, lim_unit = _limit(limit, limits, where)
                unit = run.c.port_unit(text) or lim_unit
                values.append(_to_base(lim_value, lim_unit) - _to_base(peak, unit))
                labels.append(text)
            stack = np.stack(np.broadcast_arrays(*values))
            idx = stack.argmin(axis=0)
            out[name] = stack.min(axis=0)
            margins_at[name] = np.asarray(labels, dtype=object)[idx]
            units[name] = "K" if r.unit is None else r.unit
        else:
            arr = _evaluate(run, getattr(r, r.kind), env, where)
            arr = np.broadcast_to(arr, (len(grid),) + arr.shape[1:]) if arr.ndim == 0 or arr.shape[0] != len(grid) else arr
            out[name] = {"max": arr.max, "min": arr.min, "mean": arr.mean}.get(r.kind, lambda axis: arr[-1])(axis=0)
    return out, units, margins_at


def _limit(limit, limits, where):
    if isinstance(limit, (int, float)):
        return float(limit), "degC"
    if limits is None:
        raise BadInput(f"{where}: '{limit}' needs the twin to read it from")
    return limits(str(limit))


def _to_base(value, unit: str):
    from metaforge.thread import units

    if not unit or unit == "1":
        return value
    return units.to_base(value, units.normalize_unit(unit, "temperature"))


def _crossing(d, grid, inclusive: bool = False):
    """The first time d(t) > 0 (>= 0 when inclusive), interpolated between steps; NaN if never."""
    import numpy as np

    above = d >= 0 if inclusive else d > 0
    hit = above.any(axis=0)
    k = above.argmax(axis=0)
    km1 = np.maximum(k - 1, 0)
    take = lambda a, i: a[i] if a.ndim == 1 else np.take_along_axis(a, i[None], 0)[0]
    d0, d1 = take(d, km1), take(d, k)
    frac = np.where((k > 0) & (d1 != d0), -d0 / np.where(d1 != d0, d1 - d0, 1.0), 0.0)
    t = grid[km1] + np.clip(frac, 0.0, 1.0) * (grid[k] - grid[km1])
    t = np.where(k == 0, grid[0], t)
    return np.where(hit, t, np.nan) if np.ndim(t) else (float(t) if hit else float("nan"))


def _first(cond, grid):
    import numpy as np

    hit = cond.any(axis=0)
    t = grid[cond.argmax(axis=0)]
    return np.where(hit, t, np.nan) if np.ndim(t) else (float(t) if hit else float("nan"))


def _range_report(run: _Build, traces: dict, grid) -> list[dict]:
    import numpy as np

    out = []
    for key, (lo, hi) in run._ranges():
        if key not in traces:
            continue
        arr = traces[key]
        outside = (arr < lo) | (arr > hi)
        if not outside.any():
            continue
        alias = key.split(".", 1)[0]
        model = run.c.members[alias].definition.name if alias in run.c.members else run.c.name
        per_device = outside.any(axis=0)
        entry = {"input": key, "model": model, "range": [lo, hi], "min": float(arr.min()), "max": float(arr.max()),
                 "first_outside_s": float(grid[outside.any(axis=tuple(range(1, arr.ndim))).argmax()]),
                 "outside_s": float(outside.sum(axis=0).max() * run.h), "unit": run.c.port_unit(key) or "",
                 "devices_outside": int(np.sum(per_device))}
        out.append(entry)
    return out


def _resample(run: _Build, traces: dict, grid):
    """Every trace at the output rate: linear between steps, held for discrete signals."""
    import numpy as np

    n_out = int(math.floor(run.sc.duration * run.sc.rate_hz + 1e-9)) + 1
    t = np.arange(n_out) / run.sc.rate_hz
    pos = np.clip(t / run.h, 0, run.steps)
    i = np.minimum(np.floor(pos).astype(int), max(run.steps - 1, 0))
    w = pos - i
    if run.mode == "array":
        w = w[:, None]
    discrete = {f"{a}.{x}" for a, m in run.members.items() for x in m.discrete}
    curves = {}
    for key, arr in traces.items():
        if key in discrete:
            curves[key] = arr[np.floor(pos + 1e-9).astype(int)]
        else:
            curves[key] = arr[i] * (1.0 - w) + arr[np.minimum(i + 1, run.steps)] * w
    return t, curves
