"""Edits of a KiCad 6 schematic the way KiCad saves them (a placed symbol's block, and its
entry in the root's symbol_instances), and a twin holding Debian's pic_programmer demo."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

DEMOS = Path("/usr/share/kicad/demos")
SCH = "hw/pic_programmer/pic_programmer.kicad_sch"
SOCKETS = "hw/pic_programmer/pic_sockets.kicad_sch"
PCB = "hw/pic_programmer/pic_programmer.kicad_pcb"
C1 = "DesignElement:pic_programmer/C1"


def git(*args, cwd, env=None, check=True):
    import os

    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def commit_all(path: Path, message: str = "files", env=None) -> None:
    git("add", "-A", cwd=path)
    git("commit", "-qm", message, "--no-verify", cwd=path, env=env)


def demo_twin(twin: Path, mf) -> Path:
    """The template twin with the pic_programmer demo read in and committed."""
    if not DEMOS.is_dir():
        raise RuntimeError("Debian's kicad-demos is not installed (apt-get install kicad-demos)")
    shutil.copytree(DEMOS / "pic_programmer", twin / "hw" / "pic_programmer",
                    ignore=shutil.ignore_patterns("*.pdf", "*.wrl", "*.step"))
    commit_all(twin, "the demo")
    r = mf("ingest", "hw", cwd=twin)
    assert r.code == 0, r.err
    commit_all(twin, "the demo in the twin")
    return twin


def _block(text: str, ref: str) -> tuple[int, int]:
    at = text.index(f'(property "Reference" "{ref}"')
    start = text.rindex("\n  (symbol (lib_id", 0, at)
    return start, text.index("\n  )\n", at) + len("\n  )")


def _instance(text: str, ref: str) -> tuple[int, int]:
    at = text.index(f'(reference "{ref}")')
    start = text.rindex('\n    (path "', 0, at)
    return start, text.index("\n    )", at) + len("\n    )")


def set_value(path: Path, ref: str, value: str) -> None:
    """Change a symbol's value as KiCad 6 saves it: its Value property and its instance's value."""
    text = path.read_text()
    s, e = _block(text, ref)
    block = re.sub(r'\(property "Value" "[^"]*"', f'(property "Value" "{value}"', text[s:e], count=1)
    text = text[:s] + block + text[e:]
    s, e = _instance(text, ref)
    entry = re.sub(r'\(value "[^"]*"\)', f'(value "{value}")', text[s:e], count=1)
    path.write_text(text[:s] + entry + text[e:])


def move_symbol(path: Path, ref: str, dx: float = 12.7) -> None:
    """Drag a symbol (and its fields) dx mm to the right, and re-indent a line: cosmetic only."""
    text = path.read_text()
    s, e = _block(text, ref)

    def shift(m):
        return f"(at {float(m.group(1)) + dx:g} {m.group(2)}"

    block = re.sub(r"\(at ([-\d.]+) ([-\d.]+)", shift, text[s:e])
    block = block.replace("(in_bom yes) (on_board yes)", "(in_bom yes)   (on_board yes)", 1)
    path.write_text(text[:s] + block + text[e:])


def add_symbol(path: Path, like: str, ref: str, value: str) -> None:
    """Place a copy of symbol `like` as `ref` (new uuid, annotated in symbol_instances)."""
    text = path.read_text()
    s, e = _block(text, like)
    block = text[s:e]
    old_uuid = re.search(r"\(uuid ([0-9a-f-]+)\)", block).group(1)
    new_uuid = "0badc0de-0000-4000-8000-" + f"{int.from_bytes(ref.encode(), 'big') % 10**12:012d}"
    block = block.replace(old_uuid, new_uuid, 1).replace(f'"Reference" "{like}"', f'"Reference" "{ref}"')
    block = re.sub(r'\(property "Value" "[^"]*"', f'(property "Value" "{value}"', block, count=1)
    block = re.sub(r'\(pin "(\d+)" \(uuid [0-9a-f-]+\)\)', lambda m: f'(pin "{m.group(1)}" (uuid {new_uuid[:-4]}{int(m.group(1)):04d}))', block)
    text = text[:e] + "\n" + block + text[e:]
    s, e = _instance(text, like)
    entry = text[s:e].replace(old_uuid, new_uuid).replace(f'(reference "{like}")', f'(reference "{ref}")')
    entry = re.sub(r'\(value "[^"]*"\)', f'(value "{value}")', entry, count=1)
    path.write_text(text[:e] + entry + text[e:])


def remove_symbol(path: Path, ref: str) -> None:
    """Delete a placed symbol, as deleting it in KiCad does."""
    text = path.read_text()
    s, e = _block(text, ref)
    text = text[:s] + text[e:]
    s, e = _instance(text, ref)
    path.write_text(text[:s] + text[e:])


def drift_events(log: list[dict], kind: str, path: str | None = None) -> list[dict]:
    return [e for e in log if e["type"] == kind and (path is None or e["payload"]["path"] == path)]
