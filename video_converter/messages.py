"""The one message handler: what happens to a message, decided once for every entry point.

A message names one output, or several video renditions of a job to convert together from one decode
(``job_tasks`` decides how a job is divided); for a long video, one piece or sound part of them, or
the join of one output. ``process_message`` converts what a message names and says what to do with the message as an
``Outcome``: ack it (done, failed for good, or not worth keeping), retry it after a delay, or release it
at once (the worker is stopping). It never raises for a failed conversion. The local worker loop and the
Lambda handler only translate the outcome: ack/visibility calls on the queue, or a batch item failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from . import keys, segments, webhooks
from .cancel import JobWatch
from .conversion import (
    NOT_CONVERTED,
    OutputTask,
    SourceRejected,
    SourceReplaced,
    check_output,
    convert,
    load_tasks,
    publish,
)
from .ffmpeg import ConversionCancelled, ConversionTimeout, FFmpegError, InvalidMedia, LimitExceeded
from .limits import Limits, MediaRejected
from .model import SegmentPlan
from .presets import PRESETS, UnsuitableSource
from .queues import Message
from .segments import load_plan
from .storage import ObjectNotFound, Storage

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """What a message asks for: one output of one job, converted with the renditions in ``also`` from
    one decode; or, for a long video, one piece of them (``segment``), one part of their sound
    (``sound``), or the joining of one output's pieces (``assemble``)."""

    job_id: str
    format_id: str
    segment: int | None = None
    assemble: bool = False
    sound: int | None = None
    also: tuple[str, ...] = ()

    @property
    def formats(self) -> tuple[str, ...]:
        return (self.format_id, *self.also)

    def body(self) -> dict[str, str]:
        body = {"job_id": self.job_id, "format": self.format_id}
        if self.also:
            body["with"] = ",".join(self.also)
        if self.segment is not None:
            body["segment"] = str(self.segment)
        if self.assemble:
            body["step"] = "assemble"
        if self.sound is not None:
            body["step"] = "audio"
            body["part"] = str(self.sound)
        return body

    @classmethod
    def from_body(cls, body: dict[str, str]) -> Task | None:
        job_id, format_id = body.get("job_id"), body.get("format")
        if not job_id or not format_id:
            return None
        segment, part, step = body.get("segment"), body.get("part"), body.get("step")
        if any(number is not None and not number.isdigit() for number in (segment, part)):
            return None
        if step not in (None, "assemble", "audio") or (step and segment is not None):
            return None
        if part is not None and step != "audio":
            return None
        also = tuple(body["with"].split(",")) if body.get("with") else ()
        if len({format_id, *also}) != 1 + len(also) or len(also) >= len(PRESETS) or (also and step == "assemble"):
            return None  # a repeated format, more formats than there are, or a join of several outputs
        if step == "audio":  # a message from before the sound had parts has no "part": the one part
            return cls(job_id, format_id, sound=int(part or 0), also=also)
        index = int(segment) if segment is not None else None
        return cls(job_id, format_id, index, assemble=step == "assemble", also=also)

    @property
    def whole(self) -> bool:
        return self.segment is None and not self.assemble and self.sound is None

    def alone(self, format_id: str) -> Task:
        """The same work for one of its formats only."""
        return Task(self.job_id, format_id, self.segment, self.assemble, self.sound)


def job_tasks(job_id: str, formats: list[str]) -> list[Task]:
    """How a job is divided into messages: the renditions of one decode group (the MP4 sizes) in one,
    converted together from one decode; every other format (WebM, MP3, GIF, thumbnail) in its own,
    so workers convert them side by side."""
    groups: dict[str, list[str]] = {}
    tasks = []
    for format_id in formats:
        recipe = PRESETS[format_id].recipe
        if recipe is not None and recipe.decode_group is not None:
            if recipe.decode_group not in groups:
                groups[recipe.decode_group] = []
                tasks.append(format_id)  # the group's message goes where its first format was asked for
            groups[recipe.decode_group].append(format_id)
        else:
            tasks.append(format_id)
    grouped = {members[0]: members for members in groups.values()}
    return [Task(job_id, f, also=tuple(grouped[f][1:]) if f in grouped else ()) for f in tasks]


