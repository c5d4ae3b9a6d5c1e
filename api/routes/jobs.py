"""Jobs: create one (multipart upload, or JSON naming an upload), follow it, download its outputs, retry a
failed output or add formats."""

import functools
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import DocumentsDep, JobsDep
from api.errors import sentence
from api.forms import multipart_upload
from video_converter.errors import InvalidRequest
from video_converter.keys import content_disposition
from video_converter.views import JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class JobFromUpload(BaseModel):
    upload_id: str
    filename: str
    formats: list[str]
    callback_url: str | None = Field(
        default=None,
        description="POSTed a signed event with the job's JSON (X-Webhook-Signature), when the job is finished.",
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


@router.post("", status_code=201, openapi_extra=_BODY_DOC)
async def create_job(request: Request, jobs: JobsDep) -> JobView:
    """Create a job: multipart with ``file`` and ``formats``, or JSON naming an ``upload_id``."""
    content_type = request.headers.get("content-type", "")
    origin = str(request.base_url).rstrip("/")  # for the webhook's absolute links (PUBLIC_URL wins)
    if content_type.startswith("application/json"):
        body = await run_in_threadpool(_parse_json, await request.body())  # parsing off the event loop
        create = functools.partial(jobs.create_job, origin=origin)
        return await run_in_threadpool(create, body.upload_id, body.filename, body.formats, body.callback_url)
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Send the video as multipart/form-data (a file field and formats), or JSON.")
    async with multipart_upload(request) as (upload, form):
        formats = _split([v for v in form.getlist("formats") if isinstance(v, str)])
        callback = form.get("callback_url")
        callback_url = callback if isinstance(callback, str) else None
        upload_and_create = functools.partial(jobs.upload_and_create, origin=origin)
        return await run_in_threadpool(upload_and_create, upload.file, upload.filename, formats, callback_url)


@router.get("/{job_id}")
async def get_job(job_id: str, documents: DocumentsDep) -> JobView:
    """The job and each output's status; completed outputs carry a signed download URL."""
    return await run_in_threadpool(documents.view, job_id)


@router.delete("/{job_id}", status_code=204, responses={404: {"description": "No such job (or already deleted)."}})
async def delete_job(job_id: str, jobs: JobsDep) -> Response:
    """Cancel the job's conversions (a running FFmpeg is stopped within seconds) and delete its original,
    outputs and records. Afterwards the job answers 404 and its download links stop working."""
    await run_in_threadpool(jobs.delete_job, job_id)
    return Response(status_code=204)


@router.get(
    "/{job_id}/archive",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "A ZIP of every completed output."},
        409: {"description": "No output is ready yet."},
    },
)
async def download_archive(job_id: str, documents: DocumentsDep) -> StreamingResponse:
    """Every completed output as one ZIP, streamed as it is made (never built whole in memory or on disk)."""
    filename, chunks = await run_in_threadpool(documents.archive, job_id)
    headers = {"Content-Disposition": content_disposition(filename), "Cache-Control": "no-store"}
    return StreamingResponse(chunks, media_type="application/zip", headers=headers)  # iterated in a thread


@router.head("/{job_id}", include_in_schema=False)
async def head_job(job_id: str, documents: DocumentsDep) -> Response:
    """Whether the job exists (200 or 404), without a body; asked of the store, as GET does."""
    await run_in_threadpool(documents.existing, job_id)
    return Response(status_code=200, media_type="application/json")


@router.get("/{job_id}/outputs/{format_id}", response_class=RedirectResponse, status_code=307)
async def download_output(job_id: str, format_id: str, documents: DocumentsDep) -> RedirectResponse:
    """Redirect to a fresh, signed download URL once the output is ready (409 before)."""
    url = await run_in_threadpool(documents.output_url, job_id, format_id)
    return RedirectResponse(url, status_code=307)


class MoreFormats(BaseModel):
    formats: list[str] = Field(description="Formats to add to the job, converted from its stored original.")


@router.post(
    "/{job_id}/outputs/{format_id}/retry",
    status_code=202,
    responses={
        404: {"description": "No such job, or the job has no such output."},
        409: {"description": "The output is not failed, or the original is gone or could not be used."},
    },
)
async def retry_output(job_id: str, format_id: str, jobs: JobsDep) -> JobView:
    """Convert a failed output again from the stored original (fresh attempts and time budget); the job
    document, with that output queued."""
    return await run_in_threadpool(jobs.retry_output, job_id, format_id)


@router.post(
    "/{job_id}/outputs",
    status_code=201,
    responses={
        404: {"description": "No such job."},
        409: {"description": "The job has one of these formats already, or its original is gone or unusable."},
        422: {"description": "Unknown formats, formats the original cannot give, or over the work budget."},
    },
)
async def add_outputs(job_id: str, body: MoreFormats, jobs: JobsDep) -> JobView:
    """Add formats to an existing job, converted from its stored original (no second upload); checked
    as a new job's formats are. The job document, with the new outputs queued."""
    return await run_in_threadpool(jobs.add_outputs, job_id, _split(body.formats))
