"""The `mf` command line. Thin: parse, make one library call, render.

`mf --version` is answered before typer is imported: it is what scripts call most.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        from metaforge import __version__

        sys.stdout.write(f"mf {__version__}\n")
        sys.exit(0)
    from metaforge.cli.app import run

    sys.exit(run(args))
