"""`mf drift [PATHS]` (one-shot, for hooks and CI), `mf drift watch`, `reconcile`, `resolve`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, JsonOpt, MessageOpt, console, emit_json, say, warn


class _DriftGroup(TyperGroup):
    """`mf drift [PATHS…]` means `mf drift check [PATHS…]`: the one-shot check is the common case."""

    def parse_args(self, ctx, args):
        if ctx.resilient_parsing:  # shell completion: offer the subcommands
            return super().parse_args(ctx, args)
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["check", *args]
        return super().parse_args(ctx, args)


drift_app = typer.Typer(cls=_DriftGroup, rich_markup_mode=None,
                        help="Where files and graph disagree: check (mf drift [PATHS]), watch, reconcile, resolve.")

PathsArg = Annotated[Optional[list[Path]], typer.Argument(help="Files or folders (default: every file the graph maps).")]


def register(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift")


def _rels(ctx, paths: list[Path] | None) -> list[str] | None:
    from metaforge.thread.drift import rels_of

    return rels_of(ctx.repo, [ctx.path(p) for p in paths]) if paths else None


@drift_app.command("check")
def check(
    paths: PathsArg = None,
    staged: Annotated[bool, typer.Option("--staged", help="Only the files staged for commit (what the pre-commit hook checks).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """One-shot: exit 0 when files and graph agree, 1 with the diff when they do not (`mf drift` is short for this)."""
    from metaforge.cli.render import render_drift_report
    from metaforge.thread import drift

    ctx = context()
    repo = ctx.repo
    rels = _rels(ctx, paths)
    if staged:
        from metaforge.thread.hooks import staged_files

        mapped = {a.path for a in repo.index.artifacts()}
        rels = [p for p in staged_files(repo) if p in mapped and (rels is None or _under(p, rels))]
    report = drift.detect(repo, rels) if rels != [] else drift.Report()
    ids = {o["fingerprint"]: o["seq"] for o in drift.open_drifts(repo).values()}
    if json_out:
        emit_json(report.as_dict(ids))
    else:
        render_drift_report(report, ids)
    if report.drifts or (report.between_files and not staged):  # --staged: what the pre-commit hook blocks on
        raise typer.Exit(1)


def _under(path: str, rels: list[str]) -> bool:
    return any(not r or path == r or path.startswith(r + "/") for r in rels)


@drift_app.command("reconcile")
def reconcile(paths: PathsArg = None, actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Make the open drifts in the log exactly the real ones (after a checkout, or changes nothing watched); exit 1 if any is open."""
    from metaforge.thread.drift_watch import reconcile as run

    ctx = context(actor)
    out = run(ctx.repo, ctx.actor, _rels(ctx, paths))
    if json_out:
        emit_json(out)
    else:
        _show_pass(out, quiet=False)
    if out["open"]:
        raise typer.Exit(1)


def _show_pass(out: dict, quiet: bool) -> None:
    from metaforge.cli.render import DRIFT_DIRECTION, escape

    c = console()
    for d in out["detected"]:
        c.print(f"[red]drift[/] #{d['id']} [bold]{escape(d['path'])}[/]: {DRIFT_DIRECTION[d['direction']]}", soft_wrap=True)
        for line in d["summary"]:
            c.print(f"  {escape(line)}", soft_wrap=True)
    for r in out["resolved"]:
        c.print(f"[green]resolved[/] #{r['drift']} [bold]{escape(r['path'])}[/] ({r['how']})", soft_wrap=True)
    if not quiet:
        say(f"{out['checked']} files checked; {len(out['detected'])} drift(s) recorded, {len(out['resolved'])} resolved, "
            f"{len(out['open'])} open" + "".join(f"\n  #{o['id']} {escape(o['path'])}: {DRIFT_DIRECTION[o['direction']]}"
                                                 for o in out["open"]))


@drift_app.command("watch")
def watch(
    accept: Annotated[bool, typer.Option("--accept", help="Take a person's saved edits into the graph as they are saved (Assistant Mode: an agent's are checked first).")] = False,
    debounce: Annotated[int, typer.Option("--debounce", help="Quiet time after a change before it is read, in ms.", min=10)] = 300,
    reconcile_every: Annotated[float, typer.Option("--reconcile-every", help="Seconds between full reconciliations (catches what no watch saw).", min=1)] = 30.0,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Follow the working tree: record drift.detected on each save that disagrees, drift.resolved when it is gone; Ctrl-C stops."""
    from metaforge.thread.drift_watch import watch as run

    ctx = context(actor)
    repo, who = ctx.repo, ctx.actor
    say(f"watching {repo.root} (debounce {debounce} ms, full reconcile every {reconcile_every:g} s"
        + (", accepting saved edits" if accept else "") + "); Ctrl-C stops")
    run(repo, actor=who, accept=accept, debounce_ms=debounce, reconcile_every=reconcile_every,
        report=_json_line if json_out else _show_event)
    say("stopped watching")


def _json_line(kind: str, data: dict) -> None:
    sys.stdout.write(json.dumps({"event": kind, **data}, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _show_event(kind: str, data: dict) -> None:
    if kind in ("started", "reconciled"):
        _show_pass(data, quiet=kind == "reconciled")
    elif kind == "accepted":
        _show_resolved(data)
    elif kind == "refused":
        warn(f"drift #{data['id']} {data['path']} stays open: {data['message']}" + (f" ({data['hint']})" if data.get("hint") else ""))
    else:
        warn(f"{data['message']}" + (f" ({data['hint']})" if data.get("hint") else ""))
    sys.stdout.flush()


@drift_app.command("resolve")
def resolve(
    target: Annotated[str, typer.Argument(help="A drift's id (#812, from mf drift / reconcile / log) or a file path.")],
    accept_file: Annotated[bool, typer.Option("--accept-file", help="The file wins: its values become a mutation by its author.")] = False,
    reproject: Annotated[bool, typer.Option("--reproject", help="The graph wins: its values are written over the file.")] = False,
    actor: ActorOpt = None,
    message: MessageOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resolve a file's drift: --accept-file (a person's edit lands, broken constraints warned; an agent's is checked first) or --reproject."""
    from metaforge.errors import BadInput
    from metaforge.thread import drift_resolve as drift

    if accept_file == reproject:
        raise BadInput("say how: --accept-file (the file wins) or --reproject (the graph wins)")
    ctx = context(actor)
    rel = drift.target_path(ctx.repo, target, ctx.cwd)
    out = drift.resolve(ctx.repo, rel, how="accept-file" if accept_file else "reproject",
                        actor=ctx.given_actor, message=message)
    if json_out:
        emit_json(out)
    else:
        _show_resolved(out)


def _show_resolved(out: dict) -> None:
    from metaforge.cli.render import escape

    c = console()
    if out["how"] is None:
        c.print(f"[green]✓[/] {escape(out['message'])}" + (" (its open drift is closed)" if out["resolved"] else ""))
        return
    if out["how"] == "accept-file":
        c.print(f"[green]✓[/] {escape(out['path'])}: accepted into the graph by {out['actor']} "
                f"({out['changes']} change{'' if out['changes'] == 1 else 's'}, semantic version {out['version']})", soft_wrap=True)
        for w in out["warnings"]:
            warn(f"[bold red]constraint broken by this edit:[/] {escape(w)} — it stays visible in `mf check` until fixed")
        return
    where = f"committed {out['commit'][:12]}" if out.get("commit") else out.get("note") or "restored"
    c.print(f"[green]✓[/] {escape(out['path'])}: the graph's values written over it ({escape(where)})", soft_wrap=True)
