"""Jobs: create one (multipart upload, or JSON naming an upload), follow it, download its outputs, retry a
failed output or add formats."""

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import DocumentsDep, JobDep, JobsDep, OwnerDep, QuotasDep, RateLimited
from api.errors import parse_body
from api.forms import multipart_upload
from api.responses import (
    ALREADY_USED,
    INVALID,
    JOB_EXAMPLE,
    NO_JOB,
    NOT_READY,
    NOTHING_READY,
    OVER_LIMIT,
    REDIRECT,
    TOO_LARGE,
    UNAVAILABLE,
    JobId,
    answers,
    error,
    example,
)
from video_converter import keys
from video_converter.errors import InvalidRequest
from video_converter.imports import create_import
from video_converter.keys import content_disposition
from video_converter.model import is_job_id
from video_converter.ownerindex import MAX_PAGE, is_cursor
from video_converter.presets import DEFAULT_FORMATS, PRESETS
from video_converter.views import JobList, JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

# Documented as an enum, validated by the service (so an unknown one gets its own sentence, not pydantic's).
FORMAT_IDS: dict[str, Any] = {"type": "string", "enum": list(PRESETS)}
FORMATS_DOC: dict[str, Any] = {
    "type": "array",
    "items": FORMAT_IDS,
    "minItems": 1,
    "description": "Output formats (GET /api/formats); repeat the field or separate them with commas.",
    "examples": [DEFAULT_FORMATS],
}
CALLBACK_DOC = "POSTed a signed event with the job's JSON (X-Webhook-Signature) when the job is finished."

FormatId = Annotated[str, Path(description="One of the job's formats.", json_schema_extra=FORMAT_IDS)]


class JobFromUpload(BaseModel):
    """A job for a file sent with an upload ticket or a multipart upload (POST /api/uploads), or imported
    from a link (``source_url``)."""

    upload_id: str | None = Field(
        default=None,
        description="An upload's id; or give ``source_url``.",
        examples=["b7e1c0d2-8a4f-4c3e-9d5b-2f6a1e0c9b84"],
    )
    source_url: str | None = Field(
        default=None, max_length=2048, description="Import the video from this http(s) link instead of an upload."
    )
    filename: str | None = Field(
        default=None, description="The file's name, unless a multipart upload named it.", examples=["holiday.mov"]
    )
    formats: list[str] = Field(json_schema_extra=FORMATS_DOC)
    callback_url: str | None = Field(default=None, description=CALLBACK_DOC, examples=["https://example.com/hooks"])


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "formats"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "A video or audio file."},
                        "formats": {**FORMATS_DOC, "default": DEFAULT_FORMATS},  # what "Try it out" sends
                        # Empty by default: "Try it out" leaves it out rather than sending a sample "string".
                        "callback_url": {"type": "string", "format": "uri", "default": "", "description": CALLBACK_DOC},
                    },
                },
                "encoding": {"formats": {"style": "form", "explode": True}},
            },
            "application/json": {
                "schema": JobFromUpload.model_json_schema(),
                "example": {
                    "upload_id": "b7e1c0d2-8a4f-4c3e-9d5b-2f6a1e0c9b84",
                    "filename": "holiday.mov",
                    "formats": DEFAULT_FORMATS,
                },
            },
        },
    }
}


def _split(values: list[str]) -> list[str]:
    """``formats`` may repeat, or be one comma-separated field (``-F formats=720p,mp3``)."""
    return [part for value in values for part in value.split(",")]


def _uploaded_bytes(jobs: JobsDep, upload_id: str) -> int:
    """The size of the original an upload ticket stored (0: none, refused by the creation itself)."""
    return (jobs.rt.uploads.size(keys.source_key(upload_id)) or 0) if is_job_id(upload_id) else 0


@router.post(
    "",
    status_code=201,
    openapi_extra=_BODY_DOC,
    dependencies=[RateLimited],
    responses=answers(
        example(201, JOB_EXAMPLE, "The job, queued: follow it with GET /api/jobs/{job_id}."),
        ALREADY_USED,
        TOO_LARGE,
        INVALID,
        OVER_LIMIT,
        UNAVAILABLE,
    ),
)
async def create_job(request: Request, jobs: JobsDep, owner: OwnerDep, quotas: QuotasDep) -> JobView:
    """Create a job: multipart with ``file`` and ``formats``, or JSON naming an ``upload_id``. Past a
    quota or the rate limit: 429 with Retry-After and a sentence saying which limit and when it frees."""
    content_type = request.headers.get("content-type", "")
    origin = str(request.base_url).rstrip("/")  # for the webhook's absolute links (PUBLIC_URL wins)
    if content_type.startswith("application/json"):
        body = await run_in_threadpool(parse_body, JobFromUpload, await request.body())  # parsing off the event loop
        if body.source_url:
            create = functools.partial(
                create_import,
                jobs,
                body.source_url,
                body.formats,
                body.filename,
                body.callback_url,
                owner,
                origin=origin,
            )
            return await run_in_threadpool(quotas.create_within, owner, 0, create)
        if not body.upload_id:
            raise InvalidRequest("Give an upload_id (of an upload) or a source_url (a link to import from).")
        size = await run_in_threadpool(_uploaded_bytes, jobs, body.upload_id)
        create = functools.partial(
            jobs.create_job, body.upload_id, body.filename, body.formats, body.callback_url, owner, origin=origin
        )
        return await run_in_threadpool(quotas.create_within, owner, size, create)
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Send the video as multipart/form-data (a file field and formats), or JSON.")
    await run_in_threadpool(quotas.check, owner)  # refused before the file is received
    async with multipart_upload(request) as (upload, form):
        formats = _split([v for v in form.getlist("formats") if isinstance(v, str)])
        callback = form.get("callback_url")
        callback_url = callback if isinstance(callback, str) and callback else None  # an empty field: none
        upload_and_create = functools.partial(
            jobs.upload_and_create, upload.file, upload.filename, formats, callback_url, owner, origin=origin
        )
        return await run_in_threadpool(quotas.create_within, owner, 0, upload_and_create)


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Jobs per page.")]


