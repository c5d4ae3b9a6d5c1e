"""Job and output records in the converted store.

Each output has its own small JSON record, written only by the worker that holds its message, and the
job's status is derived from them, so no two writers ever race on one object (on disk or on S3). Every
record written is merged first into the job's summary (``video_converter.summary``), which readers read
in one go; the records stay the truth.
"""

from __future__ import annotations

import json
from datetime import datetime

from . import keys, summary
from .errors import JobNotFound
from .model import JobRecord, OutputRecord, is_job_id, utcnow
from .storage import ObjectNotFound, Storage


class JobStore:
    def __init__(self, store: Storage) -> None:
        self.store = store

    def save_job(self, record: JobRecord) -> None:
        """Write (or overwrite) the job record; job creation uses ``create_job``."""
        self.store.put_bytes(keys.job_key(record.job_id), record.model_dump_json().encode(), "application/json")

    def create_job(self, record: JobRecord) -> bool:
        """Write the job record only if the job does not exist; True if this call created it. Atomic, so
        of concurrent creations from one upload exactly one wins."""
        return self.store.create_bytes(
            keys.job_key(record.job_id), record.model_dump_json().encode(), "application/json"
        )

    def job(self, job_id: str) -> JobRecord:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        try:
            return JobRecord.model_validate_json(self.store.get_bytes(keys.job_key(job_id)))
        except ObjectNotFound:
            raise JobNotFound(job_id) from None

    def exists(self, job_id: str) -> bool:
        return self.store.size(keys.job_key(job_id)) is not None

    def output(self, job_id: str, format_id: str, *, missing_since: datetime | None = None) -> OutputRecord:
        """The output's record; a queued one (dated ``missing_since``, else now) if none was written yet."""
        try:
            return OutputRecord.model_validate_json(self.store.get_bytes(keys.status_key(job_id, format_id)))
        except ObjectNotFound:
            return OutputRecord(format=format_id, updated_at=missing_since or utcnow())

    def save_output(self, job_id: str, record: OutputRecord, *, summarize: bool = True) -> OutputRecord:
        """Store the record, stamped with the time; return the stamped copy. The summary gets it first
        (``summarize``: False for a change it may miss, progress alone)."""
        stamped = record.model_copy(update={"updated_at": utcnow()})
        if summarize:
            self.update_summary(job_id, lambda current: current.with_output(stamped))
        self.store.put_bytes(
            keys.status_key(job_id, stamped.format), stamped.model_dump_json().encode(), "application/json"
        )
        return stamped

    def update_summary(self, job_id: str, change: summary.Change) -> None:
        """Change the job's summary, safe against the other outputs' writers; rebuilt from the records
        when it is missing (and left missing when the job is gone)."""
        summary.update(self.store, job_id, change, lambda: self._summary_from_records(job_id))

    def _summary_from_records(self, job_id: str) -> summary.JobSummary | None:
        try:
            job = self.job(job_id)
        except JobNotFound:
            return None
        outputs = {f: self.output(job_id, f, missing_since=job.created_at) for f in job.formats}
        return summary.JobSummary(outputs=outputs)

    def summary(self, job_id: str) -> summary.JobSummary | None:
        return summary.read(self.store, job_id)

    def find_output(self, job_id: str, format_id: str) -> OutputRecord | None:
        """The output's record, or None when there is none (its job was deleted)."""
        try:
            return OutputRecord.model_validate_json(self.store.get_bytes(keys.status_key(job_id, format_id)))
        except ObjectNotFound:
            return None

    def delete_job(self, job_id: str) -> None:
        """The job record first (the job is gone for readers and running workers from then on), then the
        output records and files."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        self.store.delete(keys.job_key(job_id))
        self.store.delete_prefix(job_id)

    def save_failure(self, job_id: str, sentence: str) -> None:
        """Record why no output of the job can be made; the first writer's sentence stays."""
        body = json.dumps({"error": sentence, "at": utcnow().isoformat()}).encode()
        self.store.create_bytes(keys.failure_key(job_id), body, "application/json")

    def failure(self, job_id: str) -> str | None:
        """The job-level error, or None."""
        try:
            data = json.loads(self.store.get_bytes(keys.failure_key(job_id)))
        except ObjectNotFound:
            return None
        error = data.get("error") if isinstance(data, dict) else None
        return str(error) if error else None
