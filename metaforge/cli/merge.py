"""`mf merge` (finish, abort or preview a merge of twin state), `mf hooks install`, and the
merge driver git runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, JsonOpt, emit_json, say

hooks_app = typer.Typer(help="Git integration: the event-log merge driver, pre-commit and post-commit hooks.", no_args_is_help=True,
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
    from metaforge.errors import BadInput
    from metaforge.thread import merge as engine

    ctx = context(actor)
    if sum(map(bool, (preview, continue_, abort))) != 1:
        pending = engine.pending(ctx.repo)
        if pending is None:
            raise BadInput("say --preview BRANCH, --continue or --abort", "git merge BRANCH merges; mf settles conflicts")
        _show_conflicts(pending, json_out)
        raise typer.Exit(1)
    if take not in ("ours", "theirs"):
        raise BadInput(f"--take {take}: expected ours or theirs")
    repo = ctx.repo
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
    out = engine.finish(repo, take, ctx.actor)
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

    from metaforge.thread.merge import run_driver

    repo = context().open(catch_up=False)  # git runs the driver at the top of the work tree
    out = run_driver(repo, Path(base), Path(ours), Path(theirs), path)
    s = out.summary()
    say(f"mf: {path}: kept {s['kept']} event(s), replayed {s['replayed']} from the other side, "
        f"dropped {len(s['duplicates'])} duplicate(s)")
    if out.conflicts:
        _show_conflicts(s, False)
        raise typer.Exit(1)


@hooks_app.command("install")
def hooks_install(json_out: JsonOpt = False) -> None:
    """Register the event-log merge driver and the git hooks (pre-commit: drift and constraints; post-commit: record the commit)."""
    from metaforge.thread import hooks
    from metaforge.thread.merge import install

    repo = context().repo
    out = {**install(repo), **hooks.install(repo)}
    if json_out:
        emit_json(out)
    else:
        say(f"[green]✓[/] merge driver registered: {out['driver']}")
        for hook, done in out["hooks"].items():
            say(f"[green]✓[/] {hook} hook {done}" + (" (mf's block runs first, then the hook that was there)"
                                                     if done == "chained" else ""))


@hooks_app.command("uninstall")
def hooks_uninstall(json_out: JsonOpt = False) -> None:
    """Take mf's blocks out of the git hooks (hooks that were there before stay as they were)."""
    from metaforge.thread import hooks

    out = hooks.uninstall(context().repo)
    if json_out:
        emit_json(out)
    else:
        for hook, done in out["hooks"].items():
            say(f"{hook}: {done}")


@hooks_app.command("run", hidden=True)
def hooks_run(hook: Annotated[str, typer.Argument(help="pre-commit or post-commit")], json_out: JsonOpt = False) -> None:
    """What mf's git hooks run (pre-commit: mf drift --staged and mf check; post-commit: link the commit)."""
    from metaforge.errors import BadInput
    from metaforge.thread import hooks

    if hook not in hooks.HOOKS:
        raise BadInput(f"no mf hook '{hook}'", "pre-commit or post-commit")
    repo = context().repo
    if hook == "post-commit":
        out = hooks.post_commit(repo)
        if json_out:
            emit_json(out)
        elif out.get("drift"):
            say(f"[yellow]mf:[/] commit {out['commit'][:12]} holds design files that drift from the twin: "
                + "; ".join(l for d in out["drift"]["drifts"] for l in d["summary"]))
        elif out["linked"]:
            say(f"mf: commit {out['commit'][:12]} holds semantic version {out['semantic_version']}")
        return
    _pre_commit(hooks.pre_commit(repo), json_out)


def _pre_commit(out: dict, json_out: bool) -> None:
    from metaforge.cli.render import render_drift_report, render_verdicts

    if json_out:
        emit_json({"ok": out["ok"], "staged": out["staged"], "drift": out["drift"].as_dict(),
                   "verdicts": [v.as_dict() for v in out["verdicts"]]})
    else:
        if out["drift"].drifts:
            render_drift_report(out["drift"])
        for rel in out["unstaged_changes"]:
            say(f"[yellow]mf:[/] {rel} has unstaged changes: the working-tree copy was checked")
        render_verdicts([v for v in out["verdicts"] if v.blocking])
    if not out["ok"]:
        say("[red]mf: commit blocked[/] (resolve the drift with `mf drift resolve PATH --accept-file|--reproject`, "
            "fix the constraint, or skip this check once with git commit --no-verify)")
        raise typer.Exit(1)
