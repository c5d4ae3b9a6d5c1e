"""A second chance (issue 18, item 7): retry a failed output, and add formats to an existing job, from
the stored original, through the API (the conversions delivered by hand, with real FFmpeg)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import Env, MakeEnv, make_clip_file
from video_converter import keys
from video_converter.documents import JobDocuments
from video_converter.model import OutputStatus, utcnow
from video_converter.work import Convert


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip_file(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1, size="160x120")


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip_file(tmp_path_factory.mktemp("clips") / "song.mp3", seconds=1, video=False)


@pytest.fixture
def api(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.rt), raise_server_exceptions=False) as client:
        yield client


def run_all(env: Env) -> None:
    """Deliver every conversion message on the queue (and those they queue) until none is left."""
    while tasks := env.take():
        for task in tasks:
            env.deliver(task)


def fail(env: Env, job_id: str, format_id: str, reason: str = "FFmpeg failed (exit code 1): boom") -> None:
    env.rt.jobs.save_output(job_id, env.record(job_id, format_id).failed(reason))


def sentence(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail[:1].isupper() and detail.endswith(".")
    return detail


def test_a_failed_output_is_retried_from_the_stored_original(env: Env, api: TestClient, clip: Path) -> None:
    job_id = env.job(clip, ["360p", "thumbnail"])
    run_all(env)
    fail(env, job_id, "thumbnail")
    env.converted.put_bytes(keys.webhook_key(job_id), b'{"state": "delivered"}')
    response = api.post(f"/api/jobs/{job_id}/outputs/thumbnail/retry")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "processing"
    assert {o["format"]: (o["status"], o["error"]) for o in job["outputs"]} == {
        "360p": ("completed", None),
        "thumbnail": ("queued", None),
    }
    assert env.pending() == [Convert(job_id, ("thumbnail",))]
    assert env.converted.size(keys.webhook_key(job_id)) is None  # due again once the job is finished again
    run_all(env)
    record = env.record(job_id, "thumbnail")
    assert record.status is OutputStatus.COMPLETED and record.attempts == 1 and record.since is not None
    assert api.get(f"/api/jobs/{job_id}").json()["status"] == "completed"
    assert api.get(f"/api/jobs/{job_id}/outputs/thumbnail", follow_redirects=False).status_code == 307


def test_a_retry_gets_a_fresh_time_budget(make_env: MakeEnv, clip: Path) -> None:
    """MAX_JOB_SECONDS counts from the retry for the retried output, not from the job's creation."""
    env = make_env(max_job_seconds=600)
    job_id = env.job(clip, ["thumbnail"])
    record = env.rt.jobs.job(job_id)
    env.rt.jobs.save_job(record.model_copy(update={"created_at": utcnow() - timedelta(hours=2)}))
    run_all(env)
    assert (env.record(job_id, "thumbnail").error or "").startswith("Out of time")
    env.service.documents.forget(job_id)
    env.service.retry_output(job_id, "thumbnail")
    run_all(env)
    assert env.status(job_id, "thumbnail") is OutputStatus.COMPLETED


def test_what_cannot_be_retried_is_refused_with_a_sentence(env: Env, api: TestClient, clip: Path) -> None:
    job_id = env.job(clip, ["360p", "thumbnail"])
    assert "queued, not failed" in sentence(api.post(f"/api/jobs/{job_id}/outputs/360p/retry"), 409)
    run_all(env)
    assert "completed, not failed" in sentence(api.post(f"/api/jobs/{job_id}/outputs/360p/retry"), 409)
    assert (
        sentence(api.post(f"/api/jobs/{job_id}/outputs/gif/retry"), 404)
        == "This job has no 'gif' output; add it instead."
    )
    other = "0f6d7a4e-1111-4222-8333-444455556666"
    assert api.post(f"/api/jobs/{other}/outputs/360p/retry").status_code == 404
    fail(env, job_id, "thumbnail")
    env.uploads.delete(keys.source_key(job_id))
    assert "no longer stored" in sentence(api.post(f"/api/jobs/{job_id}/outputs/thumbnail/retry"), 409)
    assert env.status(job_id, "thumbnail") is OutputStatus.FAILED and env.pending() == []


