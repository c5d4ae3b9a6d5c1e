"""Quotas per owner: unfinished jobs at once, work per day and bytes stored, counted from the stores, so
every API task (and every local process) sees the same usage and two requests cannot both take the
last place.

Each owner that has a limit keeps a usage record, ``usage/{owner}.json`` in the converted store: one
entry per job it holds (and per creation under way). An admission reads the record with its version
tag, brings it up to date from the stores, checks the limits and writes the record back only if no one
changed it meanwhile (If-Match on S3, a lock on disk), trying again on a lost race; so of concurrent
creations past a limit exactly the ones that fit get in, on any number of tasks.

Bringing it up to date is what frees the limits, whoever finished or deleted the job:

- an unfinished job's entry is compared with the job's summary (one read): once every output is final
  it stops counting as unfinished, and its outputs' sizes count as stored; its work is known from the
  probe a worker recorded;
- a job whose records are gone (deleted, expired) is dropped; a finished one is checked again at most
  once an hour (``RECHECK``), and dropped without a read once it is older than RETENTION_DAYS;
- the work of a day is that of the jobs created in the last 24 hours, so it frees as they age out.

A creation reserves a place first (an entry under a token), before the upload is stored or probed, and
the entry becomes the job's once it exists; a creation that fails gives it back, and one whose process
died is dropped after ``PENDING_GRACE``.

Work is counted from the worker's probe, so a job's own work is known only after it is accepted: the
day's limit refuses new jobs once the work already counted reaches it (one job can take it over, by at
most MAX_JOB_WORK_MINUTES).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError

from .budget import job_work
from .config import Settings
from .errors import OverLimit
from .limits import human_bytes, human_duration
from .model import OutputStatus, SourceInfo, is_job_id
from .owners import AuthMode, Owner, OwnerKind, Quota
from .records import JobStore
from .storage import ObjectNotFound
from .views import JobView

log = logging.getLogger(__name__)

DAY = 86400.0
ATTEMPTS = 10  # compare-and-swap rounds before a request is told to try again
RECHECK = 3600.0  # seconds between checks that a finished job still exists (deleted elsewhere: freed)
RECHECKS_PER_READ = 5  # finished jobs checked per admission at most, the longest unchecked first
ACTIVE_RETRY = 30  # Retry-After of "too many unfinished jobs": about a poll of the job page
USAGE_PREFIX = "usage"

# The defaults with AUTH=keys (a known caller), and for anonymous sessions (no one known: lower).
KEY_DEFAULTS = Quota(active_jobs=10, source_minutes_per_day=600.0, storage_bytes=20 * 1024**3)
ANONYMOUS_DEFAULTS = Quota(active_jobs=2, source_minutes_per_day=60.0, storage_bytes=2 * 1024**3)


_N = TypeVar("_N", int, float)


def _limit(value: _N | None, default: _N | None) -> _N | None:
    """A setting's limit: unset (None) is the default, 0 is no limit."""
    if value is None:
        return default
    return value or None


def default_quota(kind: OwnerKind, settings: Settings) -> Quota:
    """The settings' limits for an owner of this kind (QUOTA_*, or ANONYMOUS_QUOTA_* for sessions)."""
    if kind is OwnerKind.SESSION:
        defaults = ANONYMOUS_DEFAULTS
        values = (
            settings.anonymous_quota_active_jobs,
            settings.anonymous_quota_source_minutes_per_day,
            settings.anonymous_quota_storage_bytes,
        )
    else:
        defaults = KEY_DEFAULTS if settings.auth_mode is AuthMode.KEYS else Quota()  # none: one person's laptop
        values = (settings.quota_active_jobs, settings.quota_source_minutes_per_day, settings.quota_storage_bytes)
    active, minutes, stored = values
    return Quota(
        active_jobs=_limit(active, defaults.active_jobs),
        source_minutes_per_day=_limit(minutes, defaults.source_minutes_per_day),
        storage_bytes=_limit(stored, defaults.storage_bytes),
    )


