"""Local mode's counterpart of the S3 lifecycle rules: jobs older than RETENTION_DAYS are deleted.

A job's age is that of the newest file in its folder, so nothing a worker is still writing is touched.
Uploads that never became a job (an unused upload ticket) go the same way. ``housekeeping`` runs the
sweep every hour.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from .model import is_job_id

log = logging.getLogger(__name__)


def _last_change(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=folder.stat().st_mtime)


def purge_expired(roots: list[Path], max_age_days: float, now: float | None = None) -> list[str]:
    """Delete the job folders (same id under every root) untouched for ``max_age_days``; return their ids."""
    cutoff = (now if now is not None else time.time()) - max_age_days * 86400
    ids = {p.name for root in roots if root.is_dir() for p in root.iterdir() if p.is_dir() and is_job_id(p.name)}
    purged = []
    for job_id in sorted(ids):
        folders = [root / job_id for root in roots if (root / job_id).is_dir()]
        if all(_last_change(folder) < cutoff for folder in folders):
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            purged.append(job_id)
    if purged:
        log.info("retention: deleted %d job(s) older than %s days", len(purged), max_age_days)
    return purged
