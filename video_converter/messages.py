"""The one message handler: what happens to a (job, format) message, decided once for every entry point.

``process_message`` converts the output a message names and says what to do with the message as an
``Outcome``: ack it (done, failed for good, or not worth keeping), retry it after a delay, or release it
at once (the worker is stopping). It never raises for a failed conversion. The local worker loop and the
Lambda handler only translate the outcome: ack/visibility calls on the queue, or a batch item failure.
"""

from __future__ import annotations

import contextlib
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
    load_task,
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
    """What a message asks for: one output of one job; or, for a long video, one piece of that output
    (``segment``), one part of its sound (``sound``) or the joining of them (``assemble``)."""

    job_id: str
    format_id: str
    segment: int | None = None
    assemble: bool = False
    sound: int | None = None

    def body(self) -> dict[str, str]:
        body = {"job_id": self.job_id, "format": self.format_id}
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
        if step == "audio":  # a message from before the sound had parts has no "part": the one part
            return cls(job_id, format_id, sound=int(part or 0))
        return cls(job_id, format_id, int(segment) if segment is not None else None, assemble=step == "assemble")

    @property
    def whole(self) -> bool:
        return self.segment is None and not self.assemble and self.sound is None


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
    task_ref = Task.from_body(message.body)
    if task_ref is None:
        log.error("malformed message %s dropped: %.200r", message.id, message.body)
        return Outcome.ack("malformed")
    attempt = message.receive_count
    try:
        task = load_task(rt.jobs, task_ref.job_id, task_ref.format_id)
        if task is None:
            return Outcome.ack("no such job or format")
        if task.is_done(rt.converted):
            return Outcome.ack("already done")  # a redelivery of finished work
        if rt.jobs.failure(task.job_id) is not None:  # another output found the original unusable
            if task_ref.whole:
                task.failed(NOT_CONVERTED)
            else:
                _fail_segmented(rt, task, NOT_CONVERTED)
            return Outcome.ack("failed for good")
        if task_ref.whole:
            if attempt > rt.settings.max_attempts:
                task.failed(f"Gave up after {attempt - 1} interrupted attempts.")
                return Outcome.ack("out of attempts")
            task.started(attempt)
            work: Work = functools.partial(_whole, rt, task)
            return _attempt(rt, task, attempt, work, deadline=deadline, cancel=cancel)
        plan = load_plan(rt.uploads, task.job_id)
        if plan is None:
            task.failed("The pieces of the original are missing (they may have expired).")
            return Outcome.ack("failed for good")
        recipe = task.preset.recipe
        if recipe is None:  # a piece of a format that is never segmented: not ours
            return Outcome.ack("malformed")
        if task_ref.assemble:
            part = "Joining the parts"
        elif task_ref.sound is not None:
            count = segments.sound_parts(recipe, plan)
            part = "The sound" if count == 1 else f"Sound part {task_ref.sound + 1} of {count}"
        else:
            part = f"Part {(task_ref.segment or 0) + 1} of {plan.count}"
        if attempt > rt.settings.max_attempts:
            _fail_segmented(rt, task, f"{part} gave up after {attempt - 1} interrupted attempts.")
            return Outcome.ack("out of attempts")
        if task_ref.assemble:
            work = functools.partial(_assemble, rt, task, plan)
        elif task_ref.sound is not None:
            work = functools.partial(_sound, rt, task, plan, task_ref.sound)
        else:
            work = functools.partial(_piece, rt, task, plan, task_ref.segment or 0)
        return _attempt(rt, task, attempt, work, deadline=deadline, cancel=cancel, part=part)
    except Exception as exc:  # the records could not be read or written (storage down): try again later
        log.exception("job %s: %s, message %s hit an unexpected error", task_ref.job_id, task_ref.format_id, message.id)
        return Outcome.retry(attempt, f"{type(exc).__name__}: {exc}")


# One attempt's work, given its work folder, FFmpeg's time limit and the cancel event.
Work = Callable[[Path, float, "threading.Event | None"], Outcome]


def _whole(rt: Runtime, task: OutputTask, workdir: Path, timeout: float, cancel: threading.Event | None) -> Outcome:
    """The output in one run, or, for a long video, split into pieces that are queued one by one."""
    result = convert(
        rt.ffmpeg,
        rt.uploads,
        rt.converted,
        task,
        Limits.from_settings(rt.settings),
        workdir,
        timeout=timeout,
        cancel=cancel,
        segment_seconds=rt.settings.segment_seconds,
    )
    if isinstance(result, SegmentPlan):
        assert task.preset.recipe is not None
        for part in range(segments.sound_parts(task.preset.recipe, result)):  # first: one part may be long
            rt.queue.send(Task(task.job_id, task.format_id, sound=part).body(), group=task.job_id)
        for index in range(result.count):
            rt.queue.send(Task(task.job_id, task.format_id, segment=index).body(), group=task.job_id)
        log.info("job %s: %s in %d parts", task.job_id, task.format_id, result.count)
        return Outcome.ack(f"split into {result.count} parts")
    return Outcome.ack("completed")


