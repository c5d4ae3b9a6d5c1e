"""Job records in the converted store, and the operations the API offers on them.

Each output has its own small JSON record written only by the worker that holds its message, and the
job's status is derived from them, so no two writers ever race on one object (on disk or on S3).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO

from . import keys
from .config import Settings
from .model import (
    JobRecord,
    JobStatus,
    OutputRecord,
    OutputStatus,
    SourceInfo,
    is_job_id,
    job_status,
    new_job_id,
    utcnow,
)
from .presets import PRESETS
from .queues import Queue
from .storage import ObjectNotFound, Storage

log = logging.getLogger(__name__)


class InvalidRequest(ValueError):
    """Bad input; the message is a sentence for the person who sent it."""


class UploadTooLarge(InvalidRequest):
    """Answered with 413: the upload is over MAX_UPLOAD_BYTES."""


class JobNotFound(LookupError):
    pass


class OutputNotReady(RuntimeError):
    pass


class QueueUnavailable(RuntimeError):
    pass


class JobStore:
    def __init__(self, store: Storage) -> None:
        self.store = store

    def save_job(self, record: JobRecord) -> None:
        self.store.put_bytes(keys.job_key(record.job_id), record.model_dump_json().encode(), "application/json")

    def job(self, job_id: str) -> JobRecord:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        try:
            return JobRecord.model_validate_json(self.store.get_bytes(keys.job_key(job_id)))
        except ObjectNotFound:
            raise JobNotFound(job_id) from None

    def output(self, job_id: str, format_id: str) -> OutputRecord:
        try:
            return OutputRecord.model_validate_json(self.store.get_bytes(keys.status_key(job_id, format_id)))
        except ObjectNotFound:
            return OutputRecord(format=format_id)

    def save_output(self, job_id: str, record: OutputRecord) -> None:
        record.updated_at = utcnow()
        self.store.put_bytes(
            keys.status_key(job_id, record.format), record.model_dump_json().encode(), "application/json"
        )


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


@dataclass
class Converter:
    """What the API needs: the two stores, the queue and the settings."""

    uploads: Storage
    converted: Storage
    queue: Queue
    settings: Settings

    @functools.cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.converted)

    def new_upload_id(self) -> str:
        return new_job_id()

    def upload_ticket(self) -> dict[str, Any]:
        """Where the browser sends the original directly (S3 presigned POST, or a signed local URL)."""
        upload_id = self.new_upload_id()
        url, fields = self.uploads.upload_form(
            keys.source_key(upload_id), self.settings.max_upload_bytes, self.settings.upload_url_ttl
        )
        return {
            "upload_id": upload_id,
            "url": url,
            "fields": fields,
            "max_bytes": self.settings.max_upload_bytes,
            "expires_in": self.settings.upload_url_ttl,
        }

    def check_declared_size(self, content_length: str | None) -> None:
        """Refuse an upload whose request already says it is too large, before reading any of it."""
        slack = 1024 * 1024  # multipart boundaries and the other fields
        if content_length and content_length.isdigit() and int(content_length) > self.settings.max_upload_bytes + slack:
            raise self._too_large()

    def store_upload(self, upload_id: str, stream: BinaryIO) -> int:
        """Stream an original into the upload store under its id; refuse empty or oversized files."""
        if self._job_exists(upload_id):
            raise InvalidRequest("This upload link was already used for a job; ask for a new one.")
        key = keys.source_key(upload_id)
        try:
            size = self.uploads.put_stream(key, _Limited(stream, self.settings.max_upload_bytes))  # type: ignore[arg-type]
        except _TooLarge:
            self.uploads.delete(key)
            raise self._too_large() from None
        if size == 0:
            self.uploads.delete(key)
            raise InvalidRequest("The uploaded file is empty.")
        return size

    def _too_large(self) -> UploadTooLarge:
        return UploadTooLarge(f"The file is larger than the {_human(self.settings.max_upload_bytes)} limit.")

    def _job_exists(self, job_id: str) -> bool:
        return self.converted.size(keys.job_key(job_id)) is not None

    def create_job(self, upload_id: str, filename: str, formats: list[str]) -> dict[str, Any]:
        """Create a job from an original already in the upload store, and queue one message per format."""
        formats = validate_formats(formats)
        filename = validate_filename(filename)
        if not is_job_id(upload_id):
            raise InvalidRequest("Unknown upload id.")
        size = self.uploads.size(keys.source_key(upload_id))
        if size is None:
            raise InvalidRequest("Nothing was uploaded for this upload id (or the upload expired).")
        if size == 0:
            raise InvalidRequest("The uploaded file is empty.")
        if self._job_exists(upload_id):
            raise InvalidRequest("A job already exists for this upload.")
        record = JobRecord(
            job_id=upload_id,
            filename=filename,
            stem=keys.safe_stem(filename),
            download_stem=keys.download_stem(filename),
            formats=formats,
            source_key=keys.source_key(upload_id),
            source_size=size,
        )
        for format_id in formats:
            self.jobs.save_output(record.job_id, OutputRecord(format=format_id))
        self.jobs.save_job(record)
        for n, format_id in enumerate(formats):
            try:
                self.queue.send({"job_id": record.job_id, "format": format_id})
            except Exception as exc:
                # Never leave an output "queued" with no message behind it.
                for unsent in formats[n:]:
                    self.jobs.save_output(
                        record.job_id,
                        OutputRecord(format=unsent, status=OutputStatus.FAILED, error="It could not be queued."),
                    )
                raise QueueUnavailable("The conversion queue is unavailable; please try again shortly.") from exc
        log.info("job %s created: %s -> %s", record.job_id, filename, ",".join(formats))
        return self.job_view(record.job_id)

    def upload_and_create(self, stream: BinaryIO, filename: str | None, formats: list[str]) -> dict[str, Any]:
        formats = validate_formats(formats)
        filename = validate_filename(filename)
        upload_id = self.new_upload_id()
        self.store_upload(upload_id, stream)
        return self.create_job(upload_id, filename, formats)

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

    def job_view(self, job_id: str) -> dict[str, Any]:
        record = self.jobs.job(job_id)
        outputs = [self._effective(self.jobs.output(job_id, f)) for f in record.formats]
        source: SourceInfo | None = next((o.source for o in outputs if o.source is not None), None)
        status: JobStatus = job_status(o.status for o in outputs)
        return {
            "job_id": record.job_id,
            "filename": record.filename,
            "status": status.value,
            "created_at": record.created_at.isoformat(),
            "source": source.model_dump() if source else None,
            "outputs": [self._output_view(record, o) for o in outputs],
        }

    def _output_view(self, record: JobRecord, out: OutputRecord) -> dict[str, Any]:
        preset = PRESETS[out.format]
        completed = out.status is OutputStatus.COMPLETED and out.key is not None
        return {
            "format": out.format,
            "label": preset.label,
            "kind": preset.kind.value,
            "media_type": preset.media_type,
            "status": out.status.value,
            "progress": 100.0 if completed else out.progress,
            "error": out.error,
            "download_url": self.download_url(record, out) if completed else None,
            "filename": record.download_filename(out.format, preset.extension),
            "size_bytes": out.size_bytes,
            "width": out.width,
            "height": out.height,
            "duration": out.duration,
            "attempts": out.attempts,
        }

    def download_url(self, record: JobRecord, out: OutputRecord) -> str:
        preset = PRESETS[out.format]
        assert out.key is not None
        return self.converted.download_url(
            out.key,
            record.download_filename(out.format, preset.extension),
            preset.media_type,
            self.settings.download_url_ttl,
        )

    def output_url(self, job_id: str, format_id: str) -> str:
        record = self.jobs.job(job_id)
        if format_id not in record.formats:
            raise JobNotFound(f"{job_id}/{format_id}")
        out = self._effective(self.jobs.output(job_id, format_id))
        if out.status is OutputStatus.FAILED:
            raise OutputNotReady(f"The {format_id} output failed: {out.error}")
        if out.status is not OutputStatus.COMPLETED or out.key is None:
            raise OutputNotReady(f"The {format_id} output is not ready yet ({out.status.value}).")
        return self.download_url(record, out)


class _TooLarge(Exception):
    pass


class _Limited:
    """A reader that stops a stream as soon as it passes the size limit (before it is all stored)."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream, self._left = stream, limit

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._left -= len(chunk)
        if self._left < 0:
            raise _TooLarge
        return chunk


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"
