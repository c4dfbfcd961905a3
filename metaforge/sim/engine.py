"""The engine: a composition, a scenario and a duration in; curves, results and range reports out.

It picks a step from the members' fastest dynamics (a tenth of the shortest time constant, a
fifth when only results are wanted:
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
from metaforge.sim.expr import ExprError, names_in

MAX_TRACE_BYTES = 2 ** 30   # traces kept whole (compare) past this run in chunks of devices
BLOCK = 128                 # steps per block when only results are wanted (a fleet, a sweep)


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
    hold_events: bool = False                            # latched events stay 0 (a fit to measured data)


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
    curve_file: Any = None      # a CurveFile: the curves of a long run, on disk (curves then empty)
    limits: dict = field(default_factory=dict)   # curve → [{label, value}]: ratings and thresholds it meets


def simulate(composed: Composed, sc: Scenario, limits: Callable[[str], tuple[float, str]] | None = None) -> SimResult:
    started = time.perf_counter()
    if sc.duration <= 0:
        raise BadInput("the duration must be positive")
    run = _Build(composed, sc)
    if sc.record and sc.n > 1:
        per_device = 8 * (run.steps + 1) * (len(run.recorded(list(run.connections()))) + 2)
        chunk = max(1, int(MAX_TRACE_BYTES // per_device))
        if chunk < sc.n:
            return _in_chunks(composed, sc, limits, chunk, started)
    from metaforge.sim.reduce import Reducer

    reducer = Reducer(run, limits)
    traces = run.loop(reducer)
    out = _read(run, traces, reducer)
    out.seconds = time.perf_counter() - started
    return out


# ---- building the loop --------------------------------------------------------------------

class _Build:
    def __init__(self, composed: Composed, sc: Scenario):
        from metaforge.sim.params import resolve
        from metaforge.sim.physical import check_parameters

        self.c, self.sc = composed, sc
        self.mode = "scalar" if sc.n == 1 and not _has_arrays(composed, sc) else "array"
        array = self.mode == "array"
        self.members = {}
        for alias, loaded in composed.members.items():
            params = resolve(loaded.definition.parameters, sc.parameters.get(alias), loaded.display, array)
            check_parameters(params, loaded.definition.limits, f"{loaded.display} ({alias})")
            self.members[alias] = _member(alias, loaded, params, self.mode, sc.n)
            self.members[alias].hold_events = sc.hold_events
        where = composed.source.display if composed.source else composed.name
        self.params = resolve(composed.parameters, sc.parameters.get(""), where, array)
        check_parameters(self.params, composed.source.definition.limits if composed.source else {}, where)
        self.h, self.steps = self._step()

    def _step(self) -> tuple[float, int]:
        if self.sc.step:
            h = self.sc.step
        else:
            rates = [r for r in (m.fastest_rate() for m in self.members.values()) if r]
            # a tenth of the shortest time constant when curves are resampled between steps (0.1 % of
            # a transient, linearly), a fifth when only results are read (crossings interpolate)
            h = (0.1 if self.sc.curves else 0.2) / max(rates) if rates else self.sc.duration / 100
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

        from metaforge.sim.physical import check_value

        out: dict[str, Any] = {}
        given = dict(self.sc.initial)
        for alias, m in self.members.items():
            for name, value in m.states().items():
                key = f"{alias}.{name}"
                v = given.pop(key, value)
                if v is None:
                    continue
                check_value("state", key, v, m.state_unit(name), self._where())
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

        from metaforge.sim.physical import check_value

        knobs = {p.name: p for p in self.c.scenario}
        unknown = [k for k in self.sc.inputs if k not in knobs]
        if unknown:
            raise BadInput(f"{self._where()}: no input '{unknown[0]}' (inputs: {', '.join(knobs)})")
        consts, series = {}, {}
        grid = np.arange(self.steps + 1) * self.h
        for name, port in knobs.items():
            value = self.sc.inputs.get(name, port.default)
            check_value("input", name, value.values if isinstance(value, Series) else value, port.unit, self._where())
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
        flags = set()
        for alias, m in self.members.items():  # a machine's state flags come from its state trace
            if hasattr(m, "derived"):
                own = {f"{alias}.{s}" for s in m.names}
                if keep & own:
                    keep.add(f"{alias}.state")
                flags |= own
        return sorted(k for k in keep if k in names and k not in flags)

    def _ranges(self) -> list[tuple[str, tuple[float, float]]]:
        out = []
        for alias, m in self.members.items():
            ranges = dict(getattr(m, "valid_range", lambda: {})())
            ranges.update(m.definition.valid_range)
            out += [(f"{alias}.{name}", tuple(r)) for name, r in ranges.items()]
        out += [(name, tuple(r)) for name, r in self.c.valid_range.items()]
        return out

    def _curve_writer(self, recorded: list[str]):
        """A CurveFile when one device's curves would not fit comfortably in memory."""
        from metaforge.sim.curvefile import STREAM_BYTES, CurveFile

        if not self.sc.curves or self.sc.record or self.sc.n != 1:
            return None
        points = int(self.sc.duration * self.sc.rate_hz) + 1
        keys = list(recorded)
        flags = []
        for alias, m in self.members.items():
            if hasattr(m, "derived") and f"{alias}.state" in keys:
                flags += [f"{alias}.{s}" for s in m.names]
        if points * (len(keys) + len(flags)) * 8 <= STREAM_BYTES:
            return None
        discrete = {f"{a}.{x}" for a, m in self.members.items() for x in m.discrete} | set(flags)
        return CurveFile(keys + flags, discrete, self.sc.rate_hz, self.sc.duration)

    def loop(self, reducer) -> dict[str, Any]:
        """Run the loop; in block mode hand the traces to `reducer` as they fill, else return them."""
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
        self.writer = self._curve_writer(recorded)
        blocks = (self.mode == "array" and not self.sc.curves and not self.sc.record) or self.writer is not None
        src += ["    for k in range(n + 1):", "        t = k * _h"]
        src += ["        " + x for x in body]
        if blocks:
            src += [f"        j = k % {BLOCK}"]
            src += [f"        TR_{names[k]}[j] = {names[k]}" for k in recorded]
            src += [f"        if j == {BLOCK - 1} or k == n:", "            FLUSH(k, j + 1)"]
        else:
            src += [f"        TR_{names[k]}[k] = {names[k]}" for k in recorded]
        src += ["        if k == n:", "            break"]
        src += ["        " + x for x in code.advance]
        src += ["    return None"]
        self.source = "\n".join(src)
        exec(compile(self.source, f"<sim {self.c.name}>", "exec"), code.namespace)  # noqa: S102 - checked ASTs
        n = self.steps
        if blocks:
            traces = ({k: [0.0] * BLOCK for k in recorded} if self.mode == "scalar"
                      else {k: np.empty((BLOCK, self.sc.n)) for k in recorded})
            writer = self.writer

            def flush(k: int, rows: int) -> None:
                t = np.arange(k - rows + 1, k + 1) * self.h
                block = {key: np.asarray(a[:rows], dtype=float) for key, a in traces.items()}
                reducer.block(t, block)
                if writer is not None:
                    if self.mode == "array":
                        block = {key: a[:, 0] for key, a in block.items()}
                    for m in self.members.values():
                        if hasattr(m, "derived"):
                            block.update(m.derived(block))
                    writer.block(t, block)
            code.namespace["FLUSH"] = flush
        elif self.mode == "scalar":
            traces = {k: [0.0] * (n + 1) for k in recorded}
        else:
            traces = {k: np.empty((n + 1, self.sc.n)) for k in recorded}
        try:
            with np.errstate(all="ignore"):
                code.namespace["_run"](states, series, traces, n)
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            raise BadInput(f"{self._where()}: the model failed during the run: {exc} "
                           "(check the parameters and the inputs)") from None
        if blocks:
            return {}
        traces = {k: np.asarray(v, dtype=float) for k, v in traces.items()}
        reducer.block(np.arange(n + 1) * self.h, traces)
        return traces


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


