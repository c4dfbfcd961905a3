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

    def as_dict(self) -> dict:
        rel = {k: (abs(self.stderr[k] / v) if v else None) for k, v in self.values.items()}
        return {"model": self.model, "samples": self.samples, "evaluations": self.evaluations,
                "seconds": round(self.seconds, 3),
                "fit": {k: {"start": self.start[k], "value": v, "stderr": self.stderr[k],
                            "ci95": [v - 1.96 * self.stderr[k], v + 1.96 * self.stderr[k]],
                            "relative_stderr": rel[k]} for k, v in self.values.items()},
                "rmse": self.rmse, "validation_rmse": self.validation_rmse, "units": self.units}


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


def unknowns(loaded, names: list[str] | None, bounds: dict | None = None) -> list[Unknown]:
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
            out.append(Unknown(name, i if isinstance(value, list) else None, float(v), float(lo), float(hi)))
    return out


def _default_bounds(v: float) -> tuple[float, float]:
    if v > 0:
        return v / 1000, v * 1000
    if v < 0:
        return v * 1000, v / 1000
    return -1e9, 1e9


class _Problem:
    """Residuals and Jacobian of one model on one data set."""

    def __init__(self, loaded, t, columns, unknowns: list[Unknown], initial: dict | None = None):
        import numpy as np

        self.composed, self.alias, self.outputs = _setup(loaded, columns)
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
        self.step = min(dt, 0.1 / rate) if rate else dt
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
        out = {}
        for j, u in enumerate(self.u):
            col = values[..., j]
            if u.index is None:
                out[u.key] = col if col.ndim else float(col)
            else:
                base = out.get(u.key)
                if base is None:
                    base = np.broadcast_to(np.asarray(self.base[u.key], dtype=float),
                                           col.shape + (len(self.base[u.key]),)).copy()
                base[..., u.index] = col
                out[u.key] = base
        return out

    def predict(self, z):
        """Predicted outputs at the data's times: (m,) per output, or (m, n) for n parameter sets."""
        import numpy as np

        z = np.asarray(z, dtype=float)
        n = 1 if z.ndim == 1 else z.shape[0]
        sc = Scenario(float(self.t[-1]), 1.0, n=n, inputs=self.inputs, parameters={self.alias: self.params(z)},
                      initial=self.initial, curves=False, step=self.step,
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
        return np.concatenate([(p[o] - self.actual[o]) / self.scale[o] for o in self.outputs])

    def jacobian(self, z):
        import numpy as np

        k = len(z)
        h = 1e-6 * np.maximum(1.0, np.abs(z))
        zs = np.vstack([z, z + np.diag(h)])             # the base point and one perturbation per parameter
        p = self.predict(zs)
        r = np.concatenate([(p[o] - self.actual[o][:, None]) / self.scale[o] for o in self.outputs])
        return (r[:, 1:] - r[:, :1]) / h[None, :k]


def fit(loaded, t, columns, *, names: list[str] | None = None, bounds: dict | None = None,
        initial: dict | None = None, validate: tuple | None = None, tolerance: float = 1e-12) -> FitResult:
    """Fit `names` (default: the definition's `calibrate.parameters`) to the data; `validate`
    = (t, columns) of a profile the fit does not see, to report the error there too;
    `tolerance`: least_squares' relative change in cost and parameters at which it stops."""
    import numpy as np
    from scipy.optimize import least_squares

    started = time.perf_counter()
    u = unknowns(loaded, names, bounds)
    prob = _Problem(loaded, t, columns, u, initial)
    scale = np.array([abs(x.start) or 1.0 for x in u])
    z0 = np.array([x.start for x in u]) / scale
    lo = np.array([x.low for x in u]) / scale
    hi = np.array([x.high for x in u]) / scale
    z0 = np.clip(z0, lo + 1e-12 * (hi - lo), hi - 1e-12 * (hi - lo))
    sol = least_squares(prob.residuals, z0, jac=prob.jacobian, bounds=(lo, hi), x_scale="jac", method="trf",
                        ftol=tolerance, xtol=tolerance, gtol=tolerance, max_nfev=200)
    m, k = len(sol.fun), len(z0)
    s2 = 2 * sol.cost / max(m - k, 1)
    jac = prob.jacobian(sol.x)
    cov = np.linalg.pinv(jac.T @ jac) * s2
    stderr = np.sqrt(np.clip(np.diag(cov), 0, None)) * scale
    values = sol.x * scale
    preds = prob.predict(sol.x)
    rmse = {o: float(np.sqrt(np.mean((preds[o] - prob.actual[o]) ** 2))) for o in prob.outputs}
    fitted = prob.params(sol.x)
    params = dict(prob.base)
    for key, value in fitted.items():
        params[key] = np.asarray(value).tolist() if np.ndim(value) else float(value)
    result = FitResult(loaded.definition.name, {x.label: float(v) for x, v in zip(u, values)},
                       {x.label: x.start for x in u}, {x.label: float(s) for x, s in zip(u, stderr)}, rmse,
                       samples=int(len(prob.t)), evaluations=prob.evaluations, parameters=unflatten(params),
                       units={o: _unit(loaded, o) for o in prob.outputs})
    if validate is not None:
        result.validation_rmse = validation_error(loaded, fitted, *validate, initial=initial)
    result.seconds = time.perf_counter() - started
    return result


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
              base: Path = Path(".")) -> tuple[FitResult, object | None, str | None]:
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
    result = fit(loaded, t, columns, names=names, validate=check)
    name = loaded.definition.name
    if dry_run:
        return result, None, None
    source = (f"{Path(shown).name}{f' ({execution})' if execution else ''}: {result.samples} samples, RMSE "
              + ", ".join(f"{o} {v:.4g} {result.units.get(o, '')}" for o, v in result.rmse.items())
              + f", fitted {', '.join(result.values)} on {time.strftime('%Y-%m-%d')}")
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
