"""The HTTP API, /api/v1: each route checks its parameters, makes one library call and answers.
The routes are module-level; the twin and the settings come in as dependencies (serve/deps.py)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Annotated, Literal, Optional

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import FileResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from metaforge.errors import BadInput, NotFound
from metaforge.serve import schemas as s
from metaforge.serve.auth import check_signature, signed_path
from metaforge.serve.deps import SettingsDep, TwinDep
from metaforge.serve.limits import SEQ_MAX
from metaforge.serve.schemas import EVERY, WHERE
from metaforge.serve.settings import ServeSettings
from metaforge.serve.twin import JSON, ReadOnly, Twin

ERRORS = {status: {"model": s.Error, "description": why} for status, why in (
    (400, "bad input: a malformed id, parameter or value"), (401, "a token is needed, or it is wrong"),
    (403, "refused: another site, a read-only server"), (404, "no such entity, device or model"))}
WRITE_ERRORS = {**ERRORS, 202: {"model": s.ChangeResult, "description": "needs approval: recorded as a proposal"},
                409: {"model": s.Error, "description": "stale expect_version, or the entity exists"},
                422: {"model": s.Error, "description": "an error-level constraint would fail"}}


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")


router = APIRouter(prefix="/api/v1", responses=ERRORS)
in_thread = run_in_threadpool

# ---- the graph ------------------------------------------------------------------------------


@router.get("/status", response_model=s.Status, summary="Semantic version, counts, last event, git commit")
async def status(twin: TwinDep):
    from metaforge.thread.queries import status as run

    return JSON(await in_thread(lambda: run(twin.fresh())))


@router.get("/entities", response_model=s.EntityList, summary="Entities by type and property")
async def entities(twin: TwinDep, type: Optional[str] = Query(None, description="only this entity type"),
                   # the patterns are documented; the library checks them, with its own messages
                   where: list[Annotated[str, Field(json_schema_extra={"pattern": WHERE})]] = Query(
                       [], description="key=value, or != < <= > >= ~ (units convert)"),
                   limit: int = Query(1000, ge=1, le=100_000)):
    from metaforge.thread.queries import query

    type = type or None  # `type=` is no filter

    def run():
        repo = twin.fresh()
        if type is not None and type not in repo.types:
            raise BadInput(f"unknown entity type '{type}'", "see GET /api/v1/status for the types present")
        found = query(repo.index, type, where, limit + 1)
        return {"entities": found[:limit], "count": min(len(found), limit), "more": len(found) > limit}

    return JSON(await in_thread(run))


@router.get("/entities/{entity_id:path}", response_model=s.EntityDetail, summary="One entity with its relationships")
async def entity(twin: TwinDep,
                 entity_id: str = Path(description="Type:name (URL-encode # as %23)", examples=["BOMItem:U1"])):
    from metaforge.thread.queries import show

    # a primary-key read: answered on the event loop, faster than a hop to a thread
    return JSON(show(twin.fresh().index, entity_id))


@router.get("/trace/{entity_id:path}", response_model=s.Trace, summary="Everything upstream and downstream")
async def trace(twin: TwinDep, entity_id: str = Path(examples=["Requirement:REQ-001"]),
                depth: int = Query(10, ge=0, le=100), direction: Literal["up", "down", "both"] = "both"):
    from metaforge.thread.queries import trace as run

    return JSON(await in_thread(lambda: run(twin.fresh().index, entity_id, depth, direction)))


@router.get("/events", response_model=s.EventList, summary="The history, oldest first from since_seq")
async def events(twin: TwinDep, since_seq: int = Query(0, ge=0, le=SEQ_MAX),
                 type: Optional[str] = Query(None, description="node.* for a family"),
                 entity: Optional[str] = None, limit: int = Query(1000, ge=1, le=10_000)):
    from metaforge.thread.queries import history

    def run():
        found = history(twin.fresh(), entity or None, type or None, limit + 1, since_seq, reverse=True)
        page = found[:limit]
        return {"events": page, "last_seq": page[-1]["seq"] if page else since_seq, "more": len(found) > limit}

    return JSON(await in_thread(run))


@router.get("/constraints", response_model=s.Constraints, summary="Constraint verdicts, of one entity or all")
async def constraints(twin: TwinDep,
                      entity: Optional[str] = Query(None, description="only those bearing on this entity")):
    from metaforge.thread.constraints.engine import check_all
    from metaforge.thread.queries import constraints_on

    entity = entity or None

    def run():
        repo = twin.fresh()
        if entity is None:
            return {"entity": None, "verdicts": [v.as_dict() for v in check_all(repo.index, repo.types)]}
        return {"entity": entity, "verdicts": constraints_on(repo.index, repo.types, entity)}

    return JSON(await in_thread(run))


# ---- the 3D model ---------------------------------------------------------------------------


@router.get("/projects", response_model=list[s.Project], summary="TwinModels and the 3D models they show")
async def projects(twin: TwinDep):
    from metaforge.serve.manifests import projects as run

    return JSON(await in_thread(lambda: run(twin.fresh())))


@router.get("/projects/{project_id:path}/model-manifest", response_model=s.ModelManifest,
         summary="The ModelManifest for the 3D viewer, with a signed GLB URL")
async def model_manifest(twin: TwinDep, settings: SettingsDep,
                         project_id: str = Path(description="a TwinModel name, or a model key from /projects",
                                                examples=["DroneFlightController-v2.1"])):
    from metaforge.serve.manifests import manifest_for

    def run():
        key, manifest = manifest_for(twin.fresh(), project_id)
        name = _glb_name(manifest)
        url, expires = signed_path(settings, name)
        return {**manifest, "project_id": project_id, "model": key, "glb_url": url, "glb_url_expires": expires}

    return JSON(await in_thread(run))


@router.get("/artifacts/{name}", summary="A GLB file, through the signed URL the model manifest gives",
         responses={200: {"content": {"model/gltf-binary": {}}, "description": "the GLB"},
                    403: {"model": s.Error, "description": "unsigned, tampered or expired URL"}})
async def artifact(twin: TwinDep, settings: SettingsDep, name: str, expires: Optional[str] = None,
                   sig: Optional[str] = None):
    from metaforge.serve.manifests import GLB_NAME, inside_artifacts

    why = check_signature(settings, name, expires, sig)
    if why is not None:
        return JSON({"ok": False, "error": {"kind": "forbidden", "message": why, "hint": None}}, status_code=403)
    path = inside_artifacts(twin.root, name) if GLB_NAME.match(name) else None
    if path is None:
        raise NotFound(f"no model file {name}")
    left = max(0, int(expires) - int(time.time()))
    return FileResponse(path, media_type="model/gltf-binary", headers={"Cache-Control": f"private, max-age={left}"})


@router.get("/bom/items/{node_id:path}", response_model=s.Bom,
         summary="BOM data of a part: itself if a BOMItem, else what it and its sub-elements use")
async def bom(twin: TwinDep, node_id: str = Path(examples=["DesignElement:power"])):
    from metaforge.thread.queries import bom_for

    return JSON(await in_thread(lambda: bom_for(twin.fresh().index, node_id)))


# ---- devices, telemetry, simulation ---------------------------------------------------------


@router.get("/devices", response_model=s.DeviceList, summary="The registered devices")
async def devices(twin: TwinDep):
    from metaforge.thread.devices import devices as run

    return JSON({"devices": await in_thread(lambda: run(twin.fresh()))})


@router.get("/devices/{device_id}", response_model=s.Device, summary="A device: state, policy, sources, telemetry held")
async def device(twin: TwinDep, device_id: str = Path(examples=["FC-SN-20260301-001"])):
    from metaforge.thread.devices import describe

    return JSON(await in_thread(lambda: describe(twin.fresh(), _device(device_id))))


@router.get("/devices/{device_id}/telemetry", response_model=s.Telemetry,
         summary="A metric over a time range (raw, or per bucket); without metric, what the device reports")
async def telemetry(twin: TwinDep, device_id: str = Path(examples=["FC-SN-20260301-001"]),
                    metric: Optional[str] = None,
                    since: Optional[str] = Query(None, description="ISO time, epoch seconds, or an age: 2h"),
                    until: Optional[str] = None,
                    every: Optional[str] = Query(None, json_schema_extra={"pattern": EVERY},
                                                 description="bucket width: 10s, 1m, 1h"),
                    agg: Literal["mean", "min", "max", "last", "count", "sum"] = "mean",
                    limit: int = Query(100_000, ge=1, le=1_000_000)):
    return JSON(await in_thread(lambda: _telemetry(twin, device_id, metric, since or None, until or None,
                                                   every or None, agg, limit)))


@router.get("/simulations", response_model=s.Simulations, summary="SimulationRuns, of one device or all")
async def simulations(twin: TwinDep, device: Optional[str] = Query(None, description="a device serial")):
    from metaforge.thread.devices import show
    from metaforge.thread.queries import simulation_runs

    device = device or None

    def run():
        repo = twin.fresh()
        target = show(repo, _device(device))["id"] if device is not None else None
        return {"device": target, "runs": simulation_runs(repo.index, target)}

    return JSON(await in_thread(run))


# ---- writes (with --allow-writes) -----------------------------------------------------------


def write(twin: Twin, settings: ServeSettings, changes, message, actor, dry_run=False, created=False):
    """Changes through the command path `mf mutate` takes, as the requester's actor, else the server's
    --actor, else the git user; 202 when they became a proposal, 201 for a new entity."""
    from metaforge.actors import check_actor
    from metaforge.repo import default_actor
    from metaforge.thread.commands import execute
    from metaforge.thread.policy import Source

    if not settings.allow_writes:
        raise ReadOnly("this server is read-only", "start it with `mf serve --allow-writes`")
    repo = twin.fresh()
    who = check_actor(actor) if actor else settings.actor or default_actor(repo.root)
    result = execute(repo, changes, actor=who, message=message, dry_run=dry_run, source=Source.SERVER)
    code = 202 if result.proposal else 201 if created and result.appended else 200
    return JSON(result.as_dict(), status_code=code)


@router.post("/changes", response_model=s.ChangeResult, responses=WRITE_ERRORS,
          summary="Apply changes atomically, as `mf mutate apply` (202 when they need approval)")
async def changes(twin: TwinDep, settings: SettingsDep, body: s.ChangesBody):
    from metaforge.thread.changes_file import changes_from_data

    items, _ = changes_from_data(body.changes, "request")
    return await in_thread(lambda: write(twin, settings, items, body.message, body.actor, body.dry_run))


@router.post("/entities", response_model=s.ChangeResult, status_code=201, responses=WRITE_ERRORS,
          summary="Create an entity")
async def add(twin: TwinDep, settings: SettingsDep, body: s.AddBody):
    from metaforge.thread.commands import Change

    return await in_thread(lambda: write(twin, settings, [Change("add", body.id, props=body.properties)],
                                         body.message, body.actor, created=True))


@router.patch("/entities/{entity_id:path}", response_model=s.ChangeResult, responses=WRITE_ERRORS,
           summary="Set and unset properties (409 on a stale expect_version)")
async def patch(twin: TwinDep, settings: SettingsDep, entity_id: str, body: s.PatchBody = Body(...)):
    from metaforge.thread.commands import Change

    await in_thread(lambda: _existing(twin, entity_id))
    ops = ([Change("set", entity_id, props=body.properties, expect_version=body.expect_version)]
           if body.properties else [])
    if body.unset:
        ops.append(Change("unset", entity_id, keys=body.unset,
                          expect_version=None if ops else body.expect_version))
    if not ops:
        raise BadInput("nothing to change: give properties or unset")
    return await in_thread(lambda: write(twin, settings, ops, body.message, body.actor))


@router.delete("/entities/{entity_id:path}", response_model=s.ChangeResult, responses=WRITE_ERRORS,
            summary="Remove an entity and its relationships")
async def remove(twin: TwinDep, settings: SettingsDep, entity_id: str,
                 expect_version: Optional[int] = Query(None, ge=0, le=SEQ_MAX), message: Optional[str] = None):
    from metaforge.thread.commands import Change

    await in_thread(lambda: _existing(twin, entity_id))
    return await in_thread(lambda: write(twin, settings, [Change("remove", entity_id, expect_version=expect_version)],
                                         message, None))


def _device(device_id: str) -> str:
    """A device named in a path or a filter: another type's id is no device there (404), as an
    unknown serial is."""
    if ":" in device_id.removeprefix("DeviceInstance:"):
        raise NotFound(f"no device {device_id}", "a serial, or DeviceInstance:SERIAL (GET /api/v1/devices)")
    return device_id


def _existing(twin: Twin, entity_id: str) -> None:
    """PATCH and DELETE name an entity in their path: one that is not there is a 404, as a read of it."""
    if not twin.fresh().index.exists(entity_id):
        raise NotFound(f"unknown entity {entity_id}", "list what exists with GET /api/v1/entities")


def _glb_name(manifest: dict) -> str:
    """The GLB's file name in .metaforge/artifacts/, refusing a manifest that points anywhere else."""
    from metaforge.serve.manifests import GLB_NAME

    url = manifest.get("glb_url") or ""
    folder, _, name = url.rpartition("/")
    if folder != ".metaforge/artifacts" or not GLB_NAME.match(name):
        raise NotFound("the model's manifest names no GLB in .metaforge/artifacts/", "parse the STEP file again")
    return name


