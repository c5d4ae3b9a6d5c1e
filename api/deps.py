"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.rate_limit import RateLimiter, client_address
from video_converter.documents import JobDocuments
from video_converter.jobs import JobService
from video_converter.owners import EVERYONE, Owner
from video_converter.quotas import Quotas
from video_converter.runtime import Runtime
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


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
JobsDep = Annotated[JobService, Depends(get_jobs)]
DocumentsDep = Annotated[JobDocuments, Depends(get_documents)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]


# --- quotas and rate limits ----------------------------------------------------------------------------------


def get_quotas(request: Request) -> Quotas:
    quotas: Quotas = request.app.state.quotas
    return quotas


def get_caller(request: Request) -> Owner:
    """Who the request acts for. Provisional: AUTH=none's one owner, until the keys work's OwnerDep."""
    return EVERYONE


def rate_limited(request: Request) -> None:
    """Count a job creation or upload ticket against its client address (429 past RATE_LIMIT_PER_MINUTE)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.hit(client_address(request))


QuotasDep = Annotated[Quotas, Depends(get_quotas)]
CallerDep = Annotated[Owner, Depends(get_caller)]
RateLimited = Depends(rate_limited)
