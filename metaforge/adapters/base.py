"""The one interface every adapter implements.

`parse(path, rel)` reads a file into `Parsed` entities: a proposed entity id, the properties
the file owns (only those are compared for drift and written back by projection), the region
of the file the entity came from, and relations to other entities. `project(path, rel,
entities)` returns the file's new bytes given the graph's current properties of the entities
mapped to it; a file whose entities did not change must come back byte for byte the same.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from metaforge.errors import BadInput


class AdapterError(BadInput):
    """A file an adapter cannot read (or refuses to: an unsupported format version).

    The message names the file and, when known, the line: `hw/old.kicad_pcb:1: KiCad 5 ...`.
    """

    def __init__(self, rel: str, message: str, line: int | None = None, hint: str | None = None):
        where = f"{rel}:{line}" if line else rel
        super().__init__(f"{where}: {message}", hint)
        self.rel, self.line, self.reason = rel, line, message


@dataclass(slots=True)
class Parsed:
    """One entity as a file describes it."""

    id: str                                  # "DesignElement:pic_programmer/R1"
    props: dict[str, Any]                    # the properties this file owns
    region: str                              # stable key of the place in the file: "symbol:<uuid>", "row:R1"
    line: int | None = None                  # 1-based line where the region starts, for messages
    links: list[tuple[str, str]] = field(default_factory=list)  # (RELATION, target id), from this entity


@dataclass(slots=True)
class ParseResult:
    rel: str                                 # repository-relative posix path
    entities: list[Parsed]
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-specific output (e.g. a STEP manifest)


class Adapter:
    """Subclass and register under the `metaforge.adapters` entry-point group."""

    name: ClassVar[str]
    version: ClassVar[str]
    patterns: ClassVar[tuple[str, ...]]      # fnmatch patterns on the file name, e.g. ("*.kicad_sch",)
    reports: ClassVar[bool] = False          # states values another file owns (`read_only_props`)

    def owns(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1].lower()
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def parse(self, path: Path, rel: str) -> ParseResult:
        raise NotImplementedError

    def companions(self, path: Path) -> list[Path]:
        """Files read along with `path` when it is named alone: a root schematic's sheets."""
        return []

    def project(self, path: Path, rel: str, entities: dict[str, dict[str, Any]]) -> bytes:
        """The file's new content: `entities` maps each entity id parsed from this file to the
        graph's current properties (only the owned ones are written). Unchanged → same bytes."""
        raise NotImplementedError

    def project_read(self, path: Path, rel: str,
                     entities: dict[str, dict[str, Any]]) -> tuple[bytes, ParseResult | None]:
        """`project`, and the parse of the new content when the adapter knows it without parsing
        again (None: the caller parses the written file)."""
        return self.project(path, rel, entities), None


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-+/#@]")


def safe_name(text: str) -> str:
    """A string usable as the name part of an entity id (`Net-(R1-Pad1)` → `Net-_R1-Pad1_`)."""
    name = _UNSAFE.sub("_", text.strip())
    if not name or not re.match(r"[A-Za-z0-9_]", name[0]):
        name = "_" + name
    return name


def id_segment(name: str) -> str:
    """A name as one segment of an id path: accents folded ("Gehäuse" → "Gehause"), no "/"."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return safe_name((folded if folded.strip() else name).replace("/", "_"))


def model_artifact_id(rel: str) -> str:
    """The Artifact a footprint's 3D model file is (`Artifact:3d/hw/3dmodels/X.step`)."""
    return f"Artifact:3d/{safe_name(rel)}"
