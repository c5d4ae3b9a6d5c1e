"""One output of a job while a worker holds a message for it: its job, its format, and its record,
with the state changes the worker writes (started, probed, progressed, completed, failed, ...)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from . import summary, telemetry
from .errors import JobNotFound
from .model import JobRecord, OutputRecord, OutputStatus, SourceInfo, utcnow
from .presets import PRESETS, Preset
from .records import JobStore
from .storage import Storage

log = logging.getLogger(__name__)


@dataclass
class Output:
    jobs: JobStore
    job: JobRecord
    preset: Preset
    record: OutputRecord
    summarized: float = field(default=float("-inf"), repr=False)  # time.monotonic() of its last summary write

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def format_id(self) -> str:
        return self.preset.id

    def _save(self, changed: OutputRecord, *, progress_only: bool = False) -> OutputRecord:
        now = time.monotonic()
        summarize = not progress_only or now - self.summarized >= summary.PROGRESS_EVERY
        self.record = self.jobs.save_output(self.job_id, changed, summarize=summarize)
        self.summarized = now if summarize else self.summarized
        return self.record

    def is_done(self, converted: Storage) -> bool:
        """Finished already: completed with its file in place, or failed (a failure is final, so a late
        redelivery never overwrites the reason)."""
        if self.record.status is OutputStatus.FAILED:
            return True
        return (
            self.record.status is OutputStatus.COMPLETED
            and self.record.key is not None
            and converted.size(self.record.key) is not None
        )

    def started(self, attempt: int) -> OutputRecord:
        if self.record.status is OutputStatus.QUEUED:  # stamped when it was queued (or queued again)
            waited = (utcnow() - self.record.updated_at).total_seconds()
            telemetry.metric(self.format_id, {"QueueWaitSeconds": (max(0.0, waited), "Seconds")})
        return self._save(self.record.started(attempt))

    def probed(self, source: SourceInfo) -> OutputRecord:
        return self._save(self.record.probed(source, self.preset.size_note(source)))

    def progressed(self, percent: float) -> OutputRecord:
        return self._save(self.record.progressed(percent), progress_only=True)

    def completed(self, key: str, size: int, result: SourceInfo, same_as: str | None = None) -> OutputRecord:
        log.info("job %s: %s done (%d bytes)", self.job_id, self.format_id, size)
        saved = self._save(self.record.completed(key, size, result, same_as))
        values = {"OutputsCompleted": (1.0, "Count"), "SecondsConverted": (result.duration or 0.0, "Seconds")}
        if saved.started_at is not None:
            values["ConversionSeconds"] = ((saved.updated_at - saved.started_at).total_seconds(), "Seconds")
        telemetry.metric(self.format_id, values, job_id=self.job_id, size_bytes=size)
        return saved

    def segmented(self, count: int) -> OutputRecord:
        return self._save(self.record.segmented(count))

    def failed(self, reason: str) -> OutputRecord:
        log.warning("job %s: %s failed: %s", self.job_id, self.format_id, reason)
        saved = self._save(self.record.failed(reason))
        telemetry.metric(self.format_id, {"OutputsFailed": (1.0, "Count")}, job_id=self.job_id, error=reason)
        return saved

    def requeued(self, reason: str) -> OutputRecord:
        return self._save(self.record.requeued(reason))

    def sent_again(self) -> OutputRecord:
        return self._save(self.record.sent_again())

    def released(self) -> OutputRecord:
        return self._save(self.record.released())


def load_outputs(jobs: JobStore, job_id: str, format_ids: tuple[str, ...]) -> list[Output]:
    """The outputs a message names, leaving out what its job never asked for (none when the job is gone)."""
    try:
        job = jobs.job(job_id)
    except JobNotFound:
        log.warning("message for unknown job %s/%s dropped", job_id, ",".join(format_ids))
        return []
    outputs = []
    for format_id in format_ids:
        preset = PRESETS.get(format_id)
        if preset is None or format_id not in job.formats:
            log.warning("message for unknown format %s/%s dropped", job_id, format_id)
            continue
        outputs.append(Output(jobs, job, preset, jobs.output(job_id, format_id)))
    return outputs