@router.get("")
async def list_jobs(documents: DocumentsDep, owner: OwnerDep, limit: Limit = 20, cursor: str | None = None) -> JobList:
    """The caller's jobs, newest first (under AUTH=none, every job); ``next_cursor`` gives the next page."""
    if cursor is not None and not is_cursor(cursor):
        raise InvalidRequest("This cursor is not one a job list gave; start again without it.")
    return await run_in_threadpool(documents.listing, owner, limit, cursor)


@router.get("/{job_id}", responses=answers(example(200, JOB_EXAMPLE, "The job now."), NO_JOB))
async def get_job(job_id: JobId, _: JobDep, documents: DocumentsDep) -> JobView:
    """The job and each output's status; completed outputs carry a signed download URL."""
    return await run_in_threadpool(documents.view, job_id)


@router.delete("/{job_id}", status_code=204, responses=NO_JOB)
async def delete_job(job_id: JobId, _: JobDep, jobs: JobsDep, owner: OwnerDep, quotas: QuotasDep) -> Response:
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
        **NO_JOB,
        **NOTHING_READY,
    },
)
async def download_archive(job_id: JobId, _: JobDep, documents: DocumentsDep) -> StreamingResponse:
    """Every completed output as one ZIP, streamed as it is made (never built whole in memory or on disk)."""
    filename, chunks = await run_in_threadpool(documents.archive, job_id)
    headers = {"Content-Disposition": content_disposition(filename), "Cache-Control": "no-store"}
    return StreamingResponse(chunks, media_type="application/zip", headers=headers)  # iterated in a thread


@router.head("/{job_id}", include_in_schema=False)
async def head_job(job_id: str, _: JobDep, documents: DocumentsDep) -> Response:
    """Whether the job exists (200 or 404), without a body; asked of the store, as GET does."""
    await run_in_threadpool(documents.existing, job_id)
    return Response(status_code=200, media_type="application/json")


@router.get(
    "/{job_id}/outputs/{format_id}",
    response_class=RedirectResponse,
    status_code=307,
    responses=answers(REDIRECT, NO_JOB, NOT_READY),
)
async def download_output(job_id: JobId, format_id: FormatId, _: JobDep, documents: DocumentsDep) -> RedirectResponse:
    """Redirect to a fresh, signed download URL once the output is ready (409 before)."""
    url = await run_in_threadpool(documents.output_url, job_id, format_id)
    return RedirectResponse(url, status_code=307)


NOT_FAILED = "The mp3 output is completed; only a failed output can be retried."
HAS_ALREADY = "This job has mp3 already; retry a failed output instead of adding it."


class MoreFormats(BaseModel):
    formats: list[str] = Field(description="Formats to add to the job, converted from its stored original.")


@router.post(
    "/{job_id}/outputs/{format_id}/retry",
    status_code=202,
    responses=answers(
        NO_JOB,
        error(409, "The output is not failed, or the original is gone or could not be used.", NOT_FAILED),
        OVER_LIMIT,
    ),
)
async def retry_output(
    job_id: JobId, format_id: FormatId, _: JobDep, jobs: JobsDep, owner: OwnerDep, quotas: QuotasDep
) -> JobView:
    """Convert a failed output again from the stored original (fresh attempts and time budget); the job
    document, with that output queued. Within the caller's quotas, as a new job is."""
    await run_in_threadpool(quotas.check, owner)
    return await run_in_threadpool(jobs.retry_output, job_id, format_id)


@router.post(
    "/{job_id}/outputs",
    status_code=201,
    responses=answers(
        NO_JOB,
        error(409, "The job has one of these formats already, or its original is gone or unusable.", HAS_ALREADY),
        INVALID,
        OVER_LIMIT,
    ),
)
async def add_outputs(
    job_id: JobId, body: MoreFormats, _: JobDep, jobs: JobsDep, owner: OwnerDep, quotas: QuotasDep
) -> JobView:
    """Add formats to an existing job, converted from its stored original (no second upload); checked
    as a new job's formats are, and within the caller's quotas. The job document, with the new outputs
    queued."""
    await run_in_threadpool(quotas.check, owner)
    return await run_in_threadpool(jobs.add_outputs, job_id, _split(body.formats))
