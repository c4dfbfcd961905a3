"""The device registry: DeviceInstance entities INSTANCE_OF their TwinModel, with their sync policy.

Registering and retiring are graph changes through the ordinary command path (validated,
constraint-checked, versioned) plus the `device.provisioned` / `device.decommissioned` events
the live layer reacts to, in the same atomic batch.
"""

from __future__ import annotations

from metaforge import events as ev
from metaforge.errors import BadInput, Refused

POLICY_DEFAULTS = {"mode": "streaming", "sample_rate_hz": 10.0, "batch_interval_s": 1.0,
                   "staleness_threshold_s": 60.0, "retention_days": 90}


def register(repo, device_id: str, model: str, *, actor: str, firmware: str | None = None,
             location: str | None = None, policy: dict | None = None, message: str | None = None):
    from metaforge.thread.commands import Change, commit, plan, refuse_if_blocked
    from metaforge.batch import no_gc

    name = device_id.removeprefix("DeviceInstance:")
    node = f"DeviceInstance:{name}"
    model_id = model if model.startswith("TwinModel:") else f"TwinModel:{model}"
    policy = check_policy(policy or {})
    props = {"serial": name, "status": "active"}
    if firmware:
        props["firmware_version"] = firmware
    if location:
        props["location"] = location
    props["state"] = {"sync_policy": {**POLICY_DEFAULTS, **(policy or {})}, "health": "unknown"}
    changes = [Change("add", node, props=props), Change("link", node, rel="INSTANCE_OF", dst=model_id)]
    with repo.log.lock(), no_gc():
        planned = plan(repo, changes, actor=actor, message=message or f"provisioned {name}")
        refuse_if_blocked(planned.result)
        drafts = planned.result.drafts() + [ev.Draft("device.provisioned", node, 1, {"model": model_id}, message)]
        commit(repo, planned, drafts)
    return planned.result


MODES = ("event-driven", "periodic", "streaming")


def check_policy(policy: dict) -> dict:
    """Sync policy settings as given (`--policy k=v`), checked and typed."""
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
        if out[key] < 0:
            raise BadInput(f"sync policy {key}: must not be negative")
    return out


def devices(repo) -> list[dict]:
    from metaforge.thread.queries import query

    return query(repo.index, "DeviceInstance")


def show(repo, device_id: str) -> dict:
    from metaforge.thread.queries import show as show_entity

    name = device_id.removeprefix("DeviceInstance:")
    return show_entity(repo.index, f"DeviceInstance:{name}")


def require(repo, device: str) -> str:
    """The device name, refusing one the registry does not know or has retired."""
    name = device.removeprefix("DeviceInstance:")
    row = repo.index.conn.execute("SELECT deleted, props ->> '$.status' FROM nodes WHERE id = ?",
                                  (f"DeviceInstance:{name}",)).fetchone()
    if row is None or row[0]:
        raise BadInput(f"unknown device {name}", f"register it: mf device register {name} --model MODEL")
    if row[1] == "decommissioned":
        raise Refused(f"device {name} is decommissioned")
    return name