def quota_of(owner: Owner, settings: Settings) -> Quota:
    """The owner's limits: its key's own where the key sets one (0: none), else the settings' defaults."""
    base, own = default_quota(owner.kind, settings), owner.quota
    return Quota(
        active_jobs=_limit(own.active_jobs, base.active_jobs),
        source_minutes_per_day=_limit(own.source_minutes_per_day, base.source_minutes_per_day),
        storage_bytes=_limit(own.storage_bytes, base.storage_bytes),
    )


def limits_anything(quota: Quota) -> bool:
    return any(getattr(quota, f.name) is not None for f in fields(quota))


def usage_key(owner_id: str) -> str:
    """Where an owner's usage record is kept (an owner id's ``:`` is not a key character)."""
    return f"{USAGE_PREFIX}/{owner_id.replace(':', '-')}.json"


class Entry(BaseModel):
    """One job of the owner (or a creation under way) as counted."""

    at: float  # when its creation began, seconds since the epoch
    job: bool = False  # the job exists (False: a reservation for a creation under way)
    done: bool = False  # every output is final: no longer unfinished
    minutes: float = 0.0  # its work, 1080p30 minutes (video_converter.budget), once a worker probed it
    source_bytes: int = 0
    output_bytes: int = 0  # the completed outputs' sizes
    checked: float = 0.0  # when the store last showed it

    @property
    def stored(self) -> int:
        return self.source_bytes + self.output_bytes


class Usage(BaseModel):
    jobs: dict[str, Entry] = Field(default_factory=dict)  # job id (or reservation token) -> entry

    def unfinished(self) -> int:
        return sum(not e.done for e in self.jobs.values())

    def minutes_since(self, since: float) -> float:
        return sum(e.minutes for e in self.jobs.values() if e.at > since)

    def stored(self) -> int:
        return sum(e.stored for e in self.jobs.values())


@dataclass(frozen=True)
class Reservation:
    """A place taken for a creation under way: ``settle`` it once the job exists, ``release`` it if not."""

    owner: Owner
    token: str


def work_minutes(formats: list[str], source: SourceInfo, settings: Settings) -> float:
    """A job's work as the per-job budget counts it, from the source a worker probed."""
    seconds = min(source.duration or settings.max_duration_seconds, settings.max_duration_seconds)
    return sum(job_work(formats, source, seconds).values())


def _in(now: float, seconds: float) -> str:
    """When, ``seconds`` after ``now``: "at 14:05 UTC, in 3 h 10 min"."""
    return f"at {time.strftime('%H:%M UTC', time.gmtime(now + seconds))}, in {human_duration(seconds)}"


# --- refusals: which limit, and when it frees ----------------------------------------------------------------


def _over_active(quota: Quota, usage: Usage) -> OverLimit | None:
    limit = quota.active_jobs
    if limit is None or usage.unfinished() < limit:
        return None
    return OverLimit(
        f"You have {usage.unfinished()} unfinished jobs, the most you may have at once ({limit}): a place frees "
        "as soon as one of them finishes, or when you delete one.",
        ACTIVE_RETRY,
    )


def _over_minutes(quota: Quota, usage: Usage, now: float) -> OverLimit | None:
    limit = quota.source_minutes_per_day
    used = usage.minutes_since(now - DAY)
    if limit is None or used < limit:
        return None
    # It frees when enough of the day's jobs are older than 24 hours for the rest to be under the limit.
    left, frees = used, now + DAY
    for entry in sorted((e for e in usage.jobs.values() if e.at > now - DAY), key=lambda e: e.at):
        left -= entry.minutes
        if left < limit:
            frees = entry.at + DAY
            break
    wait = max(1.0, frees - now)
    return OverLimit(
        f"You have used {round(used)} of your {round(limit)} minutes of work a day (counted as minutes of 1080p "
        f"at 30 fps, over the last 24 hours): new jobs are accepted again {_in(now, wait)}, as your earlier jobs "
        "age out.",
        wait,
    )


