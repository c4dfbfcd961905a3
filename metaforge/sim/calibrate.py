"""Calibration: a model's parameters fitted to test data (scipy.optimize.least_squares), the fit
error, the confidence in each parameter, and the error on a profile the fit never saw.

The data is a CSV with a time column, the model's inputs (measured) and some of its outputs
(measured); the model runs driven by the inputs and its outputs are compared with the measured
ones. A list parameter (an OCV table) is fitted element by element. The Jacobian is computed by
finite differences in one vectorized run: every perturbed parameter set is one "device".
Confidence: the covariance s² (JᵀJ)⁻¹ of the linearized problem at the optimum, as standard
errors and 95 % intervals; a parameter the data cannot pin shows a large one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sim.compose import from_models
from metaforge.sim.engine import Scenario, Series, simulate
from metaforge.sim.params import flatten, unflatten


@dataclass
class Unknown:
    key: str            # the parameter (dotted)
    index: int | None   # the element of a list parameter
    start: float
    low: float
    high: float

    @property
    def label(self) -> str:
        return self.key if self.index is None else f"{self.key}[{self.index}]"


@dataclass
class FitResult:
    model: str
    values: dict[str, float]           # label → fitted value
    start: dict[str, float]
    stderr: dict[str, float]
    rmse: dict[str, float]             # output → RMSE on the fitting data
    validation_rmse: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    parameters: dict = field(default_factory=dict)   # the model's parameters after the fit, nested
    units: dict[str, str] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    on_bound: list[str] = field(default_factory=list)        # parameters the fit left on a bound
    correlated: list[tuple[str, str, float]] = field(default_factory=list)   # |r| > 0.95
    not_identified: dict[str, str] = field(default_factory=dict)   # parameter → the data that would pin it
    structure: str | None = None                              # the structure chosen
    structures: dict[str, dict] = field(default_factory=dict) # name → fit and held-out RMSE
    held_out_rmse: dict[str, float] = field(default_factory=dict)
    max_rmse: dict[str, float] = field(default_factory=dict)  # the stated thresholds
    refusals: list[str] = field(default_factory=list)         # why it may not land (without --force)

    def relative_stderr(self, label: str) -> float | None:
        v = self.values[label]
        return abs(self.stderr[label] / v) if v else None

    def as_dict(self) -> dict:
        rel = {k: self.relative_stderr(k) for k in self.values}
        return {"model": self.model, "samples": self.samples, "evaluations": self.evaluations,
                "seconds": round(self.seconds, 3), "structure": self.structure, "structures": self.structures,
                "fit": {k: {"start": self.start[k], "value": v, "stderr": self.stderr[k],
                            "ci95": [v - 1.96 * self.stderr[k], v + 1.96 * self.stderr[k]],
                            "relative_stderr": rel[k], "bounds": list(self.bounds.get(k, ())),
                            "on_bound": k in self.on_bound} for k, v in self.values.items()},
                "correlated": [{"a": a, "b": b, "r": round(r, 4)} for a, b, r in self.correlated],
                "not_identified": self.not_identified,
                "rmse": self.rmse, "held_out_rmse": self.held_out_rmse, "validation_rmse": self.validation_rmse,
                "max_rmse": self.max_rmse, "units": self.units, "refusals": self.refusals,
                "parameters": self.parameters,
                "landable": not self.refusals}


def read_data(path: Path, display: str | None = None):
    from metaforge.sim.runs import read_table

    return read_table(path, display)


def _setup(loaded, columns: dict):
    d = loaded.definition
    if d.model_type == "composition":
        raise BadInput(f"{loaded.display}: calibrate one model, not a composition")
    composed = from_models([loaded])
    alias = next(iter(composed.members))
    outputs = [p.name for p in d.outputs if p.name in columns]
    if not outputs:
        raise BadInput(f"the data has none of {loaded.definition.name}'s outputs "
                       f"({', '.join(d.output_names())}) as a column")
    missing = [p.name for p in d.inputs if p.name not in columns and p.default is None]
    if missing:
        raise BadInput(f"the data has no column for the input {', '.join(missing)}")
    return composed, alias, outputs


_DATA_FUNCTIONS = ("charge", "mean", "min", "max", "first", "last")


def start_values(loaded, t, columns) -> dict[str, float]:
    """`calibrate.start` evaluated on the data: `charge(load_current) * 1.1` is 1.1 × the charge the
    test drew (A·h), so a capacity starts above what the data already took out of the cell."""
    import ast

    import numpy as np

    d = loaded.definition
    out = {}
    t = np.asarray(t, dtype=float)
    params = flatten(d.parameters)

    def value(node, where):
        if isinstance(node, ast.Name) and isinstance(params.get(node.id), (int, float)):
            return float(params[node.id])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand, where)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exp", "min2", "max2"):
            args = [value(a, where) for a in node.args]
            return float(np.exp(args[0])) if node.func.id == "exp" else (min(args) if node.func.id == "min2" else max(args))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = value(node.left, where), value(node.right, where)
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b, ast.Div: a / b if b else float("nan")}[type(node.op)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _DATA_FUNCTIONS \
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name):
            col = node.args[0].id
            default = next((p.default for p in d.inputs if p.name == col), None)
            if col not in columns and default is None:
                raise BadInput(f"{loaded.display}: calibrate.start.{where}: the data has no column '{col}'")
            v = np.asarray(columns[col], dtype=float) if col in columns else np.full(len(t), float(default))
            fn = node.func.id
            if fn == "charge":
                return float(np.sum(v[:-1] * np.diff(t)) / 3600.0)
            return float({"mean": np.mean, "min": np.min, "max": np.max}[fn](v)) if fn in ("mean", "min", "max") \
                else float(v[0] if fn == "first" else v[-1])
        raise BadInput(f"{loaded.display}: calibrate.start.{where}: '{ast.unparse(node)}' is not numbers, "
                       f"parameters, + - * /, exp, min2, max2 and {', '.join(_DATA_FUNCTIONS)}(column)")

    for key, text in (d.calibrate.start if d.calibrate else {}).items():
        try:
            node = ast.parse(str(text), mode="eval").body
        except SyntaxError:
            raise BadInput(f"{loaded.display}: calibrate.start.{key}: '{text}' is not an expression") from None
        out[key] = value(node, key)
    return out


def unknowns(loaded, names: list[str] | None, bounds: dict | None = None, starts: dict | None = None) -> list[Unknown]:
    d = loaded.definition
    names = names or (d.calibrate.parameters if d.calibrate else None)
    if not names:
        raise BadInput(f"{loaded.display}: which parameters? --fit a,b (or `calibrate.parameters` in the definition)")
    flat = flatten(d.parameters)
    limits = dict(d.calibrate.bounds if d.calibrate else {})
    limits.update(bounds or {})
    out = []
    for name in names:
        if name not in flat:
            raise BadInput(f"--fit {name}: no such parameter (parameters: {', '.join(sorted(flat))})")
        value = flat[name]
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if not isinstance(v, (int, float)):
                raise BadInput(f"--fit {name}: '{v}' is an expression, not a number to fit")
            lo, hi = limits.get(name, _default_bounds(float(v)))
            start = float((starts or {}).get(name, v))
            start = min(max(start, float(lo)), float(hi))
            out.append(Unknown(name, i if isinstance(value, list) else None, start, float(lo), float(hi)))
    return out


def _default_bounds(v: float) -> tuple[float, float]:
    if v > 0:
        return v / 1000, v * 1000
    if v < 0:
        return v * 1000, v / 1000
    return -1e9, 1e9


class _Problem:
    """Residuals and Jacobian of one model on one data set."""

    def __init__(self, loaded, t, columns, unknowns: list[Unknown], initial: dict | None = None,
                 fixed: dict | None = None):
        import numpy as np

        self.composed, self.alias, self.outputs = _setup(loaded, columns)
        self.fixed = dict(fixed or {})         # a structure's switches
        self.mask = None                       # samples the residuals count (None: all)
        self.unexcited: list[Unknown] = []
        self.extrapolated: set[str] = set()
        self.t = np.asarray(t, dtype=float)
        self.u = unknowns
        self.base = flatten(loaded.definition.parameters)
        knobs = {p.name for p in self.composed.scenario}
        self.inputs = {k: Series(self.t, np.asarray(v, dtype=float)) for k, v in columns.items() if k in knobs}
        self.actual = {o: np.asarray(columns[o], dtype=float) for o in self.outputs}
        self.scale = {o: 1.0 for o in self.outputs}   # residuals in the output's unit (V for V)
        self.initial = initial or {}
        dt = float(np.median(np.diff(self.t)))
        rate = self._rate()   # the step is fixed for the whole fit: residuals must not jump with it
        self.step = min(dt, STEP_PER_TIME_CONSTANT / rate) if rate else dt
        self.evaluations = 0

    def _rate(self) -> float | None:
        from metaforge.sim.engine import _Build

        build = _Build(self.composed, Scenario(self.t[-1], 1.0, inputs=self.inputs, curves=False))
        rates = [r for r in (m.fastest_rate() for m in build.members.values()) if r]
        return max(rates) if rates else None

    def params(self, z):
        """The parameter overrides for parameter vectors z (k,) or (n, k)."""
        import numpy as np

        z = np.asarray(z, dtype=float)
        values = z * np.array([abs(u.start) or 1.0 for u in self.u])
        out = dict(self.fixed)
        tables: dict = {}
        for j, u in enumerate(self.u):
            col = values[..., j]
            if u.index is None:
                out[u.key] = col if col.ndim else float(col)
                continue
            if u.key not in tables:
                src = self.fixed.get(u.key, self.base[u.key])
                tables[u.key] = np.broadcast_to(np.asarray(src, dtype=float), col.shape + (len(src),)).copy()
            tables[u.key][..., u.index] = col
        out.update(tables)
        return out

    def predict(self, z):
        """Predicted outputs at the data's times: (m,) per output, or (m, n) for n parameter sets."""
        import numpy as np

        z = np.asarray(z, dtype=float)
        n = 1 if z.ndim == 1 else z.shape[0]
        sc = Scenario(float(self.t[-1]), 1.0, n=n, inputs=self.inputs, parameters={self.alias: self.params(z)},
                      initial=self.initial, curves=False, step=self.step, hold_events=True,
                      record={f"{self.alias}.{o}" for o in self.outputs})
        self.evaluations += n
        out = simulate(self.composed, sc)
        preds = {}
        for o in self.outputs:
            trace = out.traces[f"{self.alias}.{o}"]
            if trace.ndim == 1:
                preds[o] = np.interp(self.t, out.trace_t, trace)
            else:
                preds[o] = np.stack([np.interp(self.t, out.trace_t, trace[:, i]) for i in range(trace.shape[1])], axis=1)
        return preds

    def residuals(self, z):
        import numpy as np

        p = self.predict(z)
        return np.concatenate([((p[o] - self.actual[o]) / self.scale[o])[self._rows()] for o in self.outputs])

    def _rows(self):
        return slice(None) if self.mask is None else self.mask

    def jacobian(self, z):
        import numpy as np

        k = len(z)
        h = 1e-6 * np.maximum(1.0, np.abs(z))
        zs = np.vstack([z, z + np.diag(h)])             # the base point and one perturbation per parameter
        p = self.predict(zs)
        r = np.concatenate([((p[o] - self.actual[o][:, None]) / self.scale[o])[self._rows()] for o in self.outputs])
        return (r[:, 1:] - r[:, :1]) / h[None, :k]

    def rmse(self, z, rows=None) -> dict[str, float]:
        import numpy as np

        p = self.predict(z)
        sel = slice(None) if rows is None else rows
        return {o: float(np.sqrt(np.mean((p[o] - self.actual[o])[sel] ** 2))) for o in self.outputs}


