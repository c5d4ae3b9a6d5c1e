"""AWS mode's reconciliation, from the records alone: the dead-letter consumer and the scheduled sweep.

Local mode reads its SQLite queue to see which messages are lost (``video_converter.recovery``). SQS
cannot be listed, so here "lost" is decided from the status records and the stored pieces only:

- A message that SQS received MAX_ATTEMPTS times (maxReceiveCount) without an answer is moved to the
  dead-letter queue: the workers were throttled (each throttled receive counts) or killed (timeout,
  out of memory). ``dead_lettered`` fails the outputs it names for good, with a sentence.
- Anything else that waits longer than ``lost_after`` without a sign of life lost its message: a record
  queued or processing, unchanged for that long (an output in pieces: no piece stored for that long
  either). ``lost_after`` is VISIBILITY_TIMEOUT x MAX_ATTEMPTS (5400 s x 5 = 7.5 h as deployed): the
  longest a message can be hidden over all its receives before SQS moves it to the dead-letter queue,
  where the consumer above fails it. A message that waits unreceived behind the event source's
  MaximumConcurrency is not bounded by it, but sending it again is harmless: a redelivery of finished
  work is acked without converting, and a piece already stored is not encoded again.

``sweep`` sends lost work again and counts it on the record (``OutputRecord.resent``); an output whose
work was sent again MAX_ATTEMPTS times already is failed instead, so nothing loops for ever. Saving the
record also stamps it, so the next runs wait ``lost_after`` again before looking at it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import segmenting, telemetry
from .config import Settings
from .errors import JobNotFound
from .messages import after_final
from .model import JobRecord, is_job_id, utcnow
from .output import Output, load_outputs
from .presets import PRESETS
from .runtime import Runtime
from .storage import ObjectNotFound
from .work import Convert, Import, Notify, Work, from_body, send

log = logging.getLogger(__name__)

# Job folders looked at per run (well within the function's 240 s: a few reads each); the next run goes
# on after the last (a cursor).
SWEEP_JOBS = 500
CURSOR_KEY = "sweep/cursor.json"  # in the converted store; not a job id, so never swept itself

DEAD_LETTERED = (
    "It could not be converted: the conversion was attempted {attempts} times without finishing "
    "(the workers were throttled or stopped)."
)
GAVE_UP = (
    "It could not be converted: it was sent again {times} times after nothing was heard of it for "
    "{hours:g} hours, and it still did not finish."
)


def lost_after(settings: Settings) -> timedelta:
    """How long work may wait without a sign of life before it is taken as lost (see the module)."""
    return timedelta(seconds=settings.visibility_timeout * settings.max_attempts)


def fail(rt: Runtime, outputs: list[Output], reason: str) -> None:
    """Fail these outputs for good; one in pieces gets its pieces tidied away, as other final failures do."""
    for output in outputs:
        if output.record.segments:
            segmenting.fail(rt, [output], reason)
        else:
            output.failed(reason)


def dead_lettered(rt: Runtime, body: dict[str, str]) -> int:
    """A message the dead-letter queue received: fail the outputs it names that are not final yet, send
    the job's webhook if that finished it, and return how many were failed."""
    work = from_body(body)
    if work is None:
        log.error("malformed dead-lettered message dropped: %.200r", body)
        return 0
    if isinstance(work, Notify):  # a webhook notice that never got through: its marker says why
        log.warning("job %s: the webhook notice was dead-lettered", work.job_id)
        return 0
    if isinstance(work, Import):  # the import never got through: the job's outputs fail
        try:
            work = Convert(work.job_id, tuple(rt.jobs.job(work.job_id).formats))
        except JobNotFound:
            return 0
    with telemetry.fields(job_id=work.job_id, format=",".join(work.formats)):
        outputs = [o for o in load_outputs(rt.jobs, work.job_id, work.formats) if not o.is_done(rt.converted)]
        if not outputs:
            return 0  # finished after all (the last receive did it, but could not say so)
        log.warning("job %s: %s dead-lettered", work.job_id, ",".join(o.format_id for o in outputs))
        fail(rt, outputs, DEAD_LETTERED.format(attempts=rt.settings.max_attempts))
        after_final(rt, work.job_id)
        return len(outputs)


