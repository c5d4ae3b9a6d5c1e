"""The app factory: builds the FastAPI app and nothing else (workers are started by the CLI)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import errors
from api.headers import SecurityHeaders, content_security_policy, signed_origins
from api.limits import RequestLimits
from api.routes import files, formats, health, jobs, pages, uploads
from video_converter import __version__
from video_converter.backends import build_converter
from video_converter.config import Settings, get_settings
from video_converter.jobs import Converter

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, converter: Converter | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="video-converter",
        version=__version__,
        description="Upload a video; get MP4 renditions, WebM, MP3, GIF and thumbnails back.",
    )
    app.state.settings = settings
    app.state.converter = converter = converter or build_converter(settings)
    errors.install(app)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_headers=settings.max_request_headers,
    )
    csp = content_security_policy(
        upload_origins=signed_origins(converter.uploads, "upload"),
        media_origins=signed_origins(converter.converted, "download"),
    )
    app.add_middleware(SecurityHeaders, csp=csp)  # added last, so outermost: refusals carry the headers too
    for module in (health, formats, uploads, jobs, files, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
