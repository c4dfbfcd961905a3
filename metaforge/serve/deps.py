"""What the routes depend on, taken from the app that serves them (set up once by `create_app`):
the repository as the server reads it, the settings it was started with, the live hubs and the
dashboard's files. The routes themselves are module-level; a test or a second app gives them
other values through `app.state` or FastAPI's `dependency_overrides`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from metaforge.serve.hubs import DeviceHub, EventHub
from metaforge.serve.settings import ServeSettings
from metaforge.serve.twin import Twin


async def get_twin(conn: HTTPConnection) -> Twin:
    """The repository: one Repo a thread, so a route hands the Twin (not a Repo) to its worker thread."""
    return conn.app.state.twin


async def get_settings(conn: HTTPConnection) -> ServeSettings:
    return conn.app.state.settings


async def get_events_hub(conn: HTTPConnection) -> EventHub:
    return conn.app.state.events_hub


async def get_device_hub(conn: HTTPConnection) -> DeviceHub:
    return conn.app.state.device_hub


async def get_static_files(conn: HTTPConnection) -> dict[str, Path]:
    return conn.app.state.static_files


TwinDep = Annotated[Twin, Depends(get_twin)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
EventsHubDep = Annotated[EventHub, Depends(get_events_hub)]
DeviceHubDep = Annotated[DeviceHub, Depends(get_device_hub)]
StaticFilesDep = Annotated[dict[str, Path], Depends(get_static_files)]
