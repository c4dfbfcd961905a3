"""What the knowledge layer indexes, as text that says what each thing is.

A chunk has a stable key (its identity for updates), a kind (decision, component, requirement,
constraint, model, test, failure, device, run, doc), a title, the text that is embedded and
matched, and where it came from. Templates per kind put the type and the name in the words.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

KINDS_BY_TYPE = {"BOMItem": "component", "DesignElement": "component", "TwinModel": "component",
                 "Requirement": "requirement", "Constraint": "constraint", "BehavioralModel": "model",
                 "TestProcedure": "test", "TestExecution": "test", "DeviceInstance": "device",
                 "SimulationRun": "run", "Artifact": "component"}
# what `mf ask --type` means
FAMILIES = {"decision": {"decision"}, "doc": {"doc"}, "run": {"run"},
            "entity": {"component", "requirement", "constraint", "model", "test", "failure", "device"}}
DOC_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}
BULK = 20  # a decision that changed more entities than this is boilerplate (see Chunk.bulk)


@dataclass(frozen=True)
class Chunk:
    """`text` is what keyword search matches and snippets show; `gist`, when given, is the short
    statement of what the thing is that gets embedded (a 40-token gist embeds 3x faster than the
    full property list, and means more: mean pooling over 90 tokens of properties blurs)."""

    key: str
    kind: str
    title: str
    text: str
    source: str
    gist: str = ""
    entities: tuple[str, ...] = ()  # a decision's: the ids of the entities it changed

    @property
    def bulk(self) -> bool:
        """A command that changed many entities at once (a template's creation, an import): it
        answers no particular question, so search ranks it after every other decision."""
        return len(self.entities) > BULK

    @property
    def embed_text(self) -> str:
        return self.gist or self.text

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.title}\0{self.text}\0{self.gist}\0{' '.join(self.entities)}".encode()
                              ).hexdigest()[:32]


def _value(v) -> str:
    if isinstance(v, dict) and set(v) == {"value", "unit"}:
        from metaforge.thread.units import format_quantity

        return format_quantity(v)
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    return str(v)


def entity_chunk(node_id: str, props: dict, out_edges: list, in_edges: list) -> Chunk:
    type_name, name = node_id.split(":", 1)
    kind = KINDS_BY_TYPE.get(type_name, "component")
    if type_name == "TestExecution" and props.get("result") == "fail":
        kind = "failure"
    words = re.sub(r"(?<!^)(?=[A-Z][a-z])", " ", type_name).lower()
    lead = props.get("description") or props.get("text") or props.get("expression") or \
        props.get("method") or props.get("notes") or ""
    parts = [f"{words} {name}" + (f": {lead}" if lead else "")]
    skip = {"description", "text", "expression", "currency", "unit_cost", "references", "quantity", "tags"}
    first = [k for k in ("mpn", "manufacturer", "value", "kind", "rail", "message", "severity", "phase", "result")
             if k in props]
    rest = [k for k in sorted(props) if k not in skip and k not in first]
    parts += [f"{k.replace('_', ' ')} {_value(props[k])}" for k in (first + rest)[:14]]  # short text embeds fast
    parts += [f"{rel.lower().replace('_', ' ')} {dst}" for rel, dst in out_edges[:8]]
    parts += [f"{src} {rel.lower().replace('_', ' ')} it" for rel, src in in_edges[:8]]
    key_props = [f"{k.replace('_', ' ')} {_value(props[k])}" for k in
                 ("value", "mpn", "manufacturer", "result", "scenario", "message", "phase", "location", "notes")
                 if k in props and str(props[k]) not in lead]
    gist = f"{words} {name}" + (f": {lead}" if lead else "") + (f" ({', '.join(key_props)})" if key_props else "")
    return Chunk(f"entity:{node_id}", kind, node_id, "; ".join(parts), node_id, gist[:300])


def decision_chunks(events: list[dict], describe=lambda entity_id: "") -> list[Chunk]:
    """One chunk per command that carried a rationale: its message and what it changed, each
    changed entity said with what it is (`BOMItem:U6, SPI NOR flash for flight logs`), so that
    "why did the flash current go up?" finds the decision and not only the part."""
    groups: dict[tuple, list[dict]] = {}
    for e in events:
        if e.get("msg"):
            groups.setdefault((e["ts"], e["actor"], e["msg"]), []).append(e)
    out = []
    for (ts, actor, msg), evs in groups.items():
        changes = []
        for e in evs[:8]:
            p = e.get("payload") or {}
            what = p.get("key") and f"{p['key']} = {_value(p.get('value'))}" or \
                (p.get("rel") and f"{p['rel'].lower()} {p.get('to')}") or \
                ", ".join(f"{k} = {_value(v)}" for k, v in list((p.get("properties") or p.get("set") or {}).items())[:6])
            changes.append(f"{e['type']} {e['entity']} {what}".strip())
        more = f" and {len(evs) - 8} more changes" if len(evs) > 8 else ""
        text = f"design decision by {actor.split(':', 1)[-1]} on {ts[:10]}: {msg}. Changes: {'; '.join(changes)}{more}"
        subjects = []
        for e in evs[:2]:
            what = describe(e["entity"])
            subjects.append(f"{e['entity']}" + (f", {what}" if what else ""))
        gist = f"design decision: {msg} (about {'; '.join(dict.fromkeys(subjects))}: {'; '.join(changes[:2])})"
        touched = [e["entity"] for e in evs] + [p["to"] for e in evs if isinstance(p := e.get("payload"), dict)
                                                and isinstance(p.get("to"), str)]
        out.append(Chunk(f"decision:{evs[0]['id']}", "decision", f"#{evs[0]['seq']} {msg[:60]}", text,
                         f"events #{evs[0]['seq']}" + (f"-#{evs[-1]['seq']}" if len(evs) > 1 else ""), gist[:400],
                         tuple(dict.fromkeys(touched))))
    return out


def doc_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                            capture_output=True).stdout.split(b"\0")
    return sorted(root / p.decode() for p in listed
                  if p and Path(p.decode()).suffix.lower() in DOC_SUFFIXES and not p.startswith(b".metaforge/"))


def doc_chunks(root: Path, path: Path, limit: int = 500) -> list[Chunk]:
    """A text file by heading, and long sections by paragraph, with line ranges."""
    rel = path.relative_to(root).as_posix()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    out, heading, buf, start = [], "", [], 1

    def flush(end: int) -> None:
        text = " ".join(x.strip() for x in buf if x.strip())
        if text:
            title = f"{rel} § {heading}" if heading else rel
            out.append(Chunk(f"doc:{rel}:{start}", "doc", title, (f"{heading}: " if heading else "") + text,
                             f"{rel}:{start}-{end}"))

    for i, line in enumerate(lines, start=1):
        is_heading = re.match(r"^#{1,6}\s+(.*)", line)
        if is_heading or (not line.strip() and sum(len(x) for x in buf) > limit):
            flush(i - 1)
            buf, start = [], i + (0 if is_heading else 1)
            if is_heading:
                heading = is_heading.group(1).strip()
                start = i
                continue
        buf.append(line)
    flush(len(lines))
    return out


def describer(index):
    """What an entity is, in a few words (its description, text or value), looked up in the index."""
    def describe(entity_id: str) -> str:
        node = index.load_nodes([entity_id]).get(entity_id)  # a removed one still says what it was
        props = node.props if node else {}
        return next((str(_plain(props.get(k)))[:120] for k in ("description", "text", "value") if props.get(k)), "")
    return describe


def _plain(value):
    """A property as `->>` gave it: JSON text for an object or a list, the value itself otherwise."""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return value


def all_entity_chunks(index) -> list[Chunk]:
    outs: dict[str, list] = {}
    ins: dict[str, list] = {}
    for src, rel, dst in index.all_edges():
        outs.setdefault(src, []).append((rel, dst))
        ins.setdefault(dst, []).append((rel, src))
    return [entity_chunk(n.id, n.props, outs.get(n.id, []), ins.get(n.id, [])) for n in index.all_nodes()]