class Action(StrEnum):
    ACK = "ack"  # delete the message: done, failed for good, or malformed
    RETRY = "retry"  # hand it back after ``delay`` seconds; the delivery counts as an attempt
    RELEASE = "release"  # hand it back now: the worker is stopping


@dataclass(frozen=True)
class Outcome:
    action: Action
    delay: int = 0
    reason: str = ""

    @classmethod
    def ack(cls, reason: str = "") -> Outcome:
        return cls(Action.ACK, reason=reason)

    @classmethod
    def retry(cls, attempt: int, reason: str) -> Outcome:
        return cls(Action.RETRY, delay=retry_delay(attempt), reason=reason)

    @classmethod
    def release(cls) -> Outcome:
        return cls(Action.RELEASE, reason="the worker is stopping")


def retry_delay(attempt: int) -> int:
    """Back off between attempts: 5 s, 20 s, 45 s, ... capped at 5 minutes."""
    return min(300, 5 * attempt * attempt)


# Failures the same input would meet again: no retry. A timeout needs a longer limit (e.g. the container
# worker), not another attempt with the same one.
FINAL_FAILURES = (UnsuitableSource, MediaRejected, InvalidMedia, LimitExceeded, ConversionTimeout, SourceReplaced)


def time_left(ffmpeg_timeout: float, deadline: float | None) -> float:
    """FFmpeg's time limit: FFMPEG_TIMEOUT, or less when the invocation must end sooner (``deadline`` is
    a ``time.monotonic()`` value, so the download of the original counts against it)."""
    if deadline is None:
        return float(ffmpeg_timeout)
    return max(1.0, min(float(ffmpeg_timeout), deadline - time.monotonic()))


def process_message(
    rt: Runtime,
    message: Message,
    *,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
) -> Outcome:
    """Convert what ``message`` asks for, record the result, and say what to do with the message; when
    that made the job's last output final, send the job's webhook."""
    outcome = _process(rt, message, deadline=deadline, cancel=cancel)
    task = Task.from_body(message.body)
    if task is not None and outcome.reason in FINAL_REASONS:
        try:
            webhooks.notify_if_finished(rt, task.job_id)
        except Exception:  # the conversion's outcome stands whatever happens to the notification
            log.exception("job %s: the webhook could not be sent", task.job_id)
    return outcome


# Outcomes after which an output's record is final (completed or failed).
FINAL_REASONS = {"completed", "failed for good", "failed after the last attempt", "out of attempts"}


def _process(
    rt: Runtime,
    message: Message,
    *,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
) -> Outcome:
    ref = Task.from_body(message.body)
    if ref is None:
        log.error("malformed message %s dropped: %.200r", message.id, message.body)
        return Outcome.ack("malformed")
    attempt = message.receive_count
    try:
        tasks = load_tasks(rt.jobs, ref.job_id, ref.formats)
        if not tasks:
            return Outcome.ack("no such job or format")
        tasks = [task for task in tasks if not task.is_done(rt.converted)]
        if not tasks:
            return Outcome.ack("already done")  # a redelivery of finished work
        if rt.jobs.failure(ref.job_id) is not None:  # another output found the original unusable
            _fail(rt, tasks, NOT_CONVERTED, segmented=not ref.whole)
            return Outcome.ack("failed for good")
        if ref.whole:
            if attempt > rt.settings.max_attempts:
                _fail(rt, tasks, f"Gave up after {attempt - 1} interrupted attempts.")
                return Outcome.ack("out of attempts")
            for task in tasks:
                task.started(attempt)
            work: Work = functools.partial(_whole, rt, tasks)
            return _attempt(rt, ref, tasks, attempt, work, deadline=deadline, cancel=cancel)
        recipes = [task.preset.recipe for task in tasks]
        if any(recipe is None for recipe in recipes):  # a piece of a format that is never segmented
            return Outcome.ack("malformed")
        plan = load_plan(rt.uploads, ref.job_id)
        if plan is None:
            _fail(rt, tasks, "The pieces of the original are missing (they may have expired).")
            return Outcome.ack("failed for good")
        if ref.assemble:
            part = "Joining the parts"
        elif ref.sound is not None:
            count = max(segments.sound_parts(r, plan) for r in recipes if r is not None)
            part = "The sound" if count == 1 else f"Sound part {ref.sound + 1} of {count}"
        else:
            part = f"Part {(ref.segment or 0) + 1} of {plan.count}"
        if attempt > rt.settings.max_attempts:
            _fail(rt, tasks, f"{part} gave up after {attempt - 1} interrupted attempts.", segmented=True)
            return Outcome.ack("out of attempts")
        if ref.assemble:
            work = functools.partial(_assemble, rt, tasks[0], plan)
        elif ref.sound is not None:
            work = functools.partial(_sound, rt, tasks, plan, ref.sound)
        else:
            work = functools.partial(_piece, rt, tasks, plan, ref.segment or 0)
        return _attempt(rt, ref, tasks, attempt, work, deadline=deadline, cancel=cancel, part=part)
    except Exception as exc:  # the records could not be read or written (storage down): try again later
        log.exception("job %s: %s, message %s hit an unexpected error", ref.job_id, ref.format_id, message.id)
        return Outcome.retry(attempt, f"{type(exc).__name__}: {exc}")


