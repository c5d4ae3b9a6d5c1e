"""Upload tickets: the browser sends the original straight to storage, then names it in a new job."""

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import OwnerDep, QuotasDep, RateLimited, UploadsDep
from api.responses import OVER_LIMIT, UNAVAILABLE, UPLOAD_EXAMPLE, answers, example
from video_converter.views import UploadTicket

router = APIRouter(prefix="/api/uploads", tags=["uploads"])


@router.post(
    "",
    status_code=201,
    dependencies=[RateLimited],
    responses=answers(example(201, UPLOAD_EXAMPLE, "The ticket: send the file."), OVER_LIMIT, UNAVAILABLE),
)
async def create_upload(uploads: UploadsDep, owner: OwnerDep, quotas: QuotasDep) -> UploadTicket:
    """An upload ticket: POST the file straight to ``url`` with ``fields``, then create the job with
    ``upload_id``. On AWS the bytes go to S3 and never pass through this service. Refused (429) when a
    job could not be created now, so no one uploads a file only to have its job refused."""
    await run_in_threadpool(quotas.check, owner)
    return await run_in_threadpool(uploads.ticket, owner)
