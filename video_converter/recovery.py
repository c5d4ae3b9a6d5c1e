"""Local mode's reconciliation: the status records are the truth, the queue file is state that can be lost.

An output whose record says it is waiting (queued for a while, or processing but silent past
STALE_AFTER) and that has no message in the queue lost its message: the queue file was deleted,
replaced or found corrupt. Sending it again loses nothing; a duplicate would be harmless anyway, since a
redelivery of finished work is acked without converting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from . import segments
from .errors import JobNotFound
from .messages import Task
from .model import OutputStatus, utcnow
from .records import JobStore

log = logging.getLogger(__name__)

# A queued record younger than this may be a job being created right now (records first, then messages).
QUEUED_GRACE = timedelta(seconds=60)


def lost_tasks(
    jobs: JobStore,
    job_ids: Iterable[str],
    queued: set[Task],
    *,
    stale_after: timedelta,
    now: datetime | None = None,
) -> Iterator[Task]:
    """The outputs of these jobs that wait for a message the queue does not have (one converted with
    others is covered by their message; one that lost it is sent again alone)."""
    now = now or utcnow()
    covered = {(t.job_id, f) for t in queued if t.whole for f in t.formats}
    for job_id in job_ids:
        try:
            job = jobs.job(job_id)
        except JobNotFound:
            continue  # an upload that never became a job, or a job being deleted
        for format_id in job.formats:
            task = Task(job_id, format_id)
            if (job_id, format_id) in covered:
                continue
            record = jobs.output(job_id, format_id, missing_since=job.created_at)
            last = record.updated_at
            if record.segments and record.status is OutputStatus.PROCESSING:  # alive while parts finish
                newest = max(segments.finished(jobs.store, job_id, format_id).values(), default=0.0)
                last = max(last, datetime.fromtimestamp(newest, UTC))
            age = now - last
            if (record.status is OutputStatus.QUEUED and age >= QUEUED_GRACE) or (
                record.status is OutputStatus.PROCESSING and age >= stale_after
            ):
                yield task
