"""A device's live state overlay for a 3D viewer: which part each metric colours, in what colour,
and labels with the value and its status. Viewers only draw it; the numbers and colours are
decided here, from the twin (limits, the device's model and its 3D model) and the newest samples.

Which part shows which metric is said in `.metaforge/config.toml`:

    [[telemetry.overlays]]
    metric = "board_temp_c"
    element = "DesignElement:enclosure/chassis_plate"   # a part of the device's model
    color_map = "thermal"                               # thermal (blue → red) or status
    range = [20, 60]                                    # the colour scale, in the metric's unit
    label = "board temperature"

A metric without an overlay still gets a label (without a place) and its status from its limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from metaforge.errors import BadInput

COLOR_MAPS = ("thermal", "status")
_THERMAL = [(0.0, (49, 54, 149)), (0.25, (69, 117, 180)), (0.5, (254, 224, 144)), (0.75, (244, 109, 67)),
            (1.0, (165, 0, 38))]
_STATUS = {"nominal": "#2e9d4f", "warning": "#f0a202", "critical": "#d62828", "stale": "#8a8a8a", "none": "#5b7fa6"}


@dataclass
class OverlayRule:
    metric: str
    element: str | None = None
    color_map: str = "thermal"
    range: tuple[float, float] | None = None
    label: str | None = None


def load_rules(config: dict) -> dict[str, OverlayRule]:
    out = {}
    for i, raw in enumerate((config.get("telemetry") or {}).get("overlays") or []):
        where = f".metaforge/config.toml: telemetry.overlays[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("metric"), str):
            raise BadInput(f"{where} needs a metric")
        color_map = raw.get("color_map", "thermal")
        if color_map not in COLOR_MAPS:
            raise BadInput(f"{where}.color_map: one of {', '.join(COLOR_MAPS)}")
        span = raw.get("range")
        if span is not None and not (isinstance(span, list) and len(span) == 2
                                     and all(isinstance(v, (int, float)) for v in span) and span[0] < span[1]):
            raise BadInput(f"{where}.range: [low, high] with low < high")
        out[raw["metric"]] = OverlayRule(raw["metric"], raw.get("element"), color_map,
                                         tuple(span) if span else None, raw.get("label"))
    return out


def thermal_color(fraction: float) -> str:
    f = min(1.0, max(0.0, fraction))
    for (a, ca), (b, cb) in zip(_THERMAL, _THERMAL[1:]):
        if f <= b:
            t = (f - a) / (b - a)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))
    return "#a50026"


class OverlayBuilder:
    """The overlay of one device; it keeps each metric's level between calls (for hysteresis)."""

    def __init__(self, repo, device: str):
        from metaforge.thread.devices import describe
        from metaforge.sync.live import load_limits

        info = describe(repo, device)
        self.repo, self.device = repo, info["name"]
        self.staleness_us = float(info["policy"]["staleness_threshold_s"]) * 1e6
        limits = (repo.config.get("telemetry") or {}).get("limits") or []  # the unit a limit is written in,
        self.units = {raw["metric"]: raw.get("unit") for raw in limits if isinstance(raw, dict) and "metric" in raw}
        self.units.update({s["metric"]: s.get("unit") for s in info["sources"] if s.get("unit")})  # or declared
        self.limits = load_limits(repo)
        self.rules = load_rules(repo.config)
        self.levels: dict[str, int] = {}
        self.seen: dict[str, tuple[float, float]] = {}  # metric → (lowest, highest) value seen
        self.mesh_of, self.boxes = self._model(info)

    def _model(self, info: dict) -> tuple[dict[str, str], dict[str, dict]]:
        """entity id → mesh name, and mesh name → box, of the device's model (empty without one)."""
        from metaforge.serve.manifests import glb_of, manifest_for, part_boxes
        from metaforge.errors import NotFound

        model = next((e["id"] for e in info["out"] if e["rel"] == "INSTANCE_OF"), None)
        if model is None:
            return {}, {}
        try:
            _, manifest = manifest_for(self.repo, model)
        except NotFound:
            return {}, {}
        mesh_of = {eid: mesh for mesh, eid in (manifest.get("mesh_to_node_map") or {}).items()}
        glb = glb_of(self.repo.root, manifest)  # only a GLB of the repository's own artifacts
        try:
            boxes = part_boxes(glb) if glb else {}
        except OSError:
            boxes = {}
        return mesh_of, boxes

    def health(self) -> str:
        return self.repo.index.prop(f"DeviceInstance:{self.device}", "health") or "unknown"

    def build(self, latest: dict[str, tuple[int, float]], samples: dict[str, list] | None = None,
              now_us: float | None = None) -> dict:
        """The LiveStateOverlay for the newest values: deviceId, meshOverlays, annotations, and the
        new samples themselves (for charts)."""
        import time

        now_us = time.time() * 1e6 if now_us is None else now_us
        meshes: dict[str, dict] = {}
        annotations = []
        for metric in sorted(latest):
            ts, value = latest[metric]
            lo, hi = self.seen.get(metric, (value, value))
            self.seen[metric] = (min(lo, value), max(hi, value))
            status = self._status(metric, value, now_us - ts)
            rule = self.rules.get(metric)
            mesh = self.mesh_of.get(rule.element) if rule and rule.element else None
            if mesh is not None:
                color = (_STATUS[status] if rule.color_map == "status"
                         else thermal_color(self._fraction(metric, value, rule)))
                entry = meshes.setdefault(mesh, {"meshName": mesh, "entityId": rule.element, "colorMap": rule.color_map,
                                                 "metrics": [], "values": [], "range": None, "color": color})
                entry["metrics"].append(metric)
                entry["values"].append(value)
                entry["range"] = list(self._range(metric, rule))
            box = self.boxes.get(mesh) if mesh else None
            annotations.append({
                "metric": metric, "label": (rule.label if rule and rule.label else metric), "value": value,
                "unit": self.units.get(metric), "status": status, "ts": ts, "meshName": mesh,
                "position": ([box["center"][0], box["max"][1], box["center"][2]] if box else None),
            })
        out = {"deviceId": self.device, "health": self.health(), "meshOverlays": list(meshes.values()),
               "annotations": annotations}
        if samples is not None:
            out["samples"] = {m: [[t, v] for t, v in rows] for m, rows in samples.items()}
        return out

    def _status(self, metric: str, value: float, age_us: float) -> str:
        from metaforge.sync.live import LEVELS

        limit = self.limits.get(metric)
        if limit is not None:
            self.levels[metric] = limit.level(value, self.levels.get(metric, 0))
        if age_us > self.staleness_us:
            return "stale"
        return LEVELS[self.levels[metric]] if limit is not None else "none"

    def _range(self, metric: str, rule: OverlayRule) -> tuple[float, float]:
        if rule.range:
            return rule.range
        limit = self.limits.get(metric)
        lo, hi = self.seen.get(metric, (0.0, 1.0))
        if limit is not None and limit.high is not None:
            hi = limit.high
            lo = limit.low if limit.low is not None else min(lo, hi - 2 * max(limit.warn_margin, 1.0))
        return (lo, hi) if hi > lo else (lo - 1.0, lo + 1.0)

    def _fraction(self, metric: str, value: float, rule: OverlayRule) -> float:
        lo, hi = self._range(metric, rule)
        return (value - lo) / (hi - lo)
