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

    @classmethod
    def of(cls, preset: Preset, out: OutputRecord, *, download_url: str | None, filename: str) -> OutputView:
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


# --- multipart uploads (video_converter.multipart) ---


class MultipartTicket(BaseModel):
    """A multipart upload begun: send ``parts`` parts of ``part_size`` bytes (the last one the rest), each
    PUT to a URL from ``POST /api/uploads/{upload_id}/parts``, then complete it."""

    upload_id: str
    part_size: int = Field(description="Bytes in every part but the last (8-64 MiB).")
    parts: int = Field(description="How many parts (at most 10,000).")
    expires_at: IsoDatetime = Field(description="When an unfinished upload is dropped.")


class PartUrl(BaseModel):
    number: int
    url: str = Field(description="Relative in local mode; an S3 presigned UploadPart URL on AWS.")
    method: str = "PUT"
    size: int = Field(description="The part's exact size in bytes: other sizes are refused.")


class PartUrls(BaseModel):
    parts: list[PartUrl]


class ReceivedPart(BaseModel):
    number: int
    size: int
    etag: str = Field(description="As the PUT answered it (its ETag header), quotes included.")


class MultipartView(BaseModel):
    """A multipart upload and the parts received so far, so a client can resume with only the others."""

    upload_id: str
    filename: str
    size: int
    part_size: int
    parts: int
    state: str = Field(description='"uploading", or "complete" (then create the job).')
    expires_at: IsoDatetime
    received: list[ReceivedPart] = Field(description="While uploading: every part received, by number.")
