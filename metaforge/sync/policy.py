"""Sync policies and telemetry sources, per device or per fleet group.

A device's effective policy is the defaults, overridden by its FleetGroup's `sync_policy`
(through MEMBER_OF), overridden by the device's own `state.sync_policy`; each setting knows
where it came from. Telemetry sources (metric, unit, rate) are the group's, then the device's
(a device's entry for a metric replaces the group's).
"""

from __future__ import annotations

from metaforge.errors import BadInput

POLICY_DEFAULTS = {"mode": "streaming", "sample_rate_hz": 10.0, "batch_interval_s": 1.0,
                   "staleness_threshold_s": 60.0, "retention_days": 90.0}
MODES = ("event-driven", "periodic", "streaming")


def check_policy(policy: dict) -> dict:
    """Sync policy settings as given (`k=v`), checked and typed."""
    out = {}
    for key, value in policy.items():
        if key not in POLICY_DEFAULTS:
            raise BadInput(f"unknown sync policy setting '{key}'", "settings: " + ", ".join(POLICY_DEFAULTS))
        if key == "mode":
            if value not in MODES:
                raise BadInput(f"sync policy mode '{value}'", "one of " + ", ".join(MODES))
            out[key] = value
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise BadInput(f"sync policy {key}: '{value}' is not a number") from None
        if out[key] < 0 or out[key] != out[key]:
            raise BadInput(f"sync policy {key}: must be a number not below 0")
    return out


def parse_source(text: str) -> dict:
    """`battery_status.voltage_v:V:10` → {"metric", "unit", "rate_hz"} (unit and rate optional)."""
    metric, _, rest = text.partition(":")
    unit, _, rate = rest.partition(":")
    if not metric.strip():
        raise BadInput(f"telemetry source '{text}' has no metric", "METRIC[:UNIT[:RATE_HZ]], e.g. battery.voltage:V:10")
    source = {"metric": metric.strip(), "unit": unit.strip() or None, "rate_hz": None}
    if rate.strip():
        try:
            source["rate_hz"] = float(rate)
        except ValueError:
            raise BadInput(f"telemetry source '{text}': rate '{rate}' is not a number of Hz") from None
        if source["rate_hz"] <= 0:
            raise BadInput(f"telemetry source '{text}': the rate must be above 0 Hz")
    return source


def merge_sources(*layers: list | None) -> list[dict]:
    merged: dict[str, dict] = {}
    for layer in layers:
        for source in layer or []:
            merged[source["metric"]] = source
    return [merged[m] for m in sorted(merged)]


def effective(repo) -> dict[str, dict]:
    """Every device → {"policy", "origin" (setting → default|group|device), "group", "sources"}."""
    out: dict[str, dict] = {}
    for layers in repo.index.device_sync_layers():  # one query over the fleet, not one per device
        policy, origin = dict(POLICY_DEFAULTS), dict.fromkeys(POLICY_DEFAULTS, "default")
        for layer, label in ((layers.group_policy, layers.group or "group"), (layers.policy, "device")):
            for key, value in (layer or {}).items():
                if key in policy:
                    policy[key], origin[key] = value, label
        out[layers.device.split(":", 1)[1]] = {"policy": policy, "origin": origin, "group": layers.group,
                                               "sources": merge_sources(layers.group_sources, layers.sources)}
    return out
