"""`mf sim`: the simulation twin. Thin: parse, one library call, render (rich, --json, --csv, --plot)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, JsonOpt, console, emit_json, say, warn

app = typer.Typer(help="The simulation twin: run behavioral models, what-if scenarios, sweeps, calibration, "
                       "prediction vs actual.", no_args_is_help=True, rich_markup_mode=None)

SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="name=value: a scenario input (ambient_temp_c=50), "
                                                     "member.parameter (battery.capacity=3000mAh) or member.state.")]
DurationOpt = Annotated[str, typer.Option("--duration", help="How long to simulate: 90s, 10min, 1h.")]
RateOpt = Annotated[str, typer.Option("--rate", help="Output rate of the curves, e.g. 10Hz.")]
ModelsOpt = Annotated[Optional[str], typer.Option("--models", help="Only these members of the composition, comma-separated.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="The curves (or the table) as CSV on stdout.")]
PlotOpt = Annotated[Optional[str], typer.Option("--plot", help="Write the curves to FILE.svg (or FILE.png with matplotlib).")]
CurveOpt = Annotated[Optional[list[str]], typer.Option("--curve", help="A curve to chart (member.port); repeatable.")]


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="sim")


@app.command("run")
def run(
    models: Annotated[list[str], typer.Argument(help="Models (BehavioralModel names or .yaml paths), or one composition.")],
    device: Annotated[Optional[str], typer.Option("--device", help="Start from this device's latest telemetry.")] = None,
    duration: Annotated[Optional[str], typer.Option("--duration", help="90s, 10min, 1h (default: the --input profile's length).")] = None,
    inputs: Annotated[Optional[list[str]], typer.Option("--input", help="name=value or name=profile.csv (a time column and the input's).")] = None,
    sets: SetOpt = None,
    rate: RateOpt = "10Hz",
    step: Annotated[Optional[str], typer.Option("--step", help="The engine's step (default: a tenth of the fastest time constant).")] = None,
    curve: CurveOpt = None,
    csv_out: CsvOpt = False,
    plot: PlotOpt = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run models over time: their curves, where each output ends, inputs outside the valid range."""
    from metaforge.sim.runs import run_models
    from metaforge.sim.scenario import parse_duration, parse_rate

    ctx = context(actor)
    out = run_models(ctx.repo, models, actor=ctx.actor, inputs=inputs, sets=sets, device=device,
                     duration=parse_duration(duration) if duration else None, rate_hz=parse_rate(rate),
                     step=parse_duration(step) if step else None, base=ctx.base)
    _show(out, json_out, csv_out, plot, curve)


