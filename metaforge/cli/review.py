"""`mf proposals`, `mf approve`, `mf reject`: the approval workflow."""

from __future__ import annotations

from typing import Annotated

import typer

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, JsonOpt, MessageOpt, console, emit_json, say

IdArg = Annotated[str, typer.Argument(help="Proposal id: Proposal:71, or just 71.")]


def register(app: typer.Typer) -> None:
    app.command("proposals")(proposals)
    app.command("approve")(approve)
    app.command("reject")(reject)


def proposals(all_: Annotated[bool, typer.Option("--all", "-a", help="Also the approved and rejected ones.")] = False,
              json_out: JsonOpt = False) -> None:
    """Pending proposals with their changes and the constraint verdicts they had."""
    from metaforge.cli.render import event_summary
    from metaforge.thread.approval import pending

    found = pending(context().repo, include_decided=all_)
    if json_out:
        emit_json(found)
        return
    c = console()
    for p in found:
        decided = f" · {p['status']} by {p['decided_by']}" if p["status"] != "pending" else ""
        c.print(f"[bold]{p['id']}[/] [dim]by {p['proposed_by']} at {p['proposed_at']} · needs approval: "
                f"{p['rule']}{decided}[/]")
        if p.get("msg"):
            c.print(f"  [italic]{p['msg']}[/]")
        for e in p["events"]:
            c.print(f"  {e['type']} {e['entity']} v{e['version']}  {event_summary(e)}", soft_wrap=True)
        for v in p["verdicts"]:
            c.print(f"  [yellow]⚠[/] {v['message']}", soft_wrap=True)
    if not found:
        say("no pending proposals" if not all_ else "no proposals")


def approve(id: IdArg, message: MessageOpt = None, actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Apply a proposal on today's state (refused if what it changes has moved, or a constraint fails)."""
    from metaforge.cli.render import render_verdicts
    from metaforge.thread.approval import approve as run

    ctx = context(actor)
    who = ctx.actor
    result = run(ctx.repo, id, actor=who, message=message)
    if json_out:
        emit_json(result.as_dict())
        return
    n = len(result.drafts())
    say(f"[green]✓[/] approved as {who}: {n} change event{'s' * (n != 1)} by {result.actor} landed "
        f"(seq {result.first_seq}..{result.last_seq}), then proposal.approved at seq {result.last_seq + 1}")
    render_verdicts(result.verdicts)


def reject(id: IdArg, message: MessageOpt = None, actor: ActorOpt = None, json_out: JsonOpt = False) -> None:
    """Reject a proposal, saying why (-m)."""
    from metaforge.thread.approval import reject as run

    ctx = context(actor)
    p = run(ctx.repo, id, actor=ctx.actor, message=message or "")
    if json_out:
        emit_json({"id": p["id"], "status": "rejected"})
    else:
        say(f"[green]✓[/] rejected {p['id']}")
