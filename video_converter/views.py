"""The API's response documents, as pydantic models: the HTTP contract in one place, shown in /docs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

from .model import JobStatus, OutputRecord, OutputStatus, SourceInfo
from .presets import Kind, Preset

# "2026-11-29T09:00:00.123456+00:00", as the API has always written it (pydantic's default is "...Z").
IsoDatetime = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


class FormatView(BaseModel):
    """An output format people can choose."""

    id: str = Field(examples=["720p"])
    label: str = Field(examples=["MP4 720p"])
    extension: str = Field(examples=["mp4"])
    media_type: str = Field(examples=["video/mp4"])
    kind: Kind
    description: str
    max_height: int | None = Field(
        default=None,
        description="For videos, the short side in pixels (landscape: height; portrait: width). "
        "Never upscaled: a smaller source keeps its size and the output gets a note.",
    )
    max_width: int | None = None

    @classmethod
    def of(cls, preset: Preset) -> FormatView:
        return cls(
            id=preset.id,
            label=preset.label,
            extension=preset.extension,
            media_type=preset.media_type,
            kind=preset.kind,
            description=preset.description,
            max_height=preset.max_height,
            max_width=preset.max_width,
        )


class OutputView(BaseModel):
    """One output of a job: its status, progress, and once completed a signed download URL."""

    format: str = Field(examples=["720p"])
    label: str
    kind: Kind
    media_type: str
    status: OutputStatus
    progress: float = Field(ge=0, le=100, description="Percent of the conversion done.")
    error: str | None = Field(default=None, description="Why it failed, or why the last attempt failed.")
    download_url: str | None = Field(default=None, description="A signed, expiring URL once completed.")
    filename: str = Field(description="The name the download is saved under.", examples=["holiday_720p.mp4"])
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    attempts: int = 0
    note: str | None = Field(
        default=None,
        description="Something to know about this output, e.g. that the source was smaller than the format "
        "(renditions are never upscaled: 1080p of a 1280x720 source stays 1280x720).",
    )
    segments: int = Field(default=0, description="Converted in this many parts at once (0: in one piece).")
    playlist_url: str | None = Field(
        default=None,
        description="An adaptive stream (hls), once completed: its HLS master playlist, served by the API with "
        "fresh signed URLs of the media files on each request.",
        examples=["/api/jobs/0b5e.../stream/master.m3u8"],
    )
    dash_url: str | None = Field(
        default=None, description="An adaptive stream (hls): its DASH manifest, the same files."
    )
    track_url: str | None = Field(
        default=None, description="A storyboard, once completed: its WebVTT thumbnails track (cues name sprite tiles)."
    )

    @classmethod
    def of(
        cls,
        preset: Preset,
        out: OutputRecord,
        *,
        download_url: str | None,
        filename: str,
        links: dict[str, str] | None = None,
    ) -> OutputView:
        """An output as the API shows it: its format's names, its record, and its link once completed."""
        return cls(
            format=out.format,
            label=preset.label,
            kind=preset.kind,
            media_type=preset.media_type,
            status=out.status,
            progress=100.0 if download_url else out.progress,
            download_url=download_url,
            filename=filename,
            **(links or {}),
            **out.model_dump(
                include={"error", "size_bytes", "width", "height", "duration", "attempts", "note", "segments"}
            ),
        )


class JobView(BaseModel):
    """A job: its status, derived from its outputs', what the source is, and each output."""

    job_id: str
    filename: str = Field(description="The uploaded file's name, as given.")
    status: JobStatus
    error: str | None = Field(
        default=None,
        description="Why the whole job failed, as one sentence saying what to do (e.g. the upload is not a "
        'video or audio file); its outputs then say "Not converted".',
    )
    created_at: IsoDatetime
    source: SourceInfo | None = Field(default=None, description="What ffprobe saw in the upload, once probed.")
    outputs: list[OutputView]


class UploadTicket(BaseModel):
    """Where to POST the file (multipart: every field, then ``file``); then create the job with ``upload_id``."""

    upload_id: str
    url: str = Field(description="Relative in local mode; an S3 URL on AWS.")
    fields: dict[str, str]
    max_bytes: int
    expires_in: int = Field(description="Seconds the ticket stays valid.")


class Health(BaseModel):
    status: str = Field(examples=["ok"], description='"ok", or "unhealthy" (with a 503) and why.')
    detail: str | None = None
