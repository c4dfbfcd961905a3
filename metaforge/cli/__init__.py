"""The `mf` command line. Thin: parse, make one library call, render.

`mf --version` and `mf --help` are answered before typer is imported: scripts call the first most,
people the second first (its text is kept in help_text.py, checked against the app by a test).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        from metaforge import __version__

        sys.stdout.write(f"mf {__version__}\n")
        sys.exit(0)
    if args in (["--help"], ["-h"], []) and _wide() and "_MF_COMPLETE" not in os.environ:  # not shell completion
        from metaforge.cli.help_text import TOP_HELP

        (sys.stdout if args else sys.stderr).write(TOP_HELP)
        sys.exit(0 if args else 2)
    from metaforge.cli.app import run

    sys.exit(run(args))


def _wide() -> bool:
    """Is the terminal at least 80 columns (the width the kept help text is laid out for)?"""
    try:
        cols = int(os.environ.get("COLUMNS") or 0) or os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        cols = 80  # not a terminal: click lays help out at 80 columns too
    return cols >= 80
