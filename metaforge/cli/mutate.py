"""`mf mutate`: every change to the semantic state, through validation and the event log."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, DryRunOpt, ExpectOpt, JsonOpt, MessageOpt, emit_json, parse_pairs

app = typer.Typer(help="Change the twin: every change is validated, then appended to the event log.",
                  no_args_is_help=True, rich_markup_mode=None)

IdArg = Annotated[str, typer.Argument(help="Entity id, Type:name (e.g. BOMItem:C42).")]
PairsArg = Annotated[Optional[list[str]], typer.Argument(help="key=value (units as written: current=1.2A), or key:=JSON.")]


def _run(changes, *, message, dry_run, json_out, actor) -> None:
    from metaforge.cli.render import render_result, render_verdicts
    from metaforge.thread.commands import execute

    ctx = context(actor)
    repo, who = ctx.repo, ctx.actor
    result = execute(repo, changes, actor=who, message=message, dry_run=dry_run)
    if json_out:
        emit_json(result.as_dict())
    else:
        render_result(result)
        render_verdicts(result.verdicts)
    if result.refused:  # only a dry run gets here: it shows what a real run would refuse
        raise typer.Exit(1)


@app.command("add")
def add(id: IdArg, pairs: PairsArg = None, message: MessageOpt = None, expect_version: ExpectOpt = None,
        dry_run: DryRunOpt = False, actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Create an entity with its properties."""
    from metaforge.thread.commands import Change

    _run([Change("add", id, props=parse_pairs(pairs), expect_version=expect_version)],
         message=message, dry_run=dry_run, json_out=json_out, actor=actor)


@app.command("set")
def set_(id: IdArg, pairs: Annotated[list[str], typer.Argument(help="key=value ... (key:=JSON for typed values).")],
         message: MessageOpt = None, expect_version: ExpectOpt = None, dry_run: DryRunOpt = False,
         actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Set properties of an entity (one event, one new version)."""
    from metaforge.thread.commands import Change

    _run([Change("set", id, props=parse_pairs(pairs), expect_version=expect_version)],
         message=message, dry_run=dry_run, json_out=json_out, actor=actor)


@app.command("unset")
def unset(id: IdArg, keys: Annotated[list[str], typer.Argument(help="Property names to clear.")],
          message: MessageOpt = None, expect_version: ExpectOpt = None, dry_run: DryRunOpt = False,
          actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Clear properties of an entity."""
    from metaforge.thread.commands import Change

    _run([Change("unset", id, keys=keys, expect_version=expect_version)],
         message=message, dry_run=dry_run, json_out=json_out, actor=actor)


@app.command("remove")
def remove(id: IdArg, message: MessageOpt = None, expect_version: ExpectOpt = None, dry_run: DryRunOpt = False,
           actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Remove an entity and the relationships that touch it."""
    from metaforge.thread.commands import Change

    _run([Change("remove", id, expect_version=expect_version)],
         message=message, dry_run=dry_run, json_out=json_out, actor=actor)


SrcArg = Annotated[str, typer.Argument(help="Source entity id.")]
RelArg = Annotated[str, typer.Argument(help="Relation (HAS_ELEMENT, USES_COMPONENT, SATISFIES, ...).")]
DstArg = Annotated[str, typer.Argument(help="Target entity id.")]


@app.command("link")
def link(src: SrcArg, rel: RelArg, dst: DstArg, message: MessageOpt = None, expect_version: ExpectOpt = None,
         dry_run: DryRunOpt = False, actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Add a typed relationship SRC -REL-> DST."""
    from metaforge.thread.commands import Change

    _run([Change("link", src, rel=rel.upper(), dst=dst, expect_version=expect_version)],
         message=message, dry_run=dry_run, json_out=json_out, actor=actor)


@app.command("unlink")
def unlink(src: SrcArg, rel: RelArg, dst: DstArg, message: MessageOpt = None, expect_version: ExpectOpt = None,
           dry_run: DryRunOpt = False, actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Remove the relationship SRC -REL-> DST."""
    from metaforge.thread.commands import Change

    _run([Change("unlink", src, rel=rel.upper(), dst=dst, expect_version=expect_version)],
         message=message, dry_run=dry_run, json_out=json_out, actor=actor)


@app.command("apply")
def apply(file: Annotated[str, typer.Argument(help="A YAML or JSON list of changes ('-' for stdin as JSON/YAML).")],
          message: MessageOpt = None, dry_run: DryRunOpt = False, actor: ActorOpt = None,
          json_out: JsonOpt = False) -> None:
    """Apply a file of changes atomically: all of them land, or none."""
    from pathlib import Path

    from metaforge.thread.changes_file import read_changes

    if file == "-":
        import sys
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".changes", delete=False) as tmp:
            from metaforge.limits import MAX_APPLY_FILE_BYTES

            tmp.write(sys.stdin.read(MAX_APPLY_FILE_BYTES + 1))  # past the limit: refused as a file would be
        path, shown = Path(tmp.name), "<stdin>"
    else:
        path = context().path(file)
        shown = file
    try:
        changes, file_message = read_changes(path, shown)
    finally:
        if file == "-":
            path.unlink()
    _run(changes, message=message or file_message, dry_run=dry_run, json_out=json_out, actor=actor)
