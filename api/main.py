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
from api.rate_limit import RateLimiter, per_minute
from api.request_limits import RequestLimits
from api.routes import docs, files, formats, health, jobs, me, pages, share, streams, uploads
from video_converter import __version__
from video_converter.auth import Authenticator, signing_secret
from video_converter.config import get_settings
from video_converter.documents import JobDocuments
from video_converter.jobs import JobService
from video_converter.multipart import Multipart
from video_converter.quotas import Quotas
from video_converter.runtime import Runtime, build_runtime
from video_converter.shares import ShareTokens

READ_THREADS = 16
STATIC_DIR = Path(__file__).resolve().parent / "static"
# The stream player's files, as a stream's bundle holds them (video_converter.bundle)
PLAYER_ASSETS = {
    name: STATIC_DIR / name for name in ("player.js", "player.css", "vendor/hls.js/hls.min.js", "vendor/hls.js/LICENSE")
}


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The app over ``runtime``; without one it builds its own from the environment (and closes it)."""
    rt = runtime or build_runtime(get_settings())
    # Status records are read in parallel: a poll of an 8-format job costs one S3 round trip, not eight.
    service = JobService(rt, JobDocuments(rt, read_threads=READ_THREADS, player_assets=PLAYER_ASSETS))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.documents.close()
        if runtime is None:
            rt.close()

    app = docs.DocumentedAPI(  # a FastAPI app whose OpenAPI document describes the flow and real errors
        title="video-converter",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by api.routes.docs, with the assets from the app instead of a CDN
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.jobs = service
    secret = signing_secret(rt)  # sessions and share links, the same on every API process
    app.state.auth = Authenticator.for_runtime(rt, secret)
    app.state.shares = ShareTokens(secret)
    app.state.quotas = Quotas(rt.jobs, rt.settings)
    app.state.rate_limiter = RateLimiter(per_minute(rt.settings))
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
    for module in (health, formats, uploads, jobs, streams, share, files, pages, docs, me):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(docs.ASSETS_URL, docs.assets(), name="docs-assets")
    return app