def _over_storage(quota: Quota, usage: Usage, now: float, adding: int, retention_days: float) -> OverLimit | None:
    limit, stored = quota.storage_bytes, usage.stored()
    if limit is None or (stored < limit and stored + adding <= limit):
        return None
    what = f"with this upload ({human_bytes(adding)}) your jobs would keep" if adding else "your jobs keep"
    sentence = f"Your storage is full: {what} {human_bytes(stored + adding)} of your {human_bytes(limit)}."
    oldest = min((e.at for e in usage.jobs.values() if e.job), default=None)
    if retention_days and oldest is not None:
        wait = max(1.0, oldest + retention_days * DAY - now)
        sentence += f" Delete jobs you no longer need to free it now; your oldest job expires {_in(now, wait)}."
        return OverLimit(sentence, wait)
    return OverLimit(sentence + " Delete jobs you no longer need to free it.", RECHECK)


def refusal(quota: Quota, usage: Usage, now: float, adding: int, retention_days: float) -> OverLimit | None:
    """The first limit this admission would pass (with a job of ``adding`` bytes), or None."""
    return (
        _over_active(quota, usage)
        or _over_minutes(quota, usage, now)
        or _over_storage(quota, usage, now, adding, retention_days)
    )


# --- the usage record ----------------------------------------------------------------------------------------


