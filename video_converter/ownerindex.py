"""Each owner's jobs, newest first, for ``GET /api/jobs``: one empty object per job in the converted
store, ``owners/<owner hash>/<inverted creation time>-<job id>``, so that a listing of the owner's
folder is already in order (newest first) and a page goes on after the last name it gave.

Every job is also listed under ``everyone`` (what AUTH=none lists). An entry goes with its job
(``remove``, when the job is deleted); one whose job expired goes with the retention sweep (local:
``purge_older``; AWS: the converted bucket's lifecycle rule for ``owners/``), and a listing that meets
an entry whose job is gone deletes it.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime

from .model import JobRecord
from .owners import EVERYONE
from .storage import Storage

FOLDER = "owners"
_LATEST = 10**13 - 1  # milliseconds since the epoch, inverted: until the year 2286
_ENTRY = re.compile(r"(\d{13})-([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})")
MAX_PAGE = 100


def owner_folder(owner_id: str) -> str:
    """The owner's folder: a hash of its id (session ids hold characters keys cannot)."""
    return f"{FOLDER}/{hashlib.sha256(owner_id.encode()).hexdigest()[:32]}/"


def entry_name(job_id: str, created_at: datetime) -> str:
    return f"{_LATEST - int(created_at.timestamp() * 1000):013d}-{job_id}"


def is_cursor(value: str) -> bool:
    return bool(_ENTRY.fullmatch(value))


def _owners(record: JobRecord) -> set[str]:
    return {EVERYONE.id, record.owner or EVERYONE.id}


def add(store: Storage, record: JobRecord) -> None:
    name = entry_name(record.job_id, record.created_at)
    for owner_id in _owners(record):
        store.put_bytes(owner_folder(owner_id) + name, b"")


def remove(store: Storage, record: JobRecord) -> None:
    name = entry_name(record.job_id, record.created_at)
    for owner_id in _owners(record):
        store.delete(owner_folder(owner_id) + name)


def page(store: Storage, owner_id: str, limit: int, cursor: str | None = None) -> tuple[list[str], bool]:
    """Up to ``limit`` entry names of the owner's jobs after ``cursor`` (an entry name), newest first,
    and whether more follow."""
    names = sorted(
        name
        for item in store.list(owner_folder(owner_id))
        if _ENTRY.fullmatch(name := item.key.rsplit("/", 1)[-1]) and (cursor is None or name > cursor)
    )
    return names[:limit], len(names) > limit


def job_of(name: str) -> str:
    match = _ENTRY.fullmatch(name)
    assert match is not None
    return match.group(2)


def drop(store: Storage, owner_id: str, name: str) -> None:
    """Delete an entry whose job is gone (met by a listing)."""
    store.delete(owner_folder(owner_id) + name)


def purge_older(store: Storage, max_age_days: float, now: float | None = None) -> int:
    """Local mode's retention: delete the entries of jobs created more than ``max_age_days`` ago."""
    cutoff_ms = int(((now if now is not None else time.time()) - max_age_days * 86400) * 1000)
    purged = 0
    for item in store.list(f"{FOLDER}/"):
        match = _ENTRY.fullmatch(item.key.rsplit("/", 1)[-1])
        if match is not None and _LATEST - int(match.group(1)) < cutoff_ms:
            store.delete(item.key)
            purged += 1
    return purged
