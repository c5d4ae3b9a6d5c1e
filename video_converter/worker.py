"""The conversion of one (job, format) message, and the local worker loop around it.

``convert_output`` is the one function every mode calls: the local worker threads, the SQS polling
worker and the Lambda handler. It is idempotent: a redelivered message for a finished output is a no-op.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import keys
from .config import Settings
from .ffmpeg import ConversionCancelled, ConversionTimeout, FFmpeg, FFmpegError, InvalidMedia, LimitExceeded
from .jobs import Converter, JobNotFound, JobStore
from .limits import Limits, MediaRejected, check_media
from .model import OutputRecord, OutputStatus, SourceInfo
from .presets import PRESETS, UnsuitableSource
from .queues import Message, Queue
from .retention import start_janitor
from .storage import ObjectNotFound, Storage

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # seconds between progress writes


class RetryLater(RuntimeError):
    """This attempt failed for a reason that may pass; the message should be delivered again."""


@dataclass
class Stores:
    uploads: Storage
    converted: Storage


def _progress_writer(jobs: JobStore, job_id: str, record: OutputRecord):  # type: ignore[no-untyped-def]
    last = 0.0

    def on_progress(percent: float) -> None:
        nonlocal last
        now = time.monotonic()
        if percent < 100 and now - last < PROGRESS_INTERVAL:
            return
        last = now
        record.progress = min(percent, 99.0)
        jobs.save_output(job_id, record)

    return on_progress


def convert_output(
    job_id: str,
    format_id: str,
    attempt: int,
    *,
    stores: Stores,
    settings: Settings,
    ffmpeg: FFmpeg | None = None,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
    workdir: Path | None = None,
) -> OutputRecord | None:
    """Convert one output and record the result. Returns the final record, or None if the job is gone.

    ``deadline`` (a ``time.monotonic()`` value) bounds FFmpeg together with ``FFMPEG_TIMEOUT``, so time
    spent downloading the original counts against an invocation's limit.

    Raises RetryLater when the attempt failed for a reason that may pass and attempts are left, and
    ConversionCancelled when ``cancel`` was set (the worker is stopping; the output goes back to queued).
    """
    ffmpeg = ffmpeg or FFmpeg.from_settings(settings)
    jobs = JobStore(stores.converted)
    try:
        job = jobs.job(job_id)
    except JobNotFound:
        log.warning("message for unknown job %s/%s dropped", job_id, format_id)
        return None
    preset = PRESETS.get(format_id)
    if preset is None or format_id not in job.formats:
        log.warning("message for unknown format %s/%s dropped", job_id, format_id)
        return None

    record = jobs.output(job_id, format_id)
    if record.status is OutputStatus.COMPLETED and record.key and stores.converted.size(record.key) is not None:
        return record  # a redelivery of finished work
    if record.status is OutputStatus.FAILED:
        return record  # failure is final: a late redelivery must not overwrite the reason
    if attempt > settings.max_attempts:
        return _fail(jobs, job_id, record, f"Gave up after {attempt - 1} interrupted attempts.")

    record.status, record.progress, record.attempts, record.error = OutputStatus.PROCESSING, 0.0, attempt, None
    jobs.save_output(job_id, record)
    tmp = Path(tempfile.mkdtemp(prefix=f"convert-{format_id}-", dir=workdir))
    try:
        with stores.uploads.local_path(job.source_key, tmp) as source_path:
            facts = ffmpeg.inspect(source_path)
            source = facts.info
            record.source = source
            limits = Limits.from_settings(settings)
            check_media(facts, limits)
            preset.check_source(source)
            jobs.save_output(job_id, record)
            out_name = keys.output_filename(job.stem, format_id, preset.extension)
            out_path = tmp / out_name
            duration = source.duration
            if preset.max_seconds and duration:
                duration = min(duration, preset.max_seconds)
            ffmpeg.convert(
                source_path,
                out_path,
                preset.output_args(source),
                input_args=preset.input_args(source),
                duration=duration,
                max_seconds=limits.input_seconds(facts, preset.max_seconds),
                timeout=_time_left(settings, deadline),
                on_progress=_progress_writer(jobs, job_id, record),
                cancel=cancel,
            )
        result = _check_output(ffmpeg, out_path)
        key = keys.output_key(job_id, job.stem, format_id, preset.extension)
        stores.converted.put_file(key, out_path, preset.media_type)
        record.status, record.progress, record.key = OutputStatus.COMPLETED, 100.0, key
        record.size_bytes = out_path.stat().st_size
        record.width, record.height, record.duration = result.width, result.height, result.duration
        jobs.save_output(job_id, record)
        log.info("job %s: %s done (%d bytes)", job_id, format_id, record.size_bytes)
        return record
    except ConversionCancelled:
        record.status, record.progress = OutputStatus.QUEUED, 0.0
        jobs.save_output(job_id, record)
        raise
    except (UnsuitableSource, MediaRejected, InvalidMedia, LimitExceeded, ConversionTimeout) as exc:
        # The same input would fail the same way again: no retry (a timeout needs a longer limit,
        # e.g. the container worker, not another attempt with the same one).
        return _fail(jobs, job_id, record, str(exc))
    except ObjectNotFound:
        return _fail(jobs, job_id, record, "The uploaded original is missing (it may have expired).")
    except Exception as exc:  # FFmpeg crashed, a storage call failed, ...: may pass, so retry while attempts last
        reason = str(exc) if isinstance(exc, FFmpegError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FFmpegError):
            log.exception("job %s: %s attempt %d hit an unexpected error", job_id, format_id, attempt)
        if attempt >= settings.max_attempts:
            return _fail(jobs, job_id, record, f"{reason} (after {attempt} attempts)")
        log.warning("job %s: %s attempt %d failed, will retry: %s", job_id, format_id, attempt, reason)
        record.status, record.progress, record.error = OutputStatus.QUEUED, 0.0, f"Attempt {attempt} failed: {reason}"
        jobs.save_output(job_id, record)
        raise RetryLater(reason) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_output(ffmpeg: FFmpeg, path: Path) -> SourceInfo:
    """FFmpeg can exit 0 having written nothing (no frame where it looked): say so, don't store it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidMedia("The conversion produced no output: the source has no frames FFmpeg could decode there")
    try:
        return ffmpeg.probe(path, trusted=True)
    except InvalidMedia as exc:
        raise FFmpegError("The converted file could not be read back", stderr_tail=exc.stderr_tail) from exc


