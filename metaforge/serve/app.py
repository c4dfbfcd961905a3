"""The FastAPI application: the module-level routes (api, ws, static), the guard in front of them,
the live hubs behind them, and the one place errors become JSON answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from metaforge import __version__
from metaforge.errors import MetaforgeError
from metaforge.serve import api, docs, static, ws
from metaforge.serve.auth import Guard
from metaforge.serve.hubs import DeviceHub, EventHub
from metaforge.serve.settings import ServeSettings
from metaforge.serve.twin import JSON, Twin, error_response

log = logging.getLogger("mf.serve")

DESCRIPTION = """The twin of the repository, read side of `mf`: the graph, traces, events, the 3D
model's manifest, BOM data, devices, telemetry and simulation runs; writes (with `--allow-writes`)
go through the same command path as `mf mutate`. Live: WebSocket `/ws/events` and
`/ws/devices/{id}`. With a token, send `Authorization: Bearer TOKEN`."""


def create_app(settings: ServeSettings) -> FastAPI:
    """One server's app: the module-level routes, with the twin, settings, hubs and dashboard files
    they depend on put in `app.state` here, once."""
    twin = Twin(settings.root)
    events_hub = EventHub(twin, max(settings.poll_s, 0.02))
    device_hub = DeviceHub(twin, settings.poll_s)
    events_hub.listeners.append(device_hub.on_event)
    app = FastAPI(title="mf serve", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=JSON, docs_url=None, redoc_url=None, exception_handlers=EXCEPTION_HANDLERS)
    app.state.settings, app.state.twin = settings, twin
    app.state.events_hub, app.state.device_hub = events_hub, device_hub
    app.state.static_files = static.static_files()
    app.include_router(api.router)
    app.include_router(ws.router)
    app.include_router(docs.router)
    app.include_router(static.router)
    app.openapi = lambda: _openapi(app)
    app.add_middleware(HotReads, twin=twin)
    app.add_middleware(Guard, settings=settings)  # added last: the outermost, before anything else
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, with the entity types this repository declares as the values of
    /entities?type= (a client, or schemathesis, then knows which ones there are)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        types = sorted(app.state.twin.repo().types)
        for parameter in doc["paths"]["/api/v1/entities"]["get"].get("parameters", []):
            if parameter["name"] == "type":
                parameter["schema"] = {"type": "string", "enum": types + [""], "description": "only this entity type"}
        app.openapi_schema = doc
    return app.openapi_schema


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """The live hubs run while the server does."""
    import gc

    events_hub, device_hub = app.state.events_hub, app.state.device_hub
    events_hub.start_position()
    gc.collect()
    gc.freeze()  # what start-up made lives as long as the server: full collections skip it (no tens-of-ms pauses)
    tasks = [asyncio.create_task(events_hub.run()), asyncio.create_task(device_hub.run())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        device_hub.close()


# ---- errors: one JSON shape, {"ok": false, "error": {kind, message, hint}} ------------------------

async def library_error(request: Request, exc: MetaforgeError):
    return error_response(exc)


async def bad_parameters(request: Request, exc: RequestValidationError):
    errors = [_plain(e) for e in exc.errors()[:20]]
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSON({"ok": False, "error": {"kind": "bad_input", "message": f"{where}: {first.get('msg', 'invalid')}",
                                        "hint": None, "errors": errors}}, status_code=400)


def _plain(value, depth: int = 0):
    """A validation error as JSON can hold it: what the client sent comes back, but an integer
    beyond 64 bits as its digits, anything else odd as its repr, all of it cut short."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -2**63 <= value < 2**63 else str(value)[:40]
    if isinstance(value, str):
        return value[:200]
    if depth < 4 and isinstance(value, dict):
        return {str(k)[:100]: _plain(v, depth + 1) for k, v in list(value.items())[:20]}
    if depth < 4 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in list(value)[:20]]
    return repr(value)[:200]


async def http_error(request: Request, exc: HTTPException):
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"nothing at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # every method of the path, not only those of the first route matched
        allowed = _allowed_methods(request)
        message = f"{request.method} {request.url.path}: allowed {', '.join(allowed)}"
        headers = {"Allow": ", ".join(allowed)}
    return JSON({"ok": False, "error": {"kind": kind, "message": message, "hint": None}},
                status_code=exc.status_code, headers=headers)


async def internal(request: Request, exc: Exception):
    log.exception("internal error on %s", request.url.path)
    return JSON({"ok": False, "error": {"kind": "internal", "message": f"{type(exc).__name__}: {exc}",
                                        "hint": None}}, status_code=500)


EXCEPTION_HANDLERS = {MetaforgeError: library_error, RequestValidationError: bad_parameters,
                      HTTPException: http_error, Exception: internal}


class HotReads:
    """GET /api/v1/entities/{id}, answered before FastAPI's router. Viewers and agents read entities
    far more than anything else, and routing plus parameter parsing cost several times the SQLite
    read: skipping them doubles the rate one core serves. Same answers as the documented route
    (which stays, for the OpenAPI document); the guard has already passed the request."""

    PREFIX = "/api/v1/entities/"

    def __init__(self, app, twin: Twin):
        self.app, self.twin = app, twin

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or not path.startswith(self.PREFIX) \
                or len(path) == len(self.PREFIX):
            return await self.app(scope, receive, send)
        from metaforge.thread.queries import show

        try:
            body, status = orjson.dumps(show(self.twin.fresh().index, path[len(self.PREFIX):])), 200
        except MetaforgeError as exc:
            response = error_response(exc)
            body, status = response.body, response.status_code
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route takes at this path (each route, or included router, asked with each)."""
    from starlette.routing import Match

    return [method for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in request.app.routes)]


def serve(settings: ServeSettings, ready=None) -> None:
    """Run until SIGINT/SIGTERM. `ready(host, port)` is called once the socket listens."""
    import socket

    import uvicorn

    from metaforge.serve.limits import WS_MESSAGE, BoundedHttpTools

    app = create_app(settings)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host.strip("[]"), settings.port))  # port 0: the system picks a free one
    sock.listen(2048)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", ws_ping_interval=20,
                            timeout_graceful_shutdown=2, http=BoundedHttpTools, ws_max_size=WS_MESSAGE)
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets=sockets)
        if ready is not None and server.started:
            ready(settings.host, port)

    server.startup = startup
    server.run(sockets=[sock])
