"""Long videos in segments, the orchestration: when to split, where the pieces are kept, the messages
for the pieces, the sound parts and the joins, and how a segmented output's progress and liveness are
seen. The FFmpeg work itself (split, encode a piece or a sound part, join) is in ``segments``.

The first worker to convert a video format of a source longer than SEGMENT_SECONDS splits the
original once and queues a ``Piece`` per piece and a ``SoundPart`` per part of the sound for the
formats of its message; other video formats of the job find the plan and queue theirs without fetching
the original. The worker that stores the last piece (or sound part) of an output queues its ``Join``;
the join publishes the output and tidies its pieces away (the split too, once every video output of
the job is final). A stream's pieces and sound parts are also packaged by their tasks, at the stream's
prefix: its join only writes the playlists over them. While the pieces are encoded, the output's record
says only that it is segmented: its progress and its last sign of life are read from the encoded pieces.

Keys (upload store):    {job_id}/segments/plan.json             the plan (written last)
                        {job_id}/segments/source/{n}.mp4        each piece's head (an MP4 or MOV original:
                                                                its media are a byte range of the original),
                                                                or the piece copied out (other containers)
                        {job_id}/segments/source/sound-{n}.mp4  the head of each sound part's cut (its media:
                        {job_id}/segments/source/sound.mp4      runs of the original's sound), and the
                                                                whole sound's; or for other originals
                        {job_id}/segments/audio.nut             the audio track (stream copy)
                        {job_id}/segments/sound/{n}.flac        and the sound in overlapping lossless parts
Keys (converted store): {job_id}/segments/{format}/{n}.{mp4|nut}  encoded pieces, until they are joined
                        {job_id}/segments/{format}/sound-{n}.{m4a|nut}  and the encoded sound (parts)
                        {job_id}/segments/hls/unpackaged-{part}.txt     a stream's part its task could
                                                                        not package, and why
                        {job_id}/hls/{track}-{n}.mp4      a stream's pieces, packaged by the piece and sound
                                                          part tasks where they stay (``streampieces``)
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TypeVar

from . import indeximage, mp4join, segments, streampieces, streams
from .conversion import check_output, check_size, publish, suitable
from .ffmpeg import ConversionCancelled, ConversionTimeout, FFmpegError, LimitExceeded
from .ffmpeg.parse import ProbeFacts
from .fmp4 import Malformed
from .keys import output_filename, output_key
from .limits import MediaRejected
from .model import OutputRecord, OutputStatus, SegmentPlan, SoundCut, SourceInfo
from .outcome import Outcome, Step
from .output import Output
from .presets import GOP_SECONDS, PRESETS, Preset, VideoRecipe
from .runtime import Runtime
from .storage import ObjectNotFound, Storage
from .work import Convert, Join, Piece, SegmentWork, SoundPart, Work, send

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ASSEMBLY_SHARE = 5.0  # percent of an output's progress that the join stands for
RANGE_CHUNK = 8 * 1024 * 1024  # a piece's bytes of the original are fetched this much per request
# Seconds after its last part was stored that the join of a stream waits for a part's packaged file
# (a sound part's task packages it just after storing it) before joining and packaging it whole.
PACKAGING_GRACE = 300.0
SPLIT_POLL = 0.5  # seconds between looks for the plan while another worker splits the original
_PIECE = re.compile(r"(\d{5})\.(?:nut|mp4)")
_SOUND = re.compile(r"sound-(\d{5})\.(?:aac|nut|m4a)")
_UNPACKAGED = re.compile(r"/unpackaged-[^/]+\.txt$")


# --- keys -----------------------------------------------------------------------------------------------


def segments_prefix(job_id: str) -> str:
    """Everything a segmented job keeps in the upload store besides its original."""
    return f"{job_id}/segments/"


def plan_key(job_id: str) -> str:
    return f"{job_id}/segments/plan.json"


def split_claim_key(job_id: str) -> str:
    """Created by the worker that splits the original (when), so that one worker does it."""
    return f"{job_id}/segments/splitting.json"


def source_piece_key(job_id: str, index: int) -> str:
    """A piece of the original: the piece itself (copied out by the split), or when the plan has byte
    ranges its head only (``ftyp``, ``moov``, ``mdat`` header), its media being read from the original."""
    return f"{job_id}/segments/source/{index:05d}.mp4"


def sound_cut_key(job_id: str, index: int | None) -> str:
    """The head of a cut of the original's sound (``SegmentPlan.sound_cuts``): part ``index``'s, or
    (None) the whole sound's (``SegmentPlan.sound_track``)."""
    name = "sound" if index is None else f"sound-{index:05d}"
    return f"{job_id}/segments/source/{name}.mp4"


