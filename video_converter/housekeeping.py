"""Local mode's housekeeping threads: the retention sweep (on AWS, the buckets' lifecycle rules), the
sweep of uploads no job was made from, the janitor of unfinished multipart uploads, and, where the
process converts, the reconciliation of the queue with the status records."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from . import ownerindex, recovery
from .multipart import purge_abandoned
from .recovery import reconcile
from .retention import purge_expired
from .runtime import CONVERTED_DIR, UPLOADS_DIR, Runtime
from .uploads import purge_unclaimed

log = logging.getLogger(__name__)

RECONCILE_INTERVAL = 300.0  # seconds between reconciliations of the queue with the status records
# The reconciliation at start skips queued records younger than recovery.QUEUED_GRACE (a job may be being
# created), so work queued just before a stop whose message was lost is looked at again this long after
# the grace has passed, not one whole interval later.
FOLLOW_UP_MARGIN = 5.0
SWEEP_INTERVAL = 3600.0  # seconds between retention sweeps
UNCLAIMED_INTERVAL = 600.0  # seconds between sweeps of uploads no job was made from (within an hour)


def every(
    interval: float, task: Callable[[], object], stop: threading.Event, *, name: str, follow_up: float | None = None
) -> threading.Thread:
    """Run ``task`` now (and again ``follow_up`` seconds later, if given), then every ``interval`` seconds
    until ``stop``; a failure is logged, not fatal."""

    def run() -> None:
        try:
            task()
        except Exception:
            log.exception("%s failed", name)

    def loop() -> None:
        run()
        if follow_up is not None:
            if stop.wait(follow_up):
                return
            run()
        while not stop.wait(interval):
            run()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def start_background(rt: Runtime, stop: threading.Event) -> list[threading.Thread]:
    """The housekeeping threads of this process (none on AWS)."""
    if rt.settings.backend != "local":
        return []
    data = Path(rt.settings.data_dir)
    threads = []
    if rt.settings.retention_days > 0:
        sweep = functools.partial(purge_expired, [data / UPLOADS_DIR, data / CONVERTED_DIR], rt.settings.retention_days)
        threads.append(every(SWEEP_INTERVAL, sweep, stop, name="retention"))
        # The owners' job lists: entries of jobs created a day longer ago than the retention (a job's age
        # is that of its newest file, so a long job may outlive its creation by up to a day).
        index = functools.partial(ownerindex.purge_older, rt.converted, rt.settings.retention_days + 1)
        threads.append(every(SWEEP_INTERVAL, index, stop, name="owner-index"))
    threads.append(every(UNCLAIMED_INTERVAL, functools.partial(purge_unclaimed, rt), stop, name="unclaimed-uploads"))
    threads.append(every(UNCLAIMED_INTERVAL, functools.partial(purge_abandoned, rt), stop, name="abandoned-multipart"))
    if rt.settings.workers > 0:
        follow_up = recovery.QUEUED_GRACE.total_seconds() + FOLLOW_UP_MARGIN
        threads.append(
            every(RECONCILE_INTERVAL, functools.partial(reconcile, rt), stop, name="reconcile", follow_up=follow_up)
        )
    return threads