def _piece(
    rt: Runtime,
    task: OutputTask,
    plan: SegmentPlan,
    index: int,
    workdir: Path,
    timeout: float,
    cancel: threading.Event | None,
) -> Outcome:
    """Encode one piece (unless a earlier delivery did); whoever stores the last one asks for the join."""
    if index >= plan.count:
        raise MediaRejected(f"There is no part {index + 1}; the video has {plan.count}.")
    key = keys.encoded_segment_key(task.job_id, task.format_id, index)
    if rt.converted.size(key) is None:
        with rt.uploads.local_path(keys.segment_source_key(task.job_id, index), workdir) as piece:
            encoded = segments.encode_piece(
                rt.ffmpeg, task.preset, plan, index, piece, workdir, timeout=timeout, cancel=cancel
            )
        rt.converted.put_file(key, encoded, "application/octet-stream")
    _join_when_ready(rt, task, plan)
    return Outcome.ack("part encoded")


def _sound(
    rt: Runtime,
    task: OutputTask,
    plan: SegmentPlan,
    index: int,
    workdir: Path,
    timeout: float,
    cancel: threading.Event | None,
) -> Outcome:
    """Encode one part of the sound (unless an earlier delivery did), beside the pieces."""
    recipe = task.preset.recipe
    assert recipe is not None
    if index >= segments.sound_parts(recipe, plan):
        raise MediaRejected(f"There is no sound part {index + 1}.")
    key = keys.encoded_sound_key(task.job_id, task.format_id, index, recipe.sound_extension)
    if rt.converted.size(key) is None:
        source = segments.sound_source_key(recipe, plan, task.job_id, index)
        with rt.uploads.local_path(source, workdir) as audio:
            encoded = segments.encode_sound(
                rt.ffmpeg, task.preset, plan, index, audio, workdir, timeout=timeout, cancel=cancel
            )
        rt.converted.put_file(key, encoded, "application/octet-stream")
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


def _fail_segmented(rt: Runtime, task: OutputTask, reason: str) -> None:
    task.failed(reason)
    segments.tidy(rt.uploads, rt.converted, task.job_id, task.format_id, all_final=_videos_final(rt, task))


def _attempt(
    rt: Runtime,
    task: OutputTask,
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
    with JobWatch(rt.jobs, task.job_id, cancel) as watch:
        outcome = _attempt_once(rt, task, attempt, work, deadline=deadline, cancel=watch.halt, part=part)
    if watch.deleted or (outcome.action is not Action.RELEASE and not rt.jobs.exists(task.job_id)):
        rt.converted.delete_prefix(task.job_id)
        rt.uploads.delete_prefix(keys.segments_prefix(task.job_id))
        return Outcome.ack("job deleted")
    return outcome


def _attempt_once(
    rt: Runtime,
    task: OutputTask,
    attempt: int,
    work: Work,
    *,
    deadline: float | None,
    cancel: threading.Event | None,
    part: str = "",
) -> Outcome:
    """One attempt at ``work``; every failure is recorded on the output before the outcome says why. A
    part of a segmented output (``part`` names it) fails its whole output when it fails for good, and
    is retried without touching the output's record otherwise (the other parts are running)."""

    def fail(reason: str) -> None:
        if part:
            _fail_segmented(rt, task, reason)
        else:
            task.failed(reason)

    try:
        with rt.scratch.workdir(f"convert-{task.format_id}-") as workdir:
            return work(workdir, time_left(rt.settings.ffmpeg_timeout, deadline), cancel)
    except ConversionCancelled:
        if not part:
            task.released()
        return Outcome.release()
    except SourceRejected as exc:  # once per job: the other outputs fail fast without probing again
        rt.jobs.save_failure(task.job_id, str(exc))
        fail(NOT_CONVERTED)
        return Outcome.ack("failed for good")
    except FINAL_FAILURES as exc:
        fail(f"{part} failed: {exc}" if part else str(exc))
        return Outcome.ack("failed for good")
    except ObjectNotFound:
        what = "A piece of the original" if part else "The uploaded original"
        fail(f"{what} is missing (it may have expired).")
        return Outcome.ack("failed for good")
    except Exception as exc:  # FFmpeg crashed, a storage call failed, ...: may pass, so retry while attempts last
        reason = str(exc) if isinstance(exc, FFmpegError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FFmpegError):
            log.exception("job %s: %s attempt %d hit an unexpected error", task.job_id, task.format_id, attempt)
        if attempt >= rt.settings.max_attempts:
            fail(f"{part + ' failed: ' if part else ''}{reason} (after {attempt} attempts)")
            return Outcome.ack("failed after the last attempt")
        log.warning(
            "job %s: %s %s attempt %d failed, will retry: %s", task.job_id, task.format_id, part, attempt, reason
        )
        if not part:
            task.requeued(f"Attempt {attempt} failed: {reason}")
        return Outcome.retry(attempt, reason)
