"""Figures for the KiCad adapters (issue 4). Run: .venv/bin/python benchmarks/bench_kicad.py

Parses every schematic and board of Debian's kicad-demos (apt install kicad-demos) with the
adapters, as `mf ingest` would (one process, files in order), then times one value change
projected into a 300-symbol schematic. With kiutils installed it also times kiutils reading
the same files, the figure that decided against it. `--json FILE` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

DEMOS = Path("/usr/share/kicad/demos")
KICAD9 = Path(__file__).resolve().parents[1] / "tests/data/kicad/kicad9/test_pads_inside_pads.kicad_sch"
TARGET_S_PER_MB = 1.0


def demo_files() -> tuple[list[Path], list[Path]]:
    if not DEMOS.is_dir():
        sys.exit(f"{DEMOS} is missing: apt-get install kicad-demos")
    return sorted(DEMOS.rglob("*.kicad_sch")), sorted(DEMOS.rglob("*.kicad_pcb"))


def parse_all(files: list[Path]) -> tuple[float, int, list[str]]:
    from metaforge.adapters.base import AdapterError
    from metaforge.adapters.kicad import BoardAdapter, SchematicAdapter

    adapters = {".kicad_sch": SchematicAdapter(), ".kicad_pcb": BoardAdapter()}
    refused, entities = [], 0
    t = time.perf_counter()
    for path in files:
        try:
            entities += len(adapters[path.suffix].parse(path, str(path.relative_to(DEMOS))).entities)
        except AdapterError as exc:
            refused.append(str(exc).split(":")[0])
    return time.perf_counter() - t, entities, refused


def kiutils_time(schematics: list[Path], boards: list[Path]) -> float | None:
    try:
        from kiutils.board import Board
        from kiutils.schematic import Schematic
    except ImportError:
        return None
    t = time.perf_counter()
    for path in schematics:
        Schematic.from_file(str(path))
    for path in boards:
        Board.from_file(str(path))
    return time.perf_counter() - t


def schematic_of(n: int, folder: Path) -> Path:
    """A KiCad 9 schematic with `n` resistors: the KiCad 9 test file's P1 symbol copied n times."""
    text = KICAD9.read_text()
    start = text.index("\t(symbol\n\t\t(lib_id")
    end = text.index("\t(sheet_instances")
    block = text[start:text.index("\t(symbol\n\t\t(lib_id", start + 1)]
    copies = []
    for i in range(1, n + 1):
        uid = f"00000000-0000-0000-0000-{i:012d}"
        b = re.sub(r'\(uuid "00000000-0000-0000-0000-[0-9a-f]{12}"\)', f'(uuid "{uid}")', block, count=1)
        b = b.replace('"P2"', f'"R{i}"').replace('"CONN_1"', '"10k"')
        copies.append(b)
    path = folder / "big.kicad_sch"
    path.write_text(text[:start] + "".join(copies) + text[end:])
    return path


def project_one_change(path: Path) -> tuple[float, float, int]:
    from metaforge.adapters.kicad import SchematicAdapter

    adapter = SchematicAdapter()
    t = time.perf_counter()
    parsed = adapter.parse(path, path.name)
    t_parse = time.perf_counter() - t
    entities = {e.id: dict(e.props) for e in parsed.entities}
    target = next(i for i in entities if i.endswith("/R150"))
    entities[target]["value"] = "4k7"
    t = time.perf_counter()
    new = adapter.project(path, path.name, entities)
    path.write_bytes(new)
    t_project = time.perf_counter() - t
    return t_parse, t_project, len(parsed.entities) - 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-kiutils", action="store_true")
    args = ap.parse_args()
    schematics, boards = demo_files()
    files = schematics + boards
    mb = sum(p.stat().st_size for p in files) / 1e6
    seconds, entities, refused = parse_all(files)
    fig = {"schematics": len(schematics), "boards": len(boards), "MB": round(mb, 2),
           "parse_all_s": round(seconds, 2), "s_per_MB": round(seconds / mb, 3), "entities": entities,
           "refused": refused}
    if not args.no_kiutils:
        ki = kiutils_time(schematics, [b for b in boards if str(b.relative_to(DEMOS)) not in refused])
        if ki is not None:
            fig["kiutils_read_s"] = round(ki, 2)
    with tempfile.TemporaryDirectory() as tmp:
        t_parse, t_project, n = project_one_change(schematic_of(300, Path(tmp)))
    fig.update({"big_schematic_symbols": n, "big_parse_s": round(t_parse, 3), "big_project_one_change_s": round(t_project, 3)})
    print(f"KiCad demos: {len(schematics)} schematics + {len(boards)} boards, {mb:.2f} MB")
    print(f"  parsed in {seconds:.2f} s = {seconds / mb:.3f} s/MB (target < {TARGET_S_PER_MB} s/MB), "
          f"{entities} entities; refused: {', '.join(refused) or 'none'}")
    if "kiutils_read_s" in fig:
        print(f"  kiutils reading the same readable files: {fig['kiutils_read_s']:.2f} s")
    print(f"{n}-symbol schematic: parse {t_parse:.3f} s, project one value change (incl. write) {t_project:.3f} s")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2) + "\n")


if __name__ == "__main__":
    main()
