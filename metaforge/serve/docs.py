"""The API's documentation page, /docs: Swagger UI from the files the `fastapi-offline` package
installs (no CDN: the page works on a machine without internet). As with the dashboard, the files
are a table made once; a request path is a key in it or a 404."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse

from metaforge.errors import NotFound

ASSETS = "/docs/assets"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}

router = APIRouter(include_in_schema=False)


def swagger_files() -> dict[str, Path]:
    """name → file of the Swagger UI the installed fastapi-offline ships."""
    import fastapi_offline

    folder = Path(fastapi_offline.__file__).parent / "static"
    return {name: folder / name for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")
            if (folder / name).is_file()}


_FILES: dict[str, Path] | None = None


def _files() -> dict[str, Path]:
    global _FILES
    if _FILES is None:
        _FILES = swagger_files()
    return _FILES


@router.get("/docs")
async def docs():
    return get_swagger_ui_html(openapi_url="/openapi.json", title="mf serve: API",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css", swagger_favicon_url=f"{ASSETS}/favicon.png")


@router.get(ASSETS + "/{name}")
async def asset(name: str):
    found = _files().get(name)
    if found is None:
        raise NotFound(f"nothing at {ASSETS}/{name}")
    return FileResponse(found, media_type=_TYPES[found.suffix], headers={"Cache-Control": "public, max-age=86400"})
