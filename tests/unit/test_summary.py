"""The job's summary: every output's record in one object, exact although the outputs of one job are
written by different workers at once (a compare-and-swap over the stores' conditional writes)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import ClipFactory, Env
from video_converter import keys
from video_converter.model import JobRecord, OutputRecord, OutputStatus
from video_converter.records import JobStore
from video_converter.storage import LocalStorage, MemoryStorage, Storage
from video_converter.work import Piece

JOB_ID = "3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"
FORMATS = ["720p", "480p", "360p", "webm", "mp3", "gif", "thumbnail"]


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return MemoryStorage() if request.param == "memory" else LocalStorage(tmp_path / "converted")


def job(store: Storage) -> JobStore:
    jobs = JobStore(store)
    jobs.save_job(JobRecord(job_id=JOB_ID, filename="a.mp4", stem="a", formats=FORMATS, source_key="k", source_size=1))
    return jobs


def test_no_update_is_lost_when_every_output_is_written_at_once(store: Storage):
    jobs = job(store)
    start = threading.Barrier(len(FORMATS))
    last: dict[str, OutputRecord] = {}

    def worker(format_id: str) -> None:
        record = OutputRecord(format=format_id)
        start.wait()
        for attempt in range(1, 16):
            record = jobs.save_output(JOB_ID, record.started(attempt))
        last[format_id] = jobs.save_output(JOB_ID, record.failed(f"{format_id} done"))

    threads = [threading.Thread(target=worker, args=(f,)) for f in FORMATS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    found = jobs.summary(JOB_ID)
    assert found is not None
    assert found.outputs == last  # every writer's last record, none lost to another's
    assert all(jobs.output(JOB_ID, f) == last[f] for f in FORMATS)  # and the records agree


def test_a_missing_summary_is_rebuilt_from_the_records_by_the_next_writer(store: Storage):
    jobs = job(store)
    for format_id in FORMATS:
        jobs.save_output(JOB_ID, OutputRecord(format=format_id), summarize=False)  # written before summaries
    assert jobs.summary(JOB_ID) is None
    done = jobs.save_output(JOB_ID, OutputRecord(format="mp3").failed("no"))
    found = jobs.summary(JOB_ID)
    assert found is not None and set(found.outputs) == set(FORMATS) and found.outputs["mp3"] == done


def test_an_older_record_never_replaces_a_newer_one(store: Storage):
    jobs = job(store)
    older = jobs.save_output(JOB_ID, OutputRecord(format="mp3"))
    newer = jobs.save_output(JOB_ID, older.failed("no"))
    jobs.update_summary(JOB_ID, lambda current: current.with_output(older))
    found = jobs.summary(JOB_ID)
    assert found is not None and found.outputs["mp3"] == newer


def test_no_summary_is_made_for_a_deleted_job(store: Storage):
    jobs = JobStore(store)
    jobs.save_output(JOB_ID, OutputRecord(format="mp3"))  # a late write after the job was deleted
    assert store.size(keys.summary_key(JOB_ID)) is None


def test_a_writer_that_keeps_losing_gives_the_summary_up(store: Storage, monkeypatch: pytest.MonkeyPatch):
    jobs = job(store)
    jobs.save_output(JOB_ID, OutputRecord(format="mp3"))
    monkeypatch.setattr(store, "replace_bytes", lambda *args, **kwargs: False)
    monkeypatch.setattr("video_converter.summary.time.sleep", lambda seconds: None)
    jobs.save_output(JOB_ID, OutputRecord(format="gif").failed("no"))
    assert jobs.summary(JOB_ID) is None  # readers read the records; the next writer rebuilds it


def test_the_document_reads_the_summary_and_a_segmented_outputs_pieces_from_it(make_env, make_clip: ClipFactory):
    env: Env = make_env(segment_seconds=1.0)
    job_id = env.create(make_clip(seconds=3.0, extra=("-g", "25")), ["360p"])
    (whole,) = env.created
    env.deliver(whole)  # split: its pieces are queued
    pieces = [task for task in env.take() if isinstance(task, Piece)]
    assert len(pieces) >= 2
    env.deliver(pieces[0])

    found = env.rt.jobs.summary(job_id)
    assert found is not None and list(found.pieces["360p"].done) == [pieces[0].index]
    view = env.view(job_id)
    (out,) = view["outputs"]
    assert out["status"] == "processing" and 0 < out["progress"] < 95
    env.rt.converted.delete(keys.summary_key(job_id))  # the same document from the records and a listing
    assert env.view(job_id)["outputs"][0]["progress"] == out["progress"]


def test_a_new_job_has_its_summary(env: Env, make_clip: ClipFactory):
    job_id = env.create(make_clip(seconds=1.0), ["mp3", "thumbnail"])
    found = env.rt.jobs.summary(job_id)
    assert found is not None and {f: o.status for f, o in found.outputs.items()} == {
        "mp3": OutputStatus.QUEUED,
        "thumbnail": OutputStatus.QUEUED,
    }
