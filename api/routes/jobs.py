from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import ConverterDep
from api.errors import sentence
from video_converter.jobs import InvalidRequest

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class JobFromUpload(BaseModel):
    upload_id: str
    filename: str
    formats: list[str]


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


@router.post("", status_code=201, openapi_extra=_BODY_DOC)
async def create_job(request: Request, converter: ConverterDep) -> dict[str, Any]:
    """Create a job: multipart with ``file`` and ``formats``, or JSON naming an ``upload_id``."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = JobFromUpload.model_validate_json(await request.body())
        except ValidationError as exc:
            raise InvalidRequest(sentence(list(exc.errors()))) from None
        return await run_in_threadpool(converter.create_job, body.upload_id, body.filename, body.formats)
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Send the video as multipart/form-data (a file field and formats), or JSON.")
    converter.check_declared_size(request.headers.get("content-length"))
    async with request.form(max_files=1, max_fields=50) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Attach the video as a file field named 'file'.")
        formats = _split([v for v in form.getlist("formats") if isinstance(v, str)])
        return await run_in_threadpool(converter.upload_and_create, upload.file, upload.filename, formats)


@router.get("/{job_id}")
async def get_job(job_id: str, converter: ConverterDep) -> dict[str, Any]:
    return await run_in_threadpool(converter.job_view, job_id)


@router.get("/{job_id}/outputs/{format_id}", response_class=RedirectResponse, status_code=307)
async def download_output(job_id: str, format_id: str, converter: ConverterDep) -> RedirectResponse:
    """Redirect to a fresh, signed download URL once the output is ready (409 before)."""
    url = await run_in_threadpool(converter.output_url, job_id, format_id)
    return RedirectResponse(url, status_code=307)