# One attempt's work, given its work folder, FFmpeg's time limit and the cancel event.
Work = Callable[[Path, float, "threading.Event | None"], Outcome]


def _whole(
    rt: Runtime, tasks: list[OutputTask], workdir: Path, timeout: float, cancel: threading.Event | None
) -> Outcome:
    """The outputs in one run, or, for a long video, split into pieces that are queued one by one."""
    result = convert(
        rt.ffmpeg,
        rt.uploads,
        rt.converted,
        tasks,
        Limits.from_settings(rt.settings),
        workdir,
        timeout=timeout,
        cancel=cancel,
        segment_seconds=rt.settings.segment_seconds,
    )
    if isinstance(result, SegmentPlan):
        going = [t for t in tasks if t.record.segments]  # the ones the source can give
        job_id, formats = tasks[0].job_id, [t.format_id for t in going]
        group = Task(job_id, formats[0], also=tuple(formats[1:]))
        parts = max(segments.sound_parts(t.preset.recipe, result) for t in going if t.preset.recipe is not None)
        for part in range(parts):  # first: a part of the sound may be long
            rt.queue.send(dataclasses.replace(group, sound=part).body(), group=job_id)
        for index in range(result.count):
            rt.queue.send(dataclasses.replace(group, segment=index).body(), group=job_id)
        log.info("job %s: %s in %d parts", job_id, ",".join(formats), result.count)
        return Outcome.ack(f"split into {result.count} parts")
    return Outcome.ack("completed")


def _piece(
    rt: Runtime,
    tasks: list[OutputTask],
    plan: SegmentPlan,
    index: int,
    workdir: Path,
    timeout: float,
    cancel: threading.Event | None,
) -> Outcome:
    """Encode one piece for each output that lacks it, from one decode (an earlier delivery may have
    stored some); whoever stores the last piece of an output asks for its join."""
    if index >= plan.count:
        raise MediaRejected(f"There is no part {index + 1}; the video has {plan.count}.")
    job_id = tasks[0].job_id
    todo = [t for t in tasks if rt.converted.size(keys.encoded_segment_key(job_id, t.format_id, index)) is None]
    if todo:
        with rt.uploads.local_path(keys.segment_source_key(job_id, index), workdir) as piece:
            encoded = segments.encode_piece(
                rt.ffmpeg, [t.preset for t in todo], plan, index, piece, workdir, timeout=timeout, cancel=cancel
            )
        for task, path in zip(todo, encoded, strict=True):
            rt.converted.put_file(
                keys.encoded_segment_key(job_id, task.format_id, index), path, "application/octet-stream"
            )
    for task in tasks:
        _join_when_ready(rt, task, plan)
    return Outcome.ack("part encoded")


