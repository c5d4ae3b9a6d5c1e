"""Lambda handler: does the work the messages of an SQS event name, reporting partial batch failures.

Translation only, as Powertools splits a record handler from the batch loop: each record becomes a
``Message`` for ``video_converter.messages.process_message`` (the same handler the local workers call),
and its ``Outcome`` becomes this function's answer. The event source mapping uses
``FunctionResponseTypes: [ReportBatchItemFailures]``:

- ack (converted, already done, failed for good, malformed): success, SQS deletes the message;
- retry: the messageId goes into ``batchItemFailures`` and the message's visibility is cut to the
  back-off delay (Lambda would otherwise leave it hidden for the queue's whole visibility timeout);
- release: the disk (/tmp) is full, so the message comes back after DISK_FULL_WAIT seconds, reported
  like a retry with that delay (nothing cancels an invocation, so never for a stop). SQS cannot
  un-count a receive, so here a wait for disk space still counts towards the queue's maxReceiveCount.

Two more handlers share this code (template.yaml: DeadLetterFunction, SweepFunction), AWS mode's
reconciliation from the records (``video_converter.sweep``): ``deadletter_handler`` fails the outputs
each dead-lettered message names, ``sweep_handler`` (every 5 minutes) sends lost work again.

Settings come from the environment (BACKEND=aws, UPLOAD_BUCKET, CONVERTED_BUCKET, QUEUE_URL,
MAX_ATTEMPTS, FFMPEG_TIMEOUT, LOG_LEVEL) and the runtime is built once per container. FFmpeg comes from
the layer's /opt/bin (or FFMPEG_PATH/FFPROBE_PATH), found by the core's locator.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

from video_converter import logsafe, sweep, telemetry
from video_converter.config import Settings
from video_converter.ffmpeg import FFmpegNotFound, ffmpeg_path
from video_converter.messages import process_message
from video_converter.outcome import Action, Outcome
from video_converter.queues.sqs import message_from_record
from video_converter.runtime import Runtime, build_runtime

log = logging.getLogger("convert")

SAFETY_MARGIN = 30.0  # seconds kept back from the invocation's time for the upload and the status write
MIN_TIMEOUT = 10.0  # never give FFmpeg less than this

_runtime: Runtime | None = None


def _configure_logging() -> None:
    # JSON lines with job_id, format and attempt (video_converter.telemetry), on the runtime's handler
    telemetry.configure_logging(os.environ.get("LOG_LEVEL", "INFO"), os.environ.get("LOG_FORMAT", "json"))
    logsafe.install()  # a crafted file name must not forge a log line


def runtime(*, converts: bool = True) -> Runtime:
    """Built on the first invocation and kept for the container's life. Building it sweeps the scratch
    folders an invocation killed by its timeout left in /tmp. ``converts``: FFmpeg is looked for (the
    dead-letter and sweep functions run none)."""
    global _runtime
    if _runtime is None:
        _configure_logging()
        # A function is always AWS mode, whatever BACKEND says; a missing bucket or queue raises a sentence.
        rt = build_runtime(Settings(_env_file=None, backend="aws"))
        log.info("webhooks: %s", "on" if rt.webhook_secret else "off")  # the SSM key, if named, read once here
        if converts:
            try:
                log.info("ffmpeg: %s", ffmpeg_path())
            except FFmpegNotFound as exc:
                log.error("%s", exc)
        _runtime = rt
    return _runtime


def deadline(context: Any) -> float | None:
    """When FFmpeg must be done (``time.monotonic()``): the invocation's end minus a margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + max(MIN_TIMEOUT, float(remaining()) / 1000.0 - SAFETY_MARGIN)


def record_handler(record: dict[str, Any], context: Any) -> Outcome:
    """One SQS record: what the core's message handler decides for it."""
    message = message_from_record(record)
    rt = runtime()
    log.info("message %s: %s, attempt %d", message.id, message.body, message.receive_count)
    outcome = process_message(rt, message, deadline=deadline(context))
    if outcome.action is not Action.ACK and message.handle:
        try:
            rt.queue.set_visibility(message, outcome.delay)
        except Exception:
            log.warning("could not shorten the visibility of message %s", message.id, exc_info=True)
    return outcome


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    runtime()  # a misconfigured function fails the whole invocation (the Errors alarm), not each record
    request_id = getattr(context, "aws_request_id", "-")
    records = (event.get("Records") or []) if isinstance(event, dict) else []
    failures: list[dict[str, str]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            with telemetry.fields(request_id=request_id, message_id=message_id):
                outcome = record_handler(record, context)
        except Exception:  # process_message does not raise; this is a bug or a broken record
            log.exception("request %s: message %s crashed; it will be retried", request_id, message_id)
            failures.append({"itemIdentifier": message_id})
            continue
        if outcome.action is not Action.ACK:
            log.warning("request %s: message %s will be retried: %s", request_id, message_id, outcome.reason)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def deadletter_handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """The dead-letter queue's event source: each record's outputs are failed for good with a sentence.
    A record whose records could not be written is reported, so the queue hands it back later."""
    rt = runtime(converts=False)
    records = (event.get("Records") or []) if isinstance(event, dict) else []
    failures: list[dict[str, str]] = []
    for record in records:
        message = message_from_record(record)
        try:
            failed = sweep.dead_lettered(rt, message.body)
        except Exception:
            log.exception("dead-lettered message %s could not be recorded; it will be retried", message.id)
            failures.append({"itemIdentifier": message.id})
            continue
        log.info("dead-lettered message %s: %d output(s) failed", message.id, failed)
    return {"batchItemFailures": failures}


def sweep_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """The schedule's invocation: one sweep run (``video_converter.sweep.sweep``)."""
    report = sweep.sweep(runtime(converts=False))
    log.info("sweep: %d job(s), %d message(s) sent again, %d output(s) failed", *dataclasses.astuple(report))
    return dataclasses.asdict(report)
