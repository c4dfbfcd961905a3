"""Events: the facts every layer writes into the log, and their canonical line encoding.

An event is one JSON object on one line. Its `hash` is the SHA-256 of the exact bytes of
that line with the `hash` member removed (it is always written last), so verifying a line
never re-serializes it. `prev` is the previous event's hash: the chain. `id` never changes,
even when a merge re-sequences and re-chains an event, so duplicates can be found by id.

Every event type is declared once: its dotted name here, its payload model (a frozen pydantic
model) in `events.payloads`, which only writers and typed readers import. A draft's payload is
checked against its model when it is encoded, before anything is written. Reading stays on
plain dicts: a rebuild folds a million events and pydantic would triple its cost, so `typed()`
builds the model only for a caller that asks (one event at a time, on demand).

`v` is the line's format. The reader upcasts an older line in one place (`upcast`) and refuses
a newer one: what a newer `mf` wrote is never folded by an older one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import orjson  # 12x faster than json.dumps here; a rebuild reads a million lines

FORMAT = 1  # the `v` of every line; bump it and add a step to UPCASTERS when an event changes shape
GENESIS = "0" * 64
_HASH_KEY = b',"hash":"'

from metaforge.events.names import (  # noqa: F401  (the names are part of this package's API)
    NODE_CREATED, NODE_UPDATED, NODE_DELETED, PROPERTY_SET,
    EDGE_CREATED, EDGE_DELETED, GRAPH_EVENT_TYPES, PROPOSAL_CREATED,
    PROPOSAL_APPROVED, PROPOSAL_REJECTED, ARTIFACT_MAPPED, STATE_LINKED,
    DRIFT_DETECTED, DRIFT_RESOLVED, MERGE_RESOLVED, DEVICE_PROVISIONED,
    DEVICE_POLICY_CHANGED, DEVICE_DECOMMISSIONED, DEVICE_STATE_UPDATED, SIMULATION_STARTED,
    SIMULATION_COMPLETED, SIMULATION_FAILED, SIMULATION_DIVERGENCE_DETECTED,
)


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event as `typed()` hands it: `payload` is its type's model (a dict for a type this
    build does not declare: a newer mf may add types, and they pass through)."""

    seq: int
    id: str
    type: str
    entity: str
    version: int
    ts: str
    actor: str
    payload: Any = field(default_factory=dict)
    msg: str | None = None
    prev: str = GENESIS
    hash: str = ""

    def as_dict(self) -> dict:
        d = {
            "seq": self.seq, "id": self.id, "type": self.type, "entity": self.entity,
            "version": self.version, "ts": self.ts, "actor": self.actor,
            "payload": self.payload if isinstance(self.payload, dict) else
            self.payload.model_dump(mode="json", by_alias=True, exclude_unset=True),
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
    """Return (line, id, hash) for one event; the line ends with a newline. A payload that does not
    fit its declared model raises InvalidEvent here, before any byte is written."""
    check(draft)
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


# ---- declarations, checked on write -----------------------------------------------------------

_checker: Callable[[Draft], None] | None = None


def check(draft: Draft) -> None:
    """Raise InvalidEvent if a draft's payload does not fit its type's model (types nobody declared
    pass: a merge may replay what a newer mf wrote). Loads pydantic and the models on first use."""
    global _checker
    if _checker is None:
        from metaforge.events.payloads import check_draft

        _checker = check_draft
    _checker(draft)


# ---- reading: upcasting and typed events -------------------------------------------------------

# v → the step that brings a line of format v to v + 1; FORMAT 1 is the first, so none yet.
UPCASTERS: dict[int, Callable[[dict], dict]] = {}


UPGRADE_HINT = "upgrade mf (e.g. pip install -U metaforge) to read this log; this one will not fold it into the index"


def newer_format(v: int) -> str:
    return f"written by a newer mf (event format {v}, this mf reads up to {FORMAT})"


def upcast(d: dict) -> dict:
    """Bring a line written by an older `mf` to the current shape: the one place that does, on read.
    The hash was checked on the stored bytes before, so an upcast line still verifies."""
    v = d.get("v", 1)
    if v == FORMAT:
        return d
    if type(v) is not int or v < 1:
        from metaforge.errors import LogCorrupt

        raise LogCorrupt(f"event {d.get('seq')}: event format {v!r} is not a format of mf")
    if v > FORMAT:
        from metaforge.errors import UnknownFormat

        raise UnknownFormat(f"event {d.get('seq')}: {newer_format(v)}", UPGRADE_HINT)
    while v < FORMAT:
        d = UPCASTERS[v](d)
        v += 1
    d["v"] = FORMAT
    return d


def typed(d: dict) -> Event:
    """The event of a stored line (a Record's `.event`, a `lines_at` answer) with its payload as its
    declared model: built on demand, so only the callers that want types pay for them."""
    from metaforge.events.payloads import parse_payload

    d = upcast(d)
    return Event(d["seq"], d["id"], d["type"], d["entity"], d["version"], d["ts"], d["actor"],
                 parse_payload(d), d.get("msg"), d.get("prev", ""), d["hash"])
