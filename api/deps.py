"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from video_converter.jobs import JobService


def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


JobsDep = Annotated[JobService, Depends(get_jobs)]
