"""Local mode's stand-in for S3 presigned URLs: signed, expiring downloads and uploads."""

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from api.bodies import BodyStream
from api.deps import MultipartDep, RuntimeDep, UploadsDep
from api.forms import multipart_upload
from video_converter.errors import LinkExpired, NotFound
from video_converter.keys import content_disposition
from video_converter.runtime import Runtime
from video_converter.storage import LocalStorage

router = APIRouter(prefix="/files", tags=["files"], include_in_schema=False)

Signature = Annotated[str, Query(min_length=1, max_length=128)]


def _store(rt: Runtime, name: str) -> LocalStorage:
    store = {"uploads": rt.uploads, "converted": rt.converted}.get(name)
    if not isinstance(store, LocalStorage):
        raise NotFound("Nothing here: check the address.")
    return store


@router.get("/{store}/{key:path}")
def download(store: str, key: str, filename: str, expires: str, signature: Signature, rt: RuntimeDep) -> FileResponse:
    storage = _store(rt, store)
    if not storage.verify(key, expires, signature, filename=filename):
        raise LinkExpired
    path = storage.path(key)
    if not path.is_file():
        raise NotFound("This file no longer exists.")
    media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    # Our own header, not FileResponse's ``filename=``: Starlette sends only ``filename*`` for a non-ASCII
    # name, which ``curl -OJ`` ignores (it then saves under the URL's last segment, without extension).
    return FileResponse(path, media_type=media_type, headers={"Content-Disposition": content_disposition(filename)})


@router.post("/uploads/{upload_id}/source", status_code=204)
async def upload(
    upload_id: str,
    request: Request,
    expires: str,
    signature: Signature,
    max_bytes: str,
    rt: RuntimeDep,
    uploads: UploadsDep,
) -> Response:
    """Accepts the same multipart form a browser sends to an S3 presigned POST."""
    storage = _store(rt, "uploads")
    if not storage.verify(f"{upload_id}/source", expires, signature, max_bytes=max_bytes):
        raise LinkExpired
    async with multipart_upload(request) as (file, _):
        await run_in_threadpool(uploads.store, upload_id, file.file)
    return Response(status_code=204)


@router.put("/uploads/{upload_id}/source")
async def upload_part(
    upload_id: str,
    request: Request,
    upload: Annotated[str, Query(max_length=64)],
    part: Annotated[int, Query(ge=1, le=10_000)],
    size: Annotated[int, Query(ge=0)],
    expires: str,
    signature: Signature,
    rt: RuntimeDep,
    multipart: MultipartDep,
) -> JSONResponse:
    """One part of a multipart upload, as S3 takes an UploadPart PUT: written to disk as it arrives, and
    answered with its ``ETag``."""
    storage = _store(rt, "uploads")
    params = {"upload": upload, "part": str(part), "size": str(size)}
    if not storage.verify(f"{upload_id}/source", expires, signature, **params):
        raise LinkExpired
    length = request.headers.get("content-length", "")
    declared = int(length) if length.isdigit() else None
    body = BodyStream(request)
    received = await run_in_threadpool(multipart.receive_part, upload_id, upload, part, body, declared)
    answer = {"number": received.number, "size": received.size, "etag": received.etag}
    return JSONResponse(answer, headers={"ETag": received.etag})
