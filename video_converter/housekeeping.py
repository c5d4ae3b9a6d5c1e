"""Local mode's housekeeping threads: the retention sweep (on AWS, the buckets' lifecycle rules), the
sweep of uploads no job was made from, the janitor of unfinished multipart uploads, and, where the
process converts, the reconciliation of the queue with the status records."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from .multipart import purge_abandoned
from .recovery import reconcile
from .retention import purge_expired
from .runtime import CONVERTED_DIR, UPLOADS_DIR, Runtime
from .uploads import purge_unclaimed

log = logging.getLogger(__name__)

RECONCILE_INTERVAL = 300.0  # seconds between reconciliations of the queue with the status records
SWEEP_INTERVAL = 3600.0  # seconds between retention sweeps
UNCLAIMED_INTERVAL = 600.0  # seconds between sweeps of uploads no job was made from (within an hour)


def every(interval: float, task: Callable[[], object], stop: threading.Event, *, name: str) -> threading.Thread:
    """Run ``task`` now and then every ``interval`` seconds until ``stop``; a failure is logged, not fatal."""

    def loop() -> None:
        while True:
            try:
                task()
            except Exception:
                log.exception("%s failed", name)
            if stop.wait(interval):
                return

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
    threads.append(every(UNCLAIMED_INTERVAL, functools.partial(purge_unclaimed, rt), stop, name="unclaimed-uploads"))
    threads.append(every(UNCLAIMED_INTERVAL, functools.partial(purge_abandoned, rt), stop, name="abandoned-multipart"))
    if rt.settings.workers > 0:
        threads.append(every(RECONCILE_INTERVAL, functools.partial(reconcile, rt), stop, name="reconcile"))
    return threads
