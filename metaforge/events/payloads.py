"""The payload of every event type, declared once: `@declare(NAME)` pairs a dotted name from
`metaforge.events` with the frozen model of its payload.

Writers are held to it (`check_draft`, called where a line is encoded), typed readers parse with
it (`parse_payload`), and the OpenAPI document of `mf serve` describes events with it
(`DECLARED`). A model forbids keys it does not declare: within one event format a type has one
shape, and a new shape is a new format with an upcaster (see `metaforge.events`).

Imported only by writers and typed readers: reads of the index never load pydantic for this.
"""

from typing import Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaforge.events import names as ev

DECLARED: dict[str, type["Payload"]] = {}


class Payload(BaseModel):
    # defer_build: a command checks one or two types; building all of them would cost it ~20 ms
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    event_type: ClassVar[str] = ""


def declare(name: str):
    """Register a model as the payload of the event type `name` (once: a second is a bug)."""
    def register(model: type[Payload]) -> type[Payload]:
        if name in DECLARED:
            raise RuntimeError(f"event type {name} declared twice")
        DECLARED[name] = model
        model.event_type = name
        return model
    return register


# ---- L1: the graph -----------------------------------------------------------------------------

@declare(ev.NODE_CREATED)
class NodeCreated(Payload):
    properties: dict[str, Any] = Field(default_factory=dict, description="absent when the entity has none")


@declare(ev.NODE_UPDATED)
class NodeUpdated(Payload):
    set: Optional[dict[str, Any]] = Field(None, description="properties given new values")
    unset: Optional[list[str]] = Field(None, description="properties removed")


@declare(ev.NODE_DELETED)
class NodeDeleted(Payload):
    pass


@declare(ev.PROPERTY_SET)
class PropertySet(Payload):
    key: str
    value: Any


@declare(ev.EDGE_CREATED)
class EdgeCreated(Payload):
    rel: str = Field(description="the relationship, e.g. SATISFIES")
    to: str = Field(description="the target entity; the source is the event's entity")


@declare(ev.EDGE_DELETED)
class EdgeDeleted(Payload):
    rel: str
    to: str


# ---- approval ----------------------------------------------------------------------------------

class ProposedEvent(Payload):
    type: str
    entity: str
    version: int
    payload: dict[str, Any]


@declare(ev.PROPOSAL_CREATED)
class ProposalCreated(Payload):
    changes: list[dict[str, Any]] = Field(description="the command, as `mf mutate apply` reads it")
    base: dict[str, int] = Field(description="entity → the version it was proposed on (0: absent)")
    rule: str = Field(description="the approval rule that made it a proposal")
    events: list[ProposedEvent] = Field(description="what it would append, planned when proposed")
    verdicts: list[dict[str, Any]] = Field(description="constraint verdicts that did not pass")
    source: str | None = Field(None, description="where the change came from (thread/policy.py), e.g. file ingest")
    records: list[ProposedEvent] | None = Field(None, description="records that land with it when approved "
                                                                  "(the mapping of a file read in)")
    files: dict[str, str] | None = Field(None, description="file → sha256 of the content it holds: the file "
                                                           "stays drifted until it is decided")


@declare(ev.PROPOSAL_APPROVED)
class ProposalApproved(Payload):
    events: int = Field(description="how many events of the batch carry the approved changes")


@declare(ev.PROPOSAL_REJECTED)
class ProposalRejected(Payload):
    pass


# ---- dual state: artifacts, state links, drift -------------------------------------------------

class ArtifactMapping(Payload):
    entity_id: str
    entity_type: str
    region: str = Field(description="stable key of the place in the file: symbol:<uuid>, row:R1")
    line: Optional[int] = None
    reports: Optional[dict[str, Any]] = Field(None, description="values the file only reports, where they "
                                                                "differed from the graph when mapped")


@declare(ev.ARTIFACT_MAPPED)
class ArtifactMapped(Payload):
    path: str
    adapter: str
    adapter_version: str
    sha256: str = Field(description="the file's content when mapped ('' when it was removed)")
    how: str = Field(description="ingest, project, commit, accept, removed, ...")
    mappings: list[ArtifactMapping]


@declare(ev.STATE_LINKED)
class StateLinked(Payload):
    semantic_version: int = Field(description="the seq the files were projected from")
    git_commit: str
    projected_at: str
    projected_by: str
    artifacts: list[str]
    how: Optional[str] = Field(None, description="commit: linked by the post-commit hook")


class DriftItem(Payload):
    kind: Literal["changed", "added", "removed"]
    entity: str
    direction: str = Field(description="file (the file moved), graph (the graph moved) or both")
    key: Optional[str] = None
    graph: Any = None
    file: Any = None
    read_only: bool = False


