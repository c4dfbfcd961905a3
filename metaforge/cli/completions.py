"""Shell completion scripts for bash, zsh and fish (written to completions/ by scripts/gen-completions).

Each script calls `mf` back with _MF_COMPLETE set; typer answers from the live command tree.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")


def script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="mf", complete_var="_MF_COMPLETE", shell=shell) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for shell in SHELLS:
        (out / f"mf.{shell}").write_text(script(shell))
