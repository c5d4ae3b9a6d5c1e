"""A job's status summary: every output's record in one object, ``{job_id}/summary.json``, so that a poll
of the job document costs one read (one S3 GET) instead of a read per output and a listing per output
in pieces.

The per-output records stay the truth the workers act on; the summary is what readers read, and it is
kept exact with a compare-and-swap, because the outputs of one job are written by different workers at
once and S3 has no locks:

- Whoever changes an output's record first merges it into the summary (read it with its ETag, put it
  back with If-Match; on a lost race read again and retry), then writes the record itself. A writer
  only replaces its own output's entry, and only with a record at least as new, so no update of another
  output is lost and a late write never puts an older state back.
- Summary first, record second: a writer that dies in between leaves the summary ahead of the record,
  never behind; its message is delivered again and the work is redone from the record.
- A summary that is missing (jobs from before it, or one given up on) is rebuilt from the records by
  the next writer, created only if absent (If-None-Match), and readers read the records meanwhile.
  A writer that keeps losing the race (``ATTEMPTS`` times) deletes the summary rather than leave it
  behind: readers then fall back to the records until the next writer rebuilds it.
- An output in pieces: the worker that stores a piece adds it (when) and the progress it makes to the
  summary the same way, so readers need not list the pieces.
- Progress alone (many times a minute) is merged at most every ``PROGRESS_EVERY`` seconds per output,
  so a conversion costs a few summary writes a minute, not one per progress report.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from pydantic import BaseModel, Field

from . import keys
from .model import OutputRecord
from .storage import ObjectNotFound, Storage

log = logging.getLogger(__name__)

ATTEMPTS = 10  # compare-and-swap rounds before the summary is given up (deleted, then rebuilt)
PROGRESS_EVERY = 5.0  # seconds between merges of progress alone, per output


class Pieces(BaseModel):
    """An output in pieces: the pieces stored (index -> when, seconds since the epoch), and the progress
    they make (computed by the worker that stored the last, which has the plan)."""

    done: dict[int, float] = Field(default_factory=dict)
    progress: float = 0.0


class JobSummary(BaseModel):
    outputs: dict[str, OutputRecord] = Field(default_factory=dict)
    pieces: dict[str, Pieces] = Field(default_factory=dict)

    def with_output(self, record: OutputRecord) -> JobSummary | None:
        """With this record for its output; None when the summary has a newer one already."""
        current = self.outputs.get(record.format)
        if current is not None and current.updated_at > record.updated_at:
            return None
        return self.model_copy(update={"outputs": {**self.outputs, record.format: record}})

    def with_piece(
        self, format_id: str, index: int, at: float, progress: Callable[[dict[int, float]], float]
    ) -> JobSummary:
        """With piece ``index`` of the output stored at ``at``; ``progress`` says what the pieces make."""
        done = {**(self.pieces.get(format_id) or Pieces()).done, index: at}
        pieces = {**self.pieces, format_id: Pieces(done=done, progress=progress(done))}
        return self.model_copy(update={"pieces": pieces})


Change = Callable[[JobSummary], "JobSummary | None"]  # None: nothing to write
Rebuild = Callable[[], "JobSummary | None"]  # from the records; None: the job is gone


def read(store: Storage, job_id: str) -> JobSummary | None:
    """The job's summary, or None when there is none (or it cannot be read: then the records are)."""
    try:
        return JobSummary.model_validate_json(store.get_bytes(keys.summary_key(job_id)))
    except ObjectNotFound:
        return None
    except ValueError:
        log.warning("job %s: its summary is unreadable; reading the records", job_id)
        return None


def write(store: Storage, job_id: str, summary: JobSummary) -> None:
    """Write it whole (a job's creation, before any worker can write)."""
    store.put_bytes(keys.summary_key(job_id), summary.model_dump_json().encode(), "application/json")


def update(store: Storage, job_id: str, change: Change, rebuild: Rebuild) -> None:
    """Apply ``change`` to the summary with a compare-and-swap, retried until no other writer came in
    between; a missing summary is rebuilt first."""
    key = keys.summary_key(job_id)
    for attempt in range(ATTEMPTS):
        try:
            data, tag = store.get_tagged(key)
        except ObjectNotFound:
            base = rebuild()
            if base is None or (new := change(base)) is None:
                return
            if store.create_bytes(key, new.model_dump_json().encode(), "application/json"):
                return
            continue  # another writer created it meanwhile: merge into theirs
        try:
            current = JobSummary.model_validate_json(data)
        except ValueError:
            current = rebuild() or JobSummary()
        new = change(current)
        if new is None or store.replace_bytes(key, new.model_dump_json().encode(), tag, "application/json"):
            return
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 (jitter, not secrecy)
    log.warning("job %s: its summary kept changing under this writer; deleted, to be rebuilt", job_id)
    store.delete(key)