def _sound(
    rt: Runtime,
    tasks: list[OutputTask],
    plan: SegmentPlan,
    index: int,
    workdir: Path,
    timeout: float,
    cancel: threading.Event | None,
) -> Outcome:
    """Encode one part of the sound for the outputs that lack it (unless an earlier delivery did):
    once for all the outputs whose sound is encoded the same way (the MP4 sizes), stored for each."""
    job_id = tasks[0].job_id
    done: dict[tuple[str, ...], Path] = {}
    for task in tasks:
        recipe = task.preset.recipe
        assert recipe is not None
        if index >= segments.sound_parts(recipe, plan):
            continue  # an output whose sound has fewer parts (one, for WebM)
        key = keys.encoded_sound_key(job_id, task.format_id, index, recipe.sound_extension)
        if rt.converted.size(key) is not None:
            continue
        how = (*recipe.sound(plan.source), recipe.sound_extension, str(segments.spliced(recipe, plan)))
        if how not in done:
            folder = workdir / f"sound-{len(done)}"
            folder.mkdir()
            source = segments.sound_source_key(recipe, plan, job_id, index)
            with rt.uploads.local_path(source, folder) as audio:
                done[how] = segments.encode_sound(
                    rt.ffmpeg, task.preset, plan, index, audio, folder, timeout=timeout, cancel=cancel
                )
        rt.converted.put_file(key, done[how], "application/octet-stream")
    for task in tasks:
        _join_when_ready(rt, task, plan)
    return Outcome.ack("sound encoded")


def _join_when_ready(rt: Runtime, task: OutputTask, plan: SegmentPlan) -> None:
    """Whoever stores the last piece (or sound part) asks for the join; two asking at once is harmless."""
    assert task.preset.recipe is not None
    if segments.ready_to_join(rt.converted, plan, task.job_id, task.format_id, task.preset.recipe):
        rt.queue.send(Task(task.job_id, task.format_id, assemble=True).body(), group=task.job_id)


def _assemble(
    rt: Runtime, task: OutputTask, plan: SegmentPlan, workdir: Path, timeout: float, cancel: threading.Event | None
) -> Outcome:
    """Join the encoded pieces with the audio into the output, publish it, and clear the pieces away."""
    recipe = task.preset.recipe
    assert recipe is not None
    if not segments.ready_to_join(rt.converted, plan, task.job_id, task.format_id, recipe):
        raise RuntimeError("Some parts (or the sound) are not encoded yet")
    with contextlib.ExitStack() as stack:

        def fetch(store: Storage, key: str, name: str) -> Path:
            folder = workdir / name
            folder.mkdir()
            return stack.enter_context(store.local_path(key, folder))

        pieces = [
            fetch(rt.converted, keys.encoded_segment_key(task.job_id, task.format_id, i), f"part-{i:05d}")
            for i in range(plan.count)
        ]
        sounds = [
            fetch(rt.converted, keys.encoded_sound_key(task.job_id, task.format_id, i, recipe.sound_extension), f"s{i}")
            for i in range(segments.sound_parts(recipe, plan))
        ]
        output = workdir / keys.output_filename(task.job.stem, task.preset.id, task.preset.extension)
        segments.assemble(rt.ffmpeg, task.preset, plan, pieces, sounds, output, timeout=timeout, cancel=cancel)
        publish(rt.converted, task, output, check_output(rt.ffmpeg, output))
    segments.tidy(rt.uploads, rt.converted, task.job_id, task.format_id, all_final=_videos_final(rt, task))
    return Outcome.ack("completed")


def _videos_final(rt: Runtime, task: OutputTask) -> bool:
    """Every video output of the job is completed or failed: nothing needs the split any more."""
    videos = [f for f in task.job.formats if PRESETS[f].recipe is not None]
    return all(rt.jobs.output(task.job_id, f).status.finished for f in videos)


def _fail(rt: Runtime, tasks: list[OutputTask], reason: str, *, segmented: bool = False) -> None:
    """Fail these outputs for good; a segmented one's pieces are tidied away too."""
    for task in tasks:
        task.failed(reason)
        if segmented:
            segments.tidy(rt.uploads, rt.converted, task.job_id, task.format_id, all_final=_videos_final(rt, task))


