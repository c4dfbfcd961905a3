"""`mf diff`: what changed in the twin between two commits, for a person, a tool or a pull request."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import JsonOpt, console, emit_json, fmt_value


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)


def diff(
    revs: Annotated[Optional[list[str]], typer.Argument(help="REV_A [REV_B], or A..B, or A...B (as git means them).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (for a person) or markdown (a pull request comment).")] = "text",
    json_out: JsonOpt = False,
) -> None:
    """The semantic difference of the twin between two commits (default: merge base with main vs the working tree).

    Exit code 1 when there is a difference, like `git diff --exit-code`.
    """
    from metaforge.errors import BadInput
    from metaforge.thread.diff import compute, resolve, to_markdown

    if fmt not in ("text", "markdown"):
        raise BadInput(f"--format {fmt}: expected text or markdown")
    repo = context().repo
    a, b = resolve(repo, revs or [])
    d = compute(repo, a, b)
    if json_out:
        emit_json(d)
    elif fmt == "markdown":
        console().file.write(to_markdown(d))
    else:
        _render(d)
    if d["differs"]:
        raise typer.Exit(1)


def _render(d: dict) -> None:
    c = console()
    c.print(f"[bold]{d['a']['label']}[/] (semantic version {d['a']['semantic_version']}) → "
            f"[bold]{d['b']['label']}[/] (semantic version {d['b']['semantic_version']})")
    if not d["differs"]:
        c.print("no semantic difference")
        return
    for v in d["constraints"]:
        before, after = v["before"], v["after"]
        name = v["constraint"].split(":", 1)[1]
        c.print(f"[yellow]constraint[/] {name}: {_verdict(before)} → {_verdict(after)}", soft_wrap=True)
    for e in d["entities"]["changed"]:
        for k, ch in e["properties"].items():
            c.print(f"[cyan]~[/] {e['id']}.{k}: {_value(ch['before'])} → {_value(ch['after'])}", soft_wrap=True)
    for e in d["entities"]["added"]:
        c.print(f"[green]+[/] {e['id']}", soft_wrap=True)
    for e in d["entities"]["removed"]:
        c.print(f"[red]-[/] {e['id']}", soft_wrap=True)
    for s, r, t in d["edges"]["added"]:
        c.print(f"[green]+[/] {s} {r} {t}", soft_wrap=True)
    for s, r, t in d["edges"]["removed"]:
        c.print(f"[red]-[/] {s} {r} {t}", soft_wrap=True)
    added = d["events"]["added"]
    if added:
        c.print(f"[dim]{len(added)} event(s):[/]")
        for e in added[:30]:
            why = f" — {e['msg']}" if e.get("msg") else ""
            c.print(f"  [dim]#{e['seq']} {e['actor']}[/] {e['type']} {e['entity']} v{e['version']}{why}", soft_wrap=True)
        if len(added) > 30:
            c.print(f"  [dim]… and {len(added) - 30} more[/]")


def _value(v) -> str:
    return "—" if v is None else fmt_value(v)


def _verdict(v) -> str:
    if v is None:
        return "—"
    text = v["message"].split(": ", 1)[1] if ": " in v["message"] else v["message"]
    margin = f", margin {v['margin'] * 100:.0f} %" if v.get("margin") is not None else ""
    return f"{v['status']} ({text}{margin})"