def test_a_retry_that_cannot_help_is_refused(env: Env, api: TestClient, song: Path) -> None:
    job_id = env.job(song, ["720p", "mp3"], filename="song.mp3")
    run_all(env)
    detail = sentence(api.post(f"/api/jobs/{job_id}/outputs/720p/retry"), 409)
    assert detail == "Retrying cannot help: The source has no video stream, so it cannot be converted to MP4 720p."


def test_an_unusable_original_is_not_retried(env: Env, api: TestClient) -> None:
    job_id = env.job(b"notes, not a video\n" * 300, ["thumbnail"], filename="notes.txt")
    run_all(env)
    detail = sentence(api.post(f"/api/jobs/{job_id}/outputs/thumbnail/retry"), 409)
    assert detail.startswith("The original of this job could not be used, so nothing more can be made of it.")


def test_two_retries_at_once_queue_it_once(env: Env, clip: Path) -> None:
    job_id = env.job(clip, ["thumbnail"])
    run_all(env)
    fail(env, job_id, "thumbnail")
    assert env.service._requeue(job_id, "thumbnail") is True
    assert env.service._requeue(job_id, "thumbnail") is False  # the second finds it queued already


def test_formats_are_added_to_a_job_from_its_original(env: Env, api: TestClient, clip: Path) -> None:
    job_id = env.job(clip, ["thumbnail"])
    run_all(env)
    reader = JobDocuments(env.rt)  # another API process, which kept the record before the addition
    assert [o.format for o in reader.view(job_id).outputs] == ["thumbnail"]
    response = api.post(f"/api/jobs/{job_id}/outputs", json={"formats": ["mp3", "360p", "480p"]})
    assert response.status_code == 201, response.text
    job = response.json()
    assert [(o["format"], o["status"]) for o in job["outputs"]] == [
        ("thumbnail", "completed"),
        ("mp3", "queued"),
        ("360p", "queued"),
        ("480p", "queued"),
    ]
    assert job["status"] == "processing"
    assert env.pending() == [Convert(job_id, ("mp3",)), Convert(job_id, ("360p", "480p"))]
    assert [o.format for o in reader.view(job_id).outputs] == ["thumbnail", "mp3", "360p", "480p"]
    run_all(env)
    done = api.get(f"/api/jobs/{job_id}").json()
    assert done["status"] == "completed" and all(o["download_url"] for o in done["outputs"])
    assert reader.output_url(job_id, "mp3")
    assert len(env.rt.uploads.list(f"{job_id}/")) >= 1  # one original, never uploaded again


def test_what_cannot_be_added_is_refused_with_a_sentence(env: Env, api: TestClient, song: Path) -> None:
    job_id = env.job(song, ["mp3"], filename="song.mp3")
    add = f"/api/jobs/{job_id}/outputs"
    assert sentence(api.post(add, json={"formats": ["mp3"]}), 409).startswith("This job has mp3 already")
    assert sentence(api.post(add, json={"formats": ["8k"]}), 422).startswith("Unknown format '8k'.")
    assert sentence(api.post(add, json={"formats": []}), 422).startswith("Choose at least one format")
    assert api.post(add, json={"formats": "mp3"}).status_code == 422
    assert (
        api.post("/api/jobs/0f6d7a4e-1111-4222-8333-444455556666/outputs", json={"formats": ["gif"]}).status_code == 404
    )
    run_all(env)  # a worker probed it: an audio-only original refuses the video formats, naming them
    detail = sentence(api.post(add, json={"formats": ["gif", "720p"]}), 422)
    assert detail == "This file has no video stream, so it cannot be converted to GIF or MP4 720p; choose MP3 instead."
    assert env.rt.jobs.job(job_id).formats == ["mp3"] and env.pending() == []


def test_an_addition_over_the_work_budget_is_refused(make_env: MakeEnv, clip: Path) -> None:
    env = make_env(max_job_work_minutes=0.0001)  # the thumbnail fits, 1080p and WebM do not
    job_id = env.job(clip, ["thumbnail"])
    run_all(env)
    with pytest.raises(Exception, match=r"a job may cost at most 0\. .*Nothing was added\.$"):
        env.service.add_outputs(job_id, ["1080p", "webm"])
    assert env.rt.jobs.job(job_id).formats == ["thumbnail"]
