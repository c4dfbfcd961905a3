"""`mf ingest PATH…` and `mf project`: files into the graph, the graph into files and a commit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, DryRunOpt, JsonOpt, MessageOpt, console, emit_json, progress_bar, say, warn

AdapterOpt = Annotated[Optional[str], typer.Option("--adapter", help="Only this adapter (kicad_sch, kicad_pcb, bom_csv, step, ...).")]


def register(app: typer.Typer, ingest_app: typer.Typer) -> None:
    if not any(c.name == "files" for c in ingest_app.registered_commands):  # a module-level group: once
        ingest_app.command("files")(ingest_files)
        ingest_app.info.cls = _options_first(ingest_app.info.cls)
    app.command("project")(project)


def _options_first(group):
    """`mf ingest --keep-going hw` as well as `mf ingest hw --keep-going`: an option before the
    paths belongs to `files` (the group has none of its own but --help)."""

    class OptionsBeforePaths(group):
        def parse_args(self, ctx, args):
            if (args and args[0].startswith("-") and args[0] not in self.get_help_option_names(ctx)
                    and not any(a in self.commands and a != "files" for a in args)):
                args = ["files", *args]
            return super().parse_args(ctx, args)

    return OptionsBeforePaths


def _broken_plugins() -> None:
    from metaforge.adapters.registry import BROKEN

    for name, why in BROKEN.items():
        warn(f"adapter plug-in '{name}' could not be loaded, its files are not read: {why}")


def ingest_files(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (KiCad, BOM CSV, STEP); `mf ingest PATH` is short for this.")],
    adapter: AdapterOpt = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Skip files an adapter refuses (named; exit 1) instead of stopping.")] = False,
    message: MessageOpt = None,
    actor: ActorOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Read design files into the graph as one batch (unchanged files are skipped)."""
    from metaforge.thread.artifacts import ingest

    ctx = context(actor)
    with progress_bar("reading files", enabled=not json_out) as tick:
        out = ingest(ctx.repo, [ctx.path(p) for p in paths], actor=ctx.actor, message=message, adapter=adapter,
                     keep_going=keep_going, dry_run=dry_run, progress=tick)
    out.pop("result", None)
    _broken_plugins()
    refused = [f for f in out["files"] if f["status"] == "refused"]
    if json_out:
        emit_json(out)
    else:
        for f in out["files"]:
            mark = {"read": "[green]✓[/]", "unchanged": "[dim]=[/]", "refused": "[red]✗[/]",
                    "proposed": "[yellow]…[/]"}[f["status"]]
            detail = (f["error"] if f.get("error") else f"{f['entities']} entities" if f["status"] == "read"
                      else f"waiting for approval in {f['proposal']}" if f["status"] == "proposed" else "unchanged")
            say(f"{mark} {f['path']}  [dim]{f['adapter']}[/]  {detail}")
            for note in f.get("notes", []):
                warn(note)
        if out.get("proposal"):
            say(f"{len(out['files'])} files, {out['changes']} changes: they need approval, proposed as "
                f"[bold]{out['proposal']}[/] (mf approve / mf reject); the files stay drifted until then")
        else:
            what = "would append" if dry_run else "appended"
            say(f"{len(out['files'])} files, {out['changes']} changes; {what} {out.get('appended', 0) or (out['changes'] if dry_run else 0)} events"
                + (f", version {out['version']}" if out.get("version") else ""))
        for w in out["warnings"]:
            warn(f"constraint broken by these files: {w} (see mf check)")
    if refused:
        raise typer.Exit(1)


def project(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Only these files or folders (default: every file the graph owns).")] = None,
    adapter: AdapterOpt = None,
    message: MessageOpt = None,
    actor: ActorOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Write the semantic state into its files, commit them, and link the version to the commit."""
    from metaforge.thread.artifacts import project as run

    ctx = context(actor)
    out = run(ctx.repo, [ctx.path(p) for p in paths] if paths else None, actor=ctx.actor, adapter=adapter,
              message=message, dry_run=dry_run)
    if json_out:
        emit_json(out)
        return
    for f in out["files"]:
        mark = "[green]✎[/]" if f["status"] == "projected" else "[dim]=[/]"
        say(f"{mark} {f['path']}  [dim]{f['adapter']}[/]  {f['status']}")
    if out["commit"]:
        console().print(f"semantic version {out['semantic_version']} → commit {out['commit'][:12]}")
    elif dry_run:
        say(f"would write {sum(f['status'] == 'projected' for f in out['files'])} files (dry run)")
    else:
        say(f"nothing to project: the files hold semantic version {out['semantic_version']}")
