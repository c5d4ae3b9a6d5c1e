"""The job and output status model, stored as small JSON records beside the outputs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from .keys import output_filename


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """A random UUID4: 122 random bits, unguessable, and easy to validate."""
    return str(uuid.uuid4())


_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.fullmatch(value))


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIAL = "partial"  # finished, some outputs failed

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.PROCESSING)


class OutputStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (OutputStatus.COMPLETED, OutputStatus.FAILED)


HDR_TRANSFERS = ("arib-std-b67", "smpte2084")  # HLG and PQ (SMPTE ST 2084), as FFmpeg names them


class SourceInfo(BaseModel):
    """What ffprobe saw in the uploaded file (display size, after rotation)."""

    duration: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    frame_rate: float | None = None
    format_name: str | None = None
    interlaced: bool = False
    audio_channels: int | None = None
    audio_layout: str | None = None  # FFmpeg's name ("5.1", "stereo"); None when it has none ("unknown")
    # The video's colour tags, FFmpeg's names; None when untagged. Optional: older records lack them.
    color_transfer: str | None = None  # "arib-std-b67" (HLG), "smpte2084" (PQ), "bt709", ...
    color_primaries: str | None = None  # "bt2020", "bt709", ...
    color_space: str | None = None  # the YUV matrix: "bt2020nc", "bt709", ...

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def hdr(self) -> bool:
        """HDR (PQ or HLG) or wide-gamut BT.2020 video: 8-bit BT.709 outputs need it converted, or they
        come out grey and washed out."""
        return self.color_transfer in HDR_TRANSFERS or self.color_primaries == "bt2020"

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


class JobRecord(BaseModel):
    """Written when the job is created. Its one change: formats added to it later (``JobService.add_outputs``,
    with a compare-and-swap, so two additions never lose one another); workers never write it."""

    job_id: str
    filename: str  # as the user named it, for display only
    stem: str  # safe ASCII stem used in keys and paths
    download_stem: str | None = None  # the stem of the names people download, when it differs
    formats: list[str]
    source_key: str  # key of the original in the upload store
    source_size: int
    callback_url: str | None = None  # POSTed the job's JSON when it is finished (video_converter.webhooks)
    owner: str | None = None  # the owner id (video_converter.owners); None: made before owners existed
    # The origin of the request that created the job ("https://video.example.com"), so that the webhook's
    # links are absolute when PUBLIC_URL is not set. None: not created over HTTP (scripts, tests).
    origin: str | None = None
    # What the API's probe saw at creation (local mode), so the page shows the source and an estimate
    # before a worker has probed it; None on AWS (the workers probe there) and in older records.
    source: SourceInfo | None = None
    created_at: datetime = Field(default_factory=utcnow)

    def download_filename(self, format_id: str, extension: str) -> str:
        return output_filename(self.download_stem or self.stem, format_id, extension)


class OutputRecord(BaseModel):
    """One per (job, format); only the worker holding the message that names this format writes it."""

    format: str
    status: OutputStatus = OutputStatus.QUEUED
    progress: float = 0.0
    error: str | None = None
    key: str | None = None  # key of the result in the converted store, once completed
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    video_codec: str | None = None  # what ffprobe saw in the output (FFmpeg's names: "h264", "vp9", "gif")
    audio_codec: str | None = None  # "aac", "opus", "mp3"
    attempts: int = 0
    resent: int = 0  # times the AWS sweep sent its work again after it was lost (video_converter.sweep)
    segments: int = 0  # converted in this many segments (0: in one piece)
    source: SourceInfo | None = None  # probe result, recorded by whichever worker probed
    started_at: datetime | None = None  # when the attempt that is converting it started (metrics)
    note: str | None = None  # e.g. why the output is smaller than its name (never upscaled)
    # When the output was retried or added to its job (JobService): its time budget (MAX_JOB_SECONDS)
    # counts from then, not from the job's creation. None: an output of the job as created.
    since: datetime | None = None
    # The format of this job whose file this output is (the same encode, stored once): 1080p and 720p of
    # a 720p source. Its ``key`` is that format's.
    same_as: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)

    # The state changes a worker makes, as typed methods: each returns the changed copy to save.

    def started(self, attempt: int) -> OutputRecord:
        return self._changed(
            status=OutputStatus.PROCESSING, progress=0.0, attempts=attempt, error=None, started_at=utcnow()
        )

    def probed(self, source: SourceInfo, note: str | None) -> OutputRecord:
        return self._changed(source=source, note=note)

    def progressed(self, percent: float) -> OutputRecord:
        return self._changed(progress=min(percent, 99.0))

    def completed(self, key: str, size: int, result: SourceInfo, same_as: str | None = None) -> OutputRecord:
        return self._changed(
            status=OutputStatus.COMPLETED,
            progress=100.0,
            key=key,
            size_bytes=size,
            width=result.width,
            height=result.height,
            duration=result.duration,
            video_codec=result.video_codec,
            audio_codec=result.audio_codec,
            same_as=same_as,
        )

    def segmented(self, count: int) -> OutputRecord:
        """Converted in ``count`` pieces from now on; progress is then counted from the pieces."""
        return self._changed(segments=count, progress=0.0)

    def failed(self, reason: str) -> OutputRecord:
        return self._changed(status=OutputStatus.FAILED, error=reason)

    def requeued(self, reason: str) -> OutputRecord:
        """An attempt failed for a reason that may pass; the next delivery tries again."""
        return self._changed(status=OutputStatus.QUEUED, progress=0.0, error=reason)

    def released(self) -> OutputRecord:
        """The worker is stopping: back to queued, as if the attempt had not started."""
        return self._changed(status=OutputStatus.QUEUED, progress=0.0)

    def sent_again(self) -> OutputRecord:
        """Its work was lost and sent again (the AWS sweep): counted, so that it cannot loop. A silent
        whole conversion goes back to queued; an output in pieces stays as it is (its pieces run)."""
        if self.status is OutputStatus.PROCESSING and self.segments == 0:
            return self._changed(resent=self.resent + 1, status=OutputStatus.QUEUED, progress=0.0)
        return self._changed(resent=self.resent + 1)

    def seen(self, progress: float, alive_at: datetime) -> OutputRecord:
        """As reported: ``progress`` done, and alive at ``alive_at`` if that is later than the record."""
        return self._changed(progress=progress, updated_at=max(self.updated_at, alive_at))

    def _changed(self, **changes: object) -> OutputRecord:
        unknown = changes.keys() - type(self).model_fields.keys()
        if unknown:  # model_copy would take a misspelled field silently
            raise TypeError(f"OutputRecord has no field {', '.join(sorted(unknown))}")
        return self.model_copy(update=changes)


class SoundCut(BaseModel):
    """A span of the original's sound read by byte range (an MP4 or MOV original): its head is stored
    beside the pieces' and its media are ``ranges`` of the original. Decoded, its samples from ``skip``
    on (``keep`` of them; None: to the end) are the same samples a decode of the whole sound gives there
    (the ones before ``skip`` warm the decoder up)."""

    ranges: list[tuple[int, int]]
    skip: int
    keep: int | None = None


class SegmentPlan(BaseModel):
    """How a long source was split (written once, by whichever worker split it; read by the rest).

    ``starts`` are the first video timestamps of the pieces, on the original's timeline: the encoded
    pieces keep them, and joining them with these spacings gives back that timeline exactly.
    """

    source: SourceInfo
    starts: list[float]
    duration: float  # seconds of video, from the first piece's start
    has_audio: bool
    audio_offset: float = 0.0  # when the audio starts, relative to the video (seconds)
    # The sound in parts for formats whose frames can be spliced (AAC): the first sample of each part,
    # at ``sound_rate``. Empty: the sound is encoded in one part (Opus; plans from before the parts).
    sound_rate: int = 0
    sound_starts: list[int] = Field(default_factory=list)
    # Pieces cut from the original by byte range (an MP4 or MOV, from its index): for each piece, the
    # bytes of the original it reads, beside its head (``segmenting.source_piece_key``). Empty: the
    # split copied the pieces out (other containers; plans from before).
    ranges: list[tuple[int, int]] = Field(default_factory=list)
    # The sound read by range too (an MP4 or MOV whose sound decodes exactly from a cut of it): each sound
    # part's cut (beside ``sound_starts``), and the whole sound's for the formats that encode it in one part.
    # Empty and None: the split decoded the parts (FLAC) and copied the track out.
    sound_cuts: list[SoundCut] = Field(default_factory=list)
    sound_track: SoundCut | None = None

    @property
    def count(self) -> int:
        return len(self.starts)

    def length(self, index: int) -> float:
        """How long piece ``index`` lasts."""
        end = self.starts[index + 1] if index + 1 < self.count else self.starts[0] + self.duration
        return max(0.0, end - self.starts[index])


def job_status(outputs: Iterable[OutputStatus]) -> JobStatus:
    """Derive the job's status from its outputs, so there is no job-level record to keep in sync."""
    states = list(outputs)
    if not states or all(s is OutputStatus.QUEUED for s in states):
        return JobStatus.QUEUED
    if not all(s.finished for s in states):
        return JobStatus.PROCESSING
    if all(s is OutputStatus.COMPLETED for s in states):
        return JobStatus.COMPLETED
    if all(s is OutputStatus.FAILED for s in states):
        return JobStatus.FAILED
    return JobStatus.PARTIAL
