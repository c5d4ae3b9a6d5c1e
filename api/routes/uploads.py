"""Upload tickets: the browser sends the original straight to storage, then names it in a new job."""

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import OwnerDep, UploadsDep
from api.responses import UNAVAILABLE, UPLOAD_EXAMPLE, answers, example
from video_converter.views import UploadTicket

router = APIRouter(prefix="/api/uploads", tags=["uploads"])


@router.post(
    "", status_code=201, responses=answers(example(201, UPLOAD_EXAMPLE, "The ticket: send the file."), UNAVAILABLE)
)
async def create_upload(uploads: UploadsDep, owner: OwnerDep) -> UploadTicket:
    """An upload ticket: POST the file straight to ``url`` with ``fields``, then create the job with
    ``upload_id``. On AWS the bytes go to S3 and never pass through this service."""
    return await run_in_threadpool(uploads.ticket, owner)