STEP_PER_TIME_CONSTANT = 0.3   # RK4 at |λ|h = 0.3: 1e-5 relative error a step, 3x fewer steps than 0.1
BOUND_TOLERANCE = 1e-3    # a value within 0.1 % of the bounds' span from one is "on the bound"
MAX_RELATIVE_STDERR = 0.5
CORRELATED = 0.95
HELD_OUT_BLOCKS = 10      # without a sustained segment: tenths 2, 5 and 8 held out to choose a structure


def fit(loaded, t, columns, *, names: list[str] | None = None, bounds: dict | None = None,
        initial: dict | None = None, validate: tuple | None = None, tolerance: float = 1e-8,
        structure: str | None = None) -> FitResult:
    """Fit `names` (default: the definition's `calibrate.parameters`) to the data.

    When the definition lists `calibrate.structures` (and neither `names` nor `structure` is
    given) each structure is fitted on the data less a held-out part (`_held_out`), and they are
    refitted on all of it in the order of their error on that part until one may land. Parameters the data does not excite
    keep their start values and are reported, with the test that would identify them. `validate`
    = (t, columns) of a profile the fit never sees, to report the error there too."""
    import numpy as np

    started = time.perf_counter()
    d = loaded.definition
    _setup(loaded, columns)   # the data has the model's outputs and inputs, before anything else
    choices = dict(d.calibrate.structures) if d.calibrate and not names else {}
    if structure is not None:
        if structure not in choices:
            raise BadInput(f"--structure {structure}: {d.name} has no such structure "
                           f"({', '.join(choices) or 'it lists none under calibrate.structures'})")
        choices = {structure: choices[structure]}
    evaluations, compared, warm = 0, {}, {}
    order = list(choices) or [None]
    if len(choices) > 1:
        held = _held_out(t, columns, loaded)
        for sname, st in choices.items():
            prob, u, x = _fit_structure(loaded, t, columns, st, bounds, initial, max(tolerance, 1e-6), mask=~held,
                                        max_nfev=40)
            evaluations += prob.evaluations
            compared[sname] = {"fit_rmse": prob.rmse(x, ~held), "held_out_rmse": prob.rmse(x, held),
                               "parameters": len(u)}
            warm[sname] = {x_.label: float(v) * (abs(x_.start) or 1.0) for x_, v in zip(u, x)}
        # least held-out error first; a structure whose final fit may not land gives way to the next
        order = sorted(compared, key=lambda k: _score(compared[k]["held_out_rmse"], d))
    first = None
    for chosen in order:
        st = choices.get(chosen) if chosen else None
        prob, u, x = _fit_structure(loaded, t, columns, st, bounds, initial, tolerance, names=names,
                                    warm=warm.get(chosen))
        result = _report(loaded, prob, u, x)
        evaluations += prob.evaluations
        result.structure, result.structures = chosen, compared
        if chosen and len(choices) > 1:
            result.held_out_rmse = compared[chosen]["held_out_rmse"]
        result.refusals = refusals(result) + _disorder(d, result)
        if chosen is not None and len(choices) > 1:
            compared[chosen]["landable"] = not result.refusals
        first = first or (result, prob, x)
        if not result.refusals:
            break
    else:   # none may land: report the one with the least held-out error, and why
        result, prob, x = first
    result.evaluations = evaluations
    if validate is not None:
        result.validation_rmse = validation_error(loaded, prob.params(x), *validate, initial=initial)
    result.seconds = time.perf_counter() - started
    return result


