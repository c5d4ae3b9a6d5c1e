"""Receiving a multipart upload, shared by the job route and local mode's upload URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from video_converter.errors import InvalidRequest


@asynccontextmanager
async def multipart_upload(request: Request) -> AsyncIterator[tuple[UploadFile, FormData]]:
    """The form's ``file`` (spooled to disk by Starlette) and the whole form. Its size is capped by the
    request limits middleware, before and while it is read."""
    async with request.form(max_files=1, max_fields=50) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidRequest("Attach the video as a file field named 'file'.")
        yield file, form
