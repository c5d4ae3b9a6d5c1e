"""Every error is JSON ``{"detail": "<a sentence a person understands>"}``, never a bare 500 page.

Routes raise the core's ``RequestError``s; this maps each kind to its status in one table.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.templating import templates
from video_converter.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    LinkExpired,
    NotFound,
    OutputNotReady,
    OverLimit,
    QueueUnavailable,
    RequestError,
    Unauthorized,
    UploadTooLarge,
)

log = logging.getLogger(__name__)

# Most specific first: UploadTooLarge is an InvalidRequest.
STATUS: list[tuple[type[RequestError], int]] = [
    (UploadTooLarge, 413),
    (InvalidRequest, 422),
    (NotFound, 404),
    (LinkExpired, 403),
    (OutputNotReady, 409),
    (Conflict, 409),
    (QueueUnavailable, 503),
    (OverLimit, 429),
    (Unauthorized, 401),
    (Forbidden, 403),
]
RETRY_AFTER = {503: "30"}
# The data folder cannot take writes: the service, not the request, is at fault, and it may pass.
_FULL = "The server has run out of disk space; please try again later."
_READ_ONLY = "The server cannot write its data right now; please try again later."
STORAGE_ERRORS = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EROFS: _READ_ONLY,
    errno.EACCES: _READ_ONLY,
    errno.EPERM: _READ_ONLY,
}


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: bytes) -> M:
    """A JSON request body as ``model``, or InvalidRequest (422) with one sentence naming the fields."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(sentence(exc.errors())) from None


def sentence(errors: Sequence[Any]) -> str:
    """Pydantic's validation errors as one sentence naming the fields."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = str(err.get("msg", "is invalid"))
        parts.append(f"{where}: {msg}" if where else msg)
    return ("Invalid request: " + "; ".join(parts) + ".") if parts else "Invalid request."


def wants_page(request: Request) -> bool:
    """A browser opening an address (not a script asking the API): it gets a page, not JSON."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def not_found_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "404.html", {}, status_code=404)


def status_of(exc: RequestError) -> int:
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 400)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc, exc_info=exc.__cause__)
        headers = {"Retry-After": RETRY_AFTER[status]} if status in RETRY_AFTER else None
        if isinstance(exc, OverLimit):
            headers = {"Retry-After": str(exc.retry_after)}
        if status == 401:  # RFC 9110: a 401 names the scheme it wants
            headers = {"WWW-Authenticate": 'Bearer realm="video-converter"'}
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": sentence(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Only the framework raises these now (no route, wrong method).
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and wants_page(request):
            return not_found_page(request)
        if exc.status_code == 404:
            detail = "Nothing here: check the address."
        elif exc.status_code == 405:
            detail = "This address does not accept that method."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OSError)
    async def storage_error(request: Request, exc: OSError) -> JSONResponse:
        sentence = STORAGE_ERRORS.get(exc.errno or 0)
        if sentence is None:
            return await unexpected(request, exc)
        log.error("storage unavailable: %s", exc)  # /health says the same, so the service is taken out
        return JSONResponse({"detail": sentence}, status_code=503, headers={"Retry-After": RETRY_AFTER[503]})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {"detail": "Something went wrong on our side. Please try again in a moment."}, status_code=500
        )
