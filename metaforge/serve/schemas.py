"""The shapes of the answers, for the OpenAPI document (handlers return the library's dicts as they
are; these models describe them)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from metaforge.limits import MAX_ACTOR_CHARS, MAX_ID_CHARS, MAX_MESSAGE_CHARS
from metaforge.serve.limits import SEQ_MAX, check_json


ENTITY_ID = r"^[A-Za-z][A-Za-z0-9]*:[A-Za-z0-9_][A-Za-z0-9_.\-+/#@]*$"  # as metaforge.thread.entities reads ids
ACTOR = r"^(user|agent):.*\S.*$"
WHERE = r"^[A-Za-z_][A-Za-z0-9_]*\s*(!=|>=|<=|=|>|<|~)\s*.*$"  # as metaforge.thread.queries reads --where
EVERY = r"^(\s*[0-9]+(\.[0-9]+)?\s*(us|ms|s|m|h|d)\s*)?$"  # as sync.ingest.parse_span reads it; empty: no buckets
ID_LENGTH = MAX_ID_CHARS  # the store's limits (metaforge/limits.py), said in the schema


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Open):
    kind: str = Field(description="not_found, bad_input, version_conflict, constraint_violation, refused, "
                                  "unauthorized, read_only, ...")
    message: str
    hint: Optional[str] = None


class Error(BaseModel):
    ok: Literal[False] = False
    error: ErrorDetail


class EdgeRef(BaseModel):
    rel: str
    id: str


class Entity(_Open):
    id: str = Field(examples=["BOMItem:U1"])
    type: str
    name: str
    version: int
    createdAt: str
    updatedAt: str
    createdBy: str
    updatedBy: str
    createdSeq: int
    updatedSeq: int
    properties: dict[str, Any]


class EntityDetail(Entity):
    out: list[EdgeRef] = Field(description="relationships from this entity")
    in_: list[EdgeRef] = Field(alias="in", description="relationships to this entity")


class EntityList(BaseModel):
    entities: list[Entity]
    count: int
    more: bool = Field(description="true when `limit` cut the list")


class TraceNode(BaseModel):
    id: str
    type: Optional[str]
    rel: str
    children: list["TraceNode"]
    seen: Optional[bool] = Field(None, description="reached before, through another path")


class Reached(BaseModel):
    id: str
    type: Optional[str]
    distance: int


class Trace(BaseModel):
    id: str
    type: Optional[str]
    downstream: Optional[list[TraceNode]] = None
    upstream: Optional[list[TraceNode]] = None
    reached: list[Reached]


class _EventEnvelope(_Open):
    v: int = Field(description="the line's event format")
    seq: int
    id: str
    type: str
    entity: str
    version: int
    ts: str
    actor: str
    msg: Optional[str] = None
    prev: str
    hash: str


def _event_union():
    """One schema per declared event type, its payload the model `metaforge.events.payloads`
    declares (the same declaration the log checks writes against), and one for the types this
    build does not declare (a newer mf may add some; they pass through as they are)."""
    from metaforge.events.payloads import DECLARED

    variants = [create_model(f"{model.__name__}Event", __base__=_EventEnvelope,
                             __doc__=f"A `{name}` event.", type=(Literal[name], ...), payload=(model, ...))
                for name, model in DECLARED.items()]
    other = create_model("UndeclaredEvent", __base__=_EventEnvelope,
                         __doc__="An event of a type this version of mf does not declare.",
                         type=(str, Field(json_schema_extra={"not": {"enum": sorted(DECLARED)}})),
                         payload=(dict[str, Any], ...))
    return Union[tuple(variants) + (other,)]


Event = _event_union()


class EventList(BaseModel):
    events: list[Event]
    last_seq: int = Field(description="pass it as since_seq to read on")
    more: bool


class Status(_Open):
    root: str
    semantic_version: int
    entities: int
    entities_by_type: dict[str, int]
    edges: int
    edges_by_relation: dict[str, int]
    last_event: Optional[dict[str, Any]]
    git: dict[str, Optional[str]]


class Verdict(_Open):
    constraint: str
    severity: str
    status: str = Field(description="pass, fail or invalid")
    message: str
    expression: str
    because: list[str]
    margin: Optional[float]
    headroom: Optional[str]


class Constraints(BaseModel):
    entity: Optional[str]
    verdicts: list[Verdict]


class PartNode(BaseModel):
    id: str = Field(description="the entity of this part")
    name: str
    mesh_name: Optional[str] = Field(description="its node in the GLB")
    children: list["PartNode"]
    node_type: str


class ModelManifest(_Open):
    project_id: str
    artifact_id: str
    glb_url: str = Field(description="signed, served by this server, valid until glb_url_expires")
    glb_url_expires: int = Field(description="Unix time")
    mesh_to_node_map: dict[str, str] = Field(description="GLB node name → entity id")
    component_tree: PartNode
    last_updated: str


class Project(BaseModel):
    project_id: str
    twin_model: Optional[str]
    models: list[str]


class BomItem(Entity):
    used_by: list[str]


class Bom(BaseModel):
    id: str
    type: str
    items: list[BomItem]
    count: int
    cost: dict[str, float] = Field(description="quantity × unit_cost, per currency")


class Device(Entity):
    policy: dict[str, Any]
    origin: dict[str, str]
    group: Optional[str]
    sources: list[dict[str, Any]]
    telemetry: list[dict[str, Any]]


class DeviceList(BaseModel):
    devices: list[Entity]


class Point(BaseModel):
    ts: str
    t: float = Field(description="Unix time in seconds")
    value: float


class MetricSummary(BaseModel):
    metric: str
    samples: int
    last_ts: Optional[int]


class Telemetry(BaseModel):
    device: str
    metric: Optional[str] = None
    every: Optional[str] = None
    agg: Optional[str] = None
    points: Optional[list[Point]] = None
    truncated: Optional[bool] = None
    metrics: Optional[list[MetricSummary]] = Field(None, description="without ?metric=: what the device reported")


class Simulations(BaseModel):
    device: Optional[str]
    runs: list[Entity]


class ChangeResult(_Open):
    dry_run: bool
    appended: int
    actor: str
    refused: bool
    proposal: Optional[str]
    events: list[dict[str, Any]]
    verdicts: list[Verdict]


class _Body(BaseModel):
    """A request body: no unknown fields; its JSON inside serve/limits.py's bounds (the values then
    go through the write path, whose checks are the store's)."""
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data):
        problem = check_json(data)
        if problem is not None:
            raise ValueError(f"the body holds {problem}")
        return data


