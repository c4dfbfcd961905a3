"""Queries: `mf show`, `mf query`, `mf trace`, `mf log`, `mf status` (answered from the index)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import JsonOpt, console, emit_json, fmt_value, say


def register(app: typer.Typer) -> None:
    for name, fn in (("show", show), ("query", query), ("trace", trace), ("log", log), ("status", status),
                     ("types", types), ("check", check)):
        app.command(name)(fn)


def show(id: Annotated[str, typer.Argument(help="Entity id, Type:name.")], json_out: JsonOpt = False) -> None:
    """Show an entity: properties, version, who made it, its relationships."""
    from metaforge.thread.queries import show as show_entity

    node = show_entity(context().repo.index, id)
    if json_out:
        emit_json(node)
        return
    from rich.table import Table

    c = console()
    c.print(f"[bold]{node['id']}[/]  [dim]version {node['version']} · created {node['createdAt']} by "
            f"{node['createdBy']} · updated {node['updatedAt']} by {node['updatedBy']}[/]")
    if node["properties"]:
        table = Table(box=None, show_header=False, pad_edge=False)
        for key, value in sorted(node["properties"].items()):
            table.add_row(f"  {key}", fmt_value(value))
        c.print(table)
    for edge in node["out"]:
        c.print(f"  → {edge['rel']} {edge['id']}")
    for edge in node["in"]:
        c.print(f"  ← {edge['rel']} {edge['id']}")
    for a in node.get("artifacts", []):
        c.print(f"  in {a['path']}" + (f":{a['line']}" if a.get("line") else "") + f"  [dim]{a['region']}[/]")


def query(
    type_name: Annotated[Optional[str], typer.Option("--type", "-t", help="Only entities of this type.")] = None,
    where: Annotated[Optional[list[str]], typer.Option("--where", "-w", help="key=value, or != < <= > >= ~ (units convert: current>500mA). Repeat to AND.")] = None,
    columns: Annotated[Optional[str], typer.Option("--columns", "-c", help="Comma-separated properties to show as columns.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most this many.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List entities by type and property."""
    from metaforge.thread.queries import query as run_query

    nodes = run_query(context().repo.index, type_name, where or [], limit)
    if json_out:
        emit_json(nodes)
        return
    from rich.table import Table

    cols = [c.strip() for c in columns.split(",")] if columns else None
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("id")
    table.add_column("v", justify="right")
    for col in cols or ["properties"]:
        table.add_column(col)
    for n in nodes:
        if cols:
            cells = [fmt_value(n["properties"].get(col, "")) for col in cols]
        else:
            text = ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(n["properties"].items()))
            cells = [text if len(text) < 100 else text[:97] + "…"]
        table.add_row(n["id"], str(n["version"]), *cells)
    console().print(table)
    console().print(f"[dim]{len(nodes)} entit{'y' if len(nodes) == 1 else 'ies'}[/]")


def trace(
    id: Annotated[str, typer.Argument(help="Entity id to trace from.")],
    depth: Annotated[int, typer.Option("--depth", "-d", help="How many relationships deep.")] = 10,
    direction: Annotated[str, typer.Option("--direction", help="up, down or both.")] = "both",
    json_out: JsonOpt = False,
) -> None:
    """Everything upstream and downstream of an entity through its relationships."""
    from metaforge.errors import BadInput
    from metaforge.thread.queries import trace as run_trace

    if direction not in ("up", "down", "both"):
        raise BadInput(f"--direction {direction}: expected up, down or both")
    result = run_trace(context().repo.index, id, depth, direction)
    if json_out:
        emit_json(result)
        return
    from rich.tree import Tree

    root = Tree(f"[bold]{result['id']}[/]")
    for side, arrow in (("downstream", "→"), ("upstream", "←")):
        if side in result:
            branch = root.add(f"[dim]{side}[/]")
            _grow(branch, result[side], arrow)
    console().print(root)


def _grow(tree, children: list[dict], arrow: str) -> None:
    for child in children:
        label = f"{arrow} [cyan]{child['rel']}[/] {child['id']}" + (" [dim](above)[/]" if child.get("seen") else "")
        _grow(tree.add(label), child["children"], arrow)


