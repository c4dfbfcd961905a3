"""`mf ask` and `mf knowledge`: semantic search over decisions, entities, documents and runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import JsonOpt, console, emit_json, progress_bar, say

knowledge_app = typer.Typer(help="The knowledge index behind `mf ask`.", no_args_is_help=True, rich_markup_mode=None)


def _one_blas_thread() -> None:
    """A question, or what one command changed, is a few dozen tokens: one BLAS thread embeds them
    in 10 ms, where OpenBLAS's thread pool costs 0.1-0.5 s of waiting on a busy machine. Set before
    NumPy is first imported, which in these commands is after this. (Indexing many chunks runs on
    ONNX Runtime's own threads, which this does not touch.)"""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.add_typer(knowledge_app, name="knowledge")


def ask(
    question: Annotated[str, typer.Argument(help="A question or words, e.g. \"why did we move to a 3S battery?\".")],
    k: Annotated[int, typer.Option("--k", "-k", help="How many results.")] = 10,
    kind: Annotated[Optional[str], typer.Option("--type", "-t", help="decision, entity, doc or run.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid (default), vector or keyword.")] = "hybrid",
    json_out: JsonOpt = False,
) -> None:
    """Search the twin's decisions, entities, documents and runs by meaning and by keyword, locally."""
    _one_blas_thread()
    from metaforge.errors import BadInput
    from metaforge.knowledge.chunks import FAMILIES
    from metaforge.knowledge.index import search, update

    if kind and kind not in FAMILIES:
        raise BadInput(f"--type {kind}: expected one of {', '.join(FAMILIES)}")
    if mode not in ("hybrid", "vector", "keyword"):
        raise BadInput(f"--mode {mode}: expected hybrid, vector or keyword")
    repo = context().repo
    with progress_bar("indexing") as bar:
        update(repo, progress=bar)
    results = search(repo, question, k, kind, mode)
    if json_out:
        emit_json(results)
        return
    c = console()
    for i, r in enumerate(results, start=1):
        c.print(f"[bold]{i}. {r['title']}[/]  [dim]{r['kind']} · {r['source']} · {r['score']:.4f}[/]", soft_wrap=True)
        c.print(f"   {r['snippet']}", soft_wrap=True, markup=False)
        if r.get("entities") and not r.get("bulk"):
            more = f" and {len(r['entities']) - 6} more" if len(r["entities"]) > 6 else ""
            c.print(f"   [dim]changed {', '.join(r['entities'][:6])}{more}[/]", soft_wrap=True)
    if not results:
        say("nothing found")


@knowledge_app.command("update")
def knowledge_update(quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False, json_out: JsonOpt = False) -> None:
    """Index what changed since the last look (what runs after each command)."""
    _one_blas_thread()
    from metaforge.knowledge.index import update

    from metaforge.thread.transaction import KNOWLEDGE_PENDING

    repo = context().repo
    (repo.mfdir / KNOWLEDGE_PENDING).unlink(missing_ok=True)  # commits from now on start the next update
    with progress_bar("indexing", enabled=not quiet) as bar:
        out = update(repo, progress=bar)
    if json_out:
        emit_json(out)
    elif not quiet:
        say(f"[green]✓[/] {out['embedded']} chunk(s) embedded, {out['removed']} removed; {out['chunks']} in the index")


@knowledge_app.command("reconcile")
def knowledge_reconcile(json_out: JsonOpt = False) -> None:
    """Make the knowledge index match the log, the graph and the files exactly."""
    _one_blas_thread()
    from metaforge.knowledge.index import reconcile

    repo = context().repo
    with progress_bar("indexing") as bar:
        out = reconcile(repo, progress=bar)
    if json_out:
        emit_json(out)
    else:
        say(f"[green]✓[/] {out['embedded']} chunk(s) embedded, {out['removed']} stale removed; {out['chunks']} in the index")
