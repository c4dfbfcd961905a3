"""Parameters of a model: flattened to dotted names, expressions evaluated, overrides applied.

`{ocv_curve: {soc: [...], volts: [...]}, nodes: {mcu: {capacitance_J_per_K: 0.9}}}` becomes
`ocv_curve.soc`, `ocv_curve.volts`, `nodes.mcu.capacitance_J_per_K`. A value may be a number,
a list of numbers (a table), or an expression of other parameters (`numerator: [gain_rpm]`).
An override may give one value per device (an array), for a sweep or a calibration.
"""

from __future__ import annotations

from typing import Any

from metaforge.errors import BadInput
from metaforge.sim.expr import ExprError, array_functions, compile_expr, scalar_functions


def flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for name, value in flat.items():
        cur = out
        parts = name.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    return out


def resolve(params: dict, overrides: dict[str, Any] | None, where: str, array: bool) -> dict[str, Any]:
    """Numbers (floats, or NumPy arrays in array mode) for every parameter, expressions evaluated."""
    flat = flatten(params)
    for key, value in (overrides or {}).items():
        if key not in flat:
            raise BadInput(f"{where}: no parameter '{key}' (parameters: {', '.join(sorted(flat))})")
        flat[key] = value
    out: dict[str, Any] = {}
    pending = dict(flat)
    for _ in range(len(pending) + 1):
        progressed = False
        for key in list(pending):
            value = _evaluate(pending[key], out, pending, array, f"{where}: parameters.{key}")
            if value is not _WAIT:
                out[key] = value
                del pending[key]
                progressed = True
        if not pending:
            return out
        if not progressed:
            break
    raise BadInput(f"{where}: parameters {', '.join(sorted(pending))} depend on each other in a circle")


_WAIT = object()


def _evaluate(value: Any, done: dict, pending: dict, array: bool, where: str):
    if type(value).__module__ == "numpy":  # an override: a table, or one value per device
        import numpy as np

        arr = np.asarray(value, dtype=float)
        if array:
            return arr if arr.ndim else float(arr)
        return tuple(arr.tolist()) if arr.ndim else float(arr)
    if isinstance(value, list):
        items = [_evaluate(v, done, pending, array, where) for v in value]
        if any(i is _WAIT for i in items):
            return _WAIT
        if array:
            import numpy as np

            arrs = [np.asarray(i, dtype=float) for i in items]
            if any(a.ndim for a in arrs):  # one table per device: (n, k)
                return np.stack(np.broadcast_arrays(*arrs), axis=-1)
            return np.asarray(items, dtype=float)
        return tuple(i if isinstance(i, tuple) else float(i) for i in items)
    if isinstance(value, str):
        try:
            c = compile_expr(value, lambda n: n if n in done or n in pending else _unknown(n), "array" if array else "scalar")
        except ExprError as exc:
            raise BadInput(f"{where}: {exc}") from None
        if any(n in pending for n in c.names):
            return _WAIT
        env = dict(array_functions() if array else scalar_functions())
        env.update({n: done[n] for n in c.names})
        return eval(c.source, {"__builtins__": {}}, env)  # noqa: S307 - source built from a checked AST
    if array:
        import numpy as np

        arr = np.asarray(value, dtype=float)
        return arr if arr.ndim else float(arr)
    return float(value)


def _unknown(name: str):
    raise ExprError(f"unknown name '{name}'")
