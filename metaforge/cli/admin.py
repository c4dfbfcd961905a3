"""`mf verify` and `mf rebuild`: keeping the log honest and the index derived."""

from __future__ import annotations

from typing import Annotated

import typer

from metaforge.cli.context import context
from metaforge.cli.output import JsonOpt, emit_json, progress_bar, say, warn


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
    app.command("rebuild")(rebuild)
    app.command("seal")(seal)


def verify(
    repair: Annotated[bool, typer.Option("--repair", help="Cut an incomplete last line (a crash mid-write), and only that.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --repair: cut even when complete events the index or git hold would go (kept in .metaforge/cut/).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the hash chain, seq continuity and segment layout; check the index agrees with the log."""
    from metaforge.thread.verify import verify as run_verify

    repo = context().open(catch_up=False)  # the log as it is, damaged or not
    with progress_bar("verifying") as update:
        report = run_verify(repo, repair, progress=lambda n: update(n, n), force=force)
    if json_out:
        emit_json(report)
    else:
        if report["repaired"]:
            r = report["repaired"]
            say(f"repaired: cut {r['bytes_dropped']} bytes of {r['file']}" + (f" from line {r['line']}" if r["line"] else "")
                + (f", dropping {r['events_dropped']['count']} complete event(s)" if r["events_dropped"] else "")
                + (f"; what was cut is kept in {r['record']}" if r.get("record") else ""))
        if report["ok"]:
            say(f"[green]✓[/] {report['events']} events in {report['segments']} segment(s): chain intact, "
                f"seq 1..{report['events']} without a gap; index agrees")
        for p in report["problems"]:
            say(f"[red]✗[/] {p['message']}" + (f" ({p['hint']})" if p.get("hint") else ""))
    if not report["ok"]:
        raise typer.Exit(1)


def rebuild(json_out: JsonOpt = False) -> None:
    """Rebuild the graph index from the event log."""
    import time

    repo = context().open(catch_up=False)  # rebuilt below, from scratch
    started = time.perf_counter()
    from metaforge.thread.transaction import maintenance

    with maintenance(repo), progress_bar("rebuilding the index") as update:
        repo.index.rebuild(repo.log, progress=update)
    for notice in repo.index_notices():
        warn(notice)
    pos = repo.index.position()
    entities = repo.index.live_count()
    out = {"events": pos.seq, "entities": entities, "seconds": round(time.perf_counter() - started, 3)}
    if json_out:
        emit_json(out)
    else:
        say(f"[green]✓[/] rebuilt the index from {out['events']} events: {entities} entities in {out['seconds']} s")


def seal(force: Annotated[bool, typer.Option("--force", help="Seal on a branch other than main/master.")] = False,
         json_out: JsonOpt = False) -> None:
    """Start a new log segment, so the current one never changes again (keeps files small for git).

    Run it on the main branch when no branch with unmerged events is open: a branch forked
    before the seal cannot be merged by the driver afterwards (it says so).
    """
    from metaforge.errors import Refused
    from metaforge.repo import git

    repo = context().open(catch_up=False)
    branch = git(["symbolic-ref", "--short", "-q", "HEAD"], cwd=repo.root, check=False)
    if branch not in ("main", "master") and not force:
        raise Refused(f"on branch {branch or '(detached)'}: seal on main or master", "or pass --force")
    from metaforge.thread.transaction import maintenance

    with maintenance(repo):
        repo.index.sync(repo.log, locked=True)  # a chain that does not verify is not sealed into history
        started = repo.log.seal()
    if json_out:
        emit_json({"started": started})
    else:
        say(f"[green]✓[/] new events go to {started}" if started else "nothing to seal: the last segment is empty")
