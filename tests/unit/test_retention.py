"""Local retention: old job folders go, recent or still-changing ones stay."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

from video_converter.retention import purge_expired, start_janitor

DAY = 86400


def job_files(root: Path, job_id: str, age_days: float, *names: str) -> Path:
    folder = root / job_id
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        stamp = time.time() - age_days * DAY
        os.utime(path, (stamp, stamp))
    return folder


def test_only_jobs_untouched_for_the_whole_period_are_deleted(tmp_path: Path) -> None:
    uploads, converted = tmp_path / "uploads", tmp_path / "converted"
    old, recent, busy, unused_ticket = (str(uuid.uuid4()) for _ in range(4))
    job_files(uploads, old, 9, "source")
    job_files(converted, old, 8, "job.json", "status/720p.json", "clip_720p.mp4")
    job_files(uploads, recent, 2, "source")
    job_files(converted, recent, 2, "job.json")
    job_files(uploads, busy, 30, "source")
    job_files(converted, busy, 30, "job.json")
    job_files(converted, busy, 0, "status/720p.json")  # a worker wrote this just now
    job_files(uploads, unused_ticket, 10, "source")
    (converted / "not-a-job").mkdir()

    purged = purge_expired([uploads, converted], max_age_days=7)

    assert sorted(purged) == sorted([old, unused_ticket])
    assert not (uploads / old).exists() and not (converted / old).exists()
    assert not (uploads / unused_ticket).exists()
    for kept in (recent, busy):
        assert (uploads / kept / "source").exists() and (converted / kept / "job.json").exists()
    assert (converted / "not-a-job").exists()  # only job folders are ever touched


def test_missing_roots_and_zero_retention(tmp_path: Path) -> None:
    assert purge_expired([tmp_path / "nope"], max_age_days=7) == []
    assert start_janitor([tmp_path], 0, threading.Event()) is None  # 0 keeps everything


def test_the_janitor_sweeps_at_start_and_stops_when_asked(tmp_path: Path) -> None:
    job_id = str(uuid.uuid4())
    job_files(tmp_path, job_id, 10, "job.json")
    stop = threading.Event()
    thread = start_janitor([tmp_path], 7, stop)
    assert thread is not None
    deadline = time.monotonic() + 5
    while (tmp_path / job_id).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (tmp_path / job_id).exists()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
