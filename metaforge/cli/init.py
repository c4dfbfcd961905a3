"""`mf init`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.output import ActorOpt, JsonOpt, console, emit_json, say


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)


def init_command(
    path: Annotated[str, typer.Argument(help="Where: the top of a git repository (made if it is not one).")] = ".",
    template: Annotated[Optional[str], typer.Option("--template", "-t", help="Start from a template (see --list-templates).")] = None,
    list_templates: Annotated[bool, typer.Option("--list-templates", help="List the templates and exit.")] = False,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make .metaforge/ (event log, config, .gitignore) in a git repository."""
    from pathlib import Path

    from metaforge import templates
    from metaforge.cli import state
    from metaforge.repo import check_actor
    from metaforge.thread.setup import init

    if list_templates:
        found = {name: templates.describe(p) for name, p in templates.available().items()}
        if json_out:
            emit_json(found)
        else:
            for name, desc in found.items():
                console().print(f"{name}  [dim]{desc}[/]")
        return
    base = Path(state.cwd or ".")
    result = init(base / path, template, check_actor(actor) if actor else None)
    if json_out:
        emit_json(result.as_dict())
        return
    if not result.created:
        say(f"{result.root} is already an mf repository (.metaforge/ exists): nothing changed")
        return
    if result.git_initialized:
        say(f"initialized an empty git repository in {result.root}")
    say(f"[green]✓[/] made {result.root}/.metaforge")
    if result.template:
        say(f"  template {result.template}: {result.events} events, {len(result.files)} files"
            + (f" ({len(result.skipped)} existing files kept)" if result.skipped else ""))
    say("  next: mf mutate add TYPE:NAME key=value -m 'why' · mf status · mf query")
