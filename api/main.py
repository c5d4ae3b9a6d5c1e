"""The app factory: builds the FastAPI app and nothing else (workers are started by the CLI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import errors
from api.headers import SecurityHeaders, content_security_policy, signed_origins
from api.logfields import JobLogFields
from api.request_limits import RequestLimits
from api.routes import docs, files, formats, health, jobs, pages, uploads
from video_converter import __version__
from video_converter.config import get_settings
from video_converter.documents import JobDocuments
from video_converter.jobs import JobService
from video_converter.multipart import Multipart
from video_converter.runtime import Runtime, build_runtime

READ_THREADS = 16
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The app over ``runtime``; without one it builds its own from the environment (and closes it)."""
    rt = runtime or build_runtime(get_settings())
    # Status records are read in parallel: a poll of an 8-format job costs one S3 round trip, not eight.
    service = JobService(rt, JobDocuments(rt, read_threads=READ_THREADS))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.documents.close()
        if runtime is None:
            rt.close()

    app = FastAPI(
        title="video-converter",
        version=__version__,
        description="Upload a video; get MP4 renditions, WebM, MP3, GIF and thumbnails back.",
        lifespan=lifespan,
        docs_url=None,  # served by api.routes.docs, with the assets from the app instead of a CDN
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.jobs = service
    app.state.multipart = Multipart(rt, service.uploads)
    errors.install(app)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=rt.settings.max_body_bytes,
        max_upload_bytes=rt.settings.max_upload_bytes,
        max_headers=rt.settings.max_request_headers,
    )
    csp = content_security_policy(
        upload_origins=signed_origins(rt.uploads, "upload"),
        media_origins=signed_origins(rt.converted, "download"),
    )
    app.add_middleware(JobLogFields)  # the job (and format) a request is about, on its log lines
    app.add_middleware(SecurityHeaders, csp=csp)  # added last, so outermost: refusals carry the headers too
    for module in (health, formats, uploads, jobs, files, pages, docs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(docs.ASSETS_URL, docs.assets(), name="docs-assets")
    return app
