"""The live twin: every sample goes to the store, the anomaly detector and the state aggregator.

Limits come from the twin, named in `.metaforge/config.toml`:

    [[telemetry.limits]]
    metric = "board_temp_c"
    unit = "degC"                                          # the unit the metric is sent in
    max = "TwinModel:DroneFlightController-v2.1.max_temp"  # a property of the twin, or "85C"
    warn_margin = 10                                       # warning this far (in `unit`) before the limit
    hysteresis = 2                                         # and back only this far under where it entered

A device's state is the worst of its metrics' (nominal < warning < critical), or `stale` when
nothing arrived for its policy's `staleness_threshold_s`. Only a change of state is an event
(`device.state_updated`), and it sets the DeviceInstance's `health` in the graph. Every sample
counts, in time order, whatever its path (one MQTT message, a batch of 100 in columns, a CSV, a
flight log): a peak inside a batch is a change of state at the peak's own time (`at`), and the
return from it another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from metaforge.errors import BadInput

LEVELS = ["nominal", "warning", "critical"]


@dataclass
class Limit:
    metric: str
    low: float | None    # in the metric's own unit
    high: float | None
    warn_margin: float = 0.0
    hysteresis: float = 0.0

    def level(self, value: float, current: int) -> int:
        """The level a value puts the metric at, given the level it is at: it enters a level at its
        threshold and leaves it only `hysteresis` back, so noise at a limit does not flap."""
        level = 0
        for bound, sign in ((self.high, 1), (self.low, -1)):
            if bound is None:
                continue
            past = sign * (value - bound)  # > 0: beyond the limit
            if past > 0 or (current == 2 and past > -self.hysteresis):
                level = max(level, 2)
            elif past > -self.warn_margin or (current >= 1 and past > -self.warn_margin - self.hysteresis):
                level = max(level, 1)
        return level

    def steps(self, values, current: int, window: int = 4096) -> list[tuple[int, int]]:
        """(index, new level) of each change of level along `values`, starting at `current`. Runs
        of samples that keep the level are skipped a window at a time (numpy); each change costs
        at most one window, so a long file that crosses its limit often stays fast."""
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        out, level, i = [], current, 0
        while i < len(values):
            keep = self._keeps(values[i:i + window], level)
            if keep.all():
                i += window
                continue
            i += int(np.argmin(keep))
            level = self.level(float(values[i]), level)
            out.append((i, level))
            i += 1
        return out

    def _keeps(self, values, current: int):
        """Which values leave the level at `current` (vectorized `level(v, current) == current`)."""
        import numpy as np

        level = np.zeros(len(values), dtype=np.int8)
        for bound, sign in ((self.high, 1), (self.low, -1)):
            if bound is None:
                continue
            past = sign * (values - bound)
            crit = (past > 0) | ((current == 2) & (past > -self.hysteresis))
            warn = (past > -self.warn_margin) | ((current >= 1) & (past > -self.warn_margin - self.hysteresis))
            level = np.maximum(level, np.where(crit, 2, np.where(warn, 1, 0)).astype(np.int8))
        return level == current


def _resolve(value, unit: str | None, repo) -> float | None:
    """A limit as a number in the metric's unit: a number, a quantity ("85C"), or Type:name.prop."""
    from metaforge.thread import units
    from metaforge.thread.constraints.evaluate import to_value

    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    if ":" in text and "." in text:
        entity, _, prop = text.rpartition(".")
        props = repo.index.props(entity)
        if props is None:
            raise BadInput(f"telemetry limit: {entity} does not exist")
        stored = props.get(prop)
        if stored is None:
            raise BadInput(f"telemetry limit: {entity} has no {prop}")
        q = to_value(stored)
        base, from_unit = q.value, None
    else:
        split = units.split_number(text)
        if not split:
            raise BadInput(f"telemetry limit '{text}': a number, a quantity or Type:name.property")
        number, written = split
        from_unit = units.normalize_unit(written, "temperature") if written else None
        if not from_unit:
            return float(number)
        base = units.to_base(float(number), from_unit)
    if not unit:
        return base
    return units.from_base(base, units.normalize_unit(unit, "temperature"))