@declare(ev.DRIFT_DETECTED)
class DriftDetected(Payload):
    path: str
    adapter: str
    direction: str = Field(description="file, graph, both, missing or unreadable")
    fingerprint: str
    sha256: Optional[str]
    mapped_sha256: Optional[str]
    mapping_seq: int
    entities: int
    error: Optional[str]
    items: list[DriftItem]
    summary: list[str]


@declare(ev.DRIFT_RESOLVED)
class DriftResolved(Payload):
    path: str
    how: str = Field(description="accept-file, reproject, reconciled, reverted, ...")
    drift: Optional[int] = Field(description="seq of the drift.detected it closes")
    fingerprint: Optional[str]
    items: Optional[list[DriftItem]]
    by: Optional[str] = None
    restored_from: Optional[str] = None
    commit: Optional[str] = None


@declare(ev.MERGE_RESOLVED)
class MergeResolved(Payload):
    took: str = Field(description="ours or theirs")
    taken: list[str] = Field(description="ids of the held-back events whose values were taken")
    dropped: list[str]
    conflicts: list[str]


# ---- L2/L3: devices ----------------------------------------------------------------------------

@declare(ev.DEVICE_PROVISIONED)
class DeviceProvisioned(Payload):
    model: str = Field(description="the TwinModel it is an instance of")


@declare(ev.DEVICE_POLICY_CHANGED)
class DevicePolicyChanged(Payload):
    sync_policy: dict[str, Any]


@declare(ev.DEVICE_DECOMMISSIONED)
class DeviceDecommissioned(Payload):
    pass


@declare(ev.DEVICE_STATE_UPDATED)
class DeviceStateUpdated(Payload):
    from_: str = Field(alias="from")
    to: str
    metrics: dict[str, str] = Field(description="metric → its level, for those not ok")
    at: str | None = Field(None, description="time of the sample that changed the state (ISO 8601, UTC)")
    trigger: dict | None = Field(None, description="the metric and value that changed it")


# ---- L4: simulation ----------------------------------------------------------------------------

@declare(ev.SIMULATION_STARTED)
class SimulationStarted(Payload):
    kind: str
    scenario: str
    devices: int


@declare(ev.SIMULATION_COMPLETED)
class SimulationCompleted(Payload):
    simulation_seconds: Optional[float] = None
    steps: Optional[int] = None
    points: Optional[int] = None
    diverged: Optional[list[str]] = None
    rmse: Optional[dict[str, float]] = None
    validation_rmse: Optional[dict[str, float]] = None


@declare(ev.SIMULATION_FAILED)
class SimulationFailed(Payload):
    error: str


@declare(ev.SIMULATION_DIVERGENCE_DETECTED)
class SimulationDivergenceDetected(Payload):
    run: str
    model: str
    output: str
    metric: str
    value: float
    threshold: Optional[float]
    unit: str
    since_us: Optional[int]
    until_us: Optional[int]
    action: str


# ---- use ---------------------------------------------------------------------------------------

_validators: dict[str, Any] = {}


def _validator(name: str):
    """The compiled validator of a type's payload, built the first time a draft of it is checked
    (called directly: a bulk apply checks 100,000 drafts, and model_validate's wrapper costs a third)."""
    found = _validators.get(name)
    if found is None and name in DECLARED:
        model = DECLARED[name]
        model.model_rebuild()
        found = _validators[name] = model.__pydantic_validator__.validate_python
    return found


def check_draft(draft) -> None:  # an events.Draft
    """Refuse a draft whose payload does not fit its model: a bug in the code that drafted it."""
    validate = _validators.get(draft.type) or _validator(draft.type)
    if validate is None:
        return
    try:
        validate(draft.payload)
    except ValidationError as exc:
        from metaforge.errors import InvalidEvent

        raise InvalidEvent(f"{draft.type} on {draft.entity}: the payload does not fit its declaration: "
                           f"{_first_problem(exc)}", "nothing was written: this is a bug in mf, please report it",
                           {"type": draft.type, "errors": _problems(exc)}) from None


def parse_payload(d: dict) -> Any:
    """A stored event's payload as its model (as a dict for a type this build does not declare)."""
    payload = d.get("payload") or {}
    model = DECLARED.get(d["type"])
    if model is None:
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        from metaforge.errors import LogCorrupt

        raise LogCorrupt(f"event {d.get('seq')}: its {d['type']} payload does not fit its declaration: "
                         f"{_first_problem(exc)}", "was the line edited, or written by another build of mf?") from None


def _problems(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']}" for e in exc.errors()]


def _first_problem(exc: ValidationError) -> str:
    problems = _problems(exc)
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