class ChangesBody(_Body):
    changes: list[dict[str, Any]] = Field(min_length=1, description="as in `mf mutate apply`: {set: ID, props: {...}, "
                                                                    "expect_version: N}, {link: [SRC, REL, DST]}, ...")
    message: Optional[str] = Field(None, description="why: the decision rationale", max_length=MAX_MESSAGE_CHARS)
    actor: Optional[str] = Field(None, pattern=ACTOR, max_length=MAX_ACTOR_CHARS, description="user:<name> or agent:<code> (default: the server's)")
    dry_run: bool = False


class AddBody(_Body):
    id: str = Field(examples=["BOMItem:C42"], pattern=ENTITY_ID, max_length=ID_LENGTH)
    properties: dict[str, Any] = {}
    message: Optional[str] = None
    actor: Optional[str] = Field(None, pattern=ACTOR, max_length=MAX_ACTOR_CHARS)


class PatchBody(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["properties"], "properties": {"properties": {"minProperties": 1}}},
        {"required": ["unset"], "properties": {"unset": {"minItems": 1}}}]})
    properties: dict[str, Any] = {}
    unset: list[str] = []
    expect_version: Optional[int] = Field(None, ge=0, le=SEQ_MAX, description="refused with 409 unless the entity is at it")
    message: Optional[str] = None
    actor: Optional[str] = Field(None, pattern=ACTOR, max_length=MAX_ACTOR_CHARS)


TraceNode.model_rebuild()
PartNode.model_rebuild()