def audio_key(job_id: str) -> str:
    return f"{job_id}/segments/audio.nut"


def sound_key(job_id: str, index: int) -> str:
    """Part ``index`` of the decoded sound (lossless, with the overlap its encoder needs)."""
    return f"{job_id}/segments/sound/{index:05d}.flac"


def encoded_prefix(job_id: str, format_id: str) -> str:
    return f"{job_id}/segments/{format_id}/"


def encoded_piece_key(job_id: str, format_id: str, index: int) -> str:
    """An encoded piece: an MP4 for the formats joined by copy, else NUT (``segments.piece_extension``)."""
    recipe = segments.recipe_of(PRESETS[format_id])
    extension = segments.piece_extension(recipe) if recipe is not None else "nut"
    return f"{encoded_prefix(job_id, format_id)}{index:05d}.{extension}"


def unpackaged_key(job_id: str, format_id: str, what: str) -> str:
    """Why a part of a stream could not be packaged by its task (``what``: "piece 3", "sound part 2"):
    its join then joins and packages the stream whole."""
    return f"{encoded_prefix(job_id, format_id)}unpackaged-{what.replace(' ', '-')}.txt"


def encoded_sound_key(job_id: str, format_id: str, index: int, extension: str) -> str:
    """Part ``index`` of an output's encoded sound (``m4a``: frames ready to splice or copy; ``nut``: the
    whole sound in one part), until it is joined."""
    return f"{encoded_prefix(job_id, format_id)}sound-{index:05d}.{extension}"


# --- the plan and what is done ----------------------------------------------------------------------------


def load_plan(uploads: Storage, job_id: str) -> SegmentPlan | None:
    try:
        return SegmentPlan.model_validate_json(uploads.get_bytes(plan_key(job_id)))
    except ObjectNotFound:
        return None


def store_split(uploads: Storage, job_id: str, done: segments.Split) -> None:
    """The pieces and the audio first, the plan last: a plan in the store means everything is there."""
    for index, piece in enumerate(done.pieces):
        uploads.put_file(source_piece_key(job_id, index), piece, "video/mp4")
    for index, head in enumerate(done.heads):
        uploads.put_bytes(source_piece_key(job_id, index), head, "video/mp4")
    for index, head in enumerate(done.sound_heads):
        uploads.put_bytes(sound_cut_key(job_id, index), head, "audio/mp4")
    if done.track_head is not None:
        uploads.put_bytes(sound_cut_key(job_id, None), done.track_head, "audio/mp4")
    if done.audio is not None:
        uploads.put_file(audio_key(job_id), done.audio, "application/octet-stream")
    for index, part in enumerate(done.sound_parts):
        uploads.put_file(sound_key(job_id, index), part, "audio/flac")
    uploads.put_bytes(plan_key(job_id), done.plan.model_dump_json().encode(), "application/json")


def finished(converted: Storage, job_id: str, format_id: str) -> dict[int, float]:
    """The pieces of this output already encoded and stored: index -> when."""
    found = {}
    for item in converted.list(encoded_prefix(job_id, format_id)):
        match = _PIECE.fullmatch(item.key.rsplit("/", 1)[-1])
        if match:
            found[int(match.group(1))] = item.modified
    return found


def sounds_done(converted: Storage, job_id: str, format_id: str) -> set[int]:
    """The parts of this output's sound already encoded and stored."""
    found = set()
    for item in converted.list(encoded_prefix(job_id, format_id)):
        match = _SOUND.fullmatch(item.key.rsplit("/", 1)[-1])
        if match:
            found.add(int(match.group(1)))
    return found


def ready_to_join(converted: Storage, plan: SegmentPlan, job_id: str, format_id: str, recipe: VideoRecipe) -> bool:
    """Every piece encoded, and every part of the sound."""
    if len(finished(converted, job_id, format_id)) < plan.count:
        return False
    return len(sounds_done(converted, job_id, format_id)) >= segments.sound_parts(recipe, plan)


def progress(plan: SegmentPlan, done: dict[int, float]) -> float:
    """Percent done: the seconds of video encoded, the join being the last few percent."""
    if plan.duration <= 0:
        return 0.0
    seconds = sum(plan.length(index) for index in done if index < plan.count)
    return round(min(100.0 - ASSEMBLY_SHARE, (100.0 - ASSEMBLY_SHARE) * seconds / plan.duration), 1)