def _disorder(d, result: FitResult) -> list[str]:
    """A table that must rise (an OCV curve) and does not: a refusal."""
    flat = flatten(result.parameters)
    out = []
    for key in (d.calibrate.increasing if d.calibrate else []):
        vals = flat.get(key) or []
        bad = [i for i in range(1, len(vals)) if not vals[i] > vals[i - 1]]
        if bad:
            out.append(f"{key} does not rise at [{bad[0]}] ({vals[bad[0] - 1]:.4g} then {vals[bad[0]]:.4g}): "
                       "not a physical curve (more rests across the range would pin it)")
    return out


def _held_out(t, columns, loaded):
    """The samples a structure must predict without fitting them: the longest stretch of one
    constant, non-zero input and what follows it until the input changes again (a test's
    sustained segment and its rest: what most resembles a flight), when it is 5-40 % of the
    data; else every third tenth of the data."""
    import numpy as np

    m = len(t)
    for p in loaded.definition.inputs:
        if p.name not in columns:
            continue
        v = np.asarray(columns[p.name], dtype=float)
        change = np.flatnonzero(np.abs(np.diff(v)) > 1e-9 * max(float(np.abs(v).max()), 1e-300)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [m]])
        runs = [(float(t[min(e, m - 1)] - t[s_]), s_, e) for s_, e in zip(starts, ends) if v[s_] != 0]
        if not runs:
            continue
        _, s_, e = max(runs)
        nxt = ends[np.searchsorted(starts, e)] if e < m else m
        mask = np.zeros(m, dtype=bool)
        mask[s_:nxt] = True
        if 0.05 <= mask.mean() <= 0.4:
            return mask
    block = np.arange(m) * HELD_OUT_BLOCKS // max(m, 1)
    return np.isin(block, (2, 5, 8))


