"""Reconciliation in local mode: outputs whose message the queue lost are sent again, nothing else is."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from video_converter import housekeeping, keys, recovery
from video_converter.config import Settings
from video_converter.jobs import JobService, new_job
from video_converter.model import OutputRecord, OutputStatus, utcnow
from video_converter.queues import SqliteQueue
from video_converter.records import JobStore
from video_converter.recovery import QUEUED_GRACE, lost_work, reconcile
from video_converter.runtime import Runtime, build_runtime
from video_converter.storage import MemoryStorage
from video_converter.work import Convert, Work

STALE = timedelta(seconds=1200)


@pytest.fixture
def rt(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    runtime = build_runtime(settings.model_copy(update={"workers": 1}))
    runtime.probe_uploads = False  # these jobs are made of bytes, not media
    yield runtime
    runtime.close()


def write_raw(jobs: JobStore, job_id: str, record: OutputRecord) -> None:
    jobs.store.put_bytes(keys.status_key(job_id, record.format), record.model_dump_json().encode())


def queue_of(rt: Runtime) -> SqliteQueue:
    assert isinstance(rt.queue, SqliteQueue)
    return rt.queue


def test_a_deleted_queue_file_loses_no_job(rt: Runtime) -> None:
    service = JobService(rt)
    job_id = service.upload_and_create(io.BytesIO(b"x"), "a.mp4", ["720p", "mp3"]).job_id
    old = utcnow() - QUEUED_GRACE - timedelta(seconds=1)
    for format_id in ("720p", "mp3"):
        write_raw(rt.jobs, job_id, OutputRecord(format=format_id, updated_at=old))
    path = Path(rt.settings.data_dir) / "queue.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert reconcile(rt) == 2
    assert sorted(b["format"] for b in queue_of(rt).bodies()) == ["720p", "mp3"]
    assert reconcile(rt) == 0  # sent once: now they are in the queue


def test_a_corrupt_queue_file_is_rebuilt_from_the_records(rt: Runtime, settings: Settings) -> None:
    job_id = JobService(rt).upload_and_create(io.BytesIO(b"x"), "a.mp4", ["gif"]).job_id
    old = utcnow() - QUEUED_GRACE - timedelta(seconds=1)
    write_raw(rt.jobs, job_id, OutputRecord(format="gif", updated_at=old))
    rt.close()
    path = Path(settings.data_dir) / "queue.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"garbage" * 1000)
    again = build_runtime(settings.model_copy(update={"workers": 1}))  # a restart: the file is moved aside
    try:
        assert reconcile(again) == 1
        assert queue_of(again).bodies() == [{"job_id": job_id, "format": "gif"}]
    finally:
        again.close()


def test_only_waiting_outputs_without_a_message_are_lost() -> None:
    jobs = JobStore(MemoryStorage())
    now = utcnow()
    service_job = "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11"
    record = new_job(service_job, "a.mp4", ["1080p", "720p", "480p", "360p", "webm", "mp3", "gif"], 1)
    record.created_at = now - timedelta(hours=1)
    jobs.save_job(record)  # no status records at all for 1080p: dated by the job's creation
    old, fresh = now - timedelta(hours=1), now - timedelta(seconds=5)
    write_raw(jobs, service_job, OutputRecord(format="720p", updated_at=old))  # queued long ago: lost
    write_raw(jobs, service_job, OutputRecord(format="480p", updated_at=fresh))  # being created: wait
    write_raw(jobs, service_job, OutputRecord(format="360p", status=OutputStatus.PROCESSING, updated_at=old))
    write_raw(jobs, service_job, OutputRecord(format="webm", status=OutputStatus.PROCESSING, updated_at=fresh))
    write_raw(jobs, service_job, OutputRecord(format="mp3", status=OutputStatus.COMPLETED, updated_at=old))
    write_raw(jobs, service_job, OutputRecord(format="gif", updated_at=old))
    queued: set[Work] = {Convert(service_job, ("gif",))}  # its message is there
    found = lost_work(
        jobs, MemoryStorage(), [service_job, "1b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11"], queued, stale_after=STALE, now=now
    )
    assert sorted(f for w in found for f in w.formats) == ["1080p", "360p", "720p"]


def test_renditions_converted_together_are_covered_by_their_one_message() -> None:
    jobs = JobStore(MemoryStorage())
    job_id = "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c12"
    record = new_job(job_id, "a.mp4", ["1080p", "720p", "480p"], 1)
    record.created_at = utcnow() - timedelta(hours=1)
    jobs.save_job(record)
    together: set[Work] = {Convert(job_id, ("1080p", "720p"))}  # 480p's message is the one lost
    assert list(lost_work(jobs, MemoryStorage(), [job_id], together, stale_after=STALE)) == [Convert(job_id, ("480p",))]


def test_work_queued_before_a_restart_is_sent_again_once_the_grace_has_passed(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconciliation at start skips queued records younger than the grace (a job may be being created);
    a follow-up once it has passed sends what the lost queue file held, not one interval (5 min) later."""
    grace = timedelta(seconds=4)
    monkeypatch.setattr(recovery, "QUEUED_GRACE", grace)
    job_id = JobService(rt).upload_and_create(io.BytesIO(b"x"), "a.mp4", ["mp3"]).job_id  # queued just now
    path = Path(rt.settings.data_dir) / "queue.sqlite3"
    for suffix in ("", "-wal", "-shm"):  # the queue file is lost over the restart
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    runs: list[int] = []
    sent = threading.Event()

    def counted(runtime: Runtime) -> int:
        runs.append(reconcile(runtime))
        if runs[-1]:
            sent.set()
        return runs[-1]

    monkeypatch.setattr(housekeeping, "reconcile", counted)
    stop = threading.Event()
    started = time.monotonic()
    threads = housekeeping.start_background(rt, stop)
    try:
        assert sent.wait(timeout=grace.total_seconds() + housekeeping.FOLLOW_UP_MARGIN + 60)
        assert time.monotonic() - started < housekeeping.RECONCILE_INTERVAL
        assert runs[0] == 0 and runs[-1] == 1  # skipped at start (too young), sent by the follow-up
        assert queue_of(rt).bodies() == [{"job_id": job_id, "format": "mp3"}]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def test_the_follow_up_comes_within_two_minutes_of_a_start() -> None:
    assert recovery.QUEUED_GRACE.total_seconds() + housekeeping.FOLLOW_UP_MARGIN <= 120
