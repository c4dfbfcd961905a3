"""Results and range reports, read from the traces block by block.

A fleet of 10,000 devices over 2,400 steps would need gigabytes to keep every trace; instead the
loop hands over blocks of a few hundred steps and each result keeps only its running state
(a peak, the time a crossing happened, the samples outside a valid range). A single run hands
its whole trace as one block. Crossing times (`first: a <= b`) are interpolated between steps.
"""

from __future__ import annotations

import ast

from metaforge.errors import BadInput
from metaforge.sim.codegen import pvar
from metaforge.sim.expr import ExprError, array_functions, compile_expr, names_in, parse


class Reducer:
    def __init__(self, run, limits):
        self.run, self.names = run, run.names()
        self.base = dict(array_functions())
        for alias, m in run.members.items():
            for p, v in m.params.items():
                self.base[pvar(alias, p)] = v
        for p, v in run.params.items():
            self.base[pvar("", p)] = v
        self.items: list[dict] = []
        for name, r in run.c.results.items():
            texts = [getattr(r, r.kind)] if r.kind != "margin" else list(r.margin)
            if any(n.split(".", 1)[0] in run.c.omitted for t in texts for n in names_in(t)):
                continue  # it reads a member this run leaves out
            self.items.append(self._item(name, r, limits))
        self.ranges = [{"key": key, "lo": lo, "hi": hi, "min": None, "max": None, "outside": 0, "first": None,
                        "devices": None} for key, (lo, hi) in run._ranges()]
        self.prev_t = None
        self.read = {n for r in run.c.results.values()
                     for t in ([getattr(r, r.kind)] if r.kind != "margin" else list(r.margin)) for n in names_in(t)}

    def _fn(self, text: str, where: str):
        try:
            c = compile_expr(text, self.run.resolver(where), "array")
        except ExprError as exc:
            raise BadInput(f"{self.run._where()}: {exc}") from None
        return compile(c.source, f"<{where}>", "eval")

    def _item(self, name, r, limits) -> dict:
        where = f"results.{name}"
        item = {"name": name, "kind": r.kind, "unit": r.unit or "", "value": None}
        if r.kind == "first":
            node = parse(r.first)
            item["unit"] = "s"
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and not isinstance(node.ops[0], (ast.Eq, ast.NotEq)):
                op = node.ops[0]
                item.update(kind="cross", left=self._fn(ast.unparse(node.left), where),
                            right=self._fn(ast.unparse(node.comparators[0]), where),
                            left_text=ast.unparse(node.left), right_text=ast.unparse(node.comparators[0]),
                            threshold=None,
                            sign=1.0 if isinstance(op, (ast.Gt, ast.GtE)) else -1.0,
                            inclusive=isinstance(op, (ast.GtE, ast.LtE)), prev=None)
            else:
                item["fn"] = self._fn(r.first, where)
        elif r.kind == "margin":
            entries = []
            for text, limit in r.margin.items():
                value, unit = _limit(limit, limits, where)
                port_unit = self.run.c.port_unit(text) or unit
                entries.append({"label": text, "fn": self._fn(text, where), "limit": _to_base(value, unit),
                                "unit": port_unit, "peak": None, "ref": str(limit)})
            item.update(entries=entries, unit=r.unit or "K")
        else:
            item["fn"] = self._fn(getattr(r, r.kind), where)
            item["count"] = 0
        return item

    # ---- one block --------------------------------------------------------------------------
    def block(self, t, traces: dict) -> None:
        import numpy as np

        env = dict(self.base)
        for m in self.run.members.values():
            if hasattr(m, "derived"):
                traces = {**traces, **m.derived(traces, self.read)}
        for key, arr in traces.items():
            env[self.names[key]] = arr
        rows = len(t)
        shape = (rows,) if self.run.mode == "scalar" else (rows, self.run.sc.n)

        def full(x):  # a constant, a per-device parameter or a trace, as (steps[, devices])
            return x if np.shape(x) == shape else np.broadcast_to(x, shape)
        for item in self.items:
            kind = item["kind"]
            if kind == "cross":
                right = full(eval(item["right"], env))
                if item["threshold"] is None:   # what the curve is held against, for plots
                    item["threshold"] = float(np.ravel(right)[0]) if np.ptp(right) == 0 else float("nan")
                d = item["sign"] * (full(eval(item["left"], env)) - right)
                tt = t
                if item["prev"] is not None:
                    d, tt = np.concatenate([item["prev"][None], d]), np.concatenate([[self.prev_t], t])
                found = _crossing(d, tt, item["inclusive"])
                item["value"] = found if item["value"] is None else np.where(np.isnan(item["value"]), found, item["value"])
                item["prev"] = np.array(d[-1], copy=True)
            elif kind == "first":
                found = _first(full(eval(item["fn"], env)) > 0.5, t)
                item["value"] = found if item["value"] is None else np.where(np.isnan(item["value"]), found, item["value"])
            elif kind == "margin":
                for e in item["entries"]:
                    peak = full(eval(e["fn"], env)).max(axis=0)
                    e["peak"] = peak if e["peak"] is None else np.maximum(e["peak"], peak)
            else:
                x = full(eval(item["fn"], env))
                if kind == "max":
                    v = x.max(axis=0)
                    item["value"] = v if item["value"] is None else np.maximum(item["value"], v)
                elif kind == "min":
                    v = x.min(axis=0)
                    item["value"] = v if item["value"] is None else np.minimum(item["value"], v)
                elif kind == "mean":
                    v = x.sum(axis=0)
                    item["value"] = v if item["value"] is None else item["value"] + v
                    item["count"] += rows
                else:  # final
                    item["value"] = np.array(x[-1], copy=True)
        self._ranges(t, traces)
        self.prev_t = t[-1]

    def _ranges(self, t, traces) -> None:
        for r in self.ranges:
            arr = traces.get(r["key"])
            if arr is None:
                continue
            outside = (arr < r["lo"]) | (arr > r["hi"])
            lo, hi = float(arr.min()), float(arr.max())
            r["min"] = lo if r["min"] is None else min(r["min"], lo)
            r["max"] = hi if r["max"] is None else max(r["max"], hi)
            per_device = outside.sum(axis=0)
            r["outside"] = per_device if isinstance(r["outside"], int) and r["outside"] == 0 else r["outside"] + per_device
            if r["first"] is None and outside.any():
                r["first"] = float(t[outside.reshape(len(t), -1).any(axis=1).argmax()])

    # ---- the answer -------------------------------------------------------------------------
    def finish(self):
        import numpy as np

        out, units, margins_at = {}, {}, {}
        for item in self.items:
            name, units[name] = item["name"], item["unit"]
            if item["kind"] == "margin":
                values = [_to_base(e["limit"], "") - _to_base(e["peak"], e["unit"]) for e in item["entries"]]
                stack = np.stack(np.broadcast_arrays(*values))
                out[name] = stack.min(axis=0)
                margins_at[name] = np.asarray([e["label"] for e in item["entries"]], dtype=object)[stack.argmin(axis=0)]
            elif item["kind"] == "mean":
                out[name] = item["value"] / item["count"]
            else:
                out[name] = item["value"]
            if np.ndim(out[name]) == 0:
                out[name] = float(out[name])
                if name in margins_at:
                    margins_at[name] = str(margins_at[name])
        ranges = []
        for r in self.ranges:
            if r["first"] is None:
                continue
            alias = r["key"].split(".", 1)[0]
            model = self.run.c.members[alias].definition.name if alias in self.run.c.members else self.run.c.name
            per_device = np.atleast_1d(r["outside"])
            ranges.append({"input": r["key"], "model": model, "range": [r["lo"], r["hi"]], "min": r["min"],
                           "max": r["max"], "unit": self.run.c.port_unit(r["key"]) or "",
                           "first_outside_s": r["first"], "outside_s": float(per_device.max() * self.run.h),
                           "devices_outside": int((per_device > 0).sum())})
        return out, units, margins_at, ranges

    def limits(self) -> dict[str, list[dict]]:
        """curve → the lines that limit it: ratings of margins, thresholds of crossings."""
        import math

        from metaforge.thread import units

        out: dict[str, list[dict]] = {}
        for item in self.items:
            if item["kind"] == "margin":
                for e in item["entries"]:
                    value = e["limit"]
                    if e["unit"] and e["unit"] != "1":
                        value = units.from_base(value, units.normalize_unit(e["unit"], "temperature"))
                    out.setdefault(e["label"], []).append({"label": e["ref"], "value": float(value)})
            elif item["kind"] == "cross" and item.get("threshold") is not None and not math.isnan(item["threshold"]):
                if item["left_text"] in self.names:
                    out.setdefault(item["left_text"], []).append({"label": item["name"], "value": item["threshold"]})
        return out


def _limit(limit, limits, where):
    if isinstance(limit, (int, float)):
        return float(limit), "degC"
    if limits is None:
        raise BadInput(f"{where}: '{limit}' needs the twin to read it from")
    return limits(str(limit))


def _to_base(value, unit: str):
    """In SI base units (°C → K), so a limit and a peak in different units compare."""
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
    return np.where(hit, t, np.nan)


def _first(cond, grid):
    import numpy as np

    return np.where(cond.any(axis=0), grid[cond.argmax(axis=0)], np.nan)
