"""KiCad schematic and board adapters (KiCad 6 and later).

Both read with our own offset-keeping s-expression reader (`metaforge.adapters.sexpr`) and
write by editing in place only the string atoms the graph owns, so an unchanged file comes
back byte for byte and a changed one differs only in those atoms. kiutils was measured as a
reader (0.6 s/MB here, no byte offsets, reads a KiCad 5 board as empty) and its writer loses
KiCad 8/9 data; neither is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaforge.adapters.base import Adapter, ParseResult

# Properties a file states but does not own: the board cannot change a footprint (that is
# KiCad's "Update PCB from Schematic"), nor a file a reference. One owner per value: the schematic
# owns the symbols' fields (value too, when the board has a schematic), the board the placement.
# Where a board disagrees with its schematic (5 of the 13 readable demo boards name other
# footprints), the owner's value is the graph's and the board's is a disagreement between the
# two files (`mf drift`), never a silent winner.
SCHEMATIC_READ_ONLY = ("kind", "reference", "lib_id", "sheet_path")
BOARD_READ_ONLY = ("kind", "reference", "footprint", "layer", "layers", "thickness", "net")
BOARD_WITH_SCHEMATIC_READ_ONLY = BOARD_READ_ONLY + ("value",)


class SchematicAdapter(Adapter):
    """`.kicad_sch`: every placed symbol with a reference is one DesignElement (all its units
    together), the sheet is a DesignElement of kind "schematic" that HAS_ELEMENT them."""

    name = "kicad_sch"
    version = "1"
    patterns = ("*.kicad_sch",)

    def parse(self, path: Path, rel: str) -> ParseResult:
        from metaforge.adapters.kicad.schematic import read_sheet

        return self._result(read_sheet(path, rel), rel)

    @staticmethod
    def _result(read, rel: str) -> ParseResult:
        extra = {"project": read.hierarchy.project, "format_version": read.doc.version,
                 "read_only_props": list(SCHEMATIC_READ_ONLY)}
        if read.skipped:
            extra["skipped"] = read.skipped
        return ParseResult(rel, [el.parsed() for el in read.elements], extra)

    def companions(self, path: Path) -> list[Path]:
        """The other sheets of the hierarchy `path` is the root of, wherever they live."""
        from metaforge.adapters.base import AdapterError
        from metaforge.adapters.kicad import hierarchy

        try:
            h = hierarchy.for_schematic(path, path.name)
        except AdapterError:
            return []  # reading the file itself says what is wrong
        if h.root.path.resolve() != path.resolve():
            return []
        return sorted({u.file for u in h.uses if u.file.is_file() and u.file != path.resolve()})

    def project(self, path: Path, rel: str, entities: dict[str, dict[str, Any]]) -> bytes:
        return self.project_read(path, rel, entities)[0]

    def project_read(self, path: Path, rel: str, entities: dict[str, dict[str, Any]]):
        from metaforge.adapters.kicad.schematic import read_sheet
        from metaforge.adapters.kicad.writer import project_and_read

        read = read_sheet(path, rel)
        data, same_lines = project_and_read(read.doc, read.elements, entities)
        return data, (self._result(read, rel) if same_lines else None)


class BoardAdapter(Adapter):
    """`.kicad_pcb`: each footprint is the DesignElement of its symbol (same id), each net a
    DesignElement of kind "net" its components are CONNECTED_TO, the board one of kind "pcb"."""

    name = "kicad_pcb"
    version = "2"  # 2: the value is its schematic's (reported here), 3D models linked
    reports = True  # it states values its schematic owns
    patterns = ("*.kicad_pcb",)

    def parse(self, path: Path, rel: str) -> ParseResult:
        from metaforge.adapters.kicad.board import read_board_shared

        return self._result(read_board_shared(path, rel), rel)

    @staticmethod
    def _result(read, rel: str) -> ParseResult:
        from metaforge.adapters.kicad.board import model_links

        owned_elsewhere = BOARD_WITH_SCHEMATIC_READ_ONLY if read.has_schematic else BOARD_READ_ONLY
        extra = {"format_version": read.doc.version, "read_only_props": list(owned_elsewhere)}
        if read.has_schematic:  # a value a command changes is written here too (KiCad: Update PCB)
            extra["follows_props"] = ["value"]
        if read.skipped:
            extra["skipped"] = {"board_only": read.skipped}
        links = model_links(read.doc.path, rel, read.models)
        if links:
            extra["links_in"] = links
        return ParseResult(rel, [el.parsed() for el in read.elements], extra)

    def project(self, path: Path, rel: str, entities: dict[str, dict[str, Any]]) -> bytes:
        return self.project_read(path, rel, entities)[0]

    def project_read(self, path: Path, rel: str, entities: dict[str, dict[str, Any]]):
        from metaforge.adapters.kicad.board import read_board
        from metaforge.adapters.kicad.writer import project_and_read

        read = read_board(path, rel)
        data, same_lines = project_and_read(read.doc, read.elements, entities)
        return data, (self._result(read, rel) if same_lines else None)