def _score(rmse: dict[str, float], d) -> float:
    """Held-out error summed over outputs, each in units of its threshold (or its own unit)."""
    limits = d.calibrate.max_rmse if d.calibrate else {}
    return sum(v / limits.get(o, 1.0) for o, v in rmse.items())


def _fit_structure(loaded, t, columns, st, bounds, initial, tolerance, names=None, mask=None, warm=None,
                   max_nfev=100):
    """One structure fitted: parameters the data does not excite are set back and left out.
    `warm`: label → value to start from (the same structure's fit on the held-out split)."""
    import numpy as np

    fixed = dict(st.set) if st is not None else {}
    u = unknowns(loaded, names or (st.fit if st is not None and st.fit else None), bounds,
                 start_values(loaded, t, columns))
    u = [x for x in u if x.key not in fixed]
    prob = _Problem(loaded, t, columns, u, initial, fixed)
    prob.mask = mask
    z_start = None
    if warm:
        z_start = np.array([warm.get(x_.label, x_.start) / (abs(x_.start) or 1.0) for x_ in u])
    x = _solve(prob, u, tolerance, z_start, max_nfev)
    # a column of the Jacobian with no weight: the data never reaches what this parameter shapes
    jac = prob.jacobian(x)
    norms = np.linalg.norm(jac, axis=0)
    idle = norms <= 1e-6 * max(float(norms.max()), 1e-300)
    scale = np.array([abs(x_.start) or 1.0 for x_ in u])
    values = {x_.label: (x_.start if dead else float(v) * sc) for x_, v, dead, sc in zip(u, x, idle, scale)}
    # an end point of a table that must rise (an OCV curve), barely reached and found out of order:
    # set by linear extrapolation of its neighbours and left out of the fit
    ends = _disordered_ends(loaded, u, values)
    for i in ends:
        idle[i] = True
        values[u[i].label] = ends[i]
    if idle.any() and not idle.all():
        prob.unexcited = [u[i] for i in np.flatnonzero(idle)]
        prob.extrapolated = {u[i].label for i in ends}
        keep = [x_ for x_, dead in zip(u, idle) if not dead]
        z_all = np.array([values[x_.label] for x_ in u]) / scale
        prob2 = _Problem(loaded, t, columns, keep, initial, {**fixed, **_as_overrides(prob, z_all, u, idle)})
        prob2.mask, prob2.unexcited, prob2.evaluations = mask, prob.unexcited, prob.evaluations
        prob2.extrapolated = prob.extrapolated
        x = _solve(prob2, keep, tolerance, z_all[~idle], max_nfev)
        return prob2, keep, x
    return prob, u, x


