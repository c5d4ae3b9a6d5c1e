"""The one message handler: what happens to a message, decided once for every entry point.

A message names some work (``video_converter.work``): outputs of a job converted from the original,
or, for a long video, a piece, a sound part or a join (``video_converter.segmenting``); or the delivery
of a finished job's webhook (``video_converter.webhooks``), queued when its last output became final.
``process_message`` does that work and says what to do with the message as an ``Outcome``: ack it
(done, failed for good, or not worth keeping), retry it after a delay, or release it at once (the
worker is stopping). It never raises for a failed conversion. The local worker loop and the Lambda
handler only translate the outcome: ack/visibility calls on the queue, or a batch item failure.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from datetime import datetime
from pathlib import Path

from . import budget, conversion, diskspace, estimate, imports, indeximage, segmenting, telemetry, webhooks
from .cancel import JobWatch
from .conversion import NOT_CONVERTED, RenditionsFailed, SourceRejected, SourceReplaced
from .diskspace import is_disk_full
from .ffmpeg import ConversionCancelled, ConversionTimeout, FFmpegError, InvalidMedia, LimitExceeded
from .ffmpeg.failures import is_certain
from .ffmpeg.parse import ProbeFacts
from .limits import Limits, MediaRejected
from .model import JobRecord, OutputStatus, SegmentPlan, utcnow
from .outcome import Action, Outcome, Step
from .output import Output, load_outputs
from .presets import PRESETS, UnsuitableSource
from .queues import Message
from .runtime import Runtime
from .storage import ObjectNotFound
from .work import Convert, Import, Join, Notify, Work, alone, from_body, send

log = logging.getLogger(__name__)

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
    """Do the work ``message`` names, record the result, and say what to do with the message; when that
    made the job's last output final, queue the job's webhook."""
    work = from_body(message.body)
    if work is None:
        log.error("malformed message %s dropped: %.200r", message.id, message.body)
        return Outcome.ack("malformed")
    if isinstance(work, Notify):
        return _notify(rt, work, message.receive_count)
    if isinstance(work, Import):
        outcome = imports.handle(rt, work, message.receive_count, deadline)
        if outcome.final:
            after_final(rt, work.job_id)
        return outcome
    with telemetry.fields(job_id=work.job_id, format=",".join(work.formats), attempt=message.receive_count):
        attempt = _Attempt(rt, work, message.receive_count, deadline, cancel)
        try:
            outcome = attempt.process()
        except Exception as exc:  # the records could not be read or written (storage down): try again later
            if is_disk_full(exc):  # a record did not fit: wait for room, not as an attempt
                log.warning(
                    "job %s: %s, message %s: the disk is full, it waits: %s",
                    work.job_id,
                    work.formats[0],
                    message.id,
                    exc,
                )
                return Outcome.wait_for_disk(rt.settings.disk_full_wait)
            log.exception("job %s: %s, message %s hit an unexpected error", work.job_id, work.formats[0], message.id)
            return Outcome.retry(attempt.number, f"{type(exc).__name__}: {exc}")
        if outcome.final:
            after_final(rt, work.job_id)
        return outcome


def after_final(rt: Runtime, job_id: str) -> None:
    """Some outputs of the job became final (completed, or failed for good): queue its webhook if that
    finished the job. Every path that makes an output final ends here (a message's outcome, the AWS
    dead-letter consumer and sweep)."""
    try:
        webhooks.notify_if_finished(rt, job_id)
    except Exception:  # the outputs' outcome stands whatever happens to the notification
        log.exception("job %s: the webhook could not be queued", job_id)


def _notify(rt: Runtime, notice: Notify, attempt: int) -> Outcome:
    try:
        return webhooks.handle(rt, notice, attempt)
    except Exception as exc:  # the records could not be read or written: try again later
        log.exception("job %s: the webhook hit an unexpected error", notice.job_id)
        return Outcome.retry(attempt, f"{type(exc).__name__}: {exc}")


class _Attempt:
    """One delivery of a message: the outputs it names, and every failure recorded on them before the
    outcome says why. A part of a segmented output fails its whole output when it fails for good, and is
    retried without touching the output's record otherwise (the other parts are running)."""

    def __init__(
        self, rt: Runtime, work: Work, number: int, deadline: float | None, cancel: threading.Event | None
    ) -> None:
        self.rt, self.work, self.number = rt, work, number
        self.deadline, self.cancel = deadline, cancel
        self.whole = isinstance(work, Convert)
        self.outputs: list[Output] = []
        self.label = ""

    def process(self) -> Outcome:
        outputs = load_outputs(self.rt.jobs, self.work.job_id, self.work.formats)
        if not outputs:
            return Outcome.ack("no such job or format")
        self.outputs = [output for output in outputs if not output.is_done(self.rt.converted)]
        if not self.outputs:
            return Outcome.ack("already done")  # a redelivery of finished work
        if self.rt.jobs.failure(self.work.job_id) is not None:  # another output found the original unusable
            self.fail(NOT_CONVERTED, self.outputs)
            return Outcome.finished("failed for good")
        step = self._step()
        if isinstance(step, Outcome):
            return step
        self.label = step.label
        if self._out_of_time():
            self.fail(budget.out_of_time(self.label, self.rt.settings.job_seconds), self.outputs)
            return Outcome.finished("out of time")
        if self.number > self.rt.settings.max_attempts:
            gave_up = f"gave up after {self.number - 1} interrupted attempts."
            self.fail(f"{self.label} {gave_up}" if self.label else gave_up.capitalize(), self.outputs)
            return Outcome.finished("out of attempts")
        if self.whole:
            for output in self.outputs:
                output.started(self.number)
        return self._watched(step)

    def _step(self) -> Step | Outcome:
        if isinstance(self.work, Convert):
            return Step(functools.partial(_convert, self.rt, self.outputs))
        return segmenting.step(self.rt, self.work, self.outputs)

    def _out_of_time(self) -> bool:
        """The job is past its deadline (MAX_JOB_SECONDS from its creation): no FFmpeg work of it starts
        any more. A join still runs: it copies what is encoded already, in seconds."""
        if isinstance(self.work, Join):
            return False
        return budget.past_deadline(self._since(), self.rt.settings.job_seconds)

    def _since(self) -> datetime:
        """When these outputs' time budget started: the job's creation, or their retry or addition."""
        return max([self.outputs[0].job.created_at, *(o.record.since for o in self.outputs if o.record.since)])

    def _timeout(self) -> float:
        """FFmpeg's time limit for this attempt: FFMPEG_TIMEOUT, the invocation's, and the job's own time
        left, whichever ends first (a join is not held to the job's: it only copies)."""
        timeout = time_left(self.rt.settings.ffmpeg_timeout, self.deadline)
        if isinstance(self.work, Join):
            return timeout
        left = budget.seconds_left(self._since(), self.rt.settings.job_seconds)
        return max(1.0, min(timeout, left))

    def unfinished(self) -> list[Output]:
        """Renditions of a group may have been published before a failure."""
        return [output for output in self.outputs if not output.record.status.finished]

    def fail(self, reason: str, outputs: list[Output] | None = None) -> None:
        """Fail these outputs (by default the unfinished ones) for good; a segmented one's pieces are
        tidied away too."""
        outputs = self.unfinished() if outputs is None else outputs
        if self.whole:
            for output in outputs:
                output.failed(reason)
        else:
            segmenting.fail(self.rt, outputs, reason)

    def _watched(self, step: Step) -> Outcome:
        """The attempt, stopped early if the job is deleted meanwhile (then the message is acked, and any
        record or file this attempt wrote after the deletion is removed again: its converted files and
        records, and the pieces a split stored beside the original)."""
        job_id = self.work.job_id
        with JobWatch(self.rt.jobs, job_id, self.cancel) as watch:
            self.cancel = watch.halt
            outcome = self._run(step)
        if watch.deleted or (outcome.action is not Action.RELEASE and not self.rt.jobs.exists(job_id)):
            self.rt.converted.delete_prefix(job_id)
            self.rt.uploads.delete_prefix(segmenting.segments_prefix(job_id))
            return Outcome.ack("job deleted")
        return outcome

    def _run(self, step: Step) -> Outcome:
        try:
            with self.rt.scratch.workdir(f"convert-{self.work.formats[0]}-") as workdir:
                return step.run(workdir, self._timeout(), self.cancel)
        except ConversionCancelled:
            if self.whole:
                for output in self.unfinished():
                    output.released()
            return Outcome.release()
        except SourceRejected as exc:  # once per job: the other outputs fail fast without probing again
            self.rt.jobs.save_failure(self.work.job_id, str(exc))
            self.fail(NOT_CONVERTED)
            job = self.outputs[0].job
            fail_waiting(self.rt, job, dict.fromkeys(job.formats, NOT_CONVERTED))  # not after their turn
            return Outcome.finished("failed for good")
        except FFmpegError as exc:
            return self._ffmpeg_failed(exc)
        except ObjectNotFound:
            what = "The uploaded original" if self.whole else "A piece of the original"
            self.fail(f"{what} is missing (it may have expired).")
            return Outcome.finished("failed for good")
        except Exception as exc:
            return self._failed(exc)

    def _ffmpeg_failed(self, exc: FFmpegError) -> Outcome:
        """FFmpeg failed. Renditions converted together are each tried again on their own, so that one
        rendition's failure (its encoder, its size limit) is its own and the others still finish; those
        the failure names, when it is one the same input would meet again, fail at once instead."""
        outputs = self.unfinished()
        if len(outputs) <= 1 or is_disk_full(exc):  # a full disk is no rendition's fault: they wait together
            return self._failed(exc)
        at_fault = exc.at_fault if isinstance(exc, RenditionsFailed) and is_certain(exc.stderr_tail) else frozenset()
        if at_fault:
            self.fail(self._reason(exc), [output for output in outputs if output.format_id in at_fault])
            outputs = [output for output in outputs if output.format_id not in at_fault]
            if not outputs:
                return Outcome.finished("failed for good")
        return self._one_by_one(exc, outputs)

    def _one_by_one(self, exc: Exception, outputs: list[Output]) -> Outcome:
        """Send the work again for each of these outputs alone."""
        log.warning("job %s: %s together failed, each goes alone now: %s", self.work.job_id, self.formats, exc)
        for output in outputs:
            if self.whole:
                output.released()
            work = alone(self.work, output.format_id)
            send(self.rt.queue, work, output.job.owner)
        return Outcome.ack("one by one")

    @property
    def formats(self) -> str:
        return ",".join(self.work.formats)

    def _reason(self, exc: Exception) -> str:
        return f"{self.label} failed: {exc}" if self.label else str(exc)

    def _failed(self, exc: Exception) -> Outcome:
        """A failure that will not pass (FINAL_FAILURES, or FFmpeg saying the input or the settings are at
        fault) fails the outputs; any other (FFmpeg crashed, a storage call failed, ...) may pass, so the
        message is retried while attempts last. A full disk is waited out without spending one
        (``diskspace``)."""
        if is_disk_full(exc) and self._may_wait_for_disk():
            return self._wait_for_disk(exc)
        part = f"{self.label} failed: " if self.label else ""
        if isinstance(exc, ConversionTimeout) and self._out_of_time():  # cut short by the job's deadline
            self.fail(budget.out_of_time(self.label, self.rt.settings.job_seconds))
            return Outcome.finished("out of time")
        if isinstance(exc, FINAL_FAILURES) or (isinstance(exc, FFmpegError) and is_certain(exc.stderr_tail)):
            self.fail(self._reason(exc))
            return Outcome.finished("failed for good")
        reason = str(exc) if isinstance(exc, FFmpegError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FFmpegError):
            log.exception("job %s: %s attempt %d hit an unexpected error", self.work.job_id, self.formats, self.number)
        if self.number >= self.rt.settings.max_attempts:
            self.fail(f"{part}{reason} (after {self.number} attempts)")
            return Outcome.finished("failed after the last attempt")
        log.warning(
            "job %s: %s %s attempt %d failed, will retry: %s",
            self.work.job_id, self.formats, self.label, self.number, reason,
        )  # fmt: skip
        if self.whole:
            for output in self.unfinished():
                output.requeued(f"Attempt {self.number} failed: {reason}")
        return Outcome.retry(self.number, reason)

    def _may_wait_for_disk(self) -> bool:
        return not self.outputs or utcnow() - self.outputs[0].job.created_at < diskspace.GIVE_UP_AFTER

    def _wait_for_disk(self, exc: Exception) -> Outcome:
        """Hand the message back for later, the outputs queued and saying why (when their records still
        fit on the disk: the note is for people, the message comes back either way)."""
        delay = self.rt.settings.disk_full_wait
        log.warning(
            "job %s: %s %s: the disk is full, back in %d s (not as an attempt): %s",
            self.work.job_id, self.formats, self.label, delay, exc,
        )  # fmt: skip
        if self.whole:
            with contextlib.suppress(OSError):
                for output in self.unfinished():
                    output.requeued(diskspace.WAITING)
        return Outcome.wait_for_disk(delay)


