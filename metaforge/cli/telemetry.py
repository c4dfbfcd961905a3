"""`mf device`, `mf ingest telemetry`, `mf telemetry`: the operational twin."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from metaforge.cli.context import context
from metaforge.cli.output import (ActorOpt, JsonOpt, MessageOpt, console, emit_json, fmt_value, parse_pairs,
                                   progress_bar, say, warn)

device_app = typer.Typer(help="The device registry: built units, INSTANCE_OF their twin model.", no_args_is_help=True,
                         rich_markup_mode=None)
class _IngestGroup(TyperGroup):
    """`mf ingest PATH…` means `mf ingest files PATH…`: design files are the common case."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["files", *args]
        return super().resolve_command(ctx, args)


ingest_app = typer.Typer(cls=_IngestGroup, no_args_is_help=True, rich_markup_mode=None,
                         help="Take things in: design files (mf ingest PATH…), telemetry files, MQTT.")
telemetry_app = typer.Typer(help="Read the time-series store.", no_args_is_help=True, rich_markup_mode=None)


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")
    app.add_typer(ingest_app, name="ingest")
    app.add_typer(telemetry_app, name="telemetry")


@device_app.command("register")
def device_register(
    id: Annotated[str, typer.Argument(help="Serial, e.g. FC-SN-20260301-001.")],
    model: Annotated[str, typer.Option("--model", help="Its TwinModel, e.g. DroneFlightController-v2.1.")],
    firmware: Annotated[Optional[str], typer.Option("--firmware")] = None,
    location: Annotated[Optional[str], typer.Option("--location")] = None,
    group: Annotated[Optional[str], typer.Option("--group", help="Fleet group whose sync policy and sources it takes (made if new).")] = None,
    source: Annotated[Optional[list[str]], typer.Option("--source", help="Telemetry source METRIC[:UNIT[:RATE_HZ]], repeatable.")] = None,
    policy: Annotated[Optional[list[str]], typer.Option("--policy", help="Sync policy key=value (mode, sample_rate_hz, batch_interval_s, staleness_threshold_s, retention_days).")] = None,
    message: MessageOpt = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a built device: a DeviceInstance INSTANCE_OF its model, with its sync policy."""
    from metaforge.cli.render import render_result
    from metaforge.thread.devices import register as run

    ctx = context(actor)
    result = run(ctx.repo, id, model, actor=ctx.actor, firmware=firmware, location=location,
                 policy=parse_pairs(policy), group=group, sources=source, message=message)
    emit_json(result.as_dict()) if json_out else render_result(result)


@device_app.command("policy")
def device_policy(
    settings: Annotated[Optional[list[str]], typer.Argument(help="[DEVICE] key=value …: mode, sample_rate_hz, batch_interval_s, staleness_threshold_s, retention_days.")],
    group: Annotated[Optional[str], typer.Option("--group", help="Set the policy of this fleet group instead of one device.")] = None,
    unset: Annotated[Optional[list[str]], typer.Option("--unset", help="Drop a setting here: it comes from the group or the default again.")] = None,
    message: MessageOpt = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change the sync policy of a device, or of a fleet group (`--group`)."""
    from metaforge.cli.render import render_result
    from metaforge.thread.devices import set_policy

    settings = settings or []
    device = None if group or not settings or "=" in settings[0] else settings[0]
    pairs = settings[1:] if device else settings
    ctx = context(actor)
    result = set_policy(ctx.repo, parse_pairs(pairs), device=device, group=group, unset=unset,
                        actor=ctx.actor, message=message)
    emit_json(result.as_dict()) if json_out else render_result(result)


@device_app.command("source")
def device_source(
    target: Annotated[Optional[str], typer.Argument(help="Device serial (or use --group).")] = None,
    add: Annotated[Optional[list[str]], typer.Option("--add", help="METRIC[:UNIT[:RATE_HZ]], repeatable.")] = None,
    remove: Annotated[Optional[list[str]], typer.Option("--remove", help="A metric no longer reported.")] = None,
    group: Annotated[Optional[str], typer.Option("--group", help="The sources of a fleet group.")] = None,
    message: MessageOpt = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Declare the telemetry a device (or a fleet group) reports: metric, unit, rate."""
    from metaforge.cli.render import render_result
    from metaforge.thread.devices import set_sources

    ctx = context(actor)
    result = set_sources(ctx.repo, add or [], remove or [], device=target, group=group, actor=ctx.actor,
                         message=message)
    emit_json(result.as_dict()) if json_out else render_result(result)


@device_app.command("retire")
def device_retire(
    id: Annotated[str, typer.Argument(help="Device serial.")],
    message: MessageOpt = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Decommission a device (`device.decommissioned`): its data stays, new samples are refused."""
    from metaforge.cli.render import render_result
    from metaforge.thread.devices import retire

    ctx = context(actor)
    result = retire(ctx.repo, id, actor=ctx.actor, message=message)
    emit_json(result.as_dict()) if json_out else render_result(result)


@device_app.command("list")
def device_list(json_out: JsonOpt = False) -> None:
    """The registered devices."""
    from metaforge.thread.devices import devices

    found = devices(context().repo)
    if json_out:
        emit_json(found)
        return
    for d in found:
        p = d["properties"]
        console().print(f"{d['name']:<24} {p.get('status', ''):<10} fw {p.get('firmware_version', '-'):<10} "
                        f"{p.get('location', '')}", soft_wrap=True)


@device_app.command("show")
def device_show(id: Annotated[str, typer.Argument(help="Device serial.")], json_out: JsonOpt = False) -> None:
    """A device: properties, effective sync policy, its sources and what its telemetry holds."""
    from metaforge.thread.devices import describe

    d = describe(context().repo, id)
    if json_out:
        emit_json(d)
        return
    c = console()
    c.print(f"[bold]{d['id']}[/]  version {d['version']}" + (f"  group {d['group']}" if d.get("group") else ""))
    for k, v in sorted(d["properties"].items()):
        if k not in ("state", "telemetry_sources"):
            c.print(f"  {k:<18} {fmt_value(v)}", soft_wrap=True)
    c.print("  sync policy: " + ", ".join(f"{k}={v} ({d['origin'][k]})" for k, v in d["policy"].items()),
            soft_wrap=True)
    for s in d["sources"]:
        rate = f"{s['rate_hz']:g} Hz" if s.get("rate_hz") else "-"
        c.print(f"  source {s['metric']:<28} {s.get('unit') or '-':<6} {rate:<8} {s['status']}, {s['samples']} samples")
    declared = {s["metric"] for s in d["sources"]}
    for t in d["telemetry"]:
        if t["metric"] not in declared:
            c.print(f"  telemetry {t['metric']}: {t['samples']} samples")


@device_app.command("simulate")
def device_simulate(
    ids: Annotated[list[str], typer.Argument(help="Devices to simulate (with --count: one prefix).")],
    broker: Annotated[str, typer.Option("--broker", help="mqtt://HOST:PORT (mqtts:// for TLS).")] = "mqtt://127.0.0.1:1883",
    rate: Annotated[str, typer.Option("--rate", help="Samples per second of each metric, e.g. 10Hz, 1Hz.")] = "1Hz",
    duration: Annotated[Optional[str], typer.Option("--duration", help="Simulated time, e.g. 60s, 10min (default: until Ctrl-C).")] = None,
    fault: Annotated[Optional[list[str]], typer.Option("--fault", help="NAME@TIME[-END][:DEVICE]: overheat, sag or dropout; repeatable.")] = None,
    count: Annotated[Optional[int], typer.Option("--count", help="Simulate N devices named ID-00001 … ID-N.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Their TwinModel, when the devices are not registered.")] = None,
    batch: Annotated[float, typer.Option("--batch", help="Seconds of samples per message (0: one message per sample).")] = 1.0,
    speed: Annotated[float, typer.Option("--speed", help="Run the models this many times faster than real time.")] = 1.0,
    bundle: Annotated[int, typer.Option("--bundle", help="Devices per message (a fleet of thousands at QoS 1 needs ~100).")] = 1,
    qos: Annotated[int, typer.Option("--qos")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the devices' spread and sensor noise.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Virtual devices: telemetry from the twin's behavioral models, with sensor noise and faults, to MQTT."""
    import signal

    from metaforge.sim.scenario import parse_duration, parse_rate
    from metaforge.sync.simulate import MAX_QOS1_MESSAGES, run

    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))

    def started(names, twin, unknown):
        say(f"simulating {len(names)} device{'s' * (len(names) != 1)} of {twin} → {broker} at {rate}"
            + (f" for {duration}" if duration else " until Ctrl-C") + (f", {speed:g}× real time" if speed != 1 else ""))
        if unknown:
            warn(f"{len(unknown)} of them are not registered ({unknown[0]}…): mf ingest mqtt keeps only "
                 f"registered devices' samples")
        per_second = len(names) / bundle * speed / max(batch, 1 / parse_rate(rate))
        if qos > 0 and per_second > MAX_QOS1_MESSAGES:
            warn(f"{per_second:,.0f} QoS {qos} messages a second: one paho client sends about 6,000; "
                 f"it will fall behind (--bundle 100 or --qos 0)")

    stats = run(context().repo, ids, broker=broker, rate_hz=parse_rate(rate),
                duration=parse_duration(duration) if duration else None, faults=fault or [], count=count,
                model=model, batch_s=batch, speed=speed, bundle=bundle, qos=qos, seed=seed, stop=lambda: bool(stopping),
                started=started).as_dict()
    if json_out:
        emit_json(stats)
    else:
        say(f"[green]✓[/] {stats['devices']} device{'s' * (stats['devices'] != 1)}, {stats['messages']} messages, "
            f"{stats['samples']} samples "
            f"over {stats['simulated_s']:g} s simulated in {stats['seconds']:g} s"
            + (f" (at worst {stats['max_lag_s']:g} s behind)" if stats["max_lag_s"] > 0.5 else ""))


@ingest_app.command("telemetry")
def ingest_telemetry(
    files: Annotated[list[str], typer.Argument(help="CSV, InfluxDB line protocol (.lp) or PX4 ULog (.ulg) files.")],
    device: Annotated[Optional[str], typer.Option("--device", help="The device, when the file does not name it.")] = None,
    precision: Annotated[str, typer.Option("--precision", help="Line protocol timestamps: ns, us, ms or s.")] = "ns",
    execution: Annotated[Optional[str], typer.Option("--execution", help="Link to a TestExecution (sets its data_path).")] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest telemetry files (bench runs, flight logs) into the time-series store."""
    from metaforge.sync.ingest import ingest_files

    ctx = context(actor)
    repo = ctx.repo
    paths = [ctx.path(f) for f in files]
    with progress_bar("ingesting") as bar:
        out = ingest_files(repo, paths, device, precision, progress=bar)
    if execution:
        from metaforge.thread.commands import Change, execute

        execute(repo, [Change("set", execution, props={"data_path": ", ".join(files), "measurements": {
            "samples": out["samples"], "metrics": out["metrics"]}})],
            actor=ctx.actor, message="telemetry ingested")
    if json_out:
        emit_json(out)
    else:
        rate = out["samples"] / out["seconds"] if out["seconds"] else 0
        say(f"[green]✓[/] {out['samples']} samples ({out['new']} new, {out['duplicates']} already stored) of "
            f"{out['metrics']} metrics in {out['seconds']} s ({rate:,.0f}/s); {out['rejected']} rejected "
            f"(`mf telemetry dead-letters`)")
        if out["no_reading"]:
            say(f"  {out['no_reading']} non-finite values (NaN, inf: no reading) not stored, counted")
        for change in out["state_changes"]:
            say(f"  {change['device']}: {change['from']} → {change['to']} at {change['at']}")
    for line in out["unreadable"]:
        say(f"[red]✗[/] {line}")
    if out["unreadable"]:
        raise typer.Exit(2)
    if out["rejected"]:
        raise typer.Exit(1)


@telemetry_app.command("query")
def telemetry_query(
    device: Annotated[str, typer.Argument(help="Device serial.")],
    metric: Annotated[str, typer.Argument(help="Metric, e.g. battery_status.voltage_v.")],
    since: Annotated[Optional[str], typer.Option("--since", help="ISO time, epoch, or an age like 2h.")] = None,
    until: Annotated[Optional[str], typer.Option("--until")] = None,
    every: Annotated[Optional[str], typer.Option("--every", help="Bucket width, e.g. 1m, 10s, 1h.")] = None,
    agg: Annotated[str, typer.Option("--agg", help="mean, min, max, last, count or sum.")] = "mean",
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Samples of one metric of one device over a time range, raw or aggregated per bucket."""
    import time
    from datetime import datetime, timezone

    from metaforge.errors import BadInput
    from metaforge.sync.ingest import parse_span, parse_time, store

    if agg not in ("mean", "min", "max", "last", "count", "sum"):
        raise BadInput(f"--agg {agg}: expected mean, min, max, last, count or sum")
    now = int(time.time() * 1e6)
    ts = store(context().repo)
    try:
        rows = ts.query(device, metric, parse_time(since, now), parse_time(until, now), parse_span(every), agg)
    finally:
        ts.close()
    iso = lambda us: datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")
    if json_out:
        emit_json([{"ts": iso(t), "value": v} for t, v in rows])
    elif csv_out:
        import sys

        sys.stdout.write("ts,value\n" + "".join(f"{iso(t)},{v}\n" for t, v in rows))
    else:
        for t, v in rows:
            console().print(f"{iso(t)}  {v:.6g}")
        say(f"{len(rows)} row(s)")


@telemetry_app.command("dead-letters")
def dead_letters(limit: Annotated[int, typer.Option("--limit", "-n")] = 50, json_out: JsonOpt = False) -> None:
    """What ingest could not take, and why (newest first)."""
    from metaforge.sync.ingest import store

    ts = store(context().repo)
    try:
        rows = ts.dead_letters(limit)
        gaps = ts.no_readings()
    finally:
        ts.close()
    if json_out:
        emit_json(rows)
        return
    for r in rows:
        console().print(f"#{r['id']} {r['source']}: {r['reason']}", soft_wrap=True, markup=False)
    if gaps:
        say(f"no reading (non-finite values left out): " + ", ".join(
            f"{g['device']} {g['metric']} {g['values']}" for g in gaps[:20]) + (" …" if len(gaps) > 20 else ""))


@ingest_app.command("mqtt")
def ingest_mqtt(
    broker: Annotated[str, typer.Option("--broker", help="mqtt://HOST:PORT (mqtts:// for TLS).")] = "mqtt://127.0.0.1:1883",
    topic: Annotated[str, typer.Option("--topic", help="Topic filter; devices/<id>/... names the device.")] = "devices/+/telemetry",
    qos: Annotated[int, typer.Option("--qos")] = 1,
    group: Annotated[Optional[str], typer.Option("--group", help="Share the fleet with other workers ($share/GROUP/...).")] = None,
    client_id: Annotated[Optional[str], typer.Option("--client-id", help="Fixed id of the persistent session (default: this worker's own, mf-HOST-REPO-GROUP-SLOT, the same after a restart).")] = None,
    username: Annotated[Optional[str], typer.Option("--username")] = None,
    password: Annotated[Optional[str], typer.Option("--password", envvar="MF_MQTT_PASSWORD")] = None,
    ca: Annotated[Optional[str], typer.Option("--ca", help="CA certificate file (turns TLS on).")] = None,
    max_messages: Annotated[Optional[int], typer.Option("--max-messages", help="Stop after this many messages.")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Take telemetry from an MQTT 5 broker until Ctrl-C (which flushes what it holds first)."""
    import signal

    from metaforge.sync.mqtt import MqttIngest, hand_over_sooner

    worker = MqttIngest(context().repo, broker, topic, qos, group, client_id, username, password, ca,
                        on_warning=warn)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop())
    say(f"ingesting {topic} from {broker} as {worker.client_id}" + (f" in group {group}" if group else ""))
    hand_over_sooner()
    stats = worker.run(max_messages=max_messages, duration=duration).as_dict()
    if json_out:
        emit_json(stats)
    else:
        say(f"[green]✓[/] {stats['messages']} messages, {stats['samples']} samples ({stats['new']} new), "
            f"{stats['rejected']} rejected, {stats['no_reading']} no reading, {len(stats['state_changes'])} "
            f"state changes" + (f", {stats['broker_dropped']} dropped by the broker" if stats["broker_dropped"] else ""))


@telemetry_app.command("prune")
def telemetry_prune(json_out: JsonOpt = False) -> None:
    """Apply each device's retention_days: drop older samples (mf ingest mqtt does it hourly)."""
    from metaforge.sync.ingest import apply_retention

    out = apply_retention(context().repo)
    if json_out:
        emit_json(out)
    else:
        say(f"[green]✓[/] dropped {sum(out.values())} samples past retention ({len(out)} devices)")
