"""Long videos in segments: split once, encode the pieces anywhere, join them seamlessly.

A video format of a source longer than SEGMENT_SECONDS is not encoded in one run. The first worker to
need it splits the original once (stream copy, so seconds of I/O): the video into pieces that start at
keyframes (MP4, which keeps rotation and the exact time base) and the audio track whole (NUT). Every
piece is then its own queue message, encoded by whichever worker or Lambda takes it, with the same
encoder settings as a whole-file encode and its original timestamps kept (NUT again); so is the sound,
encoded once for the whole file (per-piece AAC would add priming silence at every join) while the
pieces are. The worker that stores the last of them sends the assemble message; assembling joins the
pieces with the concat demuxer, spaced by the original's timestamps, so no frame is repeated, lost or
shifted at a join, and copies the sound in: a join encodes nothing.

Nothing here is written twice by two workers in a way that matters: the pieces and the plan are
deterministic, stored whole (atomically), and a repeated message finds its work already done.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from . import keys
from .ffmpeg import FFmpeg
from .ffmpeg.parse import ProbeFacts
from .model import SegmentPlan, SourceInfo
from .presets import Preset
from .storage import ObjectNotFound, Storage

log = logging.getLogger(__name__)

ASSEMBLY_SHARE = 5.0  # percent of an output's progress that the assembly step stands for
_PIECE = re.compile(r"(\d{5})\.nut")


def wants_segments(preset: Preset, source: SourceInfo, segment_seconds: float) -> bool:
    """Long enough, and a format that can be encoded in pieces."""
    return (
        segment_seconds > 0
        and preset.recipe is not None
        and source.has_video
        and (source.duration or 0.0) > segment_seconds
    )


def load_plan(uploads: Storage, job_id: str) -> SegmentPlan | None:
    try:
        return SegmentPlan.model_validate_json(uploads.get_bytes(keys.segment_plan_key(job_id)))
    except ObjectNotFound:
        return None


@dataclass
class Split:
    plan: SegmentPlan
    pieces: list[Path]
    audio: Path | None


def split(
    ffmpeg: FFmpeg,
    source_path: Path,
    facts: ProbeFacts,
    workdir: Path,
    segment_seconds: float,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> Split:
    """Cut the original's video at keyframes about every ``segment_seconds``, and copy its audio out."""
    source = facts.info
    folder = workdir / "split"
    folder.mkdir()
    pattern = folder / "piece-%05d.mp4"
    video_args = [
        "-map", "0:v:0", "-c", "copy", "-an", "-sn", "-dn",
        "-f", "segment", "-segment_time", f"{segment_seconds:.3f}", "-reset_timestamps", "0",
        "-segment_format", "mp4",
    ]  # fmt: skip
    audio = folder / "audio.nut" if source.has_audio else None
    if audio is not None:
        output_args = [*video_args, str(pattern), "-map", "0:a:0", "-c", "copy", "-vn", "-sn", "-dn", "-f", "nut"]
        output = audio
    else:
        output_args, output = video_args, pattern
    ffmpeg.convert(source_path, output, output_args, duration=source.duration, timeout=timeout, cancel=cancel)
    pieces = sorted(folder.glob("piece-*.mp4"))
    if not pieces:
        raise RuntimeError("Splitting the original produced no pieces")
    video, sound = facts.video, next((s for s in facts.streams if s.kind == "audio"), None)
    offset = 0.0
    if video is not None and sound is not None:
        offset = (sound.start_time or 0.0) - (video.start_time or 0.0)
    plan = SegmentPlan(
        source=source,
        starts=[ffmpeg.first_video_time(piece) for piece in pieces],
        duration=source.duration or 0.0,
        has_audio=audio is not None,
        audio_offset=round(offset, 6),
    )
    return Split(plan, pieces, audio)


def store_split(uploads: Storage, job_id: str, done: Split) -> None:
    """The pieces and the audio first, the plan last: a plan in the store means everything is there."""
    for index, piece in enumerate(done.pieces):
        uploads.put_file(keys.segment_source_key(job_id, index), piece, "video/mp4")
    if done.audio is not None:
        uploads.put_file(keys.segment_audio_key(job_id), done.audio, "application/octet-stream")
    uploads.put_bytes(keys.segment_plan_key(job_id), done.plan.model_dump_json().encode(), "application/json")


