"""The dashboard's built files (metaforge/serve/static/, made by `npm run build` in web/).

Served from a table made at start-up (`static_files`, kept in `app.state`) of the regular files
under static/: a request path is a key in that table or a 404, so no path a client writes ever
reaches the file system.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from metaforge.errors import NotFound
from metaforge.serve.deps import StaticFilesDep

STATIC = Path(__file__).parent / "static"
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>mf serve</title>
<h1>The dashboard is not built</h1>
<p>This mf was installed without its dashboard. In a clone, <code>./scripts/setup</code> builds it
(Node.js and npm needed then, not at run time). The API answers at <a href="/docs">/docs</a>.</p>"""


def static_files(folder: Path = STATIC) -> dict[str, Path]:
    """URL path → file, for every regular file (no symlinks) under the folder."""
    table = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink() and path.is_file() and not name.startswith("."):
                table["/" + path.relative_to(folder).as_posix()] = path
    if "/index.html" in table:
        table["/"] = table["/index.html"]
    return table


router = APIRouter(include_in_schema=False)

# only "/", "/NAME" and "/assets/NAME": any other path is the API's, or nothing (404, 405)


@router.get("/")
async def index(files: StaticFilesDep):
    found = files.get("/")
    return _file(found, False) if found else HTMLResponse(NOT_BUILT, status_code=503)


@router.get("/{name}")
async def top(files: StaticFilesDep, name: str):
    return _file(_lookup(files, "/" + name), False)


@router.get("/assets/{name}")
async def asset(files: StaticFilesDep, name: str):
    return _file(_lookup(files, "/assets/" + name), True)  # vite puts a content hash in these names


def _lookup(files: dict[str, Path], path: str) -> Path:
    found = files.get(path)
    if found is None:
        raise NotFound(f"nothing at {path}", "the dashboard is at /, the API under /api/v1 (see /docs)")
    return found


def _file(found: Path, hashed: bool):
    kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    return FileResponse(found, media_type=kind, headers={
        "Cache-Control": "public, max-age=31536000, immutable" if hashed else "no-cache"})
