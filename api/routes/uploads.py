"""Uploads: the browser sends the original straight to storage, then names it in a new job.

Two kinds. Without a ``size``, one request: POST the file to the ticket's ``url`` with its ``fields``.
With JSON ``{"filename", "size", "content_type"}``, a resumable multipart upload shaped after S3's:
ask for part URLs, PUT each part, list what arrived, complete (or delete to abort). On AWS the bytes
go to S3 and never pass through this service."""

import functools
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import MultipartDep, OwnerDep, QuotasDep, RateLimited, UploadsDep
from api.errors import parse_body
from api.responses import OVER_LIMIT, UNAVAILABLE, UPLOAD_EXAMPLE, answers, example
from video_converter.views import MultipartTicket, MultipartView, PartUrls, UploadTicket

router = APIRouter(prefix="/api/uploads", tags=["uploads"])


class NewUpload(BaseModel):
    filename: str | None = Field(default=None, description="The file's name (needed with ``size``).")
    size: int | None = Field(default=None, description="The file's size in bytes: asks for a multipart upload.")
    content_type: str | None = Field(default=None, max_length=255)


class PartNumbers(BaseModel):
    numbers: list[int] = Field(description="Part numbers, 1 to the upload's ``parts`` (at most 100 at a time).")


class NamedPart(BaseModel):
    number: int
    etag: str = Field(max_length=128)


class Completion(BaseModel):
    parts: list[NamedPart] = Field(description="Every part, by number, with the ETag its PUT answered.")


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: bytes) -> M:
    return parse_body(model, body or b"{}")  # no body: an empty object (POST /api/uploads alone is a ticket)


_NEW_UPLOAD_DOC = {"requestBody": {"content": {"application/json": {"schema": NewUpload.model_json_schema()}}}}


@router.post(
    "",
    status_code=201,
    openapi_extra=_NEW_UPLOAD_DOC,
    dependencies=[RateLimited],
    responses=answers(example(201, UPLOAD_EXAMPLE, "The ticket: send the file."), OVER_LIMIT, UNAVAILABLE),
)
async def create_upload(
    request: Request, uploads: UploadsDep, multipart: MultipartDep, owner: OwnerDep, quotas: QuotasDep
) -> UploadTicket | MultipartTicket:
    """A one-request upload ticket (no body, or no ``size``): POST the file straight to ``url`` with
    ``fields``. With ``size``: a multipart upload of ``parts`` parts of ``part_size`` bytes. Either way,
    create the job with ``upload_id`` once the file is there. Refused (429) when a job could not be
    created now, so no one uploads a file only to have its job refused."""
    asked = _parse(NewUpload, await request.body())
    await run_in_threadpool(quotas.check, owner)
    if asked.size is None:
        return await run_in_threadpool(uploads.ticket, owner)
    begin = functools.partial(multipart.begin, asked.filename or "", asked.size, asked.content_type, owner)
    return await run_in_threadpool(begin)


@router.post("/{upload_id}/parts")
async def part_urls(upload_id: str, request: Request, multipart: MultipartDep, owner: OwnerDep) -> PartUrls:
    """Signed URLs to PUT these parts to (each of exactly its ``size``); each PUT answers the part's ETag."""
    asked = _parse(PartNumbers, await request.body())
    return await run_in_threadpool(multipart.part_urls, upload_id, asked.numbers, owner)


@router.get("/{upload_id}")
async def get_upload(upload_id: str, multipart: MultipartDep, owner: OwnerDep) -> MultipartView:
    """The upload and the parts received so far (number, size, ETag): resume by sending only the others."""
    return await run_in_threadpool(multipart.view, upload_id, owner)


@router.post("/{upload_id}/complete")
async def complete_upload(upload_id: str, request: Request, multipart: MultipartDep, owner: OwnerDep) -> MultipartView:
    """Join the parts into the original (every part, with its ETag); then create the job."""
    asked = _parse(Completion, await request.body())
    named = [(part.number, part.etag) for part in asked.parts]
    return await run_in_threadpool(multipart.complete, upload_id, named, owner)


@router.delete("/{upload_id}", status_code=204)
async def abort_upload(upload_id: str, multipart: MultipartDep, owner: OwnerDep) -> Response:
    """Cancel the upload: the parts received are dropped."""
    await run_in_threadpool(multipart.abort, upload_id, owner)
    return Response(status_code=204)
