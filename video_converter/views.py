"""The API's response documents, as pydantic models: the HTTP contract in one place, shown in /docs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
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
    duration: float | None = Field(default=None, description="Seconds, for outputs that play (not a still).")
    video_codec: str | None = Field(default=None, description="FFmpeg's name for its picture.", examples=["h264"])
    audio_codec: str | None = Field(default=None, description="FFmpeg's name for its sound.", examples=["aac"])
    bit_rate: int | None = Field(
        default=None, description="Bits per second, over the whole file (size / duration), for outputs that play."
    )
    attempts: int = 0
    note: str | None = Field(
        default=None,
        description="Something to know about this output, e.g. that the source was smaller than the format "
        "(renditions are never upscaled: 1080p of a 1280x720 source stays 1280x720).",
    )
    segments: int = Field(default=0, description="Converted in this many parts at once (0: in one piece).")
    same_as: str | None = Field(
        default=None,
        description="The format of this job whose file this output is, stored once: sizes the source is too small "
        "for are one encode (1080p of a 720p source is the 720p file). Its download works under its own name; "
        "the ZIP holds the file once.",
        examples=["720p"],
    )
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
        plays = preset.kind is not Kind.IMAGE or preset.max_seconds is not None  # a GIF plays; a JPEG does not
        duration = out.duration if plays else None
        return cls(
            format=out.format,
            label=preset.label,
            kind=preset.kind,
            media_type=preset.media_type,
            status=out.status,
            progress=100.0 if download_url else out.progress,
            download_url=download_url,
            filename=filename,
            duration=duration,
            bit_rate=round(out.size_bytes * 8 / duration) if out.size_bytes and duration else None,
            same_as=out.same_as,
            **(links or {}),
            **out.model_dump(
                include={
                    "error",
                    "size_bytes",
                    "width",
                    "height",
                    "video_codec",
                    "audio_codec",
                    "attempts",
                    "note",
                    "segments",
                }
            ),
        )


class WebhookState(StrEnum):
    QUEUED = "queued"  # the job finished; the notice waits for a worker
    RETRYING = "retrying"  # an attempt failed; the queue tries again after its back-off
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up: every attempt failed, or the URL was refused


class WebhookDelivery(BaseModel):
    """The job-finished webhook's delivery as it stands (``video_converter.webhooks`` keeps it)."""

    state: WebhookState
    attempts: int = Field(default=0, description="Attempts made so far.")
    result: str | None = Field(default=None, description='What the last attempt got: "HTTP 204", "Timeout: …".')
    at: IsoDatetime = Field(description="When this state was reached.")
    event_id: str | None = Field(default=None, description="The event's id, as the body and X-Webhook-Id carry it.")
    created_at: IsoDatetime | None = Field(default=None, description="When the event was made (the job finished).")


class EstimateView(BaseModel):
    """How long the job is expected to take from now, from the probed duration and the measured speed of
    each format on this server (each output converted corrects it), laid over its workers."""

    seconds_left: float = Field(ge=0, description="Seconds until every output is expected to be ready.")
    finish_at: IsoDatetime = Field(description="When that is.")
    outputs: dict[str, float] = Field(
        description="Seconds until each unfinished output is expected to be ready, by format.",
        examples=[{"thumbnail": 1.0, "mp3": 3.5, "720p": 48.0}],
    )
    calibrated: bool = Field(
        description="From speeds measured on this server (false: from the reference machine's, until an output "
        "of that kind has been converted here)."
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
    webhook: WebhookDelivery | None = Field(
        default=None,
        description="The delivery of the job-finished webhook, once the job with a callback_url is finished.",
    )
    estimate: EstimateView | None = Field(
        default=None, description="How long it is expected to take; null once finished or before the upload is probed."
    )


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


class LimitsView(BaseModel):
    """An owner's limits; null is no limit."""

    active_jobs: int | None = Field(description="Unfinished jobs at once.")
    source_minutes_per_day: float | None = Field(
        description="Work over the last 24 hours, in minutes of 1080p at 30 fps (as the per-job budget counts it)."
    )
    storage_bytes: int | None = Field(description="Originals and outputs kept.")
    requests_per_minute: int | None = Field(description="Job creations and upload tickets per client address.")


class UsageView(BaseModel):
    active_jobs: int
    source_minutes_today: float = Field(description="Work of the jobs created in the last 24 hours.")
    storage_bytes: int


class OwnerView(BaseModel):
    id: str = Field(examples=["key:3f9a1c"])
    kind: str = Field(examples=["key"])
    name: str


class MeView(BaseModel):
    """Who the caller is, its limits and its usage (null when it has no limit: nothing is counted)."""

    owner: OwnerView
    limits: LimitsView
    usage: UsageView | None


class JobBrief(BaseModel):
    """One job of a listing (GET /api/jobs): enough to show it in a list; its document has the rest."""

    job_id: str
    filename: str
    status: JobStatus
    formats: list[str]
    created_at: IsoDatetime


class JobList(BaseModel):
    """The caller's jobs, newest first. ``next_cursor``: pass it as ``cursor`` for the next page (null on
    the last one)."""

    jobs: list[JobBrief]
    next_cursor: str | None = None


class ShareLink(BaseModel):
    """A read-only link to a job: its page (``url``) and its JSON (``api_url``), until ``expires_at``."""

    url: str = Field(description="The job's read-only page: status, previews, downloads.")
    api_url: str = Field(description="The same job as JSON, with /outputs/{format} and /archive under it.")
    expires_at: IsoDatetime


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
