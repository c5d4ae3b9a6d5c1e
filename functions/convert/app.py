"""Lambda handler: converts the (job, format) messages of an SQS event, reporting partial batch failures.

Wiring and delegation only: each record goes to ``video_converter.worker.convert_output`` (the same
function the local workers call), in a fresh work directory under the temp dir that is removed after.
The event source mapping uses ``FunctionResponseTypes: [ReportBatchItemFailures]``:

- converted, already done, or failed for good (bad input, last attempt): success, SQS deletes the message;
- ``RetryLater`` or an unexpected error: the messageId goes into ``batchItemFailures``, SQS delivers it
  again (after a short back-off when QUEUE_URL is known, else after the queue's visibility timeout);
- a malformed body: logged and dropped (a success), so it never loops until the dead-letter queue.

Settings come from the environment (BACKEND=aws, UPLOAD_BUCKET, CONVERTED_BUCKET, MAX_ATTEMPTS,
FFMPEG_TIMEOUT, LOG_LEVEL; QUEUE_URL optional) and are read once per container. FFmpeg comes from the
layer's /opt/bin (or FFMPEG_PATH/FFPROBE_PATH), found by the core's locator.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from video_converter.aws import build_aws_stores
from video_converter.config import Settings
from video_converter.ffmpeg import FFmpegNotFound, ffmpeg_path
from video_converter.queues import Message
from video_converter.queues.sqs import SqsQueue, message_from_record
from video_converter.worker import RetryLater, Stores, convert_output, retry_delay

log = logging.getLogger("convert")

SAFETY_MARGIN = 30.0  # seconds kept back from the invocation's time for the upload and the status write
MIN_TIMEOUT = 10.0  # never give FFmpeg less than this
WORKDIR_PREFIX = "vc-convert-"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    stores: Stores
    queue: SqsQueue | None  # only to shorten the wait before a retry


_runtime: Runtime | None = None


def _configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not root.handlers:  # the Lambda runtime installs its own handler; plain Python does not
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level if level in logging.getLevelNamesMapping() else logging.INFO)


def _sweep_workdirs() -> None:
    """Remove work directories left by an invocation that was killed (a timeout keeps /tmp)."""
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        log.info("removing a leftover work directory %s", path)
        shutil.rmtree(path, ignore_errors=True)


def runtime() -> Runtime:
    """Settings, stores and queue, built on the first invocation and kept for the container's life."""
    global _runtime
    if _runtime is None:
        _configure_logging()
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        stores = build_aws_stores(settings)  # raises a sentence naming any missing bucket
        queue = SqsQueue(settings.queue_url.strip()) if settings.queue_url.strip() else None
        try:
            log.info("ffmpeg: %s", ffmpeg_path())
        except FFmpegNotFound as exc:
            log.error("%s", exc)
        _sweep_workdirs()
        _runtime = Runtime(settings=settings, stores=stores, queue=queue)
    return _runtime


def deadline(context: Any) -> float | None:
    """When FFmpeg must be done (``time.monotonic()``): the invocation's end minus a margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + max(MIN_TIMEOUT, remaining() / 1000.0 - SAFETY_MARGIN)


def _retry_soon(rt: Runtime, message: Message) -> None:
    """Lambda leaves a failed message hidden for the whole visibility timeout; back off less than that."""
    if rt.queue is None or not message.handle:
        return
    try:
        rt.queue.set_visibility(message, retry_delay(message.receive_count))
    except Exception:
        log.warning("could not shorten the visibility of message %s", message.id, exc_info=True)


def process_record(record: dict[str, Any], context: Any) -> None:
    """Convert one record's output. Returns when the message can be deleted; raises when it should come back."""
    message = message_from_record(record)
    job_id, format_id = message.body.get("job_id"), message.body.get("format")
    if not job_id or not format_id:
        log.error("malformed message %s dropped: %.200r", message.id, record.get("body"))
        return
    rt = runtime()
    log.info("message %s: job %s, %s, attempt %d", message.id, job_id, format_id, message.receive_count)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    try:
        result = convert_output(
            job_id,
            format_id,
            message.receive_count,
            stores=rt.stores,
            settings=rt.settings,
            deadline=deadline(context),
            workdir=workdir,
        )
    except Exception:
        _retry_soon(rt, message)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if result is not None:
        log.info("message %s: job %s, %s is %s", message.id, job_id, format_id, result.status.value)


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    runtime()  # a misconfigured function fails the whole invocation (the Errors alarm), not each record
    request_id = getattr(context, "aws_request_id", "-")
    records = event.get("Records") or [] if isinstance(event, dict) else []
    failures: list[dict[str, str]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            process_record(record, context)
        except RetryLater as exc:
            log.warning("request %s: message %s will be retried: %s", request_id, message_id, exc)
            failures.append({"itemIdentifier": message_id})
        except Exception:
            log.exception("request %s: message %s crashed; it will be retried", request_id, message_id)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