def _convert(
    rt: Runtime, outputs: list[Output], workdir: Path, timeout: float, cancel: threading.Event | None
) -> Outcome:
    """Fetch and probe the original, encode, check each result, publish it: one output, or renditions of
    one job from one decode. A long video is split into pieces instead (once per job, by whichever of
    its video formats comes first), and its pieces are queued: a long MP4 or MOV is probed and split from
    its index alone (``indeximage``), never fetched."""
    if (plan := segmenting.split_already(rt, outputs)) is not None:
        return segmenting.queue_parts(rt, outputs, plan)
    limits, facts = Limits.from_settings(rt.settings), None
    split = functools.partial(segmenting.split_if_long, rt, workdir=workdir, timeout=timeout, cancel=cancel)
    done: SegmentPlan | segmenting.Unsplit = segmenting.Unsplit.NEEDS_ORIGINAL
    if (image := segmenting.index_image(rt, outputs, workdir)) is not None:  # a long MP4 or MOV, maybe
        facts, outputs = _probe(rt, outputs, image.path, limits)
        done = split(outputs, facts, read=image.read, original=None)
    if isinstance(done, SegmentPlan):
        return segmenting.queue_parts(rt, outputs, done)
    with conversion.fetched_source(rt.uploads, outputs[0], workdir) as source:
        if facts is None:  # the image's facts are the file's (``indeximage``): it is probed once
            facts, outputs = _probe(rt, outputs, source, limits)
        if done is segmenting.Unsplit.NEEDS_ORIGINAL:
            done = split(outputs, facts, read=functools.partial(indeximage.read_file, source), original=source)
        if isinstance(done, SegmentPlan):
            return segmenting.queue_parts(rt, outputs, done)
        results = conversion.encode(
            rt.ffmpeg, outputs, source, facts, limits, workdir,
            timeout=timeout, cancel=cancel, segment_seconds=rt.settings.hls_segment_seconds,
        )  # fmt: skip
    conversion.publish_all(rt.ffmpeg, rt.converted, outputs, results)
    estimate.learn_from(estimate.SpeedBook.of(rt.converted), outputs, facts.info)
    return Outcome.finished("completed")


