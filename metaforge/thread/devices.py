"""The device registry: DeviceInstance entities INSTANCE_OF their TwinModel, with their sync policy.

Registering and retiring are graph changes through the ordinary command path (validated,
constraint-checked, versioned) plus the `device.provisioned` / `device.decommissioned` events
the live layer reacts to, in the same atomic batch.
"""

from __future__ import annotations

from metaforge import events as ev
from metaforge.errors import BadInput, NotFound, Refused
from metaforge.sync.policy import POLICY_DEFAULTS, check_policy, merge_sources, parse_source

def register(repo, device_id: str, model: str, *, actor: str, firmware: str | None = None,
             location: str | None = None, policy: dict | None = None, group: str | None = None,
             sources: list[str] | None = None, message: str | None = None):
    from metaforge.thread.commands import Change

    name = device_id.removeprefix("DeviceInstance:")
    node = f"DeviceInstance:{name}"
    model_id = model if model.startswith("TwinModel:") else f"TwinModel:{model}"
    props = {"serial": name, "status": "active"}
    if firmware:
        props["firmware_version"] = firmware
    if location:
        props["location"] = location
    if sources:
        props["telemetry_sources"] = merge_sources([parse_source(s) for s in sources])
    # only what is set here: the rest comes from the fleet group, then the defaults
    props["state"] = {"sync_policy": check_policy(policy or {}), "health": "unknown"}
    changes = [Change("add", node, props=props), Change("link", node, rel="INSTANCE_OF", dst=model_id)]
    if group:
        changes += _join(repo, name, group)
    return _apply(repo, changes, [(ev.DEVICE_PROVISIONED, node, {"model": model_id})], actor,
                  message or f"provisioned {name}")


def _join(repo, name: str, group: str) -> list:
    from metaforge.thread.commands import Change

    group_id = f"FleetGroup:{group.removeprefix('FleetGroup:')}"
    changes = [] if repo.index.exists(group_id) else [Change("add", group_id, props={"sync_policy": {}})]
    return changes + [Change("link", f"DeviceInstance:{name}", rel="MEMBER_OF", dst=group_id)]


def _apply(repo, changes: list, extra: list[tuple[str, str, dict]], actor: str, message: str):
    """Graph changes and device events in one atomic batch, through the ordinary command path."""
    from metaforge.thread.policy import Source

    with repo.transaction(actor, Source.CLI) as tx:
        return tx.change(changes, message, extra=[ev.Draft(t, node, 1, data, message) for t, node, data in extra])


def _target(repo, device: str | None, group: str | None) -> tuple[str, dict]:
    """The node a policy or source change goes to (a device, or a fleet group) and its properties."""
    if (device is None) == (group is None):
        raise BadInput("name a device or --group, not both")
    if device is not None:
        node = f"DeviceInstance:{require(repo, device)}"
    else:
        node = f"FleetGroup:{group.removeprefix('FleetGroup:')}"
    props = repo.index.props(node)
    if props is None:
        raise BadInput(f"unknown fleet group {group}", "a group is made by `mf device register ID --group NAME`")
    return node, props


def set_policy(repo, settings: dict, *, device: str | None = None, group: str | None = None,
               unset: list[str] | None = None, actor: str, message: str | None = None):
    """Change the sync policy of one device or of a whole fleet group."""
    from metaforge.thread.commands import Change

    node, props = _target(repo, device, group)
    settings = check_policy(settings)
    for key in unset or []:
        if key not in POLICY_DEFAULTS:
            raise BadInput(f"unknown sync policy setting '{key}'", "settings: " + ", ".join(POLICY_DEFAULTS))
    if node.startswith("DeviceInstance:"):
        state = dict(props.get("state") or {})
        policy = {k: v for k, v in {**(state.get("sync_policy") or {}), **settings}.items() if k not in (unset or [])}
        change = Change("set", node, props={"state": {**state, "sync_policy": policy}})
    else:
        policy = {k: v for k, v in {**(props.get("sync_policy") or {}), **settings}.items() if k not in (unset or [])}
        change = Change("set", node, props={"sync_policy": policy})
    return _apply(repo, [change], [(ev.DEVICE_POLICY_CHANGED, node, {"sync_policy": policy})], actor,
                  message or f"sync policy of {node.split(':', 1)[1]}")


def set_sources(repo, add: list[str], remove: list[str], *, device: str | None = None,
                group: str | None = None, actor: str, message: str | None = None):
    """Declare (or drop) telemetry sources — metric, unit, rate — of a device or a fleet group."""
    from metaforge.thread.commands import Change

    node, props = _target(repo, device, group)
    current = {s["metric"]: s for s in props.get("telemetry_sources") or []}
    for metric in remove:
        if metric not in current:
            raise BadInput(f"{node} has no telemetry source '{metric}'",
                           "its sources: " + (", ".join(sorted(current)) or "none"))
        del current[metric]
    sources = merge_sources(list(current.values()), [parse_source(s) for s in add])
    return _apply(repo, [Change("set", node, props={"telemetry_sources": sources})], [], actor,
                  message or f"telemetry sources of {node.split(':', 1)[1]}")


def retire(repo, device: str, *, actor: str, message: str | None = None):
    """Decommission a device: its telemetry stays, new samples from it are refused."""
    from metaforge.thread.commands import Change

    name = require(repo, device)
    node = f"DeviceInstance:{name}"
    return _apply(repo, [Change("set", node, props={"status": "decommissioned"})],
                  [(ev.DEVICE_DECOMMISSIONED, node, {})], actor, message or f"decommissioned {name}")


def devices(repo) -> list[dict]:
    from metaforge.thread.queries import query

    return query(repo.index, "DeviceInstance")


def show(repo, device_id: str) -> dict:
    from metaforge.thread.queries import show as show_entity

    from metaforge.sync.policy import effective

    name = device_id.removeprefix("DeviceInstance:")
    if ":" in name:  # another type's id: not a device (an unknown one is 404 below)
        raise BadInput(f"{device_id} is not a device id", "a serial, or DeviceInstance:SERIAL")
    node = show_entity(repo.index, f"DeviceInstance:{name}")
    node.update(effective(repo).get(name, {}))
    return node


def describe(repo, device_id: str, now_us: int | None = None) -> dict:
    """A device as `mf device show` tells it: properties, effective policy, what its telemetry holds,
    and each declared source's status (reporting, silent past the staleness threshold, never)."""
    import time

    d = show(repo, device_id)
    ts = repo.telemetry()
    try:
        held = {m: (n, last) for m, n, _, last in ts.metrics_of(d["name"])}
    finally:
        ts.close()
    d["telemetry"] = [{"metric": m, "samples": n, "last_ts": last} for m, (n, last) in sorted(held.items())]
    stale_after = float(d["policy"]["staleness_threshold_s"]) * 1e6
    now = time.time() * 1e6 if now_us is None else now_us
    for source in d["sources"]:  # a declared source that has gone quiet is worth a look
        n, last = held.get(source["metric"], (0, None))
        source["samples"] = n
        source["status"] = "never" if last is None else "silent" if now - last > stale_after else "reporting"
    return d


def require(repo, device: str) -> str:
    """The device name, refusing one the registry does not know or has retired."""
    name = device.removeprefix("DeviceInstance:")
    status = repo.index.device_status(f"DeviceInstance:{name}")
    if status is None:
        raise NotFound(f"unknown device {name}", f"register it: mf device register {name} --model MODEL")
    if status == "decommissioned":
        raise Refused(f"device {name} is decommissioned")
    return name
