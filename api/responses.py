"""What the routes answer besides success, for the OpenAPI document: one entry per error a route really
gives, with the service's own ``{"detail": "<sentence>"}`` body and an example of the sentence.

Routes combine these (``responses=answers(NO_JOB, NOT_READY)``) instead of each writing its own copy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from video_converter.presets import PRESETS

Answers = dict[int | str, dict[str, Any]]


class ErrorDetail(BaseModel):
    """Every error the service answers: one sentence a person understands, saying what to do."""

    detail: str = Field(examples=["No such job (or format) here; check the link."])


def error(status: int, description: str, example: str, headers: dict[str, Any] | None = None) -> Answers:
    """One documented error answer: ``status`` with an ``ErrorDetail`` body like ``example``."""
    answer: dict[str, Any] = {
        "model": ErrorDetail,
        "description": description,
        "content": {"application/json": {"example": {"detail": example}}},
    }
    if headers:
        answer["headers"] = headers
    return {status: answer}


def answers(*parts: Answers) -> Answers:
    """The answers of ``parts`` as one ``responses=`` mapping (a later part wins for the same status)."""
    merged: Answers = {}
    for part in parts:
        merged.update(part)
    return merged


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "string"}}}

REDIRECT: Answers = {
    307: {"description": "To a fresh signed download link.", "headers": {"Location": {"schema": {"type": "string"}}}}
}
NO_JOB = error(404, "No such job, or it was deleted or has expired.", "No such job (or format) here; check the link.")
NOT_READY = error(409, "The output is not ready yet, or it failed.", "The 720p output is not ready yet (processing).")
NOTHING_READY = error(
    409,
    "No output of the job is ready yet.",
    "No output of this job is ready yet, so there is nothing to put in an archive.",
)
ALREADY_USED = error(409, "The upload already has its job.", "A job already exists for this upload.")
TOO_LARGE = error(413, "The file is larger than MAX_UPLOAD_BYTES.", "The file is larger than the 5 GB limit.")
INVALID = error(
    422,
    "The request is invalid: an unknown or missing format, a missing file, a file that is not a video or "
    "audio file, an unknown upload id, a refused callback_url.",
    f"Unknown format 'string'. Choose from: {', '.join(PRESETS)}.",
)
UNAVAILABLE = error(
    503,
    "The queue or the data folder cannot take the work right now; try again after Retry-After.",
    "The conversion queue is unavailable; please try again shortly.",
    headers=RETRY_AFTER,
)


# Examples of successful answers, shown beside each route's schema (tests check they match the models).
OVER_LIMIT = error(
    429,
    "Over a quota of the caller's (unfinished jobs, work per day, bytes stored) or the rate limit.",
    "You have 10 unfinished jobs, the most at once for this key; one frees when a job finishes or is deleted.",
    RETRY_AFTER,
)
JOB_ID = "3f2b8c1e-5d4a-4e7b-9c21-0a6d8e4f1b37"
_OUTPUT = {
    "format": "720p",
    "label": "MP4 720p",
    "kind": "video",
    "media_type": "video/mp4",
    "filename": "holiday_720p.mp4",
    "attempts": 1,
    "segments": 0,
}
JOB_EXAMPLE: dict[str, Any] = {
    "job_id": JOB_ID,
    "filename": "holiday.mov",
    "status": "processing",
    "created_at": "2026-11-29T09:00:00.123456+00:00",
    "source": {
        "duration": 55.2,
        "width": 1280,
        "height": 720,
        "video_codec": "h264",
        "audio_codec": "aac",
        "frame_rate": 25.0,
        "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
    },
    "outputs": [
        {
            **_OUTPUT,
            "status": "completed",
            "progress": 100.0,
            "download_url": f"/files/converted/{JOB_ID}/holiday_720p.mp4?filename=holiday_720p.mp4&expires=1764410400"
            "&signature=9c1d0f5e",
            "size_bytes": 6_412_877,
            "width": 1280,
            "height": 720,
            "duration": 55.2,
            "video_codec": "h264",
            "audio_codec": "aac",
            "bit_rate": 929_402,
        },
        {
            **_OUTPUT,
            "format": "mp3",
            "label": "MP3",
            "kind": "audio",
            "media_type": "audio/mpeg",
            "filename": "holiday_mp3.mp3",
            "status": "processing",
            "progress": 42.0,
        },
    ],
}
UPLOAD_EXAMPLE: dict[str, Any] = {
    "upload_id": "b7e1c0d2-8a4f-4c3e-9d5b-2f6a1e0c9b84",
    "url": "/files/uploads/b7e1c0d2-8a4f-4c3e-9d5b-2f6a1e0c9b84/source?expires=1764410400&max_bytes=5368709120"
    "&signature=4e2a9b7c",
    "fields": {},
    "max_bytes": 5_368_709_120,
    "expires_in": 3600,
}


def example(status: int, body: Any, description: str) -> Answers:
    """A successful answer's example body."""
    return {status: {"description": description, "content": {"application/json": {"example": body}}}}


# The path parameter every job route takes (declared once, so the job-owner dependency and the routes agree).
JobId = Annotated[
    str, Path(description="The job's id, from its creation.", openapi_examples={"a job": {"value": JOB_ID}})
]