def finished(converted: Storage, job_id: str, format_id: str) -> dict[int, float]:
    """The pieces of this output already encoded and stored: index -> when."""
    found = {}
    for item in converted.list(keys.encoded_segments_prefix(job_id, format_id)):
        match = _PIECE.fullmatch(item.key.rsplit("/", 1)[-1])
        if match:
            found[int(match.group(1))] = item.modified
    return found


def progress(plan: SegmentPlan, done: dict[int, float]) -> float:
    """Percent done: the seconds of video encoded, the assembly being the last few percent."""
    if plan.duration <= 0:
        return 0.0
    seconds = sum(plan.length(index) for index in done if index < plan.count)
    return round(min(100.0 - ASSEMBLY_SHARE, (100.0 - ASSEMBLY_SHARE) * seconds / plan.duration), 1)


def encode_piece(
    ffmpeg: FFmpeg,
    preset: Preset,
    plan: SegmentPlan,
    index: int,
    piece: Path,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> Path:
    """One piece's picture, encoded with the format's settings, its original timestamps kept."""
    assert preset.recipe is not None
    output = workdir / f"{index:05d}.nut"
    ffmpeg.convert(
        piece,
        output,
        preset.recipe.segment(plan.source),
        input_args=["-copyts"],  # keep the original timeline: the join spaces pieces by it
        duration=plan.length(index),
        timeout=timeout,
        cancel=cancel,
    )
    return output


def encode_sound(
    ffmpeg: FFmpeg,
    preset: Preset,
    plan: SegmentPlan,
    audio: Path,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> Path:
    """The whole file's sound, encoded once (per-piece AAC would add priming silence at every join)."""
    assert preset.recipe is not None
    output = workdir / "audio.nut"
    ffmpeg.convert(
        audio, output, preset.recipe.sound(plan.source), duration=plan.duration, timeout=timeout, cancel=cancel
    )
    return output


def ready_to_join(converted: Storage, plan: SegmentPlan, job_id: str, format_id: str) -> bool:
    """Every piece encoded, and the sound too when there is one."""
    if len(finished(converted, job_id, format_id)) < plan.count:
        return False
    return not plan.has_audio or converted.size(keys.encoded_audio_key(job_id, format_id)) is not None


def assemble(
    ffmpeg: FFmpeg,
    preset: Preset,
    plan: SegmentPlan,
    pieces: list[Path],
    audio: Path | None,
    output: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> Path:
    """Join the encoded pieces, spaced as the pieces of the original were (the concat demuxer lines each
    file's own start up with the end of the one before, so a constant shift inside a piece, such as the
    encoder's B-frame delay, cancels out), with the sound encoded once for the whole file (``audio``),
    starting where it started against the video in the original. Nothing is encoded here."""
    assert preset.recipe is not None
    starts = plan.starts
    listing = output.with_name("pieces.ffconcat")
    lines = ["ffconcat version 1.0"]
    for index, piece in enumerate(pieces):
        lines.append(f"file '{piece.resolve()}'")
        if index + 1 < len(pieces):
            lines.append(f"duration {starts[index + 1] - starts[index]:.6f}")
    listing.write_text("\n".join(lines) + "\n")
    # Whichever of picture and sound started later in the original starts later here by the same amount.
    video_delay, audio_delay = max(0.0, -plan.audio_offset), max(0.0, plan.audio_offset)
    extra = [(["-itsoffset", f"{audio_delay:.6f}"], audio)] if audio is not None else []
    ffmpeg.convert(
        listing,
        output,
        preset.recipe.assembly(plan.source, with_audio=audio is not None),
        input_args=["-f", "concat", "-safe", "0", "-itsoffset", f"{video_delay:.6f}"],
        duration=plan.duration,
        timeout=timeout,
        cancel=cancel,
        extra_inputs=extra,
        trusted=True,
    )
    return output


def tidy(uploads: Storage, converted: Storage, job_id: str, format_id: str, *, all_final: bool) -> None:
    """Delete this output's encoded pieces; once every output of the job is final, the split too. Best
    effort: what a crash leaves behind goes with the retention sweep or the buckets' lifecycle rules."""
    with contextlib.suppress(Exception):
        for item in converted.list(keys.encoded_segments_prefix(job_id, format_id)):
            converted.delete(item.key)
        if all_final:
            for item in uploads.list(keys.segments_prefix(job_id)):
                uploads.delete(item.key)
