"""What the API offers on jobs: upload tickets, uploads, job creation, the job document and downloads.

Routes only translate HTTP to these calls; every error raised here is a ``RequestError`` carrying a
sentence for the person who sent the request.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from . import keys, segments, webhooks
from .archive import Member, zip_stream
from .conversion import source_problem
from .errors import Conflict, InvalidRequest, JobNotFound, OutputNotReady, QueueUnavailable, UploadTooLarge
from .ffmpeg import InvalidMedia
from .limits import Limits, MediaRejected, check_media
from .messages import job_tasks
from .model import (
    JobRecord,
    OutputRecord,
    OutputStatus,
    SegmentPlan,
    SourceInfo,
    is_job_id,
    job_status,
    new_job_id,
    utcnow,
)
from .presets import PRESETS
from .records import JobStore
from .storage import Readable
from .views import JobView, OutputView, UploadTicket

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)

# Status records are read in parallel: a poll of an 8-format job costs one S3 round trip, not eight.
READ_THREADS = 16
# Job records never change once written, so the API keeps the most recent ones instead of re-reading them.
JOB_CACHE_SIZE = 1024

JOB_EXISTS = "A job already exists for this upload."
TICKET_USED = "This upload link was already used; ask for a new one."


def validate_formats(formats: list[str]) -> list[str]:
    chosen = list(dict.fromkeys(f.strip() for f in formats if f.strip()))
    if not chosen:
        raise InvalidRequest(f"Choose at least one format: {', '.join(PRESETS)}.")
    unknown = [f for f in chosen if f not in PRESETS]
    if unknown:
        raise InvalidRequest(f"Unknown format {', '.join(map(repr, unknown))}. Choose from: {', '.join(PRESETS)}.")
    return chosen


def validate_filename(filename: str | None) -> str:
    name = (filename or "").strip()
    if not name:
        raise InvalidRequest("The upload has no file name.")
    if len(name) > 255:
        raise InvalidRequest("The file name is longer than 255 characters.")
    return name


def new_job(job_id: str, filename: str, formats: list[str], source_size: int) -> JobRecord:
    """The record of a job over the original stored under ``job_id``."""
    return JobRecord(
        job_id=job_id,
        filename=filename,
        stem=keys.safe_stem(filename),
        download_stem=keys.download_stem(filename),
        formats=formats,
        source_key=keys.source_key(job_id),
        source_size=source_size,
    )


def register_job(jobs: JobStore, record: JobRecord, *, replace: bool = False) -> None:
    """Claim the job record, then write a queued record per output.

    The job record is created only if it is absent, so of concurrent creations from one upload exactly
    one gets past it; the others raise Conflict having written nothing. Until the winner has written them,
    missing output records read as queued, which they are. ``replace`` overwrites an existing job instead
    (scripts/seed_event_job.py resets its fixed job that way).
    """
    if replace:
        jobs.save_job(record)
    elif not jobs.create_job(record):
        raise Conflict(JOB_EXISTS)
    for format_id in record.formats:
        jobs.save_output(record.job_id, OutputRecord(format=format_id))


class JobService:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.settings = runtime.settings
        self._pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="records")
        self._cache: collections.OrderedDict[str, JobRecord] = collections.OrderedDict()
        self._plans: dict[str, SegmentPlan] = {}
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- uploads ------------------------------------------------------------------------------------

    def upload_ticket(self) -> UploadTicket:
        """Where the browser sends the original directly (S3 presigned POST, or a signed local URL)."""
        upload_id = new_job_id()
        url, fields = self.rt.uploads.upload_form(
            keys.source_key(upload_id), self.settings.max_upload_bytes, self.settings.upload_url_ttl
        )
        return UploadTicket(
            upload_id=upload_id,
            url=url,
            fields=fields,
            max_bytes=self.settings.max_upload_bytes,
            expires_in=self.settings.upload_url_ttl,
        )

    def check_declared_size(self, content_length: str | None) -> None:
        """Refuse an upload whose request already says it is too large, before reading any of it."""
        slack = 1024 * 1024  # multipart boundaries and the other fields
        if content_length and content_length.isdigit() and int(content_length) > self.settings.max_upload_bytes + slack:
            raise self._too_large()

    def store_upload(self, upload_id: str, stream: Readable) -> int:
        """Stream an original into the upload store under its id; refuse empty or oversized files.

        A ticket stores one original, once. The upload first claims the ticket (an empty marker created
        only if absent), so a second upload with the same ticket is refused (Conflict), even while the
        first is still being stored. A job needs its original, so once a job exists the one upload that
        claimed the ticket has finished and nothing can replace the source, whatever the timing. An upload
        that stores nothing (too large, empty, interrupted) gives the ticket back.
        """
        if not self.rt.uploads.create_bytes(keys.ticket_key(upload_id), b""):
            raise Conflict(TICKET_USED)
        if self.rt.jobs.exists(upload_id):  # a job over an original stored without a ticket (a seeded job)
            raise Conflict(TICKET_USED)
        try:
            return self._store(upload_id, stream)
        except Exception:
            self._give_back(upload_id)
            raise

    def _store(self, upload_id: str, stream: Readable) -> int:
        """Stream the original to its key; on a refusal or a failure nothing stays stored."""
        key = keys.source_key(upload_id)
        try:
            size = self.rt.uploads.put_stream(key, _Limited(stream, self.settings.max_upload_bytes))
        except _TooLarge:
            self.rt.uploads.delete(key)
            raise self._too_large() from None
        if size == 0:
            self.rt.uploads.delete(key)
            raise InvalidRequest("The uploaded file is empty.")
        return size

    def _give_back(self, upload_id: str) -> None:
        """Delete what a failed upload stored, then its claim on the ticket (in that order, so the upload
        that claims the ticket next never has its original deleted)."""
        self.rt.uploads.delete(keys.source_key(upload_id))
        self.rt.uploads.delete(keys.ticket_key(upload_id))

    def _too_large(self) -> UploadTooLarge:
        return UploadTooLarge(f"The file is larger than the {_human(self.settings.max_upload_bytes)} limit.")

    # --- jobs ---------------------------------------------------------------------------------------

    def create_job(self, upload_id: str, filename: str, formats: list[str], callback_url: str | None = None) -> JobView:
        """Create a job from an original already in the upload store, and queue its messages (``job_tasks``).

        Atomic per upload: of concurrent calls with one ``upload_id`` exactly one creates the job and
        queues its messages; the others raise Conflict."""
        formats = validate_formats(formats)
        filename = validate_filename(filename)
        callback_url = self.check_callback(callback_url)
        if not is_job_id(upload_id):
            raise InvalidRequest("Unknown upload id.")
        size = self.rt.uploads.size(keys.source_key(upload_id))
        if size is None:
            raise InvalidRequest("Nothing was uploaded for this upload id (or the upload expired).")
        if size == 0:
            raise InvalidRequest("The uploaded file is empty.")
        if self.rt.jobs.exists(upload_id):
            raise Conflict(JOB_EXISTS)  # answered before probing the file again; register_job decides races
        if self.rt.probe_uploads:
            self._check_media(upload_id)
        record = new_job(upload_id, filename, formats, size).model_copy(update={"callback_url": callback_url})
        register_job(self.rt.jobs, record)
        self._enqueue(record)
        log.info("job %s created: %r -> %s", record.job_id, filename, ",".join(formats))
        return self.job_view(record.job_id)

    def upload_and_create(
        self, stream: Readable, filename: str | None, formats: list[str], callback_url: str | None = None
    ) -> JobView:
        formats = validate_formats(formats)
        filename = validate_filename(filename)
        callback_url = self.check_callback(callback_url)  # before the upload is stored
        upload_id = new_job_id()
        self._store(upload_id, stream)  # a new id no one else knows: no ticket to claim
        return self.create_job(upload_id, filename, formats, callback_url)

    def check_callback(self, callback_url: str | None) -> str | None:
        """A callback URL this service will call, or None; refused with a sentence otherwise."""
        url = (callback_url or "").strip()
        if not url:
            return None
        if not self.rt.webhook_secret:
            raise InvalidRequest("Webhooks are not enabled on this server (the operator sets WEBHOOK_SECRET).")
        webhooks.check_url(url, allow_private=self.settings.webhook_allow_private)
        return url

    def _check_media(self, upload_id: str) -> None:
        """Probe an upload the API can read in place; refuse (and delete) one that is not media or is over
        a limit, with the sentence the worker would have recorded, before any job or message exists."""
        key = keys.source_key(upload_id)
        try:
            with self.rt.scratch.workdir("probe-") as workdir, self.rt.uploads.local_path(key, workdir) as path:
                check_media(self.rt.ffmpeg.inspect(path), Limits.from_settings(self.settings))
        except (InvalidMedia, MediaRejected) as exc:
            # The ticket stays spent (a re-upload could race a creation still probing the first file), and
            # an original that a concurrent creation's probe accepted is kept.
            if not self.rt.jobs.exists(upload_id):
                self.rt.uploads.delete(key)
            raise InvalidRequest(source_problem(exc)) from None

    def _enqueue(self, record: JobRecord) -> None:
        tasks = job_tasks(record.job_id, record.formats)
        for n, task in enumerate(tasks):
            try:
                self.rt.queue.send(task.body(), group=record.job_id)
            except Exception as exc:
                # Never leave an output "queued" with no message behind it.
                for unsent in (f for t in tasks[n:] for f in t.formats):
                    failed = OutputRecord(format=unsent, status=OutputStatus.FAILED, error="It could not be queued.")
                    self.rt.jobs.save_output(record.job_id, failed)
                raise QueueUnavailable("The conversion queue is unavailable; please try again shortly.") from exc

    def job(self, job_id: str) -> JobRecord:
        with self._cache_lock:
            cached = self._cache.get(job_id)
            if cached is not None:
                self._cache.move_to_end(job_id)
                return cached
        record = self.rt.jobs.job(job_id)
        with self._cache_lock:
            self._cache[job_id] = record
            while len(self._cache) > JOB_CACHE_SIZE:
                self._cache.popitem(last=False)
        return record

    def _effective(self, out: OutputRecord) -> OutputRecord:
        """A record whose worker went silent is reported as waiting for a retry, or failed when none is left."""
        if out.status is not OutputStatus.PROCESSING:
            return out
        if utcnow() - out.updated_at < timedelta(seconds=self.settings.stale_after):
            return out
        if out.attempts >= self.settings.max_attempts:
            return out.model_copy(
                update={
                    "status": OutputStatus.FAILED,
                    "error": f"The conversion stopped responding {out.attempts} times "
                    "(the worker was stopped or ran out of time).",
                }
            )
        return out.model_copy(update={"status": OutputStatus.QUEUED, "progress": 0.0})

    def outputs(self, record: JobRecord) -> list[OutputRecord]:
        """Every output's record, read concurrently, as the API reports them. Every output has a record
        from the job's creation on (once ``register_job`` has written them), so a missing one means the
        job is being created or was deleted (maybe by another API process, whose deletion this one's
        cache did not see)."""
        read = list(self._pool.map(lambda format_id: self._current(record.job_id, format_id), record.formats))
        if any(out is None for out in read) and not self.rt.jobs.exists(record.job_id):
            self._forget(record.job_id)
            raise JobNotFound(record.job_id)
        return [out or OutputRecord(format=f) for out, f in zip(read, record.formats, strict=True)]

    def _current(self, job_id: str, format_id: str) -> OutputRecord | None:
        """An output's record as it stands (None if there is none): a segmented one's progress counted
        from its encoded pieces, and its last sign of life the newest of them."""
        out = self.rt.jobs.find_output(job_id, format_id)
        if out is None:
            return None
        if out.segments and out.status is OutputStatus.PROCESSING:
            plan = self._plan(job_id)
            done = segments.finished(self.rt.converted, job_id, format_id)
            if plan is not None:
                newest = datetime.fromtimestamp(max(done.values(), default=0.0), UTC)
                out = out.model_copy(
                    update={"progress": segments.progress(plan, done), "updated_at": max(out.updated_at, newest)}
                )
        return self._effective(out)

    def _plan(self, job_id: str) -> SegmentPlan | None:
        """How the job's source was split; never changes once written, so it is kept once read."""
        with self._cache_lock:
            if job_id in self._plans:
                return self._plans[job_id]
        plan = segments.load_plan(self.rt.uploads, job_id)
        if plan is not None:
            with self._cache_lock:
                self._plans[job_id] = plan
                while len(self._plans) > JOB_CACHE_SIZE:
                    self._plans.pop(next(iter(self._plans)))
        return plan

    def _forget(self, job_id: str) -> None:
        """Drop what this process keeps of a job (its record and its segment plan)."""
        with self._cache_lock:
            self._cache.pop(job_id, None)
            self._plans.pop(job_id, None)

    def delete_job(self, job_id: str) -> None:
        """Cancel and delete a job: its record first (running conversions notice it is gone within seconds,
        FFmpeg is stopped, queued messages are dropped when they come up), then its outputs, their records
        and the original (with the pieces of a segmented conversion). Signed links then find nothing (404)."""
        record = self.rt.jobs.job(job_id)  # from the store, not the cache: 404 if already deleted
        self._forget(job_id)
        self.rt.jobs.delete_job(job_id)
        self.rt.uploads.delete_prefix(job_id)
        # The upload ticket stays spent: a still-valid upload link must not bring the id back as a new job.
        self.rt.uploads.create_bytes(keys.ticket_key(job_id), b"")
        log.info("job %s deleted (%r)", job_id, record.filename)

    def job_view(self, job_id: str) -> JobView:
        record = self.job(job_id)
        outputs = self.outputs(record)
        source: SourceInfo | None = next((o.source for o in outputs if o.source is not None), None)
        failed = any(o.status is OutputStatus.FAILED for o in outputs)
        return JobView(
            job_id=record.job_id,
            filename=record.filename,
            error=self.rt.jobs.failure(job_id) if failed else None,  # read only when it can exist
            status=job_status(o.status for o in outputs),
            created_at=record.created_at,
            source=source,
            outputs=[self._output_view(record, o) for o in outputs],
        )

    def _output_view(self, record: JobRecord, out: OutputRecord) -> OutputView:
        preset = PRESETS[out.format]
        completed = out.status is OutputStatus.COMPLETED and out.key is not None
        return OutputView(
            format=out.format,
            label=preset.label,
            kind=preset.kind,
            media_type=preset.media_type,
            status=out.status,
            progress=100.0 if completed else out.progress,
            error=out.error,
            download_url=self._download_url(record, out) if completed else None,
            filename=record.download_filename(out.format, preset.extension),
            size_bytes=out.size_bytes,
            width=out.width,
            height=out.height,
            duration=out.duration,
            attempts=out.attempts,
            note=out.note,
            segments=out.segments,
        )

    def _download_url(self, record: JobRecord, out: OutputRecord) -> str:
        preset = PRESETS[out.format]
        assert out.key is not None
        return self.rt.converted.download_url(
            out.key,
            record.download_filename(out.format, preset.extension),
            preset.media_type,
            self.settings.download_url_ttl,
        )

    def output_url(self, job_id: str, format_id: str) -> str:
        record = self.job(job_id)
        if format_id not in record.formats:
            raise JobNotFound(f"{job_id}/{format_id}")
        found = self._current(job_id, format_id)
        if found is None and not self.rt.jobs.exists(job_id):  # deleted (see ``outputs``)
            self._forget(job_id)
            raise JobNotFound(job_id)
        out = found or OutputRecord(format=format_id)
        if out.status is OutputStatus.FAILED:
            raise OutputNotReady(f"The {format_id} output failed: {out.error}")
        if out.status is not OutputStatus.COMPLETED or out.key is None:
            raise OutputNotReady(f"The {format_id} output is not ready yet ({out.status.value}).")
        return self._download_url(record, out)


def archive(service: JobService, job_id: str) -> tuple[str, Iterator[bytes]]:
    """The archive's download name and its bytes, streamed: every completed output of the job."""
    record = service.job(job_id)
    members = [
        Member(
            name=record.download_filename(out.format, PRESETS[out.format].extension),
            key=out.key,
            size=out.size_bytes or 0,
            modified=out.updated_at,
        )
        for out in service.outputs(record)
        if out.status is OutputStatus.COMPLETED and out.key is not None and out.size_bytes is not None
    ]
    if not members:
        raise OutputNotReady("No output of this job is ready yet, so there is nothing to put in an archive.")
    return f"{record.download_stem or record.stem}.zip", zip_stream(service.rt.converted, members)


class _TooLarge(Exception):
    pass


class _Limited:
    """A reader that stops a stream as soon as it passes the size limit (before it is all stored)."""

    def __init__(self, stream: Readable, limit: int) -> None:
        self._stream, self._left = stream, limit

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._left -= len(chunk)
        if self._left < 0:
            raise _TooLarge
        return chunk


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