@dataclass
class SweepReport:
    jobs: int = 0  # job folders looked at
    resent: int = 0  # messages sent again
    failed: int = 0  # outputs failed: their work was lost too often


def sweep(rt: Runtime, *, limit: int = SWEEP_JOBS, now: datetime | None = None) -> SweepReport:
    """One run: up to ``limit`` job folders of the converted store, after where the last run stopped."""
    names = rt.converted.folders(_cursor(rt), limit)
    report = SweepReport()
    for job_id in filter(is_job_id, names):
        report.jobs += 1
        try:
            with telemetry.fields(job_id=job_id):
                resent, failed = sweep_job(rt, job_id, now=now or utcnow())
        except Exception:  # one job's records could not be read: the others still get their turn
            log.exception("job %s could not be swept", job_id)
            continue
        report.resent, report.failed = report.resent + resent, report.failed + failed
    cursor = names[-1] if len(names) >= limit else ""  # the end: start again from the first
    rt.converted.put_bytes(CURSOR_KEY, json.dumps({"after": cursor}).encode(), "application/json")
    if report.resent or report.failed:
        log.warning("sweep: %d message(s) sent again, %d output(s) failed", report.resent, report.failed)
    return report


def _cursor(rt: Runtime) -> str:
    try:
        after = json.loads(rt.converted.get_bytes(CURSOR_KEY)).get("after")
    except (ObjectNotFound, ValueError, AttributeError):
        return ""
    return after if isinstance(after, str) and after.isprintable() and "/" not in after else ""


def sweep_job(rt: Runtime, job_id: str, *, now: datetime) -> tuple[int, int]:
    """Send again this job's lost work, or fail the outputs whose work was lost too often; return
    (messages sent, outputs failed)."""
    done = rt.jobs.summary(job_id)  # never behind the records: finished there is finished (one GET)
    if done is not None and done.outputs and all(o.status.finished for o in done.outputs.values()):
        return 0, 0
    try:
        job = rt.jobs.job(job_id)
    except JobNotFound:
        return 0, 0  # an upload that never became a job, or a job being deleted
    sent, failed = 0, 0
    for format_id in job.formats:
        output = _lost(rt, job, format_id, now)
        if output is None:
            continue
        if output.record.resent >= rt.settings.max_attempts:
            hours = round(lost_after(rt.settings).total_seconds() / 3600, 1)
            fail(rt, [output], GAVE_UP.format(times=output.record.resent, hours=hours))
            failed += 1
            continue
        lost = _lost_work(rt, output)
        output.sent_again()  # counted first: a crash after the send cannot make it free
        for work in lost:
            send(rt.queue, work, job.owner)
        log.warning("job %s: %s lost its work, sent %d message(s) again", job_id, format_id, len(lost))
        sent += len(lost)
    if failed:
        after_final(rt, job_id)
    return sent, failed


def _lost(rt: Runtime, job: JobRecord, format_id: str, now: datetime) -> Output | None:
    """The output, when it waits and nothing was heard of it for ``lost_after``."""
    record = rt.jobs.output(job.job_id, format_id, missing_since=job.created_at)
    if record.status.finished or format_id not in PRESETS:
        return None
    last = record.updated_at
    if segmenting.in_pieces(record):  # alive while its pieces are stored
        last = segmenting.alive_at(record, segmenting.finished(rt.converted, job.job_id, format_id))
    if now - last < lost_after(rt.settings):
        return None
    return Output(rt.jobs, job, PRESETS[format_id], record)


def _lost_work(rt: Runtime, output: Output) -> list[Work]:
    """What to send again: the output alone, or for one in pieces the pieces, sound parts or join it lacks
    (SQS cannot say which are still queued: all of them go, and those done already are skipped)."""
    if segmenting.in_pieces(output.record):
        return segmenting.lost_parts(rt.uploads, rt.converted, output.job_id, output.format_id, set())
    return [Convert(output.job_id, (output.format_id,))]
