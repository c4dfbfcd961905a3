"""What a KiCad file says about one entity, and where in the file each owned value sits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metaforge.adapters.base import Parsed
from metaforge.adapters.sexpr import Node

WRITABLE = ("value", "footprint", "datasheet", "mpn", "manufacturer", "description")


@dataclass(frozen=True)
class Slot:
    """A string atom the graph owns: `node[index]`, e.g. the "10k" of (property "Value" "10k" ...)."""

    node: Node
    index: int
    per_instance: bool = False   # a KiCad 6 instance value, which overrides the shared property

    @property
    def key(self) -> tuple[int, int]:
        return (self.node.start, self.index)


@dataclass
class Element:
    id: str
    region: str
    line: int
    props: dict[str, Any] = field(default_factory=dict)
    # owned value as read, by key: "value", "mpn", ... or "fields/<name>"; "~" already read as ""
    values: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[Slot]] = field(default_factory=dict)
    blocks: list[Node] = field(default_factory=list)   # where a missing property may be added
    links: list[tuple[str, str]] = field(default_factory=list)

    def add_source(self, key: str, slot: Slot, text: str, override: bool = False) -> None:
        self.sources.setdefault(key, []).append(slot)
        if override or key not in self.values:
            self.values[key] = text

    def parsed(self) -> Parsed:
        props = dict(self.props)
        fields = {}
        for key, text in self.values.items():
            if key.startswith("fields/"):
                fields[key[7:]] = text
            else:
                props[key] = text
        if self.blocks:
            props["fields"] = fields
        return Parsed(self.id, props, self.region, self.line, sorted(set(self.links)))
