"""Local mode's reconciliation: the status records are the truth, the queue file is state that can be lost.

An output whose record says it is waiting (queued for a while, or processing but silent past
STALE_AFTER) and that has no message in the queue lost its message: the queue file was deleted,
replaced or found corrupt. Sending it again loses nothing; a duplicate would be harmless anyway, since a
redelivery of finished work is acked without converting. So does a finished job's webhook notice whose
marker says it is still to be delivered.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from . import segmenting, webhooks
from .errors import JobNotFound
from .model import OutputStatus, is_job_id, utcnow
from .queues import SqliteQueue
from .records import JobStore
from .runtime import Runtime
from .storage import LocalStorage, Storage
from .work import Convert, Notify, Task, Work, from_body, send

log = logging.getLogger(__name__)

# A queued record younger than this may be a job being created right now (records first, then messages).
QUEUED_GRACE = timedelta(seconds=60)
RECONCILE_LOCK = "reconcile.lock"


def lost_work(
    jobs: JobStore,
    uploads: Storage,
    job_ids: Iterable[str],
    queued: set[Work],
    *,
    stale_after: timedelta,
    now: datetime | None = None,
) -> Iterator[Work]:
    """The work these jobs wait for that the queue does not have: an output whose message was lost goes
    again alone (one converted with others is covered by their message); an output in pieces gets only
    its lost pieces, sound parts or join."""
    now = now or utcnow()
    covered = {(w.job_id, f) for w in queued if isinstance(w, Convert) for f in w.formats}
    for job_id in job_ids:
        try:
            job = jobs.job(job_id)
        except JobNotFound:
            continue  # an upload that never became a job, or a job being deleted
        if job.source_size == 0:
            continue  # an import still fetching its original: its conversions are not queued yet
        for format_id in job.formats:
            if (job_id, format_id) in covered:
                continue
            record = jobs.output(job_id, format_id, missing_since=job.created_at)
            if segmenting.in_pieces(record):  # alive while its pieces are stored
                last = segmenting.alive_at(record, segmenting.finished(jobs.store, job_id, format_id))
                if now - last >= stale_after:
                    yield from segmenting.lost_parts(uploads, jobs.store, job_id, format_id, queued)
                continue
            age = now - record.updated_at
            if (record.status is OutputStatus.QUEUED and age >= QUEUED_GRACE) or (
                record.status is OutputStatus.PROCESSING and age >= stale_after
            ):
                yield Convert(job_id, (format_id,))


def _owner(jobs: JobStore, job_id: str) -> str:
    """Whose job it is, for the queue's fairness ("": the job counts as its own owner)."""
    try:
        return jobs.job(job_id).owner or ""
    except JobNotFound:
        return ""


def reconcile(rt: Runtime) -> int:
    """Local mode: send again every message the queue lost; return how many. One process at a time does
    it (a lock beside the queue file)."""
    if not isinstance(rt.queue, SqliteQueue) or not isinstance(rt.converted, LocalStorage):
        return 0
    with contextlib.ExitStack() as held:
        fd = os.open(Path(rt.settings.data_dir) / RECONCILE_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        held.callback(os.close, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another process is at it
        tasks = {task for body in rt.queue.bodies() if (task := from_body(body))}
        queued = {task for task in tasks if isinstance(task, Work)}
        job_ids = [p.name for p in rt.converted.root.iterdir() if is_job_id(p.name)]
        stale = timedelta(seconds=rt.settings.stale_after)
        lost: list[Task] = list(lost_work(rt.jobs, rt.uploads, job_ids, queued, stale_after=stale))
        lost += [Notify(j) for j in job_ids if Notify(j) not in tasks and webhooks.notice_due(rt, j, QUEUED_GRACE)]
        for work in lost:
            send(rt.queue, work, _owner(rt.jobs, work.job_id))
        if lost:
            log.warning("sent %d message(s) again that the queue had lost", len(lost))
        return len(lost)
