"""The work budget of a job, bounded before any work starts: a small file must not cost hours of CPU.

Every other limit holds for a 43.5 MB file of 3 h 59 min of static 8K at 60 fps (a keyframe a minute
compresses to almost nothing), and split into pieces it would cost about 36 CPU-hours. So the work a job
asks for is counted, from the probe and the formats, in minutes of 1080p at 30 fps:

    work = minutes of the source x output pixels / (1920 x 1080) x output fps / 30

summed over the formats the source can give, with each format's real output for this source: its size
never upscaled and capped by the preset (the short side, as FFmpeg scales it), its frame rate capped at
``MAX_FPS``. The GIF counts its first ``GIF_MAX_SECONDS`` at ``GIF_FPS`` and its width; the thumbnail
the ``THUMBNAIL_FRAMES`` frames it picks from, at its size; an audio-only output (MP3) counts
``AUDIO_WORK`` of a minute per minute of sound. Decoding the source counts too, once per decode (the
MP4 sizes share one, WebM has its own), shared among the formats of that decode:

    decode = minutes x source pixels / (1920 x 1080) x source fps / 30 x DECODE_WORK

which is what makes a long 8K60 file costly whatever size it is converted to. A job over
``MAX_JOB_WORK_MINUTES`` is refused with a sentence saying which formats, or how many minutes of the
video, would fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .ffmpeg.parse import ProbeFacts
from .limits import Limits, MediaRejected, human_duration, span
from .model import SourceInfo
from .presets import (
    GIF_FPS,
    GIF_MAX_SECONDS,
    MAX_FPS,
    PRESETS,
    THUMBNAIL_MAX_SIDE,
    Kind,
    Preset,
    UnsuitableSource,
    mp4_id,
)

REFERENCE_PIXELS = 1920 * 1080
REFERENCE_FPS = 30.0
# LAME encodes stereo at well over 50 times real time on one core, where x264 "veryfast" does 1080p30 at
# about real time: a minute of MP3 is counted as 1/50 of a minute of 1080p30.
AUDIO_WORK = 1 / 50
# Decoding costs a fraction of encoding the same pixels: a 4K 10-bit HEVC source takes ~0.8 CPU-s per
# second of video to decode (0.2 per 1080p's worth of pixels) where x264 "veryfast" takes ~1.4 CPU-s per
# second of 1080p30 (README, bench); 8-bit H.264, what most uploads are, decodes at about half that cost.
DECODE_WORK = 0.1
THUMBNAIL_FRAMES = 12  # the thumbnail filter picks the poster frame from this many (presets)


class OverBudget(MediaRejected):
    """The job asks for more work than a job may cost; the message says what would fit. Never retried."""


def _even(value: float) -> int:
    return max(2, int(value / 2) * 2)


def _rescaled(side: int, long_over_short: float) -> int:
    """The long side FFmpeg gives for ``-2`` (rounded to the nearest even number)."""
    return max(2, round(side * long_over_short / 2) * 2)


def picture_size(preset: Preset, source: SourceInfo) -> tuple[int, int]:
    """The output's width and height for this source (landscape and portrait alike: the short side is
    the preset's, never upscaled). An unknown source size counts as 16:9 at the preset's full size."""
    width, height = source.width, source.height
    if not width or not height:
        if preset.max_height is None:
            return (preset.max_width or THUMBNAIL_MAX_SIDE, round((preset.max_width or THUMBNAIL_MAX_SIDE) * 9 / 16))
        return (_rescaled(preset.max_height, 16 / 9), preset.max_height)
    short, long_side = min(width, height), max(width, height)
    if preset.max_height is not None:  # the video formats: the short side
        out_short = min(preset.max_height, _even(short))
        out_long = _rescaled(out_short, long_side / short)
        return (out_long, out_short) if width >= height else (out_short, out_long)
    box = preset.max_width or THUMBNAIL_MAX_SIDE
    if preset.id == "gif":  # at most this wide, the height follows
        out_w = min(box, width)
        return out_w, _rescaled(out_w, height / width)
    scale = min(1.0, box / long_side)  # the thumbnail: inside a box
    return max(1, round(width * scale)), max(1, round(height * scale))


def output_fps(source: SourceInfo) -> float:
    """Frames per second of a video output: the source's, capped; the cap when it is unknown."""
    rate = source.frame_rate
    return min(float(MAX_FPS), rate) if rate and rate > 0 else float(MAX_FPS)


def format_work(format_id: str, source: SourceInfo, seconds: float) -> float:
    """Minutes of 1080p30-equivalent work one format costs for ``seconds`` of this source (0 when the
    source cannot give the format: it fails without any work)."""
    preset = PRESETS[format_id]
    try:
        preset.check_source(source)
    except UnsuitableSource:
        return 0.0
    if preset.kind is Kind.AUDIO:
        return seconds / 60 * AUDIO_WORK
    if preset.stream is not None:  # its renditions, each the work of the MP4 size it is encoded as
        return sum(format_work(mp4_id(recipe.size), source, seconds) for recipe in preset.stream.renditions(source))
    if preset.id == "storyboard":  # every frame decoded, a few scaled
        return decode_work(source, seconds)
    width, height = picture_size(preset, source)
    area = width * height / REFERENCE_PIXELS
    if preset.id == "gif":
        return min(seconds, GIF_MAX_SECONDS) / 60 * area * GIF_FPS / REFERENCE_FPS
    if preset.kind is Kind.IMAGE:
        return THUMBNAIL_FRAMES / REFERENCE_FPS / 60 * area
    return seconds / 60 * area * output_fps(source) / REFERENCE_FPS


