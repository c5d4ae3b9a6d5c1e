"""The one message handler: what happens to a (job, format) message, decided once for every entry point.

``process_message`` converts the output a message names and says what to do with the message as an
``Outcome``: ack it (done, failed for good, or not worth keeping), retry it after a delay, or release it
at once (the worker is stopping). It never raises for a failed conversion. The local worker loop and the
Lambda handler only translate the outcome: ack/visibility calls on the queue, or a batch item failure.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from . import webhooks
from .cancel import JobWatch
from .conversion import NOT_CONVERTED, OutputTask, SourceRejected, convert, load_task
from .ffmpeg import ConversionCancelled, ConversionTimeout, FFmpegError, InvalidMedia, LimitExceeded
from .limits import Limits, MediaRejected
from .presets import UnsuitableSource
from .queues import Message
from .storage import ObjectNotFound

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """What a message asks for: one output of one job."""

    job_id: str
    format_id: str

    def body(self) -> dict[str, str]:
        return {"job_id": self.job_id, "format": self.format_id}

    @classmethod
    def from_body(cls, body: dict[str, str]) -> Task | None:
        job_id, format_id = body.get("job_id"), body.get("format")
        return cls(job_id, format_id) if job_id and format_id else None


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
FINAL_FAILURES = (UnsuitableSource, MediaRejected, InvalidMedia, LimitExceeded, ConversionTimeout)


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
            task.failed(NOT_CONVERTED)
            return Outcome.ack("failed for good")
        if attempt > rt.settings.max_attempts:
            task.failed(f"Gave up after {attempt - 1} interrupted attempts.")
            return Outcome.ack("out of attempts")
        task.started(attempt)
        return _attempt(rt, task, attempt, deadline=deadline, cancel=cancel)
    except Exception as exc:  # the records could not be read or written (storage down): try again later
        log.exception("job %s: %s, message %s hit an unexpected error", task_ref.job_id, task_ref.format_id, message.id)
        return Outcome.retry(attempt, f"{type(exc).__name__}: {exc}")


def _attempt(
    rt: Runtime, task: OutputTask, attempt: int, *, deadline: float | None, cancel: threading.Event | None
) -> Outcome:
    """One attempt, stopped early if the job is deleted meanwhile (then the message is acked, and any
    record or file this attempt wrote after the deletion is removed again)."""
    with JobWatch(rt.jobs, task.job_id, cancel) as watch:
        outcome = _attempt_once(rt, task, attempt, deadline=deadline, cancel=watch.halt)
    if watch.deleted or (outcome.action is not Action.RELEASE and not rt.jobs.exists(task.job_id)):
        rt.converted.delete_prefix(task.job_id)
        return Outcome.ack("job deleted")
    return outcome


def _attempt_once(
    rt: Runtime, task: OutputTask, attempt: int, *, deadline: float | None, cancel: threading.Event | None
) -> Outcome:
    """One attempt at a started task; every failure is recorded on the output before the outcome says why."""
    try:
        with rt.scratch.workdir(f"convert-{task.format_id}-") as workdir:
            convert(
                rt.ffmpeg,
                rt.uploads,
                rt.converted,
                task,
                Limits.from_settings(rt.settings),
                workdir,
                timeout=time_left(rt.settings.ffmpeg_timeout, deadline),
                cancel=cancel,
            )
        return Outcome.ack("completed")
    except ConversionCancelled:
        task.released()
        return Outcome.release()
    except SourceRejected as exc:  # once per job: the other outputs fail fast without probing again
        rt.jobs.save_failure(task.job_id, str(exc))
        task.failed(NOT_CONVERTED)
        return Outcome.ack("failed for good")
    except FINAL_FAILURES as exc:
        task.failed(str(exc))
        return Outcome.ack("failed for good")
    except ObjectNotFound:
        task.failed("The uploaded original is missing (it may have expired).")
        return Outcome.ack("failed for good")
    except Exception as exc:  # FFmpeg crashed, a storage call failed, ...: may pass, so retry while attempts last
        reason = str(exc) if isinstance(exc, FFmpegError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FFmpegError):
            log.exception("job %s: %s attempt %d hit an unexpected error", task.job_id, task.format_id, attempt)
        if attempt >= rt.settings.max_attempts:
            task.failed(f"{reason} (after {attempt} attempts)")
            return Outcome.ack("failed after the last attempt")
        log.warning("job %s: %s attempt %d failed, will retry: %s", task.job_id, task.format_id, attempt, reason)
        task.requeued(f"Attempt {attempt} failed: {reason}")
        return Outcome.retry(attempt, reason)