def _has_arrays(composed: Composed, sc: Scenario) -> bool:
    """Whether any value is given per device (an array with one more axis than the value has)."""
    import numpy as np

    from metaforge.sim.params import flatten

    for v in [*sc.inputs.values(), *sc.initial.values()]:
        if isinstance(v, Series) and np.ndim(v.values) > 1 or not isinstance(v, Series) and np.ndim(v) > 0:
            return True
    for alias, overrides in sc.parameters.items():
        base = flatten(composed.members[alias].definition.parameters if alias else composed.parameters)
        for key, v in overrides.items():
            if np.ndim(v) > (1 if isinstance(base.get(key), list) else 0):
                return True
    return False


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


def _in_chunks(composed, sc, limits, chunk, started):
    import numpy as np

    parts = []
    for lo in range(0, sc.n, chunk):
        hi = min(sc.n, lo + chunk)
        part = Scenario(sc.duration, sc.rate_hz, hi - lo, _slice(sc.inputs, lo, hi, sc.n),
                        {a: _slice(p, lo, hi, sc.n) for a, p in sc.parameters.items()},
                        _slice(sc.initial, lo, hi, sc.n), sc.step, sc.curves, sc.record, sc.hold_events)
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

def _read(run: _Build, traces: dict, reducer) -> SimResult:
    import numpy as np

    grid = np.arange(run.steps + 1) * run.h
    for m in run.members.values():
        if hasattr(m, "derived") and traces:
            traces.update(m.derived(traces))
    units = {key: run.c.port_unit(key) or "" for key in traces}
    for alias, m in run.members.items():  # the states of a machine and latched events are discrete
        for x in m.discrete:
            units.setdefault(f"{alias}.{x}", "1")
    results, result_units, margins_at, ranges = reducer.finish()
    t_out, curves = grid, {}
    writer = getattr(run, "writer", None)
    if writer is not None:   # streamed to disk as the loop ran
        units.update({key: run.c.port_unit(key) or "1" for key in writer.keys})
        t_out = None
    elif run.sc.curves:
        t_out, curves = _resample(run, traces, grid)
    keep = {k: traces[k] for k in run.sc.record if k in traces}
    out = SimResult(t_out, curves, units, results, result_units, margins_at, ranges, run.h, run.steps, run.mode,
                    0.0, keep, grid)
    out.curve_file = writer
    out.limits = reducer.limits()
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
