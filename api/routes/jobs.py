"""Jobs: create one (multipart upload, or JSON naming an upload), follow it, download its outputs."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import DocumentsDep, JobDep, JobsDep, OwnerDep, QuotasDep, RateLimited
from api.errors import sentence
from api.forms import multipart_upload
from video_converter import keys
from video_converter.errors import InvalidRequest
from video_converter.keys import content_disposition
from video_converter.model import is_job_id
from video_converter.ownerindex import MAX_PAGE, is_cursor
from video_converter.views import JobList, JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class JobFromUpload(BaseModel):
    upload_id: str
    filename: str
    formats: list[str]
    callback_url: str | None = Field(
        default=None, description="POSTed the job's JSON, signed (X-Signature), when the job is finished."
    )


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "formats"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "formats": {"type": "array", "items": {"type": "string"}},
                        "callback_url": {"type": "string", "description": "Webhook called when the job ends."},
                    },
                }
            },
            "application/json": {"schema": JobFromUpload.model_json_schema()},
        },
    }
}


def _split(values: list[str]) -> list[str]:
    """``formats`` may repeat, or be one comma-separated field (``-F formats=720p,mp3``)."""
    return [part for value in values for part in value.split(",")]


def _parse_json(body: bytes) -> JobFromUpload:
    try:
        return JobFromUpload.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(sentence(exc.errors())) from None


def _uploaded_bytes(jobs: JobsDep, upload_id: str) -> int:
    """The size of the original an upload ticket stored (0: none, refused by the creation itself)."""
    return (jobs.rt.uploads.size(keys.source_key(upload_id)) or 0) if is_job_id(upload_id) else 0


@router.post("", status_code=201, openapi_extra=_BODY_DOC, dependencies=[RateLimited])
async def create_job(request: Request, jobs: JobsDep, owner: OwnerDep, quotas: QuotasDep) -> JobView:
    """Create a job: multipart with ``file`` and ``formats``, or JSON naming an ``upload_id``. Past a
    quota or the rate limit: 429 with Retry-After and a sentence saying which limit and when it frees."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await run_in_threadpool(_parse_json, await request.body())  # parsing off the event loop
        size = await run_in_threadpool(_uploaded_bytes, jobs, body.upload_id)

        def create() -> JobView:
            return jobs.create_job(body.upload_id, body.filename, body.formats, body.callback_url, owner)

        return await run_in_threadpool(quotas.create_within, owner, size, create)
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Send the video as multipart/form-data (a file field and formats), or JSON.")
    await run_in_threadpool(quotas.check, owner)  # refused before the file is received
    async with multipart_upload(request) as (upload, form):
        formats = _split([v for v in form.getlist("formats") if isinstance(v, str)])
        callback = form.get("callback_url")
        callback_url = callback if isinstance(callback, str) else None

        def upload_and_create() -> JobView:
            return jobs.upload_and_create(upload.file, upload.filename, formats, callback_url, owner)

        return await run_in_threadpool(quotas.create_within, owner, 0, upload_and_create)


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Jobs per page.")]


@router.get("")
async def list_jobs(documents: DocumentsDep, owner: OwnerDep, limit: Limit = 20, cursor: str | None = None) -> JobList:
    """The caller's jobs, newest first (under AUTH=none, every job); ``next_cursor`` gives the next page."""
    if cursor is not None and not is_cursor(cursor):
        raise InvalidRequest("This cursor is not one a job list gave; start again without it.")
    return await run_in_threadpool(documents.listing, owner, limit, cursor)


@router.get("/{job_id}")
async def get_job(job_id: str, _: JobDep, documents: DocumentsDep) -> JobView:
    """The job and each output's status; completed outputs carry a signed download URL."""
    return await run_in_threadpool(documents.view, job_id)


@router.delete("/{job_id}", status_code=204, responses={404: {"description": "No such job (or already deleted)."}})
async def delete_job(job_id: str, _: JobDep, jobs: JobsDep, owner: OwnerDep, quotas: QuotasDep) -> Response:
    """Cancel the job's conversions (a running FFmpeg is stopped within seconds) and delete its original,
    outputs and records. Afterwards the job answers 404 and its download links stop working."""
    await run_in_threadpool(jobs.delete_job, job_id)
    await run_in_threadpool(quotas.release, owner, job_id)  # its place and its bytes are free at once
    return Response(status_code=204)


@router.get(
    "/{job_id}/archive",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "A ZIP of every completed output."},
        409: {"description": "No output is ready yet."},
    },
)
async def download_archive(job_id: str, _: JobDep, documents: DocumentsDep) -> StreamingResponse:
    """Every completed output as one ZIP, streamed as it is made (never built whole in memory or on disk)."""
    filename, chunks = await run_in_threadpool(documents.archive, job_id)
    headers = {"Content-Disposition": content_disposition(filename), "Cache-Control": "no-store"}
    return StreamingResponse(chunks, media_type="application/zip", headers=headers)  # iterated in a thread


@router.head("/{job_id}", include_in_schema=False)
async def head_job(job_id: str, _: JobDep, documents: DocumentsDep) -> Response:
    """Whether the job exists (200 or 404), without a body; asked of the store, as GET does."""
    await run_in_threadpool(documents.existing, job_id)
    return Response(status_code=200, media_type="application/json")


@router.get("/{job_id}/outputs/{format_id}", response_class=RedirectResponse, status_code=307)
async def download_output(job_id: str, format_id: str, _: JobDep, documents: DocumentsDep) -> RedirectResponse:
    """Redirect to a fresh, signed download URL once the output is ready (409 before)."""
    url = await run_in_threadpool(documents.output_url, job_id, format_id)
    return RedirectResponse(url, status_code=307)
