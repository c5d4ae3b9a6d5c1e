"""DELETE /api/jobs/{id}: a running FFmpeg is stopped within seconds, queued messages are dropped, every
record and file goes, and the job is 404 afterwards (disk and memory stores; S3 in tests/aws)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import Env
from video_converter import cancel
from video_converter.conversion import NOT_CONVERTED
from video_converter.ffmpeg import FFmpeg, ffprobe_path
from video_converter.model import OutputRecord, OutputStatus, SegmentPlan, SourceInfo
from video_converter.outcome import Action, Outcome
from video_converter.records import JobStore
from video_converter.runtime import build_runtime
from video_converter.storage import LocalStorage, MemoryStorage
from video_converter.work import Join, Piece, SoundPart, Work


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_clip_file

    return make_clip_file(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1, size="160x120")


def test_watch_halts_when_the_job_record_goes(monkeypatch) -> None:
    monkeypatch.setattr(cancel, "STOP_POLL", 0.01)
    store = MemoryStorage()
    jobs = JobStore(store)
    store.put_bytes("j/job.json", b"{}")
    monkeypatch.setattr(jobs, "exists", lambda job_id: store.size(f"{job_id}/job.json") is not None)
    with cancel.JobWatch(jobs, "j", None, interval=0.05) as watch:
        assert not watch.halt.wait(0.2)
        store.delete("j/job.json")
        assert watch.halt.wait(2)
    assert watch.deleted


def test_watch_passes_a_stop_on_without_calling_it_a_deletion(monkeypatch) -> None:
    monkeypatch.setattr(cancel, "STOP_POLL", 0.01)
    stop = threading.Event()
    with cancel.JobWatch(JobStore(MemoryStorage()), "j", stop, interval=60) as watch:
        stop.set()
        assert watch.halt.wait(2)
    assert not watch.deleted


def test_a_running_conversion_is_stopped_and_leaves_nothing(
    env: Env, clip: Path, fake_binary: Callable[[str], str], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(cancel, "CHECK_INTERVAL", 0.2)
    started = tmp_path / "started"
    slow = FFmpeg(ffmpeg=fake_binary(f"touch {started}; exec sleep 60"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["720p", "480p"])
    outcome: list[Outcome] = []
    worker = threading.Thread(target=lambda: outcome.append(env.convert(job_id, "720p", ffmpeg=slow)))
    begun = time.monotonic()
    worker.start()
    while not started.exists():
        assert time.monotonic() - begun < 20, "FFmpeg never started"
        time.sleep(0.05)
    env.service.delete_job(job_id)
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - begun < 15  # stopped within seconds, not 60 s
    assert outcome == [Outcome.ack("job deleted")]
    assert [k for k in env.converted.objects if k.startswith(job_id)] == []  # no late record survives
    assert isinstance(env.uploads, MemoryStorage)
    assert [k for k in env.uploads.objects if k.startswith(job_id)] == [f"{job_id}/ticket-used"]  # stays spent


def test_a_queued_message_of_a_deleted_job_is_dropped(env: Env, clip: Path) -> None:
    job_id = env.job(clip, ["mp3"])
    env.service.delete_job(job_id)
    assert env.convert(job_id, "mp3").action is Action.ACK
    assert [k for k in env.converted.objects if k.startswith(job_id)] == []


def test_another_processs_cache_does_not_keep_a_deleted_job(env: Env, clip: Path) -> None:
    from video_converter.errors import JobNotFound
    from video_converter.jobs import JobService

    job_id = env.job(clip, ["mp3"])
    other = JobService(env.rt)  # a second API process, which has the job record cached
    other.documents.view(job_id)
    env.service.delete_job(job_id)
    with pytest.raises(JobNotFound):
        other.documents.view(job_id)
    with pytest.raises(JobNotFound):
        other.documents.output_url(job_id, "mp3")
    other.documents.close()


def test_delete_over_http_in_local_mode(settings, clip: Path) -> None:
    rt = build_runtime(settings)
    with TestClient(create_app(rt)) as client:
        with clip.open("rb") as fh:
            job = client.post("/api/jobs", data={"formats": ["720p"]}, files={"file": ("a.mp4", fh, "video/mp4")})
        job_id = job.json()["job_id"]
        key = f"{job_id}/a_720p.mp4"
        rt.converted.put_bytes(key, b"MP4")
        rt.jobs.save_output(job_id, OutputRecord(format="720p", status=OutputStatus.COMPLETED, key=key, size_bytes=3))
        link = client.get(f"/api/jobs/{job_id}").json()["outputs"][0]["download_url"]
        assert client.get(link).status_code == 200

        response = client.delete(f"/api/jobs/{job_id}")
        assert response.status_code == 204 and response.content == b""
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert client.head(f"/api/jobs/{job_id}").status_code == 404
        assert client.get(link).status_code == 404  # the signed link finds nothing
        assert client.delete(f"/api/jobs/{job_id}").status_code == 404
        assert client.delete(f"/api/jobs/{uuid.uuid4()}").status_code == 404
        assert client.delete("/api/jobs/not-a-job").status_code == 404
        assert isinstance(rt.uploads, LocalStorage) and isinstance(rt.converted, LocalStorage)
        assert not (rt.converted.root / job_id).exists()
        assert [p.name for p in (rt.uploads.root / job_id).iterdir()] == ["ticket-used"]  # only the spent mark
        # An upload link for the deleted job, still within its lifetime, cannot bring the id back.
        url, _ = rt.uploads.upload_form(f"{job_id}/source", rt.settings.max_upload_bytes, 3600)
        with clip.open("rb") as fh:
            again = client.post(url, files={"file": ("a.mp4", fh, "video/mp4")})
        assert again.status_code == 409, again.text
        assert client.post(
            "/api/jobs", json={"upload_id": job_id, "filename": "a.mp4", "formats": ["720p"]}
        ).status_code in (409, 422)
    rt.close()


@pytest.mark.parametrize(
    "task",
    [Piece("", ("360p",), 0), SoundPart("", ("360p",), 0), Join("", "360p")],
    ids=["part", "sound", "join"],
)
def test_the_part_sound_and_join_messages_of_a_deleted_job_are_dropped(env: Env, clip: Path, task: Work) -> None:
    job_id = env.job(clip, ["360p"])
    env.service.delete_job(job_id)
    assert env.outcome(replace(task, job_id=job_id)) == Outcome.ack("no such job or format")
    assert [k for k in env.converted.objects if k.startswith(job_id)] == []


def test_deleting_forgets_the_cached_segment_plan(env: Env, clip: Path) -> None:
    job_id = env.job(clip, ["360p"])
    env.service.documents._plans[job_id] = SegmentPlan(
        source=SourceInfo(), starts=[0.0, 1.0], duration=2.0, has_audio=False
    )
    env.service.delete_job(job_id)
    assert job_id not in env.service.documents._plans


def test_an_unusable_original_fails_the_parts_of_a_segmented_output_with_the_job_level_error(
    env: Env, clip: Path
) -> None:
    job_id = env.job(clip, ["360p"])
    env.rt.jobs.save_failure(job_id, "This is not a video. Nothing was converted; upload a video or audio file.")
    assert env.outcome(Piece(job_id, ("360p",), 1)) == Outcome.finished("failed for good")
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.FAILED and record.error == NOT_CONVERTED
    assert env.view(job_id)["error"].startswith("This is not a video.")


def test_head_agrees_with_get_in_another_api_process(settings, clip: Path) -> None:
    """Two API processes over one DATA_DIR: the one that did not delete the job had its record cached, and
    its HEAD said 200 for a job its GET called 404."""
    first, second = build_runtime(settings), build_runtime(settings)
    try:
        with TestClient(create_app(first)) as one, TestClient(create_app(second)) as two:
            with clip.open("rb") as fh:
                job = one.post("/api/jobs", data={"formats": ["mp3"]}, files={"file": ("a.mp4", fh, "video/mp4")})
            job_id = job.json()["job_id"]
            assert two.head(f"/api/jobs/{job_id}").status_code == 200  # now cached in the second process
            assert one.delete(f"/api/jobs/{job_id}").status_code == 204
            assert two.head(f"/api/jobs/{job_id}").status_code == 404  # before any GET clears the cache
            assert two.get(f"/api/jobs/{job_id}").status_code == 404
            assert two.head(f"/api/jobs/{uuid.uuid4()}").status_code == 404
    finally:
        first.close()
        second.close()
