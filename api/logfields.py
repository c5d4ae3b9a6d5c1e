"""The job a request is about, on its log lines: ``job_id`` (video_converter.telemetry), as the workers'
lines carry it, so one job's lines are found together whichever process wrote them."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from video_converter import telemetry
from video_converter.model import is_job_id

_JOB_PATH = re.compile(r"/(?:api/)?jobs/([^/]+)")


class JobLogFields:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _JOB_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        job_id = match.group(1) if match and is_job_id(match.group(1)) else None
        with telemetry.fields(job_id=job_id, format=_format(scope, job_id)):
            await self.app(scope, receive, send)


def _format(scope: Scope, job_id: str | None) -> str | None:
    """``/api/jobs/{id}/outputs/{format}``: the format too."""
    parts = str(scope.get("path", "")).split("/")
    if job_id is None or "outputs" not in parts or parts.index("outputs") + 1 >= len(parts):
        return None
    name = parts[parts.index("outputs") + 1]
    return name if name.isidentifier() or name.isalnum() else None