def _disordered_ends(loaded, u, values: dict) -> dict[int, float]:
    """index in u → the value an out-of-order end point of an `increasing` table takes."""
    d = loaded.definition
    out: dict[int, float] = {}
    for key in (d.calibrate.increasing if d.calibrate else []):
        idx = {x_.index: i for i, x_ in enumerate(u) if x_.key == key and x_.index is not None}
        if not idx:
            continue
        from metaforge.sim.params import flatten

        base = list(flatten(d.parameters)[key])
        vals = [values.get(f"{key}[{j}]", base[j]) for j in range(len(base))]
        grid = flatten(d.parameters).get(key.rsplit(".", 1)[0] + ".soc") or list(range(len(base)))
        n = len(vals)
        if n >= 3 and 0 in idx and vals[0] >= vals[1]:
            slope = (vals[2] - vals[1]) / (grid[2] - grid[1])
            out[idx[0]] = vals[1] - max(slope, 0.0) * (grid[1] - grid[0]) - 1e-6
        if n >= 3 and n - 1 in idx and vals[-1] <= vals[-2]:
            slope = (vals[-2] - vals[-3]) / (grid[-2] - grid[-3])
            out[idx[n - 1]] = vals[-2] + max(slope, 0.0) * (grid[-1] - grid[-2]) + 1e-6
    return out


def _as_overrides(prob, z_all, u, idle) -> dict:
    """The values of the tables and parameters left out (z_all: every unknown, scaled)."""
    import numpy as np

    values = prob.params(z_all)
    keys = {x_.key for x_, dead in zip(u, idle) if dead}
    return {k: (np.asarray(v).tolist() if np.ndim(v) else float(v)) for k, v in values.items() if k in keys}


