"""Events: the facts every layer writes into the log, and their canonical line encoding.

An event is one JSON object on one line. Its `hash` is the SHA-256 of the exact bytes of
that line with the `hash` member removed (it is always written last), so verifying a line
never re-serializes it. `prev` is the previous event's hash: the chain. `id` never changes,
even when a merge re-sequences and re-chains an event, so duplicates can be found by id.

Events are frozen slotted dataclasses rather than pydantic models: a rebuild reads a
million of them and pydantic would triple its cost. Payloads are validated before they are
written (thread.schema), never on read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson  # 12x faster than json.dumps here; a rebuild reads a million lines

FORMAT = 1  # the `v` of every line; bump it and add a step to `upcast` when events change
GENESIS = "0" * 64
_HASH_KEY = b',"hash":"'

# The architecture's dotted names. Later layers add device.*, telemetry.*, simulation.*,
# drift.*, projection.*; the graph projection ignores types it does not know.
NODE_CREATED = "node.created"
NODE_UPDATED = "node.updated"
NODE_DELETED = "node.deleted"
PROPERTY_SET = "property.set"
EDGE_CREATED = "edge.created"
EDGE_DELETED = "edge.deleted"
GRAPH_EVENT_TYPES = (NODE_CREATED, NODE_UPDATED, NODE_DELETED, PROPERTY_SET, EDGE_CREATED, EDGE_DELETED)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    id: str
    type: str
    entity: str
    version: int
    ts: str
    actor: str
    payload: dict = field(default_factory=dict)
    msg: str | None = None
    prev: str = GENESIS
    hash: str = ""

    def as_dict(self) -> dict:
        d = {
            "seq": self.seq, "id": self.id, "type": self.type, "entity": self.entity,
            "version": self.version, "ts": self.ts, "actor": self.actor, "payload": self.payload,
        }
        if self.msg:
            d["msg"] = self.msg
        d["prev"] = self.prev
        d["hash"] = self.hash
        return d


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before the log gives it a seq, prev and hash."""

    type: str
    entity: str
    version: int
    payload: dict
    msg: str | None = None
    actor: str | None = None  # when one event of a batch is someone else's (an approval)


def new_id() -> str:
    return os.urandom(10).hex()


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def encode(seq: int, draft: Draft, ts: str, actor: str, prev: str, event_id: str | None = None) -> tuple[bytes, str, str]:
    """Return (line, id, hash) for one event; the line ends with a newline."""
    eid = event_id or new_id()
    body = {
        "v": FORMAT, "seq": seq, "id": eid, "type": draft.type, "entity": draft.entity,
        "version": draft.version, "ts": ts, "actor": draft.actor or actor, "payload": draft.payload,
    }
    if draft.msg:
        body["msg"] = draft.msg
    body["prev"] = prev
    try:
        raw = orjson.dumps(body)
    except orjson.JSONEncodeError as exc:  # an integer past 64 bits, a value JSON cannot hold
        from metaforge.errors import BadInput

        raise BadInput(f"{draft.entity}: a value cannot be stored: {exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:-1] + _HASH_KEY + digest.encode() + b'"}\n', eid, digest


_TAIL = len(_HASH_KEY) + 64 + 2  # ,"hash":"<64 hex>"}


def line_hash(line: bytes) -> str | None:
    """Fast path of check_hash for lines this format wrote: the hash is the fixed-size tail."""
    at = len(line) - _TAIL
    if line[at:at + 9] != _HASH_KEY:
        return None
    claimed = line[at + 9:-2]
    if hashlib.sha256(line[:at] + b"}").hexdigest().encode() != claimed:
        return None
    return claimed.decode()


def check_hash(line: bytes) -> str | None:
    """The hash a line claims if its bytes match it, else None. `line` has no newline."""
    at = line.rfind(_HASH_KEY)
    if at < 0 or len(line) != at + len(_HASH_KEY) + 66:
        return None
    claimed = line[at + len(_HASH_KEY): at + len(_HASH_KEY) + 64]
    if hashlib.sha256(line[:at] + b"}").hexdigest().encode() != claimed:
        return None
    return claimed.decode()


def upcast(d: dict) -> dict:
    """Bring a line written by an older `mf` to the current shape (one place, on read)."""
    v = d.get("v", 1)
    if v > FORMAT:
        raise ValueError(f"written by a newer mf (event format {v}, this mf reads up to {FORMAT})")
    return d


def from_dict(d: dict) -> Event:
    d = upcast(d)
    return Event(d["seq"], d["id"], d["type"], d["entity"], d["version"], d["ts"], d["actor"],
                 d.get("payload") or {}, d.get("msg"), d["prev"], d["hash"])
