"""`mf merge` (finish, abort or preview a merge of twin state), `mf hooks install`, and the
merge driver git runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.output import ActorOpt, JsonOpt, emit_json, say

hooks_app = typer.Typer(help="Git integration: the event-log merge driver.", no_args_is_help=True,
                        rich_markup_mode=None)


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
    app.command("merge-driver", hidden=True)(merge_driver)
    app.add_typer(hooks_app, name="hooks")


def merge(
    preview: Annotated[Optional[str], typer.Option("--preview", help="Show what merging BRANCH would do; change nothing.")] = None,
    continue_: Annotated[bool, typer.Option("--continue", help="Finish a merge that stopped on twin conflicts.")] = False,
    take: Annotated[str, typer.Option("--take", help="With --continue: ours (drop the held events) or theirs (apply them on top).")] = "ours",
    abort: Annotated[bool, typer.Option("--abort", help="Give up the merge (runs git merge/rebase/cherry-pick --abort).")] = False,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Merge twin state across git branches: --preview BRANCH, --continue, --abort (git merge runs the driver)."""
    from metaforge.cli.output import open_repo
    from metaforge.errors import BadInput
    from metaforge.repo import check_actor, default_actor
    from metaforge.thread import merge as engine

    if sum(map(bool, (preview, continue_, abort))) != 1:
        pending = engine.pending(open_repo())
        if pending is None:
            raise BadInput("say --preview BRANCH, --continue or --abort", "git merge BRANCH merges; mf settles conflicts")
        _show_conflicts(pending, json_out)
        raise typer.Exit(1)
    if take not in ("ours", "theirs"):
        raise BadInput(f"--take {take}: expected ours or theirs")
    repo = open_repo()
    if preview:
        out = engine.preview(repo, preview)
        if json_out:
            emit_json(out)
        else:
            say(f"merging {preview}: keeps {out['kept']} event(s) of this branch, replays {out['replayed']}, "
                f"drops {len(out['duplicates'])} duplicate(s), {len(out['conflicts'])} conflict(s)")
            _show_conflicts(out, False)
        if out["conflicts"]:
            raise typer.Exit(1)
        return
    if abort:
        op = engine.abort(repo)
        if json_out:
            emit_json({"aborted": op})
        else:
            say(f"aborted the {op}" if op else "no git operation in progress; mf merge state cleared")
        return
    out = engine.finish(repo, take, check_actor(actor) if actor else default_actor(repo.root))
    if json_out:
        emit_json(out)
        return
    say(f"[green]✓[/] kept {take}: {len(out['taken'])} held event(s) applied, {len(out['dropped'])} dropped"
        + (f"; git {out['git']} continued" if out["git"] else ""))
    if out["next_conflicts"]:
        _show_conflicts(out["next_conflicts"], False)
        raise typer.Exit(1)


def _show_conflicts(state: dict, json_out: bool) -> None:
    if json_out:
        emit_json(state)
        return
    for c in state.get("conflicts", []):
        e = c["event"]
        why = f" — {e['msg']}" if e.get("msg") else ""
        say(f"[red]conflict[/] ({c['kind']}) {c['message']}: {e['type']} by {e['actor']}{why}")
    if state.get("conflicts"):
        say("settle it: `mf merge --continue` keeps this branch's values (`--take theirs` applies the other's), "
            "`mf merge --abort` gives up; mutations made now land in the merge")


def merge_driver(base: str, ours: str, theirs: str, path: str) -> None:
    """Git's merge driver for .metaforge/events/*.jsonl (registered by mf init / mf hooks install)."""
    from pathlib import Path

    from metaforge.repo import Repo
    from metaforge.thread.merge import run_driver

    repo = Repo.find(".")
    out = run_driver(repo, Path(base), Path(ours), Path(theirs), path)
    s = out.summary()
    say(f"mf: {path}: kept {s['kept']} event(s), replayed {s['replayed']} from the other side, "
        f"dropped {len(s['duplicates'])} duplicate(s)")
    if out.conflicts:
        _show_conflicts(s, False)
        raise typer.Exit(1)


@hooks_app.command("install")
def hooks_install(json_out: JsonOpt = False) -> None:
    """Register the event-log merge driver in this clone (.gitattributes and git config)."""
    from metaforge.cli.output import open_repo
    from metaforge.thread.merge import install

    out = install(open_repo())
    if json_out:
        emit_json(out)
    else:
        say(f"[green]✓[/] merge driver registered: {out['driver']}")