def load_limits(repo) -> dict[str, Limit]:
    out = {}
    for i, raw in enumerate((repo.config.get("telemetry") or {}).get("limits") or []):
        try:
            metric = raw["metric"]
        except (KeyError, TypeError):
            raise BadInput(f".metaforge/config.toml: telemetry.limits[{i}] needs a metric") from None
        unit = raw.get("unit")
        out[metric] = Limit(metric, _resolve(raw.get("min"), unit, repo), _resolve(raw.get("max"), unit, repo),
                            float(raw.get("warn_margin", 0)), float(raw.get("hysteresis", 0)))
    return out


@dataclass
class DeviceState:
    health: str = "unknown"
    last_seen: float = 0.0
    levels: dict[str, int] = field(default_factory=dict)


class LiveTwin:
    """Anomaly checks and derived device state for a stream of samples."""

    def __init__(self, repo, actor: str = "agent:mf-ingest"):
        self.repo, self.actor = repo, actor
        self.limits = load_limits(repo)
        self.devices: dict[str, DeviceState] = {}
        self.staleness: dict[str, float] = {}
        self.changes: list[dict] = []  # state changes appended, for the caller to report
        from metaforge.sync.policy import effective

        policies = effective(repo)
        for node_id, health in repo.index.prop_of_each("DeviceInstance", "health").items():  # one query
            name = node_id.split(":", 1)[1]
            self.staleness[name] = float(policies[name]["policy"]["staleness_threshold_s"])
            self.devices[name] = DeviceState(health=health or "unknown")

    def observe(self, runs: list[tuple], now: float | None = None) -> None:
        """Runs of samples, (device, metric, [ts µs], [values], ...) each. Each metric's samples are
        walked in time order; the device's health follows the worst of its metrics at every sample,
        so each change is recorded at the time of the sample that made it."""
        import numpy as np

        now = time.time() if now is None else now
        steps: dict[str, list] = {}
        for run in runs:
            device, metric, ts, values = run[:4]
            state = self.devices.setdefault(device, DeviceState())
            state.last_seen = now
            found = steps.setdefault(device, [])
            limit = self.limits.get(metric)
            if limit is None or not len(values):
                if len(ts):
                    found.append((int(ts[0]), "", 0, None))  # a sample: at least nominal from here
                continue
            ts, values = np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64)
            if len(ts) > 1 and (ts[1:] < ts[:-1]).any():
                order = np.argsort(ts, kind="stable")
                ts, values = ts[order], values[order]
            finite = np.isfinite(values)
            if not finite.all():  # no reading: no level
                ts, values = ts[finite], values[finite]
            if not len(ts):
                continue
            found.append((int(ts[0]), "", 0, None))
            level = state.levels.get(metric, 0)
            for i, new in limit.steps(values, level):
                found.append((int(ts[i]), metric, new, float(values[i])))
        for device, found in steps.items():
            self._walk(device, sorted(found, key=lambda s: (s[0], not s[1])), now)  # a time's levels first

    def _walk(self, device: str, found: list, now: float) -> None:
        state = self.devices[device]
        for ts, metric, level, value in found:
            if metric:
                state.levels[metric] = level
            health = LEVELS[max(state.levels.values(), default=0)]
            self._set(device, health, now, ts, {"metric": metric, "value": value} if metric else None)

    def check_stale(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for device, state in self.devices.items():
            if state.last_seen and now - state.last_seen > self.staleness.get(device, 60.0) and state.health != "stale":
                self._set(device, "stale", now)

    def _set(self, device: str, health: str, now: float, at_us: int | None = None,
             trigger: dict | None = None) -> None:
        state = self.devices[device]
        if health == state.health:
            return
        before, state.health = state.health, health
        from datetime import datetime, timedelta, timezone

        from metaforge import events as ev
        from metaforge.thread.commands import Change
        from metaforge.thread.policy import Source

        at = datetime.fromtimestamp(now, timezone.utc) if at_us is None else \
            datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=at_us)  # exact to the µs
        at_iso = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        node = f"DeviceInstance:{device}"
        payload = {"from": before, "to": health, "metrics": {m: LEVELS[v] for m, v in state.levels.items() if v},
                   "at": at_iso}
        if trigger:
            payload["trigger"] = trigger
        updated = ev.Draft(ev.DEVICE_STATE_UPDATED, node, 1, payload)
        with self.repo.transaction(self.actor, Source.DEVICE_STATE) as tx:
            tx.change([Change("set", node, props={"health": health})], f"{device}: {before} → {health} at {at_iso}",
                      extra=[updated])
        self.changes.append({"device": device, "from": before, "to": health, "at": at_iso, **(
            {"metric": trigger["metric"], "value": trigger["value"]} if trigger else {})})