def in_pieces(record: OutputRecord) -> bool:
    """The output's pieces are being encoded: its record stands still while they are stored."""
    return record.segments > 0 and record.status is OutputStatus.PROCESSING


def alive_at(record: OutputRecord, done: dict[int, float]) -> datetime:
    """A segmented output's last sign of life: its record, or the newest piece stored since."""
    newest = datetime.fromtimestamp(max(done.values(), default=0.0), UTC)
    return max(record.updated_at, newest)


def as_seen(record: OutputRecord, plan: SegmentPlan, done: dict[int, float]) -> OutputRecord:
    """The record of an output in pieces as it stands: progress counted from the pieces, alive when the
    newest was stored."""
    return record.seen(progress(plan, done), alive_at(record, done))


def tidy(uploads: Storage, converted: Storage, job_id: str, format_id: str, *, all_final: bool) -> None:
    """Delete this output's encoded pieces; once every output of the job is final, the split too. Best
    effort: what a crash leaves behind goes with the retention sweep or the buckets' lifecycle rules."""
    with contextlib.suppress(Exception):
        for item in converted.list(encoded_prefix(job_id, format_id)):
            converted.delete(item.key)
        if all_final:
            for item in uploads.list(segments_prefix(job_id)):
                uploads.delete(item.key)


def fail(rt: Runtime, outputs: list[Output], reason: str) -> None:
    """Fail segmented outputs for good, and tidy their pieces away."""
    for output in outputs:
        output.failed(reason)
        if output.preset.stream is not None:  # the files its pieces stored at the stream's prefix
            with contextlib.suppress(Exception):
                streampieces.remove_pieces(rt.converted, output.job_id)
        tidy(rt.uploads, rt.converted, output.job_id, output.format_id, all_final=_videos_final(rt, output))


def _videos_final(rt: Runtime, output: Output) -> bool:
    """Every video output of the job is completed or failed: nothing needs the split any more."""
    videos = [f for f in output.job.formats if segments.recipe_of(PRESETS[f]) is not None]
    return all(rt.jobs.output(output.job_id, f).status.finished for f in videos)


def lost_parts(uploads: Storage, converted: Storage, job_id: str, format_id: str, queued: set[Work]) -> list[Work]:
    """The messages an output in pieces waits for that are neither done nor in the queue: its missing
    pieces and sound parts, or its join once all of them are there; the whole output again when its
    split is gone."""
    plan, recipe = load_plan(uploads, job_id), segments.recipe_of(PRESETS[format_id])
    if plan is None or recipe is None:
        return [Convert(job_id, (format_id,))]
    ours = [w for w in queued if w.job_id == job_id and format_id in w.formats]
    if ready_to_join(converted, plan, job_id, format_id, recipe):
        return [] if any(isinstance(w, Join) for w in ours) else [Join(job_id, format_id)]
    waiting = {(type(w), w.index) for w in ours if isinstance(w, Piece | SoundPart)}
    done, sounds = finished(converted, job_id, format_id), sounds_done(converted, job_id, format_id)
    pieces = [Piece(job_id, (format_id,), i) for i in range(plan.count) if i not in done]
    parts = [SoundPart(job_id, (format_id,), i) for i in range(segments.sound_parts(recipe, plan)) if i not in sounds]
    candidates: list[Piece | SoundPart] = [*parts, *pieces]
    return [w for w in candidates if (type(w), w.index) not in waiting]


# --- splitting ---------------------------------------------------------------------------------------------


def wants_segments(preset: Preset, source: SourceInfo, segment_seconds: float) -> bool:
    """Long enough, and a format that can be encoded in pieces."""
    return (
        segment_seconds > 0
        and segments.recipe_of(preset) is not None
        and source.has_video
        and (source.duration or 0.0) > segment_seconds
    )


def _all_video(outputs: list[Output]) -> bool:
    return all(segments.recipe_of(output.preset) is not None for output in outputs)


def split_already(rt: Runtime, outputs: list[Output]) -> SegmentPlan | None:
    """The plan of a split another format of the job made (the pieces were cut from the checked
    original, so there is no need to fetch it): these outputs are converted in its pieces too."""
    if rt.settings.segment_seconds <= 0 or not _all_video(outputs):
        return None
    plan = load_plan(rt.uploads, outputs[0].job_id)
    if plan is None or plan.count <= 1:
        return None
    for output in outputs:
        output.probed(plan.source)
    for output in suitable(outputs, plan.source):
        output.segmented(plan.count)
    return plan


