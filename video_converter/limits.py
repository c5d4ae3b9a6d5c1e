"""Limits checked on the probe, before any encode: a 30 KB upload must not cost hours or gigabytes.

Hostile timing is refused here when the probe shows it (a stream offset by hours, a duration over the
limit, far more declared picture than the file's bytes can hold) and normalised in the presets when it
cannot be seen without decoding everything: video outputs pass timestamps through (``-fps_mode vfr``)
so a gap or a 0.001 fps source never becomes hours of duplicated frames, their frame rate is capped
by dropping frames, and the GIF is cut on the input side and inside its filter graph.

Also here, for every layer that states a size limit: ``human_bytes`` words a size in the sentences
users see, and ``UPLOAD_SLACK_BYTES`` is the room an upload's request gets beyond the file limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings
from .errors import InvalidRequest
from .ffmpeg.parse import ProbeFacts, StreamFacts

EIGHT_K = (7680, 4320)
# Audio and video of one file start together, give or take a few seconds (MPEG-TS captures, encoder
# delay); an hour between them is an empty edit list or a rewritten timestamp, not a recording.
MAX_STREAM_OFFSET = 60.0
# Decoded pixels the file declares per byte it holds. A static 1080p screen recording in H.264 is ~1e5;
# a 30 KB file declaring 8K at 60 fps for hours is ~1e9.
MAX_PIXELS_PER_BYTE = 10_000_000
# ffmpeg's input -t is the probed duration plus 10 % (at least 1 s): a format duration can round down,
# or be estimated from the bit rate (MPEG program streams). Files whose duration is unknown (raw
# H.264) are read up to MAX_DURATION_SECONDS.
DURATION_MARGIN = 0.1
# A multipart upload's request may pass MAX_UPLOAD_BYTES by this much: the boundaries and the other
# fields around the file.
UPLOAD_SLACK_BYTES = 1024 * 1024


class MediaRejected(InvalidRequest):
    """The source is over a limit or crafted; the message is a sentence for the user. Never retried."""


@dataclass(frozen=True)
class Limits:
    max_pixels: int = EIGHT_K[0] * EIGHT_K[1]
    max_duration: float = 4 * 3600.0
    max_job_work_minutes: float = 600.0  # minutes of 1080p30-equivalent work per job (video_converter.budget)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_pixels=settings.max_pixels,
            max_duration=settings.max_duration_seconds,
            max_job_work_minutes=settings.max_job_work_minutes,
        )

    def describe_pixels(self) -> str:
        if self.max_pixels == EIGHT_K[0] * EIGHT_K[1]:
            return "8K (7680x4320)"
        if self.max_pixels >= 1_000_000:
            return f"{self.max_pixels / 1e6:.1f} megapixels"
        return f"{self.max_pixels} pixels"

    def input_seconds(self, facts: ProbeFacts, cap: float | None = None) -> float:
        """How much of the source FFmpeg may read (its input ``-t``): the probed duration, the limit,
        and the preset's own cap (the GIF's first seconds), whichever is smallest."""
        seconds = self.max_duration
        if facts.info.duration:
            duration = facts.info.duration
            seconds = min(seconds, duration + max(1.0, duration * DURATION_MARGIN))
        return min(seconds, cap) if cap else seconds


def human_duration(seconds: float) -> str:
    """``4 h``, ``10 h 0 min``, ``12 min``, ``45 s``: short and unambiguous in a sentence."""
    if seconds >= 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h" if minutes == 0 and seconds % 3600 == 0 else f"{hours} h {minutes} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds:.0f} s"


def human_bytes(size: int) -> str:
    """``512 bytes``, ``1.0 KiB``, ``195.3 KiB``, ``3.0 MiB``, ``4.0 GiB``: a size in binary units, for sentences."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _pictures(facts: ProbeFacts) -> list[StreamFacts]:
    # Cover art counts too: a JPEG cover declaring 16000x16000 is decoded just the same.
    return [s for s in facts.streams if s.kind == "video" and (s.width or s.coded_width)]


def span(facts: ProbeFacts) -> float | None:
    """The time the file covers: its declared duration, or its streams' extent when that is longer."""
    ends = [
        (s.start_time or 0.0) + s.duration
        for s in facts.streams
        if s.kind in ("video", "audio") and not s.attached_pic and s.duration is not None
    ]
    starts = [s.start_time for s in facts.streams if s.kind in ("video", "audio") and s.start_time is not None]
    extent = max(ends) - min(starts, default=0.0) if ends else None
    spans = [d for d in (facts.duration, extent) if d is not None]
    return max(spans) if spans else None


def _check_pixels(facts: ProbeFacts, limits: Limits) -> None:
    for stream in _pictures(facts):
        width = max(stream.width or 0, stream.coded_width or 0)
        height = max(stream.height or 0, stream.coded_height or 0)
        if width * height > limits.max_pixels:
            what = "cover image" if stream.attached_pic else "video"
            raise MediaRejected(f"This {what} is {width}x{height} pixels; the limit is {limits.describe_pixels()}.")


def _check_offsets(facts: ProbeFacts) -> None:
    tracks = [s for s in facts.streams if s.kind in ("video", "audio") and not s.attached_pic]
    timed = [s for s in tracks if s.start_time is not None]
    if len(timed) < 2:
        return
    first = min(timed, key=lambda s: s.start_time or 0.0)
    last = max(timed, key=lambda s: s.start_time or 0.0)
    offset = (last.start_time or 0.0) - (first.start_time or 0.0)
    if offset > MAX_STREAM_OFFSET:
        raise MediaRejected(
            f"The {last.kind} track starts {human_duration(offset)} after the {first.kind} track "
            "(an empty edit list or shifted timestamps); files like this are refused."
        )


def _check_duration(facts: ProbeFacts, limits: Limits) -> None:
    seconds = span(facts)
    if seconds is not None and seconds > limits.max_duration:
        raise MediaRejected(
            f"This file lasts {human_duration(seconds)}; the limit is {human_duration(limits.max_duration)}."
        )


def _check_density(facts: ProbeFacts) -> None:
    """A few kilobytes cannot hold hours of large frames: refuse files that declare far more picture
    than their size allows (decoding them would cost far more than their size suggests)."""
    video, size = facts.video, facts.size
    if video is None or not size or not video.width or not video.height:
        return
    frames = video.nb_frames
    if frames is None:
        rates = [r for r in (video.r_frame_rate, video.avg_frame_rate) if r and r > 0]
        seconds = video.duration or facts.duration
        if not rates or not seconds:
            return
        frames = int(min(rates) * seconds)
    if video.width * video.height * frames > MAX_PIXELS_PER_BYTE * size:
        raise MediaRejected(
            f"This {human_bytes(size)} file declares {frames} frames of {video.width}x{video.height} pixels, "
            "far more picture than it can hold; it looks crafted and is refused."
        )


def check_media(facts: ProbeFacts, limits: Limits) -> None:
    """Raise MediaRejected (a sentence for the user) when the source is over a limit or crafted."""
    _check_pixels(facts, limits)
    _check_offsets(facts)
    _check_duration(facts, limits)
    _check_density(facts)
