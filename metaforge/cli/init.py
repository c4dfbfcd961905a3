"""`mf init`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, JsonOpt, console, emit_json, say


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)
    app.add_typer(template_app, name="template")


def init_command(
    path: Annotated[str, typer.Argument(help="Where: the top of a git repository (made if it is not one).")] = ".",
    template: Annotated[Optional[str], typer.Option("--template", "-t", help="Start from a template (see --list-templates).")] = None,
    list_templates: Annotated[bool, typer.Option("--list-templates", help="List the templates and exit.")] = False,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make .metaforge/ (event log, config, .gitignore) in a git repository."""
    from metaforge import templates
    from metaforge.thread.setup import init

    if list_templates:
        found = {name: templates.describe(p) for name, p in templates.available().items()}
        if json_out:
            emit_json(found)
        else:
            for name, desc in found.items():
                console().print(f"{name}  [dim]{desc}[/]")
        return
    ctx = context(actor)
    result = init(ctx.path(path), template, ctx.given_actor)
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


template_app = typer.Typer(help="Templates: starting points for `mf init --template`.", no_args_is_help=True,
                           rich_markup_mode=None)


@template_app.command("save")
def template_save(
    name: Annotated[str, typer.Argument(help="Name of the new template.")],
    to: Annotated[Optional[str], typer.Option("--to", help="Folder to save it in (default: ~/.config/metaforge/templates).")] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="One line saying what it is.")] = "",
    force: Annotated[bool, typer.Option("--force", help="Replace a template of that name.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Save this repository's twin (entities, relationships, types, approval rules, model files) as a template."""
    from pathlib import Path

    from metaforge.thread.template_save import save

    out = save(context().repo, name, Path(to) if to else None, description, force)
    if json_out:
        emit_json(out)
    else:
        say(f"[green]✓[/] saved template {name} in {out['path']}: {out['entities']} entities, "
            f"{out['relationships']} relationships, {len(out['files'])} files; use `mf init DIR --template {name}`")


@template_app.command("list")
def template_list(json_out: JsonOpt = False) -> None:
    """List the templates (yours and the built-in ones)."""
    init_command(list_templates=True, json_out=json_out)
