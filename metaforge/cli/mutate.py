"""`mf mutate`: every change to the semantic state, through validation and the event log."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.output import ActorOpt, DryRunOpt, ExpectOpt, JsonOpt, MessageOpt, console, emit_json, say

app = typer.Typer(help="Change the twin: every change is validated, then appended to the event log.",
                  no_args_is_help=True, rich_markup_mode=None)

IdArg = Annotated[str, typer.Argument(help="Entity id, Type:name (e.g. BOMItem:C42).")]
PairsArg = Annotated[Optional[list[str]], typer.Argument(help="key=value (units as written: current=1.2A), or key:=JSON.")]


def parse_pairs(pairs: list[str] | None) -> dict:
    import json

    from metaforge.errors import BadInput

    props = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"'{pair}' is not key=value")
        if key.endswith(":"):
            key = key[:-1]
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise BadInput(f"'{pair}': not JSON after := ({exc})") from None
        props[key] = value
    return props


def _run(changes, *, message, dry_run, json_out, actor) -> None:
    from metaforge.cli.output import open_repo
    from metaforge.repo import check_actor, default_actor
    from metaforge.thread.commands import execute

    repo = open_repo()
    who = check_actor(actor) if actor else default_actor(repo.root)
    result = execute(repo, changes, actor=who, message=message, dry_run=dry_run)
    if json_out:
        emit_json(result.as_dict())
    else:
        render(result)
        render_verdicts(result.verdicts)
    if result.refused:  # only a dry run gets here: it shows what a real run would refuse
        raise typer.Exit(1)


def render(result) -> None:
    from collections import Counter

    from rich.table import Table

    drafts = result.drafts()
    if result.proposal:
        number = result.proposal.split(":", 1)[1]
        say(f"[yellow]needs approval[/]: proposed as {result.proposal} ({len(drafts)} event(s) waiting); "
            f"`mf approve {number}` or `mf reject {number} -m WHY`")
        return
    if not drafts:
        say("nothing to change: " + ", ".join(o.change.describe() for o in result.outcomes))
        return
    verb = "would append" if result.dry_run else "appended"
    first, n = result.first_seq, len(drafts)
    seqs = f"seq {first}" + (f"..{first + n - 1}" if n > 1 else "")
    say(f"[green]✓[/] {verb} {n} event{'s' * (n != 1)} ({seqs}) as {result.actor}")
    table = Table(box=None, pad_edge=False, show_header=False)
    for seq, d in enumerate(drafts[:20], start=first):
        table.add_row(str(seq), d.type, d.entity, f"v{d.version}", _summary({"payload": d.payload}))
    console().print(table)
    if n > 20:
        counts = Counter(d.type for d in drafts)
        say(f"… and {n - 20} more (" + ", ".join(f"{c} {t}" for t, c in counts.items()) + ")")


def render_verdicts(verdicts, show_passing: bool = False, to_stdout: bool = False) -> None:
    marks = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "invalid": "[red]![/]"}
    out = console().print if to_stdout else say
    for v in verdicts:
        if v.status == "pass" and not show_passing:
            continue
        mark = marks[v.status] if v.severity == "error" or v.status == "pass" else "[yellow]⚠[/]"
        out(f"{mark} {v.severity:<7} {escape(v.message)}", soft_wrap=True) if to_stdout else \
            out(f"{mark} {v.severity:<7} {escape(v.message)}")


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _summary(e: dict) -> str:
    from metaforge.cli.output import fmt_value

    p = e["payload"]
    if e.get("type") == "state.linked":
        return f"semantic version {p['semantic_version']} ↔ commit {p['git_commit'][:12]} ({len(p['artifacts'])} files)"
    if e.get("type") == "artifact.mapped":
        return f"{p['path']}: {len(p['mappings'])} entities, {p['how']} ({p['adapter']} {p['adapter_version']})"
    if e.get("type") == "drift.detected":
        return f"{p['path']}: {p['direction']}, {len(p['summary'])} item(s)"
    if e.get("type") == "drift.resolved":
        return f"{p['path']}: {p['how']}" + (f" (drift #{p['drift']})" if p.get("drift") else "")
    if "key" in p:
        return f"{p['key']} = {fmt_value(p['value'])}"
    if "rel" in p:
        return f"{p['rel']} → {p['to']}"
    if e.get("type", "").split(".")[0] in ("node", "property", "edge", ""):
        parts = [f"{k} = {fmt_value(v)}" for k, v in (p.get("properties") or p.get("set") or {}).items()]
        parts += [f"−{k}" for k in p.get("unset") or []]
        text = ", ".join(parts)
    else:  # proposals, merge decisions, later layers' events: their payload, briefly
        text = ", ".join(f"{k} = {fmt_value(v) if not isinstance(v, (list, dict)) else len(v)}" for k, v in p.items())
    return text if len(text) < 90 else text[:87] + "…"


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

    from metaforge.cli import state
    from metaforge.thread.changes_file import read_changes

    if file == "-":
        import sys
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".changes", delete=False) as tmp:
            tmp.write(sys.stdin.read())
        path, shown = Path(tmp.name), "<stdin>"
    else:
        path = Path(state.cwd or ".") / file
        shown = file
    try:
        changes, file_message = read_changes(path, shown)
    finally:
        if file == "-":
            path.unlink()
    _run(changes, message=message or file_message, dry_run=dry_run, json_out=json_out, actor=actor)