class Unsplit(Enum):
    """Why ``split_if_long`` did not split the original."""

    WHOLE = "converted whole"  # short, a format that is never segmented, or one piece only
    NEEDS_ORIGINAL = "the split needs the original"  # to copy out its pieces or its sound


def index_image(rt: Runtime, outputs: list[Output], workdir: Path) -> indeximage.Image | None:
    """The image of the original (``indeximage``) when these outputs might be split without downloading
    it: video formats only, segmenting on, an MP4 or MOV longer than SEGMENT_SECONDS by its index. None:
    the original is fetched whole, as usual."""
    seconds = rt.settings.segment_seconds
    if seconds <= 0 or not _all_video(outputs):
        return None
    job = outputs[0].job
    check_size(rt.uploads, job)
    read = functools.partial(rt.uploads.read_range, job.source_key)
    image = indeximage.make(read, job.source_size, workdir / "index-image.mp4")
    if image is not None and not image.longer_than(seconds):
        image.path.unlink()
        return None
    return image


def split_if_long(
    rt: Runtime,
    outputs: list[Output],
    facts: ProbeFacts,
    workdir: Path,
    *,
    read: mp4join.Reader,
    original: Path | None,
    timeout: float,
    cancel: threading.Event | None,
) -> SegmentPlan | Unsplit:
    """Split a long original into pieces (once per job) and store them; or say why not: it is converted
    whole, or the split needs the ``original`` it was not given (the caller fetches it and asks again).
    ``read`` reads the original's index by range: the image's, or the fetched file's."""
    lead = outputs[0]
    if not _all_video(outputs) or not wants_segments(lead.preset, facts.info, rt.settings.segment_seconds):
        return Unsplit.WHOLE
    spliced = any((r := segments.recipe_of(PRESETS[f])) is not None and r.spliced_sound for f in lead.job.formats)
    settings = rt.settings
    seconds = piece_seconds(lead.job.formats, settings.segment_seconds, settings.hls_segment_seconds)
    cuts = segments.cut_original(read, lead.job.source_size, facts, seconds, sound_in_parts=spliced)
    if original is None and segments.split_needs_original(facts, cuts):
        return Unsplit.NEEDS_ORIGINAL
    if not _claim_split(rt, lead.job_id, timeout):  # another format's worker is splitting it: wait for it
        return _split_by_another(rt, outputs, timeout, cancel)
    try:
        # Split meanwhile by a worker that has let its claim go (a split from the index takes milliseconds)
        plan = load_plan(rt.uploads, lead.job_id)
        if plan is None:
            done = segments.split(
                rt.ffmpeg, original, facts, workdir, seconds,
                timeout=timeout, cancel=cancel, sound_in_parts=spliced, cuts=cuts,
            )  # fmt: skip
            if done.plan.count <= 1:
                return Unsplit.WHOLE  # one piece only
            store_split(rt.uploads, lead.job_id, done)
            plan = done.plan
    finally:
        rt.uploads.delete(split_claim_key(lead.job_id))  # done (the plan is there) or failed: others go on
    for output in outputs:
        output.segmented(plan.count)
    return plan


def piece_seconds(formats: list[str], segment_seconds: float, stream_seconds: int) -> float:
    """How long the pieces are: SEGMENT_SECONDS, or for a job with a stream that rounded up to whole
    stream segments (``stream_seconds``; to whole GOPs when it is shorter than one), so that the pieces
    start on the stream's keyframe grid wherever the original has a keyframe there."""
    if not any(PRESETS[f].stream is not None for f in formats):
        return segment_seconds
    grid = stream_seconds if segment_seconds >= stream_seconds else GOP_SECONDS
    return float(math.ceil(segment_seconds / grid) * grid)


def _split_by_another(
    rt: Runtime, outputs: list[Output], timeout: float, cancel: threading.Event | None
) -> SegmentPlan:
    plan = _wait_for_split(rt, outputs[0].job_id, timeout, cancel)
    if plan is None:
        raise RuntimeError("Another worker was splitting the original and stopped; trying again")
    for output in suitable(outputs, plan.source):
        output.segmented(plan.count)
    return plan


def _claim_split(rt: Runtime, job_id: str, timeout: float) -> bool:
    """Claim the split of this job's original; a claim older than a split may take is one whose worker
    died, and is taken over."""
    key, now = split_claim_key(job_id), time.time()
    if rt.uploads.create_bytes(key, json.dumps({"at": now}).encode(), "application/json"):
        return True
    try:
        claimed_at = float(json.loads(rt.uploads.get_bytes(key))["at"])
    except ObjectNotFound:
        return rt.uploads.create_bytes(key, json.dumps({"at": now}).encode(), "application/json")
    except (ValueError, KeyError, TypeError):
        claimed_at = 0.0
    if now - claimed_at <= max(timeout, rt.settings.ffmpeg_timeout):
        return False
    rt.uploads.put_bytes(key, json.dumps({"at": now}).encode(), "application/json")
    return True


