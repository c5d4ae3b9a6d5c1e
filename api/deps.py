"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from video_converter.documents import JobDocuments
from video_converter.jobs import JobService
from video_converter.multipart import Multipart
from video_converter.runtime import Runtime
from video_converter.uploads import Uploads


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def get_documents(request: Request) -> JobDocuments:
    documents: JobDocuments = request.app.state.jobs.documents
    return documents


def get_uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.jobs.uploads
    return uploads


def get_multipart(request: Request) -> Multipart:
    multipart: Multipart = request.app.state.multipart
    return multipart


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
JobsDep = Annotated[JobService, Depends(get_jobs)]
DocumentsDep = Annotated[JobDocuments, Depends(get_documents)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
MultipartDep = Annotated[Multipart, Depends(get_multipart)]