def _attempt(
    rt: Runtime,
    ref: Task,
    tasks: list[OutputTask],
    attempt: int,
    work: Work,
    *,
    deadline: float | None,
    cancel: threading.Event | None,
    part: str = "",
) -> Outcome:
    """One attempt, stopped early if the job is deleted meanwhile (then the message is acked, and any
    record or file this attempt wrote after the deletion is removed again: its converted files and
    records, and the pieces a split stored beside the original)."""
    job_id = tasks[0].job_id
    with JobWatch(rt.jobs, job_id, cancel) as watch:
        outcome = _attempt_once(rt, ref, tasks, attempt, work, deadline=deadline, cancel=watch.halt, part=part)
    if watch.deleted or (outcome.action is not Action.RELEASE and not rt.jobs.exists(job_id)):
        rt.converted.delete_prefix(job_id)
        rt.uploads.delete_prefix(keys.segments_prefix(job_id))
        return Outcome.ack("job deleted")
    return outcome


def _one_by_one(rt: Runtime, ref: Task, tasks: list[OutputTask], exc: Exception) -> Outcome:
    """Renditions converted together failed: do each again on its own, so that one rendition's failure
    (its encoder, its size limit) is its own and the others still finish."""
    log.warning("job %s: %s together failed, each goes alone now: %s", ref.job_id, ",".join(ref.formats), exc)
    for task in tasks:
        if ref.whole:
            task.released()
        rt.queue.send(ref.alone(task.format_id).body(), group=task.job_id)
    return Outcome.ack("one by one")


def _attempt_once(
    rt: Runtime,
    ref: Task,
    tasks: list[OutputTask],
    attempt: int,
    work: Work,
    *,
    deadline: float | None,
    cancel: threading.Event | None,
    part: str = "",
) -> Outcome:
    """One attempt at ``work``; every failure is recorded on the outputs before the outcome says why. A
    part of a segmented output (``part`` names it) fails its whole output when it fails for good, and
    is retried without touching the output's record otherwise (the other parts are running). When
    several renditions fail together on FFmpeg's side, each is tried again alone."""

    def unfinished() -> list[OutputTask]:  # renditions of a group may have been published before the failure
        return [task for task in tasks if not task.record.status.finished]

    def fail(reason: str) -> None:
        _fail(rt, unfinished(), reason, segmented=bool(part))

    try:
        with rt.scratch.workdir(f"convert-{ref.format_id}-") as workdir:
            return work(workdir, time_left(rt.settings.ffmpeg_timeout, deadline), cancel)
    except ConversionCancelled:
        if not part:
            for task in unfinished():
                task.released()
        return Outcome.release()
    except SourceRejected as exc:  # once per job: the other outputs fail fast without probing again
        rt.jobs.save_failure(ref.job_id, str(exc))
        fail(NOT_CONVERTED)
        return Outcome.ack("failed for good")
    except FFmpegError as exc:
        if len(unfinished()) > 1:
            return _one_by_one(rt, ref, unfinished(), exc)
        return _failed(rt, ref, unfinished(), attempt, exc, fail, part)
    except ObjectNotFound:
        what = "A piece of the original" if part else "The uploaded original"
        fail(f"{what} is missing (it may have expired).")
        return Outcome.ack("failed for good")
    except Exception as exc:
        return _failed(rt, ref, unfinished(), attempt, exc, fail, part)


def _failed(
    rt: Runtime,
    ref: Task,
    tasks: list[OutputTask],
    attempt: int,
    exc: Exception,
    fail: Callable[[str], None],
    part: str,
) -> Outcome:
    """A failure that will not pass (FINAL_FAILURES) fails the outputs; any other (FFmpeg crashed, a
    storage call failed, ...) may pass, so the message is retried while attempts last."""
    if isinstance(exc, FINAL_FAILURES):
        fail(f"{part} failed: {exc}" if part else str(exc))
        return Outcome.ack("failed for good")
    reason = str(exc) if isinstance(exc, FFmpegError) else f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, FFmpegError):
        log.exception("job %s: %s attempt %d hit an unexpected error", ref.job_id, ref.format_id, attempt)
    if attempt >= rt.settings.max_attempts:
        fail(f"{part + ' failed: ' if part else ''}{reason} (after {attempt} attempts)")
        return Outcome.ack("failed after the last attempt")
    log.warning("job %s: %s %s attempt %d failed, will retry: %s", ref.job_id, ref.format_id, part, attempt, reason)
    if not part:
        for task in tasks:
            task.requeued(f"Attempt {attempt} failed: {reason}")
    return Outcome.retry(attempt, reason)