def _probe(rt: Runtime, outputs: list[Output], path: Path, limits: Limits) -> tuple[ProbeFacts, list[Output]]:
    """Probe the original (or its image) and check it against the limits; fail at once every output of
    the job it cannot give (those of this message, and those still waiting in the queue): the facts, and
    the outputs of this message it can give."""
    facts = conversion.inspect(rt.ffmpeg, outputs, path, limits)
    job = outputs[0].job
    fail_waiting(rt, job, conversion.unsuitable([PRESETS[f] for f in job.formats], facts.info))
    return facts, conversion.suitable(outputs, facts.info)


def fail_waiting(rt: Runtime, job: JobRecord, reasons: dict[str, str]) -> None:
    """Fail at once the job's outputs still waiting in the queue that the probe showed cannot be made
    (format id -> its own sentence): where the API cannot probe the upload (AWS), a video format of an
    audio-only source fails when the first of the job's messages probes it, not after the other
    conversions. Only a queued record is changed, so no worker holding its message is overruled; its
    message, when it comes, finds the output done."""
    for format_id, reason in reasons.items():
        record = rt.jobs.find_output(job.job_id, format_id)
        if record is not None and record.status is OutputStatus.QUEUED and format_id in PRESETS:
            Output(rt.jobs, job, PRESETS[format_id], record).failed(reason)
