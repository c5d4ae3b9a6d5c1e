"""Stopping a running conversion when its job is deleted (``DELETE /api/jobs/{id}``) or the worker stops.

The API deletes the job record first; every worker converting one of the job's outputs notices within
``CHECK_INTERVAL`` seconds by looking for that record (one HEAD on S3), kills FFmpeg through the cancel
event the runner already watches, and acks its message. The same check works on disk, on S3 and in a
Lambda, where no other signal could reach a running invocation.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from .records import JobStore

log = logging.getLogger(__name__)

CHECK_INTERVAL = 3.0  # seconds between looks at the job record while a conversion runs
STOP_POLL = 0.2  # how quickly a stopping worker's event is passed on


class JobWatch:
    """While in its ``with`` block, sets ``halt`` when ``stop`` is set or the job's record disappears
    (then ``deleted`` is True)."""

    def __init__(
        self, jobs: JobStore, job_id: str, stop: threading.Event | None, *, interval: float = CHECK_INTERVAL
    ) -> None:
        self.jobs, self.job_id, self.stop, self.interval = jobs, job_id, stop, interval
        self.halt = threading.Event()
        self.deleted = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{job_id[:8]}", daemon=True)

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        waited = 0.0
        while not self._done.wait(STOP_POLL):
            if self.stop is not None and self.stop.is_set():
                self.halt.set()
                return
            waited += STOP_POLL
            if waited < self.interval:
                continue
            waited = 0.0
            try:
                gone = not self.jobs.exists(self.job_id)
            except Exception:  # the store is unreachable for a moment: keep converting, look again later
                log.debug("could not check job %s", self.job_id, exc_info=True)
                continue
            if gone:
                log.info("job %s was deleted: stopping its conversion", self.job_id)
                self.deleted = True
                self.halt.set()
                return
