"""Curves of a long run, streamed to disk as the loop runs instead of held in memory.

A 10-day run at 10 Hz is 8.6 million points a curve: 1.1 GB for 16 curves as floats, several
GB as JSON. Past `STREAM_BYTES` the engine runs its loop in blocks and hands each block here:
it is resampled onto the output grid (linear between steps, held for discrete signals) and
appended to one temporary file per curve (float64, column by column), so memory stays at a
block. Readers take a column whole, every k-th point (charts), or rows in chunks (CSV, JSON).
The files go when the object is closed or collected.
"""

from __future__ import annotations

import math
import tempfile

STREAM_BYTES = 64 * 2 ** 20   # curves larger than this (points × curves × 8 bytes) stream to disk


class CurveFile:
    def __init__(self, keys: list[str], discrete: set[str], rate_hz: float, duration: float):
        self.keys = list(keys)
        self.discrete = set(discrete)
        self.rate_hz = rate_hz
        self.n = int(math.floor(duration * rate_hz + 1e-9)) + 1
        self._files = {k: tempfile.TemporaryFile(prefix="mf-curve-") for k in self.keys}
        self._written = 0
        self._prev_t = None
        self._prev: dict = {}

    # ---- writing, block by block ---------------------------------------------------------------
    def block(self, t, traces: dict) -> None:
        """`t`: the step times of this block; traces: key → values at those times."""
        import numpy as np

        t = np.asarray(t, dtype=float)
        if self._prev_t is not None:
            grid = np.concatenate([[self._prev_t], t])
        else:
            grid = t
        last = self.n - 1 if t[-1] >= (self.n - 1) / self.rate_hz - 1e-9 else int(math.floor(t[-1] * self.rate_hz + 1e-9))
        idx = np.arange(self._written, last + 1)
        if idx.size:
            times = idx / self.rate_hz
            at = np.clip(np.searchsorted(grid, times + 1e-9, side="right") - 1, 0, len(grid) - 1)
            for key in self.keys:
                values = np.asarray(traces[key], dtype=float)
                if self._prev_t is not None:
                    values = np.concatenate([[self._prev[key]], values])
                col = values[at] if key in self.discrete else np.interp(times, grid, values)
                self._files[key].write(np.ascontiguousarray(col, dtype=np.float64).tobytes())
            self._written = last + 1
        self._prev_t = float(t[-1])
        self._prev = {k: float(np.asarray(traces[k])[-1]) for k in self.keys}

    # ---- reading ---------------------------------------------------------------------------------
    @property
    def t(self):
        import numpy as np

        return np.arange(self._written) / self.rate_hz

    def __len__(self) -> int:
        return self._written

    def column(self, key: str, every: int = 1):
        import numpy as np

        f = self._files[key]
        f.flush()
        arr = np.memmap(f, dtype=np.float64, mode="r", shape=(self._written,))
        return np.array(arr[::every])

    def every_for(self, points: int) -> int:
        """The stride that leaves about `points` points (a chart, a plot)."""
        return max(1, self._written // max(points, 1))

    def chunks(self, keys: list[str] | None = None, rows: int = 65536):
        """(t, {key: values}) for consecutive row ranges."""
        import numpy as np

        keys = keys or self.keys
        for f in self._files.values():
            f.flush()
        for lo in range(0, self._written, rows):
            hi = min(self._written, lo + rows)
            out = {}
            for k in keys:
                f = self._files[k]
                f.seek(lo * 8)
                out[k] = np.frombuffer(f.read((hi - lo) * 8), dtype=np.float64)
            yield np.arange(lo, hi) / self.rate_hz, out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def dump_json(head: dict, cf: CurveFile, units: dict, stream) -> None:
    """`head` (a run's results, as JSON) and its curves, written to a binary stream chunk by chunk:
    the same shape as a run held in memory ({"curves": {"t_s", "units", "values": {key: [[...]]}}})."""
    import orjson

    opt = orjson.OPT_SERIALIZE_NUMPY
    text = orjson.dumps(head, option=opt | orjson.OPT_INDENT_2)
    stream.write(text[:text.rindex(b"}")].rstrip() + b',\n  "curves": {"units": ' + orjson.dumps(units) + b', "t_s": [')

    def numbers(chunks) -> None:
        first = True
        for arr in chunks:
            if len(arr):
                stream.write((b"" if first else b",") + orjson.dumps(arr, option=opt)[1:-1])
                first = False

    numbers(t for t, _ in cf.chunks(keys=[]))
    stream.write(b'], "values": {')
    for i, key in enumerate(cf.keys):
        stream.write((b", " if i else b"") + orjson.dumps(key) + b": [[")
        numbers(part[key] for _, part in cf.chunks(keys=[key]))
        stream.write(b"]]")
    stream.write(b"}}\n}\n")
