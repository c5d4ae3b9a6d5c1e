"""Jobs: creating one over an uploaded original (validated, probed where the API can read it, queued
as the messages ``work.divide`` makes) and deleting one.

Routes only translate HTTP to these calls; every error raised here is a ``RequestError`` carrying a
sentence for the person who sent the request.
"""

from __future__ import annotations

import logging

from . import keys, multipart, summary, webhooks
from .documents import JobDocuments
from .errors import Conflict, InvalidRequest, QueueUnavailable
from .model import JobRecord, OutputRecord, OutputStatus, is_job_id
from .presets import PRESETS
from .records import JobStore
from .runtime import Runtime
from .storage import Readable
from .uploads import Uploads
from .views import JobView
from .work import divide, to_body

log = logging.getLogger(__name__)

JOB_EXISTS = "A job already exists for this upload."


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
    outputs = [jobs.save_output(record.job_id, OutputRecord(format=f), summarize=False) for f in record.formats]
    # No worker writes before the messages are sent, after this: the summary is written whole.
    summary.write(jobs.store, record.job_id, summary.JobSummary(outputs={o.format: o for o in outputs}))


class JobService:
    """Creates and deletes jobs. ``documents`` and ``uploads`` are the API's shared reader and upload
    side (each built here when not given)."""

    def __init__(self, rt: Runtime, documents: JobDocuments | None = None, uploads: Uploads | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.documents = documents or JobDocuments(rt)
        self.uploads = uploads or Uploads(rt)

    def create_job(
        self, upload_id: str, filename: str | None, formats: list[str], callback_url: str | None = None
    ) -> JobView:
        """Create a job from an original already in the upload store, and queue its messages.

        Atomic per upload: of concurrent calls with one ``upload_id`` exactly one creates the job and
        queues its messages; the others raise Conflict."""
        formats = validate_formats(formats)
        filename = validate_filename(filename or multipart.filename_of(self.rt, upload_id))
        callback_url = self.check_callback(callback_url)
        size = self._uploaded_size(upload_id)
        if self.rt.jobs.exists(upload_id):
            raise Conflict(JOB_EXISTS)  # answered before probing the file again; register_job decides races
        if self.rt.probe_uploads:  # refused (and deleted) before any job or message exists
            self.uploads.check_media(upload_id, formats)
        record = new_job(upload_id, filename, formats, size).model_copy(update={"callback_url": callback_url})
        register_job(self.rt.jobs, record)
        self._enqueue(record)
        log.info("job %s created: %r -> %s", record.job_id, filename, ",".join(formats))
        return self.documents.view(record.job_id)

    def _uploaded_size(self, upload_id: str) -> int:
        if not is_job_id(upload_id):
            raise InvalidRequest("Unknown upload id.")
        size = self.rt.uploads.size(keys.source_key(upload_id))
        if size is None:
            raise InvalidRequest("Nothing was uploaded for this upload id (or the upload expired).")
        if size == 0:
            raise InvalidRequest("The uploaded file is empty.")
        return size

    def upload_and_create(
        self, stream: Readable, filename: str | None, formats: list[str], callback_url: str | None = None
    ) -> JobView:
        formats = validate_formats(formats)
        filename = validate_filename(filename)
        callback_url = self.check_callback(callback_url)  # before the upload is stored
        upload_id = self.uploads.store_new(stream)
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

    def _enqueue(self, record: JobRecord) -> None:
        messages = divide(record.job_id, record.formats)
        for n, work in enumerate(messages):
            try:
                self.rt.queue.send(to_body(work), group=record.job_id)
            except Exception as exc:
                # Never leave an output "queued" with no message behind it.
                for unsent in (f for w in messages[n:] for f in w.formats):
                    failed = OutputRecord(format=unsent, status=OutputStatus.FAILED, error="It could not be queued.")
                    self.rt.jobs.save_output(record.job_id, failed)
                raise QueueUnavailable("The conversion queue is unavailable; please try again shortly.") from exc

    def delete_job(self, job_id: str) -> None:
        """Cancel and delete a job: its record first (running conversions notice it is gone within seconds,
        FFmpeg is stopped, queued messages are dropped when they come up), then its outputs, their records
        and the original (with the pieces of a segmented conversion). Signed links then find nothing (404)."""
        record = self.rt.jobs.job(job_id)  # from the store, not the cache: 404 if already deleted
        self.documents.forget(job_id)
        self.rt.jobs.delete_job(job_id)
        self.rt.uploads.delete_prefix(job_id)
        # The upload ticket stays spent: a still-valid upload link must not bring the id back as a new job.
        self.rt.uploads.create_bytes(keys.ticket_key(job_id), b"")
        log.info("job %s deleted (%r)", job_id, record.filename)
