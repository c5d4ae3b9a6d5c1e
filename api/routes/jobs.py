"""Jobs: create one (multipart upload, or JSON naming an upload), follow it, download its outputs."""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import DocumentsDep, JobsDep
from api.errors import sentence
from api.forms import multipart_upload
from video_converter.errors import InvalidRequest
from video_converter.imports import create_import
from video_converter.keys import content_disposition
from video_converter.views import JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class JobFromUpload(BaseModel):
    upload_id: str | None = Field(default=None, description="An upload's id; or give ``source_url``.")
    source_url: str | None = Field(
        default=None, max_length=2048, description="Import the video from this http(s) link instead of an upload."
    )
    filename: str | None = Field(default=None, description="Needed unless a multipart upload named it.")
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


@router.post("", status_code=201, openapi_extra=_BODY_DOC)
async def create_job(request: Request, jobs: JobsDep) -> JobView:
    """Create a job: multipart with ``file`` and ``formats``, or JSON naming an ``upload_id``."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await run_in_threadpool(_parse_json, await request.body())  # parsing off the event loop
        if body.source_url:
            return await run_in_threadpool(
                create_import, jobs, body.source_url, body.formats, body.filename, body.callback_url
            )
        if not body.upload_id:
            raise InvalidRequest("Give an upload_id (of an upload) or a source_url (a link to import from).")
        return await run_in_threadpool(jobs.create_job, body.upload_id, body.filename, body.formats, body.callback_url)
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Send the video as multipart/form-data (a file field and formats), or JSON.")
    async with multipart_upload(request) as (upload, form):
        formats = _split([v for v in form.getlist("formats") if isinstance(v, str)])
        callback = form.get("callback_url")
        callback_url = callback if isinstance(callback, str) else None
        return await run_in_threadpool(jobs.upload_and_create, upload.file, upload.filename, formats, callback_url)


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
