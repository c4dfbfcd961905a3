"""Lookup tables, 1-D and N-D: multilinear interpolation on a grid of test data.

The grid is in the definition (`parameters.axes` / `values`) or in a CSV of measurements whose
input columns form a full grid (`data: thrust-stand.csv`, one row per grid point). Outside the
grid the table holds its edge value; the engine reports the excursion (the grid is the table's
valid range unless the definition says otherwise).
"""

from __future__ import annotations

import csv
from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sim.member import Member


def grid_from_csv(path: Path, inputs: list[str], outputs: list[str], display: str) -> dict:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise BadInput(f"{display}: data: cannot read {path}: {exc}") from None
    missing = [c for c in inputs + outputs if rows and c not in rows[0]]
    if not rows or missing:
        raise BadInput(f"{display}: data: {path.name} needs columns {', '.join(missing or inputs + outputs)}")
    try:
        values = [{c: float(r[c]) for c in inputs + outputs} for r in rows]
    except ValueError as exc:
        raise BadInput(f"{display}: data: {path.name}: {exc}") from None
    axes = {c: sorted({v[c] for v in values}) for c in inputs}
    size = 1
    for grid in axes.values():
        size *= len(grid)
    if size != len(values) or any(len(g) < 2 for g in axes.values()):
        raise BadInput(f"{display}: data: {path.name}: the input columns do not form a full grid "
                       f"({len(values)} rows for {' × '.join(str(len(g)) for g in axes.values())} points)")
    import numpy as np

    index = {c: {x: i for i, x in enumerate(g)} for c, g in axes.items()}
    tables = {o: np.full(tuple(len(g) for g in axes.values()), np.nan) for o in outputs}
    for v in values:
        at = tuple(index[c][v[c]] for c in inputs)
        for o in outputs:
            tables[o][at] = v[o]
    return {"axes": axes, "values": {o: t.tolist() for o, t in tables.items()}}


class Table:
    """f(x1, ..., xn) on a grid, for floats or arrays (NumPy in both cases: the grid search is
    the cost, not the call)."""

    def __init__(self, axes: list, values):
        import numpy as np

        self.axes = [np.asarray(a, dtype=float) for a in axes]
        self.values = np.asarray(values, dtype=float)

    def __call__(self, *xs):
        import numpy as np

        scalar = all(np.ndim(x) == 0 for x in xs)
        xs = np.broadcast_arrays(*[np.asarray(x, dtype=float) for x in xs])
        idx, weights = [], []
        for axis, x in zip(self.axes, xs):
            i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, len(axis) - 2)
            w = np.clip((x - axis[i]) / (axis[i + 1] - axis[i]), 0.0, 1.0)
            idx.append(i)
            weights.append(w)
        out = 0.0
        for corner in range(2 ** len(xs)):  # the 2^n corners of the cell around each point
            at, weight = [], 1.0
            for d in range(len(xs)):
                up = (corner >> d) & 1
                at.append(idx[d] + up)
                weight = weight * (weights[d] if up else 1.0 - weights[d])
            out = out + weight * self.values[tuple(at)]
        return float(out) if scalar else out


class LookupMember(Member):
    kind = "lookup-table"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        d = self.definition
        if d.data is not None:
            base = self.loaded.path.parent if self.loaded.path else Path(".")
            grid = grid_from_csv(base / d.data, d.input_names(), d.output_names(), self.loaded.display)
        else:  # one grid for every device: a value given per device is not a table
            from metaforge.sim.params import unflatten

            grid = unflatten(self.params)
        self.grid = grid
        self.tables = {o: Table([grid["axes"][i] for i in d.input_names()], grid["values"][o])
                       for o in d.output_names()}

    def valid_range(self) -> dict:
        return {name: (float(min(g)), float(max(g))) for name, g in self.grid["axes"].items()}

    def emit_setup(self, code):
        pass  # the tables are bound below; their parameters are the grid itself

    def emit_direct_outputs(self, code):
        args = ", ".join(self.v(i) for i in self.definition.input_names())
        for o, table in self.tables.items():
            code.step.append(f"{self.v(o)} = {code.bind(table, 'lut')}({args})")