@app.command("what-if")
def what_if(
    id: Annotated[Optional[str], typer.Argument(help="A device serial (omit with --model for the whole fleet).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Every device of this TwinModel, at once.")] = None,
    sets: SetOpt = None,
    duration: DurationOpt = "1h",
    models: ModelsOpt = None,
    compare: Annotated[bool, typer.Option("--compare", help="Baseline (no overrides) and scenario side by side.")] = False,
    rate: RateOpt = "10Hz",
    curve: CurveOpt = None,
    csv_out: CsvOpt = False,
    plot: PlotOpt = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A scenario from the device's state: flight time, time to throttle, thermal margin, the curves."""
    from metaforge.sim.scenario import parse_duration, parse_rate
    from metaforge.sim.whatif import what_if as run_what_if

    ctx = context(actor)
    out = run_what_if(ctx.repo, actor=ctx.actor, device=id, twin_model=model, sets=sets,
                      duration=parse_duration(duration), rate_hz=parse_rate(rate),
                      models=_split(models), compare=compare, curves=model is None)
    if model is not None:
        _show_table(out, json_out, csv_out, fleet=True)
    else:
        _show(out, json_out, csv_out, plot, curve)


@app.command("sweep")
def sweep(
    id: Annotated[str, typer.Argument(help="A device serial.")],
    sets: SetOpt = None,
    duration: DurationOpt = "1h",
    models: ModelsOpt = None,
    csv_out: CsvOpt = False,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A table over a range: --set ambient_temp_c=0..50:5 (several ranges: every combination)."""
    from metaforge.sim.scenario import parse_duration
    from metaforge.sim.whatif import sweep as run_sweep

    ctx = context(actor)
    out = run_sweep(ctx.repo, id, actor=ctx.actor, sets=sets, duration=parse_duration(duration),
                    models=_split(models))
    _show_table(out, json_out, csv_out, fleet=False)


@app.command("calibrate")
def calibrate(
    model: Annotated[str, typer.Argument(help="The BehavioralModel to fit.")],
    data: Annotated[Optional[str], typer.Option("--data", help="Test data CSV: a time column, the model's inputs and outputs.")] = None,
    execution: Annotated[Optional[str], typer.Option("--execution", help="TestExecution:ID the data comes from (linked CALIBRATED_BY).")] = None,
    fit: Annotated[Optional[str], typer.Option("--fit", help="Parameters to fit, comma-separated (default: the definition's calibrate.parameters).")] = None,
    validate: Annotated[Optional[str], typer.Option("--validate", help="Another profile the fit does not see: its error is reported too.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Fit and report; land nothing.")] = False,
    structure: Annotated[Optional[str], typer.Option("--structure", help="Fit this one of the definition's calibrate.structures (default: the one with the least held-out error).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Land the fit even with a parameter on a bound, one not identified (relative standard error > 50 %) or an RMSE past the definition's max_rmse.")] = False,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fit a model's parameters to test data and land them as a mutation (calibration_source set).

    Exit 1, landing nothing, when the fit is not trustworthy (see --force); the report says which
    test data would identify what this data could not."""
    from pathlib import Path

    from metaforge.sim.calibrate import calibrate as run_calibrate

    ctx = context(actor)
    result, landed, run_id = run_calibrate(ctx.repo, model, actor=ctx.actor, data=Path(data) if data else None,
                                           execution=execution, names=_split(fit),
                                           validate=Path(validate) if validate else None, dry_run=dry_run,
                                           base=ctx.base, force=force, structure=structure)
    if json_out:
        emit_json({**result.as_dict(), "run": run_id, "landed": landed.as_dict() if landed else None})
    else:
        _show_calibration(result, landed, run_id)
    if result.refusals and not force:
        raise typer.Exit(1)


def _show_calibration(result, landed, run_id) -> None:
    from rich.table import Table

    c = console()
    c.print(f"[bold]calibration[/] {result.model} on {result.samples} samples "
            f"({result.evaluations} model runs, {result.seconds:.1f} s)")
    table = Table(box=None, pad_edge=False, header_style="bold")
    if result.structures:
        c.print("structures (RMSE on the fitted part / on the held-out part the fit never saw):")
        for name, s in result.structures.items():
            mark = "→" if name == result.structure else " "
            c.print(f"  {mark} {name:<20} " + ", ".join(
                f"{o} {s['fit_rmse'][o]:.4g} / {s['held_out_rmse'][o]:.4g} {result.units.get(o, '')}"
                for o in s["fit_rmse"]), markup=False, soft_wrap=True)
    for col in ("parameter", "start", "fitted", "± std. error", "95 % interval", "bounds"):
        table.add_column(col, justify="left" if col == "parameter" else "right")
    for k, v in result.values.items():
        se = result.stderr[k]
        rse = result.relative_stderr(k)
        shown = f"{se:.2g} ({rse * 100:.2g} %)" if rse is not None else f"{se:.2g}"
        lo, hi = result.bounds.get(k, (float("nan"), float("nan")))
        flag = " [red]on bound[/]" if k in result.on_bound else ""
        table.add_row(k, f"{result.start[k]:.5g}", f"{v:.5g}", shown if rse is None or rse <= 0.5 else f"[red]{shown}[/]",
                      f"{v - 1.96 * se:.4g} … {v + 1.96 * se:.4g}", f"{lo:g} … {hi:g}{flag}")
    c.print(table)
    for a, b, r in result.correlated[:8]:
        c.print(f"correlated: {a} and {b} (r = {r:+.3f}): the data moves them together", markup=False)
    if len(result.correlated) > 8:
        c.print(f"… and {len(result.correlated) - 8} more correlated pairs (--json lists them)")
    for k, why in result.not_identified.items():
        c.print(f"not identified: {k}: {why}", markup=False, soft_wrap=True)
    for o, e in result.rmse.items():
        unit = result.units.get(o, "")
        line = f"fit error (RMSE) {o}: {e * 1000:.1f} m{unit}" if unit == "V" else f"fit error (RMSE) {o}: {e:.4g} {unit}"
        if o in result.validation_rmse:
            v = result.validation_rmse[o]
            line += f"; on the unseen profile: {v * 1000:.1f} m{unit}" if unit == "V" else f"; unseen: {v:.4g} {unit}"
        c.print(line)
    if landed:
        say(f"[green]✓[/] landed on BehavioralModel:{result.model} (calibration_source set), recorded as {run_id}")
    elif result.refusals:
        for why in result.refusals:
            warn(f"refused: {why}")
        warn("nothing landed: give the test data named above, or --force to land it anyway")
    else:
        say("dry run: nothing landed")


@app.command("compare")
def compare(
    id: Annotated[str, typer.Argument(help="A device serial.")],
    since: Annotated[str, typer.Option("--since", help="ISO time, epoch, or an age like 1h.")] = "1h",
    until: Annotated[Optional[str], typer.Option("--until", help="ISO time, epoch, or an age.")] = None,
    plot: PlotOpt = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Prediction vs actual telemetry; exit 1 when an output diverges past its model's threshold."""
    import time

    from metaforge.sim.compare import compare as run_compare
    from metaforge.sync.ingest import parse_time

    ctx = context(actor)
    now = int(time.time() * 1e6)
    since_us = parse_time(since, now)
    out = run_compare(ctx.repo, id, actor=ctx.actor, since_us=since_us, until_us=parse_time(until, now))
    if plot:
        _plot_compare(out, plot)
    if json_out:
        emit_json(out.as_dict())
    else:
        c = console()
        c.print(f"[bold]prediction vs actual[/] {out.device} · {out.model} · {_fmt(out.duration, 's')} of telemetry "
                f"(simulated in {out.sim_seconds:.3f} s)", soft_wrap=True)
        for name, m in out.metrics.items():
            unit = {"degC": "K"}.get(m["unit"], m["unit"])
            q = lambda v: "—" if v is None else (f"{v * 1000:.3g} m{unit}" if unit == "V" and abs(v) < 1 else f"{v:.3g} {unit}")
            verdict = "[red]diverged[/]" if m["diverged"] else "[green]ok[/]"
            c.print(f"{verdict} {name} vs {m['metric']}: {m['n']} samples, RMSE {q(m['rmse'])}, MAE {q(m['mae'])}, "
                    f"largest {q(m['max_abs'])}, bias {q(m['bias'])} (threshold {q(m['threshold'])})", soft_wrap=True)
        if out.diverged:
            warn(f"appended simulation.divergence_detected on DeviceInstance:{out.device} "
                 f"({', '.join(out.diverged)}): maintenance or a CAPA")
        say(f"recorded as {out.run_id}")
    if out.diverged:
        raise typer.Exit(1)


@app.command("models")
def models_list(json_out: JsonOpt = False) -> None:
    """The behavioral models of the twin and whether each definition loads."""
    from metaforge.sim.catalog import Catalog

    found = Catalog(context().repo).models()
    if json_out:
        emit_json(found)
    else:
        for m in found:
            mark = "[green]✓[/]" if m["ok"] else "[red]✗[/]"
            console().print(f"{mark} {m['name']:<24} {m['model_type'] or '':<22} v{m['version']}  "
                            f"{m['definition'] or '(no definition)'}", soft_wrap=True)
            if not m["ok"]:
                console().print(f"    {m['error']}", markup=False, soft_wrap=True)
    if any(not m["ok"] for m in found):
        raise typer.Exit(1)


@app.command("register")
def register_models(
    files: Annotated[list[str], typer.Argument(help="Model definition files (YAML).")],
    message: Annotated[Optional[str], typer.Option("--message", "-m", help="Why.")] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Land definition files as BehavioralModel entities (refusing a malformed one, naming the field)."""
    from metaforge.cli.render import render_result
    from metaforge.sim.register import register

    ctx = context(actor)
    result = register(ctx.repo, [ctx.path(f) for f in files], actor=ctx.actor, message=message)
    emit_json(result.as_dict()) if json_out else render_result(result)


# ---- rendering -------------------------------------------------------------------------------

def _split(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _show(out, json_out: bool, csv_out: bool, plot: str | None, curve: list[str] | None) -> None:
    if plot:
        _plot(out, plot, curve)
    if json_out:
        import orjson
        import sys

        if out.curve_file is not None:   # a long run: its curves stream from disk
            from metaforge.sim.curvefile import dump_json

            dump_json(out.as_dict(curves=False), out.curve_file, out.curve_units, sys.stdout.buffer)
            return
        data = out.as_dict()
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2) + b"\n")
        return
    if csv_out:
        _csv_curves(out)
        return
    _summary(out)
    _chart(out, curve)
    say(f"recorded as {out.run_id}" + (f"; plot written to {plot}" if plot else ""))


def _fmt(value, unit: str, name: str = "") -> str:
    import math

    if value is None or isinstance(value, float) and math.isnan(value):
        return "—" if unit != "s" else "never"
    if unit == "s":
        return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"
    shown = {"degC": "°C", "1": ""}.get(unit, unit)
    return f"{value:.3g} {shown}".strip() if abs(value) < 1000 else f"{value:,.0f} {shown}".strip()


def _summary(out) -> None:
    from metaforge.cli.render import escape

    c = console()
    kind = {"what-if": "what-if", "run": "run", "sweep": "sweep"}[out.kind]
    c.print(f"[bold]{kind}[/] {escape(out.subject or out.labels[0])} · {escape(out.model)} · "
            f"{_fmt(out.duration, 's')} at {out.rate_hz:g} Hz (step {out.step:.3g} s × {out.steps}, "
            f"simulated in {out.sim_seconds:.3f} s)", soft_wrap=True)
    if out.overrides:
        c.print("overrides: " + escape(", ".join(f"{k}={v}" for k, v in out.overrides.items())), soft_wrap=True)
    if out.start:
        c.print("start: " + escape(", ".join(f"{s['target']} ← {s['metric']}" for s in out.start)), soft_wrap=True)
    elif out.kind != "run":
        c.print("start: no telemetry for this device; the models' own start state", style="dim")
    rows = []   # plain aligned columns: rich's Table costs more start-up than the whole simulation
    for name, values in out.results.items():
        unit = out.units.get(name, "")
        cells = []
        for i, v in enumerate(values):
            text = _fmt(v, unit, name)
            where = out.margins_at.get(name)
            if where is not None and v is not None:
                text += f" ({where[i].split('.')[-1].removesuffix('_temperature')})"
            if name.startswith("thermal_margin") and v is not None and v == v and v < 0:
                text = f"[red]{text}[/]"
            cells.append(text)
        rows.append((name.replace("_", " "), cells))
    first = max([len(r[0]) for r in rows] + [6])
    widths = [max([len(_plain_text(r[1][i])) for r in rows] + [len(label)]) for i, label in enumerate(out.labels)]
    if len(out.labels) > 1:
        c.print("[bold]" + "result".ljust(first) + "".join("  " + escape(label).rjust(w) for label, w in zip(out.labels, widths)) + "[/]")
    for name, cells in rows:
        c.print(name.ljust(first) + "".join("  " + " " * (w - len(_plain_text(x))) + x for x, w in zip(cells, widths)),
                soft_wrap=True)
    for r in out.ranges:
        lo, hi = r["range"]
        unit = {"degC": "°C"}.get(r["unit"], r["unit"])
        warn(f"{r['input']} of {r['model']} went to {r['min']:.4g}..{r['max']:.4g} {unit}, outside its valid range "
             f"{lo:g}..{hi:g} from {_fmt(r['first_outside_s'], 's')}" + (f" ({r['column']})" if r.get("column") else "")
             + ": the result there is extrapolated")


def _plain_text(markup: str) -> str:
    import re

    return re.sub(r"\[/?[a-z ]*\]", "", markup)


def _default_curves(out, curves) -> list[str]:
    """The voltage and the temperature that limit the result (those with a rating or a cut-off),
    else one voltage and one temperature: what a what-if is usually about."""
    if not curves:
        return []
    wanted = []
    for key in sorted(curves, key=lambda k: not out.limits.get(k)):
        unit = out.curve_units.get(key, "")
        if unit in ("V", "degC") and key not in wanted and "ambient" not in key and "cell_temperature" not in key:
            wanted.append(key)
    by_unit = {}
    for key in wanted:
        by_unit.setdefault(out.curve_units[key], key)
    return list(by_unit.values())[:2] or list(curves)[:1]


def _chart(out, curve: list[str] | None) -> None:
    from rich.text import Text

    from metaforge.sim.plot import text_chart

    t_view, curves = out.view(points=2000)
    keys = curve or _default_curves(out, curves)
    palette = ["cyan", "magenta", "green", "yellow"]
    c = console()
    width = max(30, min(72, c.width - 14))
    for key in keys:
        if key not in curves:
            warn(f"no curve {key} (curves: {', '.join(curves)})")
            continue
        rows, lo, hi = text_chart(t_view, curves[key], width=width, height=6)
        unit = {"degC": "°C"}.get(out.curve_units.get(key, ""), out.curve_units.get(key, ""))
        legend = "  ".join(f"[{palette[i % 4]}]━ {label}[/]" for i, label in enumerate(out.labels)) if len(out.labels) > 1 else ""
        c.print(f"[bold]{key}[/] [{unit}]  {legend}")
        for i, row in enumerate(rows):
            label = f"{hi:8.4g} ┤" if i == 0 else f"{lo:8.4g} ┤" if i == len(rows) - 1 else "         │"
            line = Text(label)
            for ch, owner in row:
                line.append(ch, style=palette[owner % 4] if owner >= 0 else None)
            c.print(line)
        c.print(" " * 9 + "└" + "─" * width)
        c.print(" " * 10 + "0" + _fmt(t_view[-1], "s").rjust(width - 1))


def _csv_curves(out) -> None:
    import sys

    import numpy as np

    if out.curve_file is not None:   # a long run: row chunks from disk
        cf = out.curve_file
        sys.stdout.write(",".join(["t_s", *cf.keys]) + "\n")
        for t, part in cf.chunks():
            np.savetxt(sys.stdout, np.column_stack([t] + [part[k] for k in cf.keys]), delimiter=",", fmt="%.6g")
        return
    keys = list(out.curves)
    header = ["t_s"] + [k if len(out.labels) == 1 else f"{k}[{label}]" for k in keys for label in out.labels]
    cols = [np.asarray(out.t)] + [np.asarray(arr) for k in keys for arr in out.curves[k]]
    data = np.column_stack(cols)
    sys.stdout.write(",".join(header) + "\n")
    np.savetxt(sys.stdout, data, delimiter=",", fmt="%.6g")


def _plot(out, path: str, curve: list[str] | None) -> None:
    from metaforge.errors import BadInput
    from metaforge.sim.plot import png, svg

    t, curves = out.view(points=4000)
    if not curves:
        raise BadInput("--plot needs curves: a single device or run (a fleet or sweep gives a table)")
    keys = curve or _limiting_curves(out, curves)
    panels = [{"name": k, "unit": {"degC": "°C"}.get(out.curve_units.get(k, ""), out.curve_units.get(k, "")),
               "series": list(zip(out.labels, curves[k])), "limits": out.limits.get(k, [])} for k in keys]
    title = f"{out.model}: " + (", ".join(f"{k}={v}" for k, v in out.overrides.items()) or "as is")
    target = context().path(path)
    if target.suffix.lower() == ".svg":
        target.write_text(svg(t, panels, title))
    elif target.suffix.lower() == ".png":
        png(str(target), t, panels, title)
    else:
        raise BadInput(f"--plot {path}: write .svg or .png")


def _limiting_curves(out, curves) -> list[str]:
    """What limits the result first (the curves that meet a rating or a threshold: temperatures
    against their ratings, the voltage against its cut-off), then the load, at most six."""
    limited = [k for k in curves if out.limits.get(k)]
    rest = [k for k in curves if k not in limited and out.curve_units.get(k) in ("A", "W")
            and "ambient" not in k and not k.endswith(("_power", "_heat"))]
    return (limited + rest)[:6] or list(curves)[:4]


def _plot_compare(out, path: str) -> None:
    from metaforge.errors import BadInput
    from metaforge.sim.plot import svg

    target = context().path(path)
    if target.suffix.lower() != ".svg":
        raise BadInput("--plot for compare writes .svg")
    import numpy as np

    lo = min(s["t"][0] for s in out.series.values())
    hi = max(s["t"][-1] for s in out.series.values())
    grid = np.linspace(lo, hi, 4000)
    panels = [{"name": name, "unit": {"degC": "°C"}.get(out.metrics[name]["unit"], out.metrics[name]["unit"]),
               "series": [("actual", np.interp(grid, s["t"], s["actual"])),
                          ("predicted", np.interp(grid, s["t"], s["predicted"]))]}
              for name, s in out.series.items()]
    target.write_text(svg(grid - grid[0], panels, f"{out.device}: prediction vs actual"))


def _show_table(out, json_out: bool, csv_out: bool, fleet: bool) -> None:
    import math

    if json_out:
        emit_json(out.as_dict(curves=False))
        return
    names = list(out.results)
    if csv_out:
        import sys

        first = "device" if fleet else "point"
        sys.stdout.write(",".join([first, *out.swept, *names]) + "\n")
        for i, label in enumerate(out.labels):
            cells = [label] if fleet else [label.replace(",", ";")]
            cells += [f"{out.swept[k][i]:g}" for k in out.swept]
            cells += ["" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"
                      for v in (out.results[n][i] for n in names)]
            sys.stdout.write(",".join(cells) + "\n")
        return
    from rich.table import Table

    c = console()
    what = f"{len(out.labels)} devices" if fleet else f"{len(out.labels)} points"
    c.print(f"[bold]{'fleet what-if' if fleet else 'sweep'}[/] {out.model} · {what} · {_fmt(out.duration, 's')} "
            f"(step {out.step:.3g} s × {out.steps}, simulated in {out.sim_seconds:.3f} s)", soft_wrap=True)
    if out.overrides:
        c.print("overrides: " + ", ".join(f"{k}={v}" for k, v in out.overrides.items()), soft_wrap=True, markup=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("device" if fleet else ", ".join(out.swept) or "point")
    for n in names:
        table.add_column(n.replace("_", " "), justify="right")
    rows = list(range(len(out.labels)))
    if fleet and len(rows) > 20:   # the 20 shortest flights; --csv or --json for all of them
        key = names[0]
        rows = sorted(rows, key=lambda i: (out.results[key][i] is None, out.results[key][i] or 0))[:20]
    for i in rows:
        label = out.labels[i] if fleet else ", ".join(f"{out.swept[k][i]:g}" for k in out.swept)
        table.add_row(label, *[_fmt(out.results[n][i], out.units.get(n, "")) for n in names])
    c.print(table)
    if fleet:
        stats = out.summary()
        c.print("[bold]fleet[/]  " + "  ".join(
            f"{n.replace('_', ' ')}: {_fmt(s['min'], out.units.get(n, ''))} … {_fmt(s['median'], out.units.get(n, ''))} … "
            f"{_fmt(s['max'], out.units.get(n, ''))} ({s['n']})" for n, s in stats.items() if s["n"]), soft_wrap=True)
        if len(out.labels) > 20:
            say(f"showing the 20 devices with the shortest {names[0].replace('_', ' ')}; --csv or --json for all")
    for r in out.ranges:
        warn(f"{r['input']} outside its valid range {r['range'][0]:g}..{r['range'][1]:g} on {r['devices_outside']} "
             f"{'device' if fleet else 'point'}(s) (reached {r['min']:.4g}..{r['max']:.4g})")
    say(f"recorded as {out.run_id}")
