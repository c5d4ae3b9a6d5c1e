"""Share links: the owner makes one (``POST /api/jobs/{id}/share``); whoever holds it sees the job
read-only, as a page (``/share/{token}``) and as JSON (``/api/share/{token}``, with its outputs and
archive under it). No delete, no share: the token names the job, not an owner."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import DocumentsDep, JobDep, SharesDep
from api.routes.pages import templates
from video_converter.errors import JobNotFound, NotFound
from video_converter.keys import content_disposition
from video_converter.model import JobRecord
from video_converter.views import JobView, ShareLink

router = APIRouter(tags=["share"])

DEAD_LINK = "This share link has expired, or its job was deleted."


class ShareRequest(BaseModel):
    expires_in: int | None = Field(
        default=None,
        gt=0,
        description="Seconds the link lasts: SHARE_LINK_DAYS (7) unless given, never past the retention.",
    )


def _max_seconds(request: Request) -> int | None:
    days = request.app.state.runtime.settings.retention_days
    return int(days * 86400) if days > 0 else None


@router.post("/api/jobs/{job_id}/share", status_code=201)
def share_job(
    job_id: str, job: JobDep, request: Request, shares: SharesDep, body: ShareRequest | None = None
) -> ShareLink:
    """A signed link that shows this job read-only (status, previews, downloads) until it expires or the
    job is deleted. Only the job's owner can make one."""
    settings = request.app.state.runtime.settings
    seconds = body.expires_in if body and body.expires_in else int(settings.share_link_days * 86400)
    longest = _max_seconds(request)
    if longest is not None:  # never past the job's own retention (expires_at says when it ends)
        seconds = min(seconds, longest)
    expires_at = int(time.time()) + seconds
    token = shares.issue(job.job_id, expires_at)
    base = str(request.base_url)
    return ShareLink(
        url=f"{base}share/{token}",
        api_url=f"{base}api/share/{token}",
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )


def get_shared_job(token: str, shares: SharesDep, documents: DocumentsDep) -> JobRecord:
    """The job a share link names, while the link lasts and the job exists; 404 otherwise."""
    share = shares.open(token)
    if share is None:
        raise NotFound(DEAD_LINK)
    try:
        return documents.existing(share.job_id)
    except JobNotFound:
        raise NotFound(DEAD_LINK) from None


SharedJob = Annotated[JobRecord, Depends(get_shared_job)]


@router.get("/api/share/{token}")
async def shared_job(job: SharedJob, documents: DocumentsDep) -> JobView:
    """The shared job's document: status, each output, download links."""
    return await run_in_threadpool(documents.view, job.job_id)


@router.head("/api/share/{token}", include_in_schema=False)
def shared_head(_: SharedJob) -> Response:
    return Response(status_code=200, media_type="application/json")


@router.get("/api/share/{token}/outputs/{format_id}", response_class=RedirectResponse, status_code=307)
async def shared_output(format_id: str, job: SharedJob, documents: DocumentsDep) -> RedirectResponse:
    """A fresh signed download link of one completed output (409 before)."""
    url = await run_in_threadpool(documents.output_url, job.job_id, format_id)
    return RedirectResponse(url, status_code=307)


@router.get("/api/share/{token}/archive", response_class=StreamingResponse)
async def shared_archive(job: SharedJob, documents: DocumentsDep) -> StreamingResponse:
    """Every completed output as one ZIP, streamed."""
    filename, chunks = await run_in_threadpool(documents.archive, job.job_id)
    headers = {"Content-Disposition": content_disposition(filename), "Cache-Control": "no-store"}
    return StreamingResponse(chunks, media_type="application/zip", headers=headers)


@router.get("/share/{token}", response_class=HTMLResponse, include_in_schema=False)
def shared_page(request: Request, token: str, shares: SharesDep) -> HTMLResponse:
    """The read-only job page; it reads the job from /api/share/{token}."""
    status = 200 if shares.open(token) is not None else 404
    context = {"job_id": "", "api_base": f"/api/share/{token}", "shared": True}
    return templates.TemplateResponse(request, "job.html", context, status_code=status)
