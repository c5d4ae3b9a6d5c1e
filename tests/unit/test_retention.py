"""Local retention: old job folders go, recent or still-changing ones stay."""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from video_converter import keys
from video_converter.config import Settings
from video_converter.errors import InvalidRequest
from video_converter.housekeeping import start_background
from video_converter.jobs import JobService
from video_converter.retention import purge_expired
from video_converter.runtime import build_runtime
from video_converter.uploads import UNCLAIMED_AFTER, purge_unclaimed

DAY = 86400


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tests.conftest import make_clip_file

    return make_clip_file(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1, size="160x120").read_bytes()


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


def test_missing_roots(tmp_path: Path) -> None:
    assert purge_expired([tmp_path / "nope"], max_age_days=7) == []


def test_zero_retention_starts_no_retention_sweep(settings: Settings) -> None:
    rt = build_runtime(settings.model_copy(update={"retention_days": 0, "workers": 0}))
    stop = threading.Event()
    try:
        threads = start_background(rt, stop)
        assert [t.name for t in threads] == [
            "unclaimed-uploads",
            "abandoned-multipart",
        ]  # 0 keeps every job, not stray uploads
    finally:
        stop.set()
        rt.close()


def test_the_sweep_runs_at_start_and_stops_when_asked(settings: Settings, tmp_path: Path) -> None:
    rt = build_runtime(settings.model_copy(update={"retention_days": 7, "workers": 0}))
    uploads = Path(settings.data_dir) / "uploads"
    job_id = str(uuid.uuid4())
    job_files(uploads, job_id, 10, "source")
    stop = threading.Event()
    threads = start_background(rt, stop)
    assert [t.name for t in threads] == ["retention", "owner-index", "unclaimed-uploads", "abandoned-multipart"]
    # Either sweep takes the 10-day-old original (the unclaimed-uploads one keeps the folder for the
    # ticket's mark, so the folder itself is not what to wait for).
    deadline = time.monotonic() + 30
    while (uploads / job_id / "source").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (uploads / job_id / "source").exists()
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    rt.close()


def test_an_upload_no_job_was_made_from_within_an_hour_is_deleted(settings: Settings, clip_bytes: bytes) -> None:
    """Tickets stored unprobed bytes for the whole retention with no way to delete them; now an upload
    waits an hour for its job. The ticket stays spent, and a job asked for later is refused."""
    rt = build_runtime(settings)
    service = JobService(rt)
    try:
        stale, fresh, used = (service.uploads.ticket().upload_id for _ in range(3))
        for upload_id in (stale, fresh, used):
            service.uploads.store(upload_id, io.BytesIO(clip_bytes))
        service.create_job(used, "a.mp4", ["mp3"])
        uploads = Path(settings.data_dir) / "uploads"
        hour_ago = time.time() - UNCLAIMED_AFTER - 5
        for upload_id in (stale, used):
            os.utime(uploads / upload_id / "source", (hour_ago, hour_ago))

        assert purge_unclaimed(rt) == [stale]

        assert rt.uploads.size(keys.source_key(stale)) is None
        assert (uploads / stale / "ticket-used").exists()  # the link cannot bring it back
        assert rt.uploads.size(keys.source_key(fresh)) == len(clip_bytes)  # within the hour: kept
        assert rt.uploads.size(keys.source_key(used)) == len(clip_bytes)  # its job needs it
        with pytest.raises(InvalidRequest, match="expired"):
            service.create_job(stale, "a.mp4", ["mp3"])
        assert purge_unclaimed(rt) == []  # nothing left to do
    finally:
        service.documents.close()
        rt.close()


def test_the_owners_lists_lose_the_entries_of_jobs_past_the_retention(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from video_converter import ownerindex
    from video_converter.model import JobRecord
    from video_converter.storage import MemoryStorage

    store = MemoryStorage()
    now = time.time()
    for age_days in (1, 9):
        created = datetime.fromtimestamp(now - age_days * 86400, UTC)
        record = JobRecord(
            job_id=str(uuid.uuid4()), filename="a", stem="a", formats=["mp3"], source_key="k", source_size=1,
            owner="key:abc", created_at=created,
        )  # fmt: skip
        ownerindex.add(store, record)
    assert ownerindex.purge_older(store, 8, now=now) == 2  # the old job's entry, under its owner and everyone
    names, more = ownerindex.page(store, "key:abc", 10)
    assert len(names) == 1 and not more
