"""Jobs: creating one over an uploaded original (validated, probed where the API can read it, queued
as the messages ``work.divide`` makes), deleting one, and a second chance from its stored original:
retrying a failed output, adding formats.

Routes only translate HTTP to these calls; every error raised here is a ``RequestError`` carrying a
sentence for the person who sent the request.
"""

from __future__ import annotations

import logging

from . import keys, multipart, ownerindex, summary, webhooks
from .conversion import unsuitable
from .documents import JobDocuments
from .errors import Conflict, InvalidRequest, JobNotFound, NotFound, QueueUnavailable, RequestError
from .model import JobRecord, OutputRecord, OutputStatus, is_job_id, utcnow
from .owners import EVERYONE, Owner
from .presets import PRESETS
from .records import JobStore
from .runtime import Runtime
from .storage import ObjectNotFound, Readable
from .uploads import Uploads
from .views import JobView
from .work import divide, send

log = logging.getLogger(__name__)

JOB_EXISTS = "A job already exists for this upload."
NOTHING_UPLOADED = "Nothing was uploaded for this upload id (or the upload expired)."


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
        self,
        upload_id: str,
        filename: str | None,
        formats: list[str],
        callback_url: str | None = None,
        owner: Owner = EVERYONE,
        *,
        origin: str | None = None,
    ) -> JobView:
        """Create a job for ``owner`` from an original already in the upload store, and queue its messages.
        ``origin``: of the creating request (``https://host``), for the webhook's absolute links.

        Atomic per upload: of concurrent calls with one ``upload_id`` exactly one creates the job and
        queues its messages; the others raise Conflict. Another owner's upload is refused as unknown."""
        formats = validate_formats(formats)
        filename = validate_filename(filename or multipart.filename_of(self.rt, upload_id))
        callback_url = self.check_callback(callback_url)
        if not owner.owns(self.uploads.owner_of(upload_id)):
            raise InvalidRequest(NOTHING_UPLOADED)
        size = self._uploaded_size(upload_id)
        if self.rt.jobs.exists(upload_id):
            raise Conflict(JOB_EXISTS)  # answered before probing the file again; register_job decides races
        source = None
        if self.rt.probe_uploads:  # refused (and deleted) before any job or message exists
            source = self.uploads.check_media(upload_id, formats)
        update = {"callback_url": callback_url, "owner": owner.id, "origin": origin, "source": source}
        record = new_job(upload_id, filename, formats, size).model_copy(update=update)
        register_job(self.rt.jobs, record)
        ownerindex.add(self.rt.converted, record)
        self._enqueue(record)
        log.info("job %s created: %r -> %s", record.job_id, filename, ",".join(formats))
        return self.documents.view(record.job_id)

    def _uploaded_size(self, upload_id: str) -> int:
        if not is_job_id(upload_id):
            raise InvalidRequest("Unknown upload id.")
        size = self.rt.uploads.size(keys.source_key(upload_id))
        if size is None:
            raise InvalidRequest(NOTHING_UPLOADED)
        if size == 0:
            raise InvalidRequest("The uploaded file is empty.")
        return size

    def upload_and_create(
        self,
        stream: Readable,
        filename: str | None,
        formats: list[str],
        callback_url: str | None = None,
        owner: Owner = EVERYONE,
        *,
        origin: str | None = None,
    ) -> JobView:
        formats = validate_formats(formats)
        filename = validate_filename(filename)
        callback_url = self.check_callback(callback_url)  # before the upload is stored
        upload_id = self.uploads.store_new(stream, owner)
        try:
            return self.create_job(upload_id, filename, formats, callback_url, owner, origin=origin)
        except RequestError:  # no one knows this upload's id: nothing may stay stored under it
            if not self.rt.jobs.exists(upload_id):
                self.rt.uploads.delete(keys.source_key(upload_id))
            raise

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
                send(self.rt.queue, work, record.owner)
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
        ownerindex.remove(self.rt.converted, record)
        self.rt.uploads.delete_prefix(job_id)
        # The upload ticket stays spent: a still-valid upload link must not bring the id back as a new job.
        self.rt.uploads.create_bytes(keys.ticket_key(job_id), b"")
        log.info("job %s deleted (%r)", job_id, record.filename)

    # --- a second chance: retry a failed output, add formats (from the stored original) --------------

    def retry_output(self, job_id: str, format_id: str) -> JobView:
        """Convert a failed output again from the stored original, with a fresh count of attempts and
        time budget. 404 for a job or format it does not have; 409 when it is not failed, when the
        original is gone or unusable, or when another retry of it got there first."""
        record = self.documents.existing(job_id)
        if format_id not in record.formats:
            raise NotFound(f"This job has no {format_id!r} output; add it instead.")
        current = {o.format: o for o in self.documents.outputs(record)}[format_id]
        if current.status is not OutputStatus.FAILED:
            raise Conflict(
                f"The {format_id} output is {current.status.value}, not failed: only a failed output can be retried."
            )
        self._check_original(record)
        reason = self._unsuitable(record, [format_id])
        if reason:
            raise Conflict(f"Retrying cannot help: {reason}")
        if not self._requeue(job_id, format_id):
            raise Conflict(f"The {format_id} output changed meanwhile (another retry?); reload the job to see it.")
        self._reopened(record, [format_id])
        log.info("job %s: %s retried", job_id, format_id)
        return self.documents.view(job_id)

    def add_outputs(self, job_id: str, formats: list[str]) -> JobView:
        """Add formats to a job, converted from its stored original: checked as a new job's are (formats
        the original cannot give, the work budget over all of the job's formats). 404 for no such job;
        409 for formats it has already, or an original that is gone or unusable; 422 for the rest."""
        added = validate_formats(formats)
        record = self.documents.existing(job_id)
        present = [f for f in added if f in record.formats]
        if present:
            raise Conflict(f"This job has {', '.join(present)} already; retry a failed output instead of adding it.")
        self._check_original(record)
        outputs = self.documents.outputs(record)
        source = next((o.source for o in outputs if o.source is not None), None)
        self.uploads.check_added(job_id, [*record.formats, *added], added, source)
        if not self._extend(job_id, added):
            raise Conflict(f"This job has {', '.join(added)} already (added meanwhile).")
        since = utcnow()
        for format_id in added:
            self.rt.jobs.save_output(job_id, OutputRecord(format=format_id, since=since))
        extended = self.documents.existing(job_id)
        self._reopened(extended, added)
        log.info("job %s: %s added", job_id, ",".join(added))
        return self.documents.view(job_id)

    def _check_original(self, record: JobRecord) -> None:
        """The job's original can be converted again: it is stored, and no output found it unusable."""
        failure = self.rt.jobs.failure(record.job_id)
        if failure is not None:
            raise Conflict(f"The original of this job could not be used, so nothing more can be made of it. {failure}")
        if self.rt.uploads.size(record.source_key) != record.source_size:
            raise Conflict(
                "The original of this job is no longer stored (originals are kept for a limited time), so nothing "
                "more can be converted from it; upload the file again as a new job."
            )

    def _unsuitable(self, record: JobRecord, formats: list[str]) -> str:
        """Why the original (as a worker probed it) cannot give these formats; "" when it can or is unknown."""
        source = next((o.source for o in self.documents.outputs(record) if o.source is not None), None)
        reasons = unsuitable([PRESETS[f] for f in formats], source) if source is not None else {}
        return " ".join(reasons.values())

    def _requeue(self, job_id: str, format_id: str) -> bool:
        """Put the failed output's record back to queued, a fresh one, if it is still the failed one this
        request read (a compare-and-swap: of two retries at once, one wins); the summary follows."""
        store, key = self.rt.jobs.store, keys.status_key(job_id, format_id)
        try:
            data, tag = store.get_tagged(key)
        except ObjectNotFound:
            return False
        if OutputRecord.model_validate_json(data).status is not OutputStatus.FAILED:
            return False  # read as failed only because its worker went silent: it may still be running
        fresh = OutputRecord(format=format_id, since=utcnow())
        if not store.replace_bytes(key, fresh.model_dump_json().encode(), tag, "application/json"):
            return False
        self.rt.jobs.update_summary(job_id, lambda current: current.with_output(fresh))
        return True

    def _extend(self, job_id: str, added: list[str]) -> bool:
        """Add formats to the job record with a compare-and-swap (two additions at once never lose one
        another); False when one of them was added meanwhile."""
        store, key = self.rt.jobs.store, keys.job_key(job_id)
        for _ in range(10):
            try:
                data, tag = store.get_tagged(key)
            except ObjectNotFound:
                raise JobNotFound(job_id) from None
            record = JobRecord.model_validate_json(data)
            if any(f in record.formats for f in added):
                return False
            extended = record.model_copy(update={"formats": [*record.formats, *added]})
            if store.replace_bytes(key, extended.model_dump_json().encode(), tag, "application/json"):
                self.documents.forget(job_id)
                return True
        raise Conflict("This job is being changed by other requests right now; try again in a moment.")

    def _reopened(self, record: JobRecord, formats: list[str]) -> None:
        """The job is unfinished again: its webhook is due again once it finishes (the marker of the last
        delivery goes, after the records are queued, so no notice is sent for the state before), and
        the formats' messages are queued. (A long original's split is reused while other video formats
        of the job still use it; once they were all final it was deleted, and the original is split again.)"""
        self.rt.converted.delete(keys.webhook_key(record.job_id))
        self._enqueue(record.model_copy(update={"formats": formats}))
