"""Local mode's stand-in for S3 presigned URLs: signed, expiring downloads and uploads."""

import mimetypes
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import ConverterDep
from video_converter.jobs import Converter, InvalidRequest
from video_converter.storage import LocalStorage

router = APIRouter(prefix="/files", tags=["files"], include_in_schema=False)

_EXPIRED = "This link has expired or is not valid. Open the job page again to get a fresh one."
Signature = Annotated[str, Query(min_length=1, max_length=128)]


def _store(converter: Converter, name: str) -> LocalStorage:
    store = {"uploads": converter.uploads, "converted": converter.converted}.get(name)
    if not isinstance(store, LocalStorage):
        raise HTTPException(404, "Nothing here: check the address.")
    return store


@router.get("/{store}/{key:path}")
def download(
    store: str, key: str, filename: str, expires: str, signature: Signature, converter: ConverterDep
) -> FileResponse:
    storage = _store(converter, store)
    if not storage.verify(key, expires, signature, filename=filename):
        raise HTTPException(403, _EXPIRED)
    path = storage.path(key)
    if not path.is_file():
        raise HTTPException(404, "This file no longer exists.")
    media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=filename)


@router.post("/uploads/{upload_id}/source", status_code=204)
async def upload(
    upload_id: str, request: Request, expires: str, signature: Signature, max_bytes: str, converter: ConverterDep
) -> Response:
    """Accepts the same multipart form a browser sends to an S3 presigned POST."""
    storage = _store(converter, "uploads")
    if not storage.verify(f"{upload_id}/source", expires, signature, max_bytes=max_bytes):
        raise HTTPException(403, _EXPIRED)
    converter.check_declared_size(request.headers.get("content-length"))
    async with request.form(max_files=1, max_fields=50) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidRequest("Attach the video as a file field named 'file'.")
        await run_in_threadpool(converter.store_upload, upload_id, file.file)
    return Response(status_code=204)