def log(
    id: Annotated[Optional[str], typer.Argument(help="Only events of this entity.")] = None,
    event_type: Annotated[Optional[str], typer.Option("--type", "-t", help="Only this event type (node.* for a family).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many (0: all).")] = 50,
    since: Annotated[Optional[int], typer.Option("--since-seq", help="Only events after this seq.")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Oldest first.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The history: events newest first, with actor and rationale."""
    from metaforge.cli.render import escape, event_summary
    from metaforge.thread.queries import history

    events = history(context().repo, id, event_type, limit or None, since, reverse)
    if json_out:
        emit_json(events)
        return
    c = console()
    for e in events:
        why = f"  [italic]— {escape(e['msg'])}[/]" if e.get("msg") else ""
        c.print(f"[yellow]#{e['seq']}[/] [dim]{e['ts'][:19].replace('T', ' ')} {escape(e['actor'])}[/] "
                f"{e['type']} [bold]{e['entity']}[/] v{e['version']}  {escape(event_summary(e))}{why}", soft_wrap=True)


def status(
    commit: Annotated[Optional[str], typer.Option("--commit", help="The semantic version whose files this commit (or its nearest linked ancestor) holds.")] = None,
    version: Annotated[Optional[int], typer.Option("--version", help="The commit that holds the files of this semantic version.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Semantic version, what the twin holds, the last event, and which commit holds its files."""
    from metaforge.thread.queries import status as run_status

    repo = context().repo
    if commit is not None or version is not None:
        from metaforge.thread.artifacts import commit_of_version, version_of_commit

        link = version_of_commit(repo, commit) if commit is not None else commit_of_version(repo, version)
        if json_out:
            emit_json(link)
        elif link is None:
            say("no projection links that yet: mf project writes the files and records the commit")
        else:
            console().print(f"semantic version {link['semantic_version']} ↔ commit {link['git_commit'][:12]} "
                            f"(projected {link['projected_at']} by {link['projected_by']}: "
                            f"{', '.join(link['artifacts'])})"
                            + (f"; {link['commits_after_link']} commits after it" if link.get("commits_after_link") else ""),
                            soft_wrap=True)
        if link is None:
            raise typer.Exit(1)
        return
    info = run_status(repo)
    if json_out:
        emit_json(info)
        return
    c = console()
    git = info["git"]
    c.print(f"[bold]{info['root']}[/]  git {git['branch'] or '(detached)'} @ {git['commit'] or '(no commit yet)'}")
    c.print(f"semantic version [bold]{info['semantic_version']}[/]"
            + (f"  head {info['head_hash'][:12]} in {info['head_segment']}" if info["head_hash"] else ""))
    link = info.get("files")
    if link:
        changed = link["entities_changed_since"]
        c.print(f"files: semantic version {link['semantic_version']} in commit {link['git_commit'][:12]}"
                + (f" ({changed} entities changed since: mf project writes them)" if changed else ""))
    c.print(f"{info['entities']} entities, {info['edges']} relationships")
    for kind, n in info["entities_by_type"].items():
        c.print(f"  {kind:<16} {n}")
    last = info["last_event"]
    if last:
        c.print(f"last event: #{last['seq']} {last['type']} {last['entity']} v{last['version']} "
                f"by {last['actor']} at {last['ts']}")


def types(
    name: Annotated[Optional[str], typer.Argument(help="One entity type (default: all, and the relations).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The entity types with their properties and kinds, and the relations (with this repo's additions)."""
    from metaforge.errors import NotARepository
    from metaforge.thread.entities import describe_types

    try:  # the types need no index: outside a repository, the built-in ones
        table = context().open(catch_up=False).types
    except NotARepository:
        table = None
    info = describe_types(table, name)
    if json_out:
        emit_json(info)
        return
    c = console()
    for type_name, schema in info["types"].items():
        c.print(f"[bold]{type_name}[/]")
        for prop, kind in schema["properties"].items():
            c.print(f"  {prop:<22} {kind}")
    for rel, ends in info.get("relations", {}).items():
        c.print(f"[cyan]{rel}[/]  {' | '.join(ends['from'])} → {' | '.join(ends['to'])}")


def check(json_out: JsonOpt = False,
          all_: Annotated[bool, typer.Option("--all", "-a", help="Also list the constraints that pass.")] = False) -> None:
    """Evaluate every constraint on the current state; exit 1 on an error-level violation (for CI and hooks)."""
    from metaforge.cli.render import render_verdicts
    from metaforge.thread.constraints.engine import check_all

    repo = context().repo
    verdicts = check_all(repo.index, repo.types)
    failed = [v for v in verdicts if v.blocking]
    if json_out:
        emit_json({"ok": not failed, "constraints": len(verdicts),
                   "errors": len(failed), "warnings": sum(1 for v in verdicts if v.status != "pass" and not v.blocking),
                   "verdicts": [v.as_dict() for v in verdicts]})
    else:
        render_verdicts(verdicts, show_passing=all_, to_stdout=True)
        passed = sum(1 for v in verdicts if v.status == "pass")
        console().print(f"{len(verdicts)} constraints: {passed} pass, {len(failed)} error(s), "
                        f"{len(verdicts) - passed - len(failed)} warning(s)")
    if failed:
        raise typer.Exit(1)