def _time_left(settings: Settings, deadline: float | None) -> float:
    if deadline is None:
        return float(settings.ffmpeg_timeout)
    return max(1.0, min(float(settings.ffmpeg_timeout), deadline - time.monotonic()))


def _fail(jobs: JobStore, job_id: str, record: OutputRecord, reason: str) -> OutputRecord:
    log.warning("job %s: %s failed: %s", job_id, record.format, reason)
    record.status, record.error = OutputStatus.FAILED, reason
    jobs.save_output(job_id, record)
    return record


def retry_delay(attempt: int) -> int:
    """Back off between attempts: 5 s, 20 s, 45 s, ... capped at 5 minutes."""
    return min(300, 5 * attempt * attempt)


class Worker:
    """Takes messages off a queue one at a time and converts them, until ``stop`` is set."""

    def __init__(
        self,
        queue: Queue,
        stores: Stores,
        settings: Settings,
        stop: threading.Event,
        *,
        ffmpeg: FFmpeg | None = None,
        workdir: Path | None = None,
        heartbeat: int | None = None,
        poll_wait: float = 1.0,
    ) -> None:
        self.queue, self.stores, self.settings, self.stop = queue, stores, settings, stop
        self.ffmpeg = ffmpeg or FFmpeg.from_settings(settings)
        self.workdir = workdir
        self.heartbeat = heartbeat or settings.visibility_timeout
        self.poll_wait = poll_wait

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                message = self.queue.receive(wait_seconds=self.poll_wait)
            except Exception:
                log.exception("receiving from the queue failed; retrying shortly")
                self.stop.wait(2.0)
                continue
            if message is None:
                continue
            try:
                self.handle(message)
            except Exception:  # an ack or visibility call failed: the message comes back by itself
                log.exception("handling message %s failed", message.id)
                self.stop.wait(2.0)

    def handle(self, message: Message) -> None:
        job_id, format_id = message.body.get("job_id"), message.body.get("format")
        if not job_id or not format_id:
            log.error("malformed message dropped: %r", message.body)
            self.queue.ack(message)
            return
        done = threading.Event()
        beat = threading.Thread(target=self._keep_hidden, args=(message, done), daemon=True)
        beat.start()
        visibility: int | None = None  # None: finished, delete the message
        try:
            convert_output(
                job_id,
                format_id,
                message.receive_count,
                stores=self.stores,
                settings=self.settings,
                ffmpeg=self.ffmpeg,
                cancel=self.stop,
                workdir=self.workdir,
            )
        except ConversionCancelled:
            visibility = 0  # shutting down: hand it straight back for the next start
        except RetryLater:
            visibility = retry_delay(message.receive_count)
        except Exception:
            log.exception("job %s: %s crashed; the message will come back", job_id, format_id)
            visibility = retry_delay(message.receive_count)
        finally:
            done.set()
            beat.join(timeout=5)
        if visibility is None:
            self.queue.ack(message)
        else:
            self.queue.set_visibility(message, visibility)

    def _keep_hidden(self, message: Message, done: threading.Event) -> None:
        """Extend the message's visibility while the conversion runs, so no one else picks it up."""
        interval = max(1.0, self.heartbeat / 3)
        while not done.wait(interval):
            try:
                self.queue.set_visibility(message, self.heartbeat)
            except Exception:
                log.exception("heartbeat failed for %s", message.id)


def start_workers(converter: Converter, settings: Settings, stop: threading.Event) -> list[threading.Thread]:
    """``settings.workers`` worker threads; in local mode also the retention sweep, and scratch files
    inside DATA_DIR."""
    threads = []
    if settings.backend == "local":
        data = Path(settings.data_dir)
        janitor = start_janitor([data / "uploads", data / "converted"], settings.retention_days, stop)
        threads += [janitor] if janitor else []
    workdir = None
    # SQS bills each receive: long-poll there (a stop then takes up to 10 s); SQLite polls are free.
    poll_wait = 10.0 if settings.backend == "aws" else 1.0
    if settings.backend == "local":
        workdir = Path(settings.data_dir) / "tmp"
        shutil.rmtree(workdir, ignore_errors=True)  # leftovers of a process that was killed
        workdir.mkdir(parents=True, exist_ok=True)
    stores = Stores(converter.uploads, converter.converted)
    for n in range(settings.workers):
        worker = Worker(converter.queue, stores, settings, stop, workdir=workdir, poll_wait=poll_wait)
        thread = threading.Thread(target=worker.run, name=f"worker-{n + 1}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def stop_workers(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Running conversions are cancelled and their messages handed back, so a restart finishes them."""
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