TIME_RANGE = 100_000 * 365 * 86400 * 10**6  # µs: far past any real time, well inside 64 bits


def _telemetry(twin, device_id, metric, since, until, every, agg, limit) -> dict:
    from metaforge.thread.devices import show
    from metaforge.sync.ingest import parse_span, parse_time

    name = show(twin.fresh(), _device(device_id))["name"]
    now = int(time.time() * 1e6)  # the range is checked even when unused (no metric): what is taken is valid
    lo, hi, width = parse_time(since, now), parse_time(until, now), parse_span(every)
    for which, value in (("since", lo), ("until", hi), ("every", width)):
        if value is not None and not -TIME_RANGE <= value <= TIME_RANGE:
            raise BadInput(f"{which}: out of range (more than 100,000 years from 1970)")
    if width is not None and width <= 0:
        raise BadInput(f"every={every}: a bucket must be wider than 0")
    ts = twin.telemetry()
    if metric is None:
        return {"device": name, "metrics": [{"metric": m, "samples": n, "last_ts": last}
                                            for m, n, _, last in ts.metrics_of(name)]}
    rows = ts.query(name, metric, lo, hi, width, agg)
    if not rows and metric not in {m for m, *_ in ts.metrics_of(name)}:
        raise NotFound(f"device {name} has no metric {metric}", "GET without ?metric= lists what it reports")
    return {"device": name, "metric": metric, "every": every, "agg": agg if width else None,
            "points": [{"ts": _iso(t), "t": t / 1e6, "value": v} for t, v in rows[:limit]],
            "truncated": len(rows) > limit}