class Quotas:
    """Admissions against the owners' quotas, and their usage, over the converted store."""

    def __init__(self, jobs: JobStore, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.jobs, self.store, self.settings, self.clock = jobs, jobs.store, settings, clock

    @property
    def pending_grace(self) -> float:
        """How long a reservation waits for its job: the upload of a ticket can take this long."""
        return float(self.settings.upload_url_ttl) + 600.0

    def counts(self, owner: Owner) -> bool:
        """Whether this owner's usage is counted: it has a limit."""
        return limits_anything(quota_of(owner, self.settings))

    def usage(self, owner: Owner) -> Usage:
        """The owner's usage, brought up to date from the stores (not written back)."""
        usage, _ = self._read(owner)
        return self._refresh(usage or Usage(), self.clock())

    def check(self, owner: Owner) -> None:
        """Raise OverLimit when the owner could not create a job now (before an upload is sent)."""
        quota = quota_of(owner, self.settings)
        if limits_anything(quota) and (refused := refusal(quota, self.usage(owner), self.clock(), 0, self._days)):
            raise refused

    def reserve(self, owner: Owner, source_bytes: int = 0) -> Reservation | None:
        """Take a place for a job of ``source_bytes`` (0: not known yet), or raise OverLimit; None when the
        owner has no limit (nothing is counted)."""
        quota = quota_of(owner, self.settings)
        if not limits_anything(quota):
            return None
        token = f"pending-{uuid.uuid4().hex}"

        def take(usage: Usage, now: float) -> Usage:
            if (refused := refusal(quota, usage, now, source_bytes, self._days)) is not None:
                raise refused
            return _with(usage, token, Entry(at=now, source_bytes=source_bytes, checked=now))

        self._change(owner, take)
        return Reservation(owner, token)

    def settle(self, reservation: Reservation | None, job_id: str, source_bytes: int) -> None:
        """The reserved creation made job ``job_id``: its entry is the job's from now on."""
        if reservation is None:
            return

        def settled(usage: Usage, now: float) -> Usage:
            entry = usage.jobs.get(reservation.token) or Entry(at=now)
            rest = {k: e for k, e in usage.jobs.items() if k != reservation.token}
            done = Entry(at=entry.at, job=True, source_bytes=source_bytes, checked=now)
            return Usage(jobs={**rest, job_id: done})

        self._change(reservation.owner, settled)

    def release(self, owner: Owner, key: str) -> None:
        """Free a place: a creation that failed (its token), or a job deleted (its id)."""
        if self.counts(owner):
            self._change(owner, lambda usage, _: Usage(jobs={k: e for k, e in usage.jobs.items() if k != key}))

    def give_back(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            self.release(reservation.owner, reservation.token)

    def create_within(self, owner: Owner, source_bytes: int, create: Callable[[], JobView]) -> JobView:
        """Run ``create`` (a job's creation) in a place reserved for it: refused with OverLimit before it
        starts, given back if it fails. ``source_bytes``: the original's size where known beforehand."""
        reservation = self.reserve(owner, source_bytes)
        try:
            view = create()
        except BaseException:
            self.give_back(reservation)
            raise
        if reservation is not None:
            self.settle(reservation, view.job_id, source_bytes or self.jobs.job(view.job_id).source_size)
        return view

    @property
    def _days(self) -> float:
        return self.settings.retention_days

    def _read(self, owner: Owner) -> tuple[Usage | None, str | None]:
        try:
            data, tag = self.store.get_tagged(usage_key(owner.id))
        except ObjectNotFound:
            return None, None
        try:
            return Usage.model_validate_json(data), tag
        except ValidationError:
            log.warning("the usage record of %s is unreadable; counting afresh", owner.id)
            return Usage(), tag

    def _change(self, owner: Owner, change: Callable[[Usage, float], Usage]) -> None:
        """Apply ``change`` to the up-to-date usage with a compare-and-swap, retried on a lost race."""
        key = usage_key(owner.id)
        for attempt in range(ATTEMPTS):
            usage, tag = self._read(owner)
            now = self.clock()
            data = change(self._refresh(usage or Usage(), now), now).model_dump_json().encode()
            if tag is None:
                if self.store.create_bytes(key, data, "application/json"):
                    return
            elif self.store.replace_bytes(key, data, tag, "application/json"):
                return
            time.sleep(random.uniform(0.005, 0.03) * (attempt + 1))  # noqa: S311 (jitter, not secrecy)
        raise OverLimit("Many of your requests are being counted at once; please try again in a moment.", 2)

    def _refresh(self, usage: Usage, now: float) -> Usage:
        """The usage as the stores show it now: finished, deleted and expired jobs freed."""
        expiry = self._days * DAY if self._days else None
        rechecks = sorted((e.checked, k) for k, e in usage.jobs.items() if e.done and now - e.checked > RECHECK)
        recheck = {k for _, k in rechecks[:RECHECKS_PER_READ]}
        kept: dict[str, Entry] = {}
        for key, entry in usage.jobs.items():
            if expiry is not None and now - entry.at > expiry:
                continue  # the retention has deleted it
            seen = self._seen(key, entry, now) if not entry.done or key in recheck else entry
            if seen is not None:
                kept[key] = seen
        return Usage(jobs=kept)

    def _seen(self, key: str, entry: Entry, now: float) -> Entry | None:
        """The entry as the job's summary shows it; None once the job is gone (or its creation died)."""
        if not is_job_id(key):
            return entry if now - entry.at < self.pending_grace else None
        summary = self.jobs.summary(key)
        if summary is None:
            return entry.model_copy(update={"checked": now}) if self.jobs.exists(key) else None
        outputs = list(summary.outputs.values())
        source = next((o.source for o in outputs if o.source is not None), None)
        minutes = work_minutes(list(summary.outputs), source, self.settings) if source else entry.minutes
        made = sum(o.size_bytes or 0 for o in outputs if o.status is OutputStatus.COMPLETED)
        done = all(o.status.finished for o in outputs)
        return entry.model_copy(update={"done": done, "minutes": minutes, "output_bytes": made, "checked": now})


def _with(usage: Usage, key: str, entry: Entry) -> Usage:
    return Usage(jobs={**usage.jobs, key: entry})