def _wait_for_split(rt: Runtime, job_id: str, timeout: float, cancel: threading.Event | None) -> SegmentPlan | None:
    """The plan the claiming worker stores; None when it stopped without one (its claim is gone) or
    did not finish in ``timeout``."""
    stop = cancel or threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = load_plan(rt.uploads, job_id)
        if plan is not None or rt.uploads.size(split_claim_key(job_id)) is None:
            return plan
        if stop.wait(SPLIT_POLL):
            raise ConversionCancelled("The worker stopped while waiting for the split")
    return None


def queue_parts(rt: Runtime, outputs: list[Output], plan: SegmentPlan) -> Outcome:
    """Queue the sound parts (first: a part of the sound may be long) and the pieces of the outputs the
    source can give, one message each for all of them."""
    going = [output for output in outputs if output.record.segments]
    job_id, formats = outputs[0].job_id, tuple(output.format_id for output in going)
    owner = outputs[0].job.owner
    parts = max(segments.sound_parts(recipe, plan) for recipe in segments.piece_recipes([o.preset for o in going]))
    for index in range(parts):
        send(rt.queue, SoundPart(job_id, formats, index), owner)
    for index in range(plan.count):
        send(rt.queue, Piece(job_id, formats, index), owner)
    log.info("job %s: %s in %d parts", job_id, ",".join(formats), plan.count)
    return Outcome.ack(f"split into {plan.count} parts")


# --- the pieces, the sound parts and the joins ------------------------------------------------------------


def step(rt: Runtime, work: SegmentWork, outputs: list[Output]) -> Step | Outcome:
    """The work of a piece, a sound part or a join, with its label; or the outcome when it cannot run
    (a message naming a format that is never segmented, or a split that is gone)."""
    try:
        recipes = segments.piece_recipes([output.preset for output in outputs])
    except ValueError:
        return Outcome.ack("malformed")
    plan = load_plan(rt.uploads, work.job_id)
    if plan is None:
        fail(rt, outputs, "The pieces of the original are missing (they may have expired).")
        return Outcome.finished("failed for good")
    parts = _Parts(rt, outputs, recipes, plan)
    if isinstance(work, Piece):
        return Step(functools.partial(parts.piece, work.index), work.label(plan.count))
    if isinstance(work, SoundPart):
        count = max(segments.sound_parts(recipe, plan) for recipe in recipes)
        return Step(functools.partial(parts.sound, work.index), work.label(count))
    return Step(parts.join, work.label(1))


