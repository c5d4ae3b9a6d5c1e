"""Every error is JSON ``{"detail": "<a sentence a person understands>"}``, never a bare 500 page."""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from video_converter.jobs import InvalidRequest, JobNotFound, OutputNotReady, QueueUnavailable, UploadTooLarge
from video_converter.limits import MediaRejected

log = logging.getLogger(__name__)


def sentence(errors: list[dict]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = str(err.get("msg", "is invalid"))
        parts.append(f"{where}: {msg}" if where else msg)
    return ("Invalid request: " + "; ".join(parts) + ".") if parts else "Invalid request."


def install(app: FastAPI) -> None:
    @app.exception_handler(UploadTooLarge)
    async def too_large(_: Request, exc: UploadTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(MediaRejected)
    async def rejected(_: Request, exc: MediaRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)  # over a limit: the same file never passes

    @app.exception_handler(InvalidRequest)
    async def invalid(_: Request, exc: InvalidRequest) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(JobNotFound)
    async def not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": "No such job (or format) here; check the link."}, status_code=404)

    @app.exception_handler(OutputNotReady)
    async def not_ready(_: Request, exc: OutputNotReady) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(QueueUnavailable)
    async def unavailable(_: Request, exc: QueueUnavailable) -> JSONResponse:
        log.exception("queue unavailable")
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "30"})

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": sentence(list(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "Nothing here: check the address."
        elif exc.status_code == 405:
            detail = "This address does not accept that method."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OSError)
    async def storage_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("out of disk space: %s", exc)
            return JSONResponse(
                {"detail": "The server has run out of disk space; please try again later."}, status_code=507
            )
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {"detail": "Something went wrong on our side. Please try again in a moment."}, status_code=500
        )
