"""The text of `mf --help`, kept here so that asking for it builds no command (typer turns all ~60
commands into click objects to print it: 2-3 times the start-up of everything else). A test
compares it with the help the app builds; after changing a command's first line, run
`python -m metaforge.cli.help_text` to write it again."""

TOP_HELP = "Usage: mf [OPTIONS] COMMAND [ARGS]...\n\n  mf keeps the digital twin of a hardware product inside its git repository:\n  an append-only event log of every design decision, a graph index to query\n  it, and the link to the files.\n\nOptions:\n  -C <str>              Run as if mf was started in this directory.\n  --debug               Show the traceback of an error.\n  -V, --version         Print the version and exit.\n  --install-completion  Install completion for the current shell.\n  --show-completion     Show completion for the current shell, to copy it or\n                        customize the installation.\n  -h, --help            Show this message and exit.\n\nCommands:\n  init       Make .metaforge/ (event log, config, .gitignore) in a git...\n  show       Show an entity: properties, version, who made it, its...\n  query      List entities by type and property.\n  trace      Everything upstream and downstream of an entity through its...\n  log        The history: events newest first, with actor and rationale.\n  status     Semantic version, what the twin holds, the last event, and...\n  types      The entity types with their properties and kinds, and the...\n  check      Evaluate every constraint on the current state; exit 1 on an...\n  proposals  Pending proposals with their changes and the constraint...\n  approve    Apply a proposal on today's state (refused if what it...\n  reject     Reject a proposal, saying why (-m).\n  diff       The semantic difference of the twin between two commits...\n  merge      Merge twin state across git branches: --preview BRANCH,...\n  ask        Search the twin's decisions, entities, documents and runs by...\n  project    Write the semantic state into its files, commit them, and...\n  serve      Serve the twin: the API (/api/v1, OpenAPI at /docs), live...\n  verify     Check the hash chain, seq continuity and segment layout;...\n  rebuild    Rebuild the graph index from the event log.\n  seal       Start a new log segment, so the current one never changes...\n  template   Templates: starting points for `mf init --template`.\n  mutate     Change the twin: every change is validated, then appended to...\n  hooks      Git integration: the event-log merge driver, pre-commit and...\n  knowledge  The knowledge index behind `mf ask`.\n  device     The device registry: built units, INSTANCE_OF their twin model.\n  ingest     Take things in: design files (mf ingest PATH…), telemetry...\n  telemetry  Read the time-series store.\n  drift      Where files and graph disagree: check (mf drift [PATHS]),...\n  sim        The simulation twin: run behavioral models, what-if...\n"


def _write() -> None:
    """Write TOP_HELP again from the app as it is built (at 80 columns, as the fast path prints it)."""
    import os
    from pathlib import Path

    os.environ["COLUMNS"] = "80"
    text = built_help()
    path = Path(__file__)
    source = path.read_text()
    start = source.index("TOP_HELP = ")
    end = source.index("\n\n\ndef _write")
    path.write_text(source[:start] + "TOP_HELP = " + repr(text) + source[end:])


def built_help() -> str:
    """`mf --help` as the typer app prints it (the slow way)."""
    import typer.main

    from metaforge.cli.app import app

    command = typer.main.get_command(app)
    ctx = command.make_context("mf", ["--help"], resilient_parsing=True)
    return command.get_help(ctx) + "\n"


if __name__ == "__main__":
    _write()