@dataclass(frozen=True)
class _Parts:
    """The outputs of one message about a split job, with their recipes and the split's plan."""

    rt: Runtime
    outputs: list[Output]
    recipes: list[VideoRecipe]
    plan: SegmentPlan

    @property
    def job_id(self) -> str:
        return self.outputs[0].job_id

    def piece(self, index: int, workdir: Path, timeout: float, cancel: threading.Event | None) -> Outcome:
        """Encode one piece for each output that lacks it, from one decode (an earlier delivery may have
        stored some); whoever stores the last piece of an output asks for its join."""
        rt, plan, job_id = self.rt, self.plan, self.job_id
        if index >= plan.count:
            raise MediaRejected(f"There is no part {index + 1}; the video has {plan.count}.")
        todo = [o for o in self.outputs if rt.converted.size(encoded_piece_key(job_id, o.format_id, index)) is None]
        if todo:
            with self._source_piece(index, workdir) as piece:
                encoded = segments.encode_piece(
                    rt.ffmpeg, [o.preset for o in todo], plan, index, piece, workdir, timeout=timeout, cancel=cancel
                )
            for output, path in zip(todo, encoded, strict=True):
                if output.preset.stream is not None:  # its files first: a stored piece says it is all done
                    self._stream_piece(index, path, workdir, timeout, cancel)
                rt.converted.put_file(
                    encoded_piece_key(job_id, output.format_id, index), path, "application/octet-stream"
                )
                self._summarize(output.format_id, index)
        self._join_when_ready()
        return Outcome.ack("part encoded")

    @contextlib.contextmanager
    def _source_piece(self, index: int, workdir: Path) -> Iterator[Path]:
        """Piece ``index`` of the original as a file: copied out by the split, or its head followed by
        its byte range of the original (nothing else of the original is read)."""
        key = source_piece_key(self.job_id, index)
        if not self.plan.ranges:
            with self.rt.uploads.local_path(key, workdir) as path:
                yield path
            return
        yield self._cut(key, [self.plan.ranges[index]], workdir / f"piece-{index:05d}.mp4")

    def _cut(self, head: str, ranges: list[tuple[int, int]], path: Path) -> Path:
        """A cut of the original as a file at ``path``: its head (a key of the upload store), then its
        byte ranges of the original, read in chunks."""
        uploads, job = self.rt.uploads, self.outputs[0].job
        check_size(uploads, job)  # gone (expired): the piece is missing; the ranges are of the job's file
        with path.open("wb") as out:
            out.write(uploads.get_bytes(head))
            for start, stop in ranges:
                for at in range(start, stop, RANGE_CHUNK):
                    out.write(uploads.read_range(job.source_key, at, min(RANGE_CHUNK, stop - at)))
        return path

    def sound(self, index: int, workdir: Path, timeout: float, cancel: threading.Event | None) -> Outcome:
        """Encode one part of the sound for the outputs that lack it (unless an earlier delivery did):
        once for all the outputs whose sound is encoded the same way (the MP4 sizes), stored for each."""
        rt, plan, job_id = self.rt, self.plan, self.job_id
        done: dict[tuple[str, ...], Path] = {}
        for output, recipe in zip(self.outputs, self.recipes, strict=True):
            key = encoded_sound_key(job_id, output.format_id, index, segments.sound_extension(recipe))
            if index >= segments.sound_parts(recipe, plan) or rt.converted.size(key) is not None:
                continue  # an output whose sound has fewer parts (one, for WebM), or done already
            spliced = segments.spliced(recipe, plan)
            how = (*recipe.sound(plan.source), segments.sound_extension(recipe), str(spliced))
            if how not in done:
                folder = workdir / f"sound-{len(done)}"
                folder.mkdir()
                with self._sound_source(index if spliced else None, folder) as (audio, cut):
                    done[how] = segments.encode_sound(
                        rt.ffmpeg, output.preset, plan, index, audio, folder, timeout=timeout, cancel=cancel, cut=cut
                    )
            rt.converted.put_file(key, done[how], "application/octet-stream")
        self._stream_sound(index, workdir, timeout, cancel)
        self._join_when_ready()
        return Outcome.ack("sound encoded")

    @contextlib.contextmanager
    def _sound_source(self, part: int | None, workdir: Path) -> Iterator[tuple[Path, SoundCut | None]]:
        """The sound to encode part ``part`` (None: the whole sound) from: its cut of the original, read
        by range, with how to trim it; or what the split stored (a FLAC part, the copied track)."""
        plan, job_id = self.plan, self.job_id
        cut = plan.sound_track if part is None else (plan.sound_cuts[part] if plan.sound_cuts else None)
        if cut is not None:
            yield self._cut(sound_cut_key(job_id, part), cut.ranges, workdir / "sound-cut.mp4"), cut
            return
        stored = audio_key(job_id) if part is None else sound_key(job_id, part)
        with self.rt.uploads.local_path(stored, workdir) as path:
            yield path, None

    def _stream_piece(
        self, index: int, ladder: Path, workdir: Path, timeout: float, cancel: threading.Event | None
    ) -> None:
        """A stream's piece (one MP4, a video track per rendition) packaged where it is on the stream's
        timeline, each rendition's file stored at the stream's prefix."""
        output = self._stream_output()
        assert output is not None and output.preset.stream is not None
        names = [streams.track_name(recipe) for recipe in output.preset.stream.renditions(self.plan.source)]
        at, folder = streampieces.picture_at(self.plan, index), workdir / f"stream-{index:05d}"
        files = self._packaged(
            f"piece {index + 1}",
            lambda: streampieces.package_pictures(
                self.rt.ffmpeg, ladder, names, index, at, folder, timeout=timeout, cancel=cancel
            ),
        )
        for path in files or []:
            self._store_stream_file(path)

    def _stream_sound(self, index: int, workdir: Path, timeout: float, cancel: threading.Event | None) -> None:
        """A stream's sound part (its M4A, as stored for the join) packaged where it is on the stream's
        timeline, stored at the stream's prefix (unless an earlier delivery did)."""
        output = self._stream_output()
        if output is None:
            return
        recipe = self.recipes[self.outputs.index(output)]
        name = streams.piece_file(streams.AUDIO, index)
        if (
            index >= segments.sound_parts(recipe, self.plan)
            or self.rt.converted.size(self._stream_key(name)) is not None
        ):
            return
        key = encoded_sound_key(self.job_id, output.format_id, index, segments.sound_extension(recipe))
        folder = workdir / f"stream-sound-{index:05d}"
        folder.mkdir()
        at = streampieces.sound_at(self.plan, index)
        with self.rt.converted.local_path(key, folder) as part:
            path = self._packaged(
                f"sound part {index + 1}",
                lambda: streampieces.package_sound(
                    self.rt.ffmpeg, part, index, at, folder / "packaged", timeout=timeout, cancel=cancel
                ),
            )
        if path is not None:
            self._store_stream_file(path)

    def _packaged(self, what: str, package: Callable[[], _T]) -> _T | None:
        """A part of a stream packaged, or None when FFmpeg or our reading of its file failed: logged and
        said beside the encoded parts (``unpackaged_key``), so the join joins and packages the stream
        whole. A timeout or a limit is not the part's doing: raised, and the task is tried again."""
        try:
            return package()
        except (FFmpegError, Malformed) as exc:
            if isinstance(exc, ConversionTimeout | LimitExceeded):
                raise
            log.warning("job %s: stream %s not packaged (the join will package it whole): %s", self.job_id, what, exc)
            output = self._stream_output()
            assert output is not None
            reason = f"{what} could not be packaged: {exc}".encode()
            self.rt.converted.put_bytes(unpackaged_key(self.job_id, output.format_id, what), reason, "text/plain")
            return None

    def _stream_key(self, name: str) -> str:
        return streams.stream_prefix(self.job_id) + name

    def _store_stream_file(self, path: Path) -> None:
        self.rt.converted.put_file(self._stream_key(path.name), path, streams.media_type(path.name))

    def _stream_output(self) -> Output | None:
        return next((o for o in self.outputs if o.preset.stream is not None), None)

    def _summarize(self, format_id: str, index: int) -> None:
        """The job's summary learns of the stored piece (readers count the progress from it, unlisted)."""
        at, plan = time.time(), self.plan
        self.rt.jobs.update_summary(
            self.job_id, lambda current: current.with_piece(format_id, index, at, lambda done: progress(plan, done))
        )

    def _join_when_ready(self) -> None:
        """Whoever stores the last piece (or sound part) asks for the join; two asking at once is harmless."""
        for output, recipe in zip(self.outputs, self.recipes, strict=True):
            if ready_to_join(self.rt.converted, self.plan, output.job_id, output.format_id, recipe):
                # quick: a copy, then it is ready
                send(self.rt.queue, Join(output.job_id, output.format_id), output.job.owner)

    def join(self, workdir: Path, timeout: float, cancel: threading.Event | None) -> Outcome:
        """Join the encoded pieces with the sound into the output, publish it, and clear the pieces away:
        an MP4 by copy (its media never pass through here), else (or if that cannot be) with FFmpeg."""
        rt, plan, output, recipe = self.rt, self.plan, self.outputs[0], self.recipes[0]
        job_id, format_id = output.job_id, output.format_id
        if not ready_to_join(rt.converted, plan, job_id, format_id, recipe):
            raise RuntimeError("Some parts (or the sound) are not encoded yet")
        pieces = [encoded_piece_key(job_id, format_id, i) for i in range(plan.count)]
        extension = segments.sound_extension(recipe)
        sounds = [encoded_sound_key(job_id, format_id, i, extension) for i in range(segments.sound_parts(recipe, plan))]
        if output.preset.stream is not None:
            if not self._stream_from_pieces(workdir):  # else its pieces joined by FFmpeg (a copy), packaged
                streampieces.remove_pieces(rt.converted, job_id)
                self._assemble(pieces, sounds, workdir, timeout, cancel)
        elif not (segments.joined_by_copy(recipe) and self._join_by_copy(pieces, sounds)):
            self._assemble(pieces, sounds, workdir, timeout, cancel)
        tidy(rt.uploads, rt.converted, job_id, format_id, all_final=_videos_final(rt, output))
        return Outcome.finished("completed")

    def _stream_from_pieces(self, workdir: Path) -> bool:
        """A stream's playlists and manifest over its pieces' files, from their indexes alone (read by
        range: the media stay where the pieces stored them), published; False (nothing published) when
        the pieces cannot be played so, logged with why."""
        rt, plan, output, recipe = self.rt, self.plan, self.outputs[0], self.recipes[0]
        assert output.preset.stream is not None
        names = [streams.track_name(r) for r in output.preset.stream.renditions(plan.source)]
        parts = segments.sound_parts(recipe, plan)
        seconds, folder = rt.settings.hls_segment_seconds, workdir / "stream"
        encoded = list(rt.converted.list(encoded_prefix(self.job_id, output.format_id)))
        unpackaged = [item.key for item in encoded if _UNPACKAGED.search(item.key)]
        if unpackaged:
            why = rt.converted.get_bytes(unpackaged[0]).decode()
            log.warning("job %s: the stream is joined and packaged whole: %s", self.job_id, why)
            return False
        try:
            done = streampieces.from_pieces(rt.converted, self.job_id, names, plan, parts, seconds, folder)
        except streampieces.NotPackaged as exc:
            # A sound part's task packages it right after storing it: soon there. Long after the last
            # part was stored (a job encoded before its parts were packaged), it never will be.
            if time.time() - max(item.modified for item in encoded) < PACKAGING_GRACE:
                raise RuntimeError(f"The stream's {exc} yet") from exc
            log.warning("job %s: the stream is joined and packaged whole: %s", self.job_id, exc)
            return False
        except (streampieces.NotStreamable, streams.StreamInvalid) as exc:
            log.warning("job %s: the stream is joined and packaged whole: %s", self.job_id, exc)
            return False
        record = streams.publish(rt.converted, output, done)
        log.info("job %s: stream published over its %d pieces (%d bytes)", self.job_id, plan.count, record.size_bytes)
        return True

    def _join_by_copy(self, pieces: list[str], sounds: list[str]) -> bool:
        """The output written by the store from the pieces' media and one new index; False (nothing
        published) when the pieces cannot be joined that way."""
        output = self.outputs[0]
        preset = output.preset
        key = output_key(output.job_id, output.job.stem, preset.id, preset.extension)
        try:
            joined = segments.join_by_copy(self.rt.converted, self.plan, pieces, sounds, key, preset.media_type)
        except mp4join.NotJoinable as exc:
            log.warning("job %s: %s joined by FFmpeg: %s", output.job_id, output.format_id, exc)
            return False
        log.info(
            "job %s: %s joined by copy (%d bytes; %d read: index %d, small pieces %d)",
            output.job_id, output.format_id, joined.size, joined.index_bytes + joined.carried,
            joined.index_bytes, joined.carried,
        )  # fmt: skip
        output.completed(key, joined.size, joined.info)
        return True

    def _assemble(
        self, pieces: list[str], sounds: list[str], workdir: Path, timeout: float, cancel: threading.Event | None
    ) -> None:
        """Today's join: every part fetched, muxed by FFmpeg, the file checked and stored."""
        rt, plan, output = self.rt, self.plan, self.outputs[0]
        with contextlib.ExitStack() as stack:

            def fetched(key: str, name: str) -> Path:
                folder = workdir / name
                folder.mkdir()
                return stack.enter_context(rt.converted.local_path(key, folder))

            parts = [fetched(key, f"part-{i:05d}") for i, key in enumerate(pieces)]
            sound = [fetched(key, f"s{i}") for i, key in enumerate(sounds)]
            path = workdir / output_filename(output.job.stem, output.preset.id, output.preset.extension)
            if output.preset.stream is not None:
                path = workdir / "ladder.mp4"
            segments.assemble(rt.ffmpeg, output.preset, plan, parts, sound, path, timeout=timeout, cancel=cancel)
            if output.preset.stream is not None:
                self._package(path, workdir, timeout, cancel)
                return
            publish(rt.converted, output, path, check_output(rt.ffmpeg, path))

    def _package(self, ladder: Path, workdir: Path, timeout: float, cancel: threading.Event | None) -> None:
        """A stream's pieces joined (one MP4, a video track per rendition) packaged as the stream: its
        renditions' pictures and its sound copied into their fragmented MP4s on the grid."""
        rt, output = self.rt, self.outputs[0]
        assert output.preset.stream is not None
        renditions = output.preset.stream.renditions(self.plan.source)
        pictures = [(recipe.aligned(), ladder) for recipe in renditions]
        done = streams.package(
            rt.ffmpeg, pictures, ladder if self.plan.has_audio else None, workdir / "stream",
            rt.settings.hls_segment_seconds, timeout=timeout, cancel=cancel, tracks=list(range(len(pictures))),
        )  # fmt: skip
        streams.publish(rt.converted, output, done)
