"""Curves as pictures: a braille chart for the terminal, an SVG file (written here, no library),
a PNG through matplotlib when it is installed (`pip install 'metaforge[plot]'`).
"""

from __future__ import annotations

import math
from html import escape

BRAILLE = 0x2800
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))   # [row][col] within a 2×4 cell
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def text_chart(t, series: list, width: int = 64, height: int = 8) -> tuple[list[list[tuple[str, int]]], float, float]:
    """Cells (character, series index or -1) of a braille line chart of several series sharing one
    y axis; returns (rows, y_min, y_max)."""
    import numpy as np

    values = [np.asarray(s, dtype=float) for s in series]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    xs, ys = width * 2, height * 4
    cells = [[(0, -1) for _ in range(width)] for _ in range(height)]
    t = np.asarray(t, dtype=float)
    span = t[-1] - t[0] if len(t) > 1 else 1.0
    every = max(1, len(t) // (xs * 2))   # two samples a dot column are enough: the loop below is Python
    t = t[::every]
    values = [v[::every] for v in values]
    for idx, v in enumerate(values):
        col = np.clip(((t - t[0]) / span * (xs - 1)).round().astype(int), 0, xs - 1)
        row = np.clip(((hi - v) / (hi - lo) * (ys - 1)).round(), 0, ys - 1)
        prev = None
        for c, r in zip(col, row):
            if not math.isfinite(r):
                prev = None
                continue
            r = int(r)
            for rr in (range(min(prev[1], r), max(prev[1], r) + 1) if prev and prev[0] >= c - 1 else [r]):
                cy, dy, cx, dx = rr // 4, rr % 4, c // 2, c % 2
                bits, _ = cells[cy][cx]
                cells[cy][cx] = (bits | _DOTS[dy][dx], idx)
            prev = (c, r)
    rows = [[(chr(BRAILLE + bits) if bits else " ", owner) for bits, owner in line] for line in cells]
    return rows, lo, hi


def svg(t, panels: list[dict], title: str = "", width: int = 760, panel_height: int = 200) -> str:
    """One panel per quantity: {"name", "unit", "series": [(label, values)], "limits": [{label, value}]};
    t in seconds. A limit (a rating, a cut-off) is a dashed red line with its name, and the panel's
    scale always includes it: how close the curve came is what the plot is for."""
    import numpy as np

    t = np.asarray(t, dtype=float)
    scale, t_unit = (60.0, "min") if t[-1] > 600 else (1.0, "s")
    left, right, top, gap = 70, 20, 40, 50
    height = top + len(panels) * (panel_height + gap)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="sans-serif" font-size="12">', '<rect width="100%" height="100%" fill="white"/>']
    if title:
        out.append(f'<text x="{left}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>')
    plot_w = width - left - right
    x_ticks = _ticks(t[0] / scale, t[-1] / scale)
    for i, panel in enumerate(panels):
        y0 = top + i * (panel_height + gap)
        vals = [np.asarray(v, dtype=float) for _, v in panel["series"]]
        finite = np.concatenate([v[np.isfinite(v)] for v in vals])
        lines = [x for x in panel.get("limits", []) if math.isfinite(x["value"])]
        if lines:
            finite = np.concatenate([finite, [x["value"] for x in lines]])
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * 0.05
        lo, hi = lo - pad, hi + pad
        px = lambda x: left + (x - t[0] / scale) / max(t[-1] / scale - t[0] / scale, 1e-12) * plot_w
        py = lambda y: y0 + panel_height - (y - lo) / (hi - lo) * panel_height
        out.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_height}" fill="none" stroke="#999"/>')
        for y in _ticks(lo, hi):
            out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>')
            out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        for x in x_ticks:
            out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{y0}" y2="{y0 + panel_height}" stroke="#eee"/>')
            out.append(f'<text x="{px(x):.1f}" y="{y0 + panel_height + 16}" text-anchor="middle">{x:g}</text>')
        unit = f" [{panel['unit']}]" if panel.get("unit") else ""
        out.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">{escape(panel["name"] + unit)}</text>')
        for x in lines:
            y = py(x["value"])
            out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d62728" '
                       'stroke-width="1.2" stroke-dasharray="6,4"/>')
            out.append(f'<text x="{left + 4}" y="{y - 4:.1f}" fill="#d62728" font-size="11">'
                       f'{escape(x["label"])} {x["value"]:.4g}</text>')
        step = max(1, len(t) // 2000)   # at most ~2000 points a line: the picture is the same, the file small
        for j, (label, values) in enumerate(panel["series"]):
            v = np.asarray(values, dtype=float)[::step]
            pts = " ".join(f"{px(a / scale):.1f},{py(b):.1f}" for a, b in zip(t[::step], v) if math.isfinite(b))
            color = COLORS[j % len(COLORS)]
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{pts}"/>')
            if len(panel["series"]) > 1:
                out.append(f'<text x="{left + plot_w - 8}" y="{y0 + 16 + 14 * j}" text-anchor="end" fill="{color}">'
                           f'{escape(label)}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">time [{t_unit}]</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png(path: str, t, panels: list[dict], title: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from metaforge.errors import BadInput

        raise BadInput("a PNG needs matplotlib", "pip install 'metaforge[plot]', or write --plot FILE.svg") from None
    import numpy as np

    t = np.asarray(t, dtype=float)
    scale, unit = (60.0, "min") if t[-1] > 600 else (1.0, "s")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.4 * len(panels)), sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        for label, values in panel["series"]:
            ax.plot(t / scale, values, label=label, linewidth=1.2)
        for x in panel.get("limits", []):
            if math.isfinite(x["value"]):
                ax.axhline(x["value"], color="#d62728", linestyle="--", linewidth=1.0)
                ax.annotate(f"{x['label']} {x['value']:.4g}", (t[0] / scale, x["value"]), color="#d62728", fontsize=7,
                            xytext=(2, 2), textcoords="offset points")
        ax.set_ylabel(panel["name"] + (f" [{panel['unit']}]" if panel.get("unit") else ""), fontsize=8)
        ax.grid(alpha=0.3)
        if len(panel["series"]) > 1:
            ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel(f"time [{unit}]")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]
