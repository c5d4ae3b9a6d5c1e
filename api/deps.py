"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.rate_limit import RateLimiter, client_address
from api.responses import JobId
from video_converter.auth import SESSION_COOKIE, Authenticator
from video_converter.documents import JobDocuments
from video_converter.errors import Forbidden
from video_converter.jobs import JobService
from video_converter.model import JobRecord
from video_converter.multipart import Multipart
from video_converter.owners import Owner
from video_converter.quotas import Quotas
from video_converter.runtime import Runtime
from video_converter.shares import ShareTokens
from video_converter.uploads import Uploads


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def get_documents(request: Request) -> JobDocuments:
    documents: JobDocuments = request.app.state.jobs.documents
    return documents


def get_uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.jobs.uploads
    return uploads


def get_multipart(request: Request) -> Multipart:
    multipart: Multipart = request.app.state.multipart
    return multipart


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
JobsDep = Annotated[JobService, Depends(get_jobs)]
DocumentsDep = Annotated[JobDocuments, Depends(get_documents)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]


# Who a request acts for (video_converter.auth), and the job routes' one lookup.

SESSION_MAX_AGE = 30 * 86400  # seconds: a visitor finds their jobs again for as long as they are kept
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CROSS_SITE = (
    "Cross-site requests are refused: this request came from another site with this site's cookie. "
    "Use the page on this site, or send an API key (Authorization: Bearer)."
)


def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.auth
    return authenticator


def same_origin(request: Request) -> bool:
    """Whether a browser says the request comes from this site (Sec-Fetch-Site, else Origin); a request
    with neither header does not come from a browser's cross-site form or script."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


# Declares the Bearer scheme in the OpenAPI document (Swagger UI's "Authorize" then sends the key); the
# header itself is read by ``get_owner``, which answers a missing key with its own sentence.
BEARER = HTTPBearer(auto_error=False, description="An API key from `video-converter keys create` (AUTH=keys).")


def get_owner(
    request: Request, response: Response, _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> Owner:
    """The caller's owner: the Bearer key's, the session cookie's (a new session with ANONYMOUS), or
    everyone's under AUTH=none; 401 with a sentence without one in keys mode. A cookie-authenticated
    request that changes something must be same-origin (CSRF); Bearer requests need no such check."""
    auth = get_authenticator(request)
    caller = auth.caller(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))
    if caller.by_cookie and request.method in UNSAFE_METHODS and not same_origin(request):
        raise Forbidden(CROSS_SITE)
    if caller.new_cookie is not None:
        response.set_cookie(
            SESSION_COOKIE,
            caller.new_cookie,
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return caller.owner


OwnerDep = Annotated[Owner, Depends(get_owner)]


def get_owned_job(job_id: JobId, owner: OwnerDep, documents: DocumentsDep) -> JobRecord:
    """The job a route names, if it is the caller's; 404 exactly as for an unknown job otherwise."""
    return documents.owned(job_id, owner)


JobDep = Annotated[JobRecord, Depends(get_owned_job)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


def get_shares(request: Request) -> ShareTokens:
    shares: ShareTokens = request.app.state.shares
    return shares


SharesDep = Annotated[ShareTokens, Depends(get_shares)]


# --- quotas and rate limits ----------------------------------------------------------------------------------


def get_quotas(request: Request) -> Quotas:
    quotas: Quotas = request.app.state.quotas
    return quotas


def rate_limited(request: Request) -> None:
    """Count a job creation or upload ticket against its client address (429 past RATE_LIMIT_PER_MINUTE)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.hit(client_address(request))


QuotasDep = Annotated[Quotas, Depends(get_quotas)]
RateLimited = Depends(rate_limited)
MultipartDep = Annotated[Multipart, Depends(get_multipart)]