def decode_work(source: SourceInfo, seconds: float) -> float:
    """Minutes of 1080p30-equivalent work to decode ``seconds`` of the source's picture once."""
    if not source.has_video or not source.width or not source.height:
        return 0.0
    rate = source.frame_rate if source.frame_rate and source.frame_rate > 0 else float(MAX_FPS)
    return seconds / 60 * source.width * source.height / REFERENCE_PIXELS * rate / REFERENCE_FPS * DECODE_WORK


def job_work(formats: list[str], source: SourceInfo, seconds: float) -> dict[str, float]:
    """Each format's work (minutes of 1080p30), in the order asked: its encode, and its share of the
    decode it is converted from."""
    work = {format_id: format_work(format_id, source, seconds) for format_id in formats}
    for format_id in formats:
        if PRESETS[format_id].stream is not None and work[format_id] > 0:
            work[format_id] = _stream_work(format_id, formats, source, seconds)
    decodes: dict[str, list[str]] = {}  # one decode per decode group, and one per other video format
    for format_id in formats:
        preset = PRESETS[format_id]
        if preset.encodes_video and work[format_id] > 0:
            decodes.setdefault(preset.decode_group or format_id, []).append(format_id)
    once = decode_work(source, seconds)
    for members in decodes.values():
        for format_id in members:
            work[format_id] += once / len(members)
    return work


def _stream_work(format_id: str, formats: list[str], source: SourceInfo, seconds: float) -> float:
    """A stream's work in a job: its renditions that no MP4 size of the job encodes already (those are
    shared, ``conversion``). Sizes at or above the source's short side are all one picture."""
    stream = PRESETS[format_id].stream
    assert stream is not None
    side = min(source.width or 0, source.height or 0)

    def picture(size: int) -> int:
        return min(size, side) if side else size

    asked = {
        picture(r.size)
        for f in formats
        if (r := PRESETS[f].recipe) is not None and r.decode_group == stream.decode_group
    }
    return sum(
        format_work(mp4_id(recipe.size), source, seconds)
        for recipe in stream.renditions(source)
        if picture(recipe.size) not in asked
    )


def source_seconds(facts: ProbeFacts, limits: Limits) -> float:
    """The seconds the work is counted over: the file's span, or (unknown) as much as FFmpeg may read."""
    seconds = span(facts)
    return min(seconds, limits.max_duration) if seconds else limits.max_duration


@dataclass(frozen=True)
class Budget:
    """The work a job asks for against the limit, and what would fit."""

    work: dict[str, float]
    limit: float
    seconds: float
    source: SourceInfo

    @property
    def total(self) -> float:
        return sum(self.work.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.limit

    def formats_that_fit(self) -> list[str]:
        """As many of the formats asked as fit together (the cheapest first), in the order asked; each
        choice counted again as a job of its own (a decode shared by fewer formats weighs more on each)."""
        chosen: list[str] = []
        for format_id, _ in sorted(self.work.items(), key=lambda item: item[1]):
            trial = [f for f in self.work if f in {*chosen, format_id}]
            if sum(job_work(trial, self.source, self.seconds).values()) <= self.limit:
                chosen = trial
        return chosen

    def seconds_that_fit(self) -> float:
        """How long a video like this one could be, with every format asked, to fit."""
        return self.seconds * self.limit / self.total if self.total else self.seconds

    def refusal(self, source: SourceInfo) -> str:
        asked = ", ".join(self.work)
        fits = self.formats_that_fit()
        what = f"{source.width}x{source.height} at {output_fps(source):g} fps" if source.has_video else "audio"
        options = [f"all these formats for a video of at most {human_duration(self.seconds_that_fit())}"]
        if fits:
            cost = sum(job_work(fits, self.source, self.seconds).values())
            options.insert(0, f"{', '.join(fits)} ({round(cost)} min)")
        return (
            f"Converting this {human_duration(self.seconds)} video ({what}) to {asked} is about "
            f"{round(self.total)} minutes of work (counted as minutes of 1080p at 30 fps); a job may cost at most "
            f"{round(self.limit)}. What would fit: {', or '.join(options)}."
        )


def check_budget(facts: ProbeFacts, formats: list[str], limits: Limits) -> Budget:
    """Raise OverBudget (a sentence saying what would fit) when these formats of this source cost more
    than a job may; else the budget."""
    seconds = source_seconds(facts, limits)
    budget = Budget(job_work(formats, facts.info, seconds), limits.max_job_work_minutes, seconds, facts.info)
    if not budget.fits:
        raise OverBudget(budget.refusal(facts.info))
    return budget


# --- the job's deadline -------------------------------------------------------------------------------------


def deadline(created_at: datetime, job_seconds: float) -> datetime:
    """When a job's last FFmpeg work may start: its creation (in the job record every worker reads) plus
    the time a job may take. Queue waits count: the bound is on the job, whatever it waited for."""
    return created_at + timedelta(seconds=job_seconds)


def past_deadline(created_at: datetime, job_seconds: float, now: datetime | None = None) -> bool:
    return (now or datetime.now(UTC)) >= deadline(created_at, job_seconds)


def seconds_left(created_at: datetime, job_seconds: float, now: datetime | None = None) -> float:
    """How long FFmpeg work of this job may still run (0 once past its deadline)."""
    return max(0.0, (deadline(created_at, job_seconds) - (now or datetime.now(UTC))).total_seconds())


def out_of_time(label: str, job_seconds: float) -> str:
    """The sentence of an output whose remaining work came up (or was still running) past the deadline."""
    what = label or "this output"
    return (
        f"Out of time: a job's conversions must be done within {human_duration(job_seconds)} of its creation, "
        f"and {what} was not done by then. Nothing more is converted for it; try fewer formats or a shorter video."
    )