def _solve(prob, u, tolerance, z_start=None, max_nfev=100):
    import numpy as np
    from scipy.optimize import least_squares

    scale = np.array([abs(x.start) or 1.0 for x in u])
    lo = np.array([x.low for x in u]) / scale
    hi = np.array([x.high for x in u]) / scale
    z0 = np.array([x.start for x in u]) / scale if z_start is None else np.asarray(z_start, dtype=float)
    z0 = np.clip(z0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    sol = least_squares(prob.residuals, z0, jac=prob.jacobian, bounds=(lo, hi), x_scale="jac", method="trf",
                        ftol=tolerance, xtol=tolerance, gtol=tolerance, max_nfev=max_nfev)
    return sol.x


def _report(loaded, prob, u, x) -> FitResult:
    import numpy as np

    scale = np.array([abs(x_.start) or 1.0 for x_ in u])
    r = prob.residuals(x)
    jac = prob.jacobian(x)
    m, k = len(r), len(x)
    s2 = float(r @ r) / max(m - k, 1)
    cov = np.linalg.pinv(jac.T @ jac) * s2
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    stderr = sd * scale
    values = x * scale
    labels = [x_.label for x_ in u]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    correlated = [(labels[i], labels[j], float(corr[i, j])) for i in range(k) for j in range(i + 1, k)
                  if np.isfinite(corr[i, j]) and abs(corr[i, j]) > CORRELATED]
    on_bound = [x_.label for x_, v in zip(u, values)
                if min(v - x_.low, x_.high - v) <= BOUND_TOLERANCE * (x_.high - x_.low)]
    fitted = prob.params(x)
    params = dict(prob.base)
    for key, value in fitted.items():
        params[key] = np.asarray(value).tolist() if np.ndim(value) else float(value)
    d = loaded.definition
    hints = d.calibrate.identified_by if d.calibrate else {}
    not_identified = {}
    for x_ in getattr(prob, "unexcited", []):
        how = ("an end point out of order, barely reached: extrapolated from its neighbours"
               if x_.label in getattr(prob, "extrapolated", set()) else
               "the data does not reach what it shapes (left at its start value)")
        not_identified[x_.label] = how + "; " + hints.get(x_.key, "data that exercises it")
    result = FitResult(d.name, {lab: float(v) for lab, v in zip(labels, values)},
                       {x_.label: x_.start for x_ in u}, {lab: float(s) for lab, s in zip(labels, stderr)},
                       prob.rmse(x), samples=int(len(prob.t)), evaluations=prob.evaluations,
                       parameters=unflatten(params), units={o: _unit(loaded, o) for o in prob.outputs},
                       bounds={x_.label: (x_.low, x_.high) for x_ in u}, on_bound=on_bound,
                       correlated=correlated, not_identified=not_identified,
                       max_rmse=dict(d.calibrate.max_rmse) if d.calibrate else {})
    for lab in on_bound:
        result.not_identified.setdefault(lab, "the fit stopped on a bound; " + hints.get(lab.split("[")[0], "more data that exercises it"))
    for lab in labels:
        rse = result.relative_stderr(lab)
        if rse is not None and rse > MAX_RELATIVE_STDERR:
            result.not_identified.setdefault(lab, f"relative standard error {rse:.0%}; "
                                             + hints.get(lab.split("[")[0], "more data that exercises it"))
    return result


def refusals(result: FitResult) -> list[str]:
    """Why a fit may not land without --force: a bound hit, an unidentified parameter, a large error."""
    out = [f"{lab} is on its bound ({result.values[lab]:.4g}, bounds {result.bounds[lab][0]:g}..{result.bounds[lab][1]:g})"
           for lab in result.on_bound]
    for lab in result.values:
        rse = result.relative_stderr(lab)
        if rse is not None and rse > MAX_RELATIVE_STDERR:
            out.append(f"{lab} is not identified: relative standard error {rse:.0%} (> {MAX_RELATIVE_STDERR:.0%})")
    for o, v in result.rmse.items():
        limit = result.max_rmse.get(o)
        if limit is not None and v > limit:
            out.append(f"fit RMSE of {o} is {v:.4g} {result.units.get(o, '')}, above the stated threshold {limit:g} "
                       "(the data's units, its columns, or the model's structure)")
    return out


def validation_error(loaded, fitted: dict, t, columns, initial: dict | None = None) -> dict[str, float]:
    import numpy as np

    prob = _Problem(loaded.__class__(loaded.definition.model_copy(update={"parameters": unflatten(
        {**flatten(loaded.definition.parameters), **{k: (np.asarray(v).tolist() if np.ndim(v) else v)
                                                     for k, v in fitted.items()}})}), loaded.path, loaded.sha256,
        loaded.display), t, columns, [], initial)
    preds = prob.predict(np.zeros(0))
    return {o: float(np.sqrt(np.mean((preds[o] - prob.actual[o]) ** 2))) for o in prob.outputs}


def _unit(loaded, output: str) -> str:
    return next((p.unit for p in loaded.definition.outputs if p.name == output), "")


# ---- in the repository: fit, then land the parameters as a mutation ------------------------------

def calibrate(repo, model: str, *, actor: str, data: Path | None = None, execution: str | None = None,
              names: list[str] | None = None, validate: Path | None = None, dry_run: bool = False,
              base: Path = Path("."), force: bool = False,
              structure: str | None = None) -> tuple[FitResult, object | None, str | None]:
    """Fit, and land the parameters unless the fit is refused (a bound hit, a parameter not
    identified, an error past the stated threshold: `result.refusals`) and not `force`d."""
    from metaforge.sim import record
    from metaforge.sim.catalog import ENTITY, Catalog
    from metaforge.thread.commands import Change, execute
    from metaforge.thread.policy import Source

    catalog = Catalog(repo)
    loaded = catalog.find(model)
    if loaded.entity_version is None:
        raise BadInput(f"{model} is no BehavioralModel yet", f"`mf sim register {loaded.display}` first")
    if execution:
        execution = execution if execution.startswith("TestExecution:") else f"TestExecution:{execution}"
        props = repo.index.props(execution)
        if props is None:
            raise BadInput(f"unknown {execution}")
        if data is None:
            if not props.get("data_path"):
                raise BadInput(f"{execution} has no data_path; give --data FILE.csv")
            data = repo.root / props["data_path"].split(",")[0].strip()
    if data is None:
        raise BadInput("give --data FILE.csv (or --execution TestExecution:ID with a data_path)")
    shown = str(data)
    t, columns = read_data(base / data if not data.is_absolute() else data, shown)
    check = read_data(base / validate, str(validate)) if validate else None
    result = fit(loaded, t, columns, names=names, validate=check, structure=structure)
    name = loaded.definition.name
    if dry_run or (result.refusals and not force):
        return result, None, None
    source = (f"{Path(shown).name}{f' ({execution})' if execution else ''}: {result.samples} samples, RMSE "
              + ", ".join(f"{o} {v:.4g} {result.units.get(o, '')}" for o, v in result.rmse.items())
              + (f", structure {result.structure}" if result.structure else "")
              + f", fitted {', '.join(result.values)} on {time.strftime('%Y-%m-%d')}"
              + (f"; FORCED past: {'; '.join(result.refusals)}" if result.refusals else ""))
    composed = from_models([loaded])
    run_id = record.start(repo, "calibration", actor=actor, scenario=f"{name}: fit to {Path(shown).name}",
                          composed=composed, targets=[f"{ENTITY}:{name}"],
                          props={"inputs": {"data": shown, "validate": str(validate) if validate else None},
                                 "settings": {"fit": list(result.values)}})
    record.complete(repo, run_id, actor=actor, props={"metrics": result.as_dict()},
                    payload={"rmse": result.rmse, "validation_rmse": result.validation_rmse})
    changes = [Change("set", f"{ENTITY}:{name}", props={"parameters": result.parameters, "calibration_source": source}),
               Change("link", f"{ENTITY}:{name}", rel="CALIBRATED_BY", dst=run_id)]
    if execution and not repo.index.has_edge(f"{ENTITY}:{name}", "CALIBRATED_BY", execution):
        changes.append(Change("link", f"{ENTITY}:{name}", rel="CALIBRATED_BY", dst=execution))
    landed = execute(repo, changes, actor=actor, message=f"calibrated {name}: {source}", source=Source.CALIBRATION)
    return result, landed, run_id
