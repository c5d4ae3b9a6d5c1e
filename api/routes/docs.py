"""/docs (Swagger UI) and /redoc, served with their assets from the app: they work without internet.

The files come from fastapi-offline's bundled copy of Swagger UI and ReDoc; Swagger UI starts from
/static/docs.js instead of FastAPI's inline script, so /docs keeps a strict Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"


def assets() -> StaticFiles:
    return StaticFiles(directory=ASSETS_DIR)


def _page(request: Request, template: str) -> HTMLResponse:
    context = {"title": request.app.title, "openapi_url": request.app.openapi_url, "assets": ASSETS_URL}
    return templates.TemplateResponse(request, template, context)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, "swagger.html")


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    return _page(request, "redoc.html")
