"""Reading a KiCad file into a tree, refusing the formats we cannot read, and finding its project."""

from __future__ import annotations

import codecs
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from metaforge.adapters import sexpr
from metaforge.adapters.base import AdapterError

# The oldest formats read: KiCad 6 development versions already wrote these grammars
# (20201115: `module` became `footprint`; 20200828: `symbol_instances` carry the footprint).
BOARD_MIN_VERSION = 20201115
SCHEMATIC_MIN_VERSION = 20200828
# KiCad 6 keeps a value and footprint per sheet instance; 20221126 (KiCad 7) dropped them.
PER_INSTANCE_VALUES_UNTIL = 20221126
# Before 20250318 a field holding "~" meant an empty field.
TILDE_IS_EMPTY_UNTIL = 20250318

# top-level items the adapters read; the others are skipped unbuilt (lib_symbols, wires, zones...)
SCHEMATIC_ITEMS = frozenset({"version", "uuid", "symbol", "sheet", "symbol_instances", "sheet_instances"})
BOARD_ITEMS = frozenset({"version", "general", "layers", "net", "footprint"})

_HEADS = {"kicad_sch": "schematic", "kicad_pcb": "board"}
_REOPEN = "open it in KiCad 6 or later and save it (KiCad converts it), then try again"


@dataclass(eq=False)
class Doc:
    """One KiCad file as read: its bytes, text, tree and format version."""

    path: Path
    rel: str
    data: bytes
    text: str
    root: sexpr.Node
    version: int
    bom: bytes = b""
    lines: sexpr.Lines = field(init=False)

    def __post_init__(self):
        self.lines = sexpr.Lines(self.text)

    def line(self, node: sexpr.Node) -> int:
        return self.lines(node.start)

    @property
    def tilde_is_empty(self) -> bool:
        return self.version < TILDE_IS_EMPTY_UNTIL

    def encode(self, text: str) -> bytes:
        return self.bom + text.encode("utf-8")


def read_doc(path: Path, rel: str, head: str, data: bytes | None = None) -> Doc:
    """Parse a `.kicad_sch` (head 'kicad_sch') or `.kicad_pcb` file; AdapterError on what we cannot read."""
    if data is None:
        data = read_bytes(path, rel)
    bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
    try:
        text = data[len(bom):].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise AdapterError(rel, "not UTF-8 text: KiCad 6 and later write UTF-8", line) from None
    _refuse_legacy(text, rel, head)
    try:
        root = sexpr.read(text, SCHEMATIC_ITEMS if head == "kicad_sch" else BOARD_ITEMS)
    except sexpr.SexprError as exc:
        raise AdapterError(rel, f"not a well-formed KiCad file: {exc}", sexpr.Lines(text)(exc.offset)) from None
    if root.name != head:
        raise AdapterError(rel, f"not a KiCad {_HEADS[head]}: the file starts with ({root.name or '...'}",
                           sexpr.Lines(text)(root.start))
    doc = Doc(path, rel, data, text, root, 0, bom)
    doc.version = _version(doc, head)
    return doc


def read_bytes(path: Path, rel: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdapterError(rel, f"cannot read the file: {exc.strerror or exc}") from None


def _refuse_legacy(text: str, rel: str, head: str) -> None:
    start = text.lstrip()[:40]
    if start.startswith("EESchema Schematic File"):
        raise AdapterError(rel, "a KiCad 5 (legacy format) schematic; mf reads KiCad 6 and later", 1, _REOPEN)
    if start.startswith("PCBNEW-BOARD"):
        raise AdapterError(rel, "a legacy KiCad board (before KiCad 4); mf reads KiCad 6 and later", 1, _REOPEN)


def _version(doc: Doc, head: str) -> int:
    node = doc.root.get("version")
    raw = node.text(1) if node is not None else None
    if raw is None or not raw.isdigit():
        where = doc.line(node) if node is not None else 1
        raise AdapterError(doc.rel, f"the {_HEADS[head]} has no file format version", where, _REOPEN)
    version = int(raw)
    oldest = SCHEMATIC_MIN_VERSION if head == "kicad_sch" else BOARD_MIN_VERSION
    if version < oldest:
        made_by = "KiCad 5 (or older)" if version <= 20171130 else "KiCad 6 development-version"
        raise AdapterError(doc.rel, f"a {made_by} {_HEADS[head]} (file format {version}); mf reads KiCad 6 "
                           f"and later (format {oldest} or newer)", doc.line(node), _REOPEN)
    return version


# ---- schematics read again and again while walking a hierarchy -----------------------------

_cache: dict[Path, Doc] = {}


def load_schematic(path: Path, rel: str) -> Doc:
    """A schematic's Doc, reusing the last one read for this path if its bytes are unchanged."""
    data = read_bytes(path, rel)
    key = path.resolve()
    doc = _cache.get(key)
    if doc is None or doc.data != data:
        doc = read_doc(path, rel, "kicad_sch", data)
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = doc
    return doc


def rel_of(other: Path, path: Path, rel: str) -> str:
    """The repository-relative name of `other`, knowing that `path` is `rel`."""
    base = rel[: len(rel) - len(path.name)] if rel.endswith(path.name) else ""
    return posixpath.normpath(base + Path(os.path.relpath(other, path.parent)).as_posix())


# ---- the KiCad project a file belongs to -------------------------------------------------------

@dataclass(frozen=True)
class Project:
    name: str                # the KiCad project name (stem of its .kicad_pro, else of the root schematic)
    root: Path | None        # its root schematic, if there is one


def board_project(path: Path) -> Project:
    pros = sorted(path.parent.glob("*.kicad_pro"))
    own = path.with_suffix(".kicad_pro")
    stem = path.stem if own.exists() or len(pros) != 1 else pros[0].stem
    root = path.with_name(stem + ".kicad_sch")
    return Project(stem, root if root.exists() else None)


_TOP_MARKERS = (".git", ".metaforge")
_MAX_UP = 6


def schematic_roots(path: Path) -> list[Path]:
    """Root schematics that might place `path`, nearest first: the projects of its folder, of each
    folder above it up to the repository (sheets kept in `sheets/`), and of those folders'
    sub-folders (a sheet shared by sibling projects); when its own folder has no project, the
    other sheets of its folder last."""
    me = path.resolve()
    roots: list[Path] = []
    folder = me.parent
    for _ in range(_MAX_UP):
        pros = sorted(folder.glob("*.kicad_pro")) + sorted(folder.glob("*/*.kicad_pro"))
        roots += [r for r in (p.with_suffix(".kicad_sch") for p in pros) if r.exists() and r not in roots]
        if any((folder / m).exists() for m in _TOP_MARKERS) or folder.parent == folder:
            break
        folder = folder.parent
    if not any(r.parent == me.parent for r in roots):  # no project of its own folder: its sheets too
        roots += [r for r in sorted(me.parent.glob("*.kicad_sch")) if r not in roots]
    return [r for r in roots if r.resolve() != me]
