"""Errors that are right (issue 18, item 2): each output's error names that output; an audio-only source
is refused at creation where the API has the file, and fails its video outputs at once where it has not
(AWS); a file that is not media gets one plain sentence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import Env, make_clip_file
from video_converter.config import Settings
from video_converter.conversion import NOT_CONVERTED, NOT_MEDIA
from video_converter.outcome import Action
from video_converter.queues import SqliteQueue
from video_converter.runtime import Runtime, build_runtime


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip_file(tmp_path_factory.mktemp("clips") / "song.mp3", seconds=1, video=False)


def no_video(label: str) -> str:
    return f"The source has no video stream, so it cannot be converted to {label}."


def test_each_rendition_of_a_group_names_itself(env: Env, song: Path) -> None:
    """The MP4 sizes share one message: each failed one says its own size, not the group's first."""
    job_id = env.job(song, ["1080p", "720p", "480p"], filename="song.mp3")
    (group,) = env.take()
    assert env.deliver(group) is Action.ACK
    view = env.view(job_id)
    assert [(o["format"], o["status"], o["error"]) for o in view["outputs"]] == [
        ("1080p", "failed", no_video("MP4 1080p")),
        ("720p", "failed", no_video("MP4 720p")),
        ("480p", "failed", no_video("MP4 480p")),
    ]


def test_where_the_api_cannot_probe_video_outputs_fail_with_the_first_probe(env: Env, song: Path) -> None:
    """On AWS the API never reads the upload: the first message probed (here the MP3's) fails the
    waiting video outputs at once, each naming itself, instead of after their turn in the queue."""
    assert not env.rt.probe_uploads
    job_id = env.job(song, ["720p", "webm", "mp3", "gif", "thumbnail"], filename="song.mp3")
    messages = {w.formats: w for w in env.take()}
    assert env.deliver(messages[("mp3",)]) is Action.ACK
    states = {o["format"]: (o["status"], o["error"]) for o in env.view(job_id)["outputs"]}
    assert states == {
        "720p": ("failed", no_video("MP4 720p")),
        "webm": ("failed", no_video("WebM")),
        "mp3": ("completed", None),
        "gif": ("failed", no_video("GIF")),
        "thumbnail": ("failed", no_video("Thumbnail")),
    }
    assert env.view(job_id)["status"] == "partial"
    attempts_before = env.record(job_id, "gif").attempts
    for formats, work in messages.items():  # their messages come later and find the work done
        if formats != ("mp3",):
            assert env.outcome(work).reason == "already done"
    assert env.record(job_id, "gif").attempts == attempts_before


def test_an_unreadable_original_fails_every_waiting_output_at_once(env: Env) -> None:
    job_id = env.job(b"meeting notes, not a video\n" * 200, ["720p", "mp3", "gif"], filename="notes.txt")
    first, *_ = env.take()
    assert env.deliver(first) is Action.ACK
    view = env.view(job_id)
    assert view["status"] == "failed" and view["error"] == NOT_MEDIA
    assert [o["error"] for o in view["outputs"]] == [NOT_CONVERTED] * 3
    assert env.notices() == []  # no callback_url: nothing to send


def test_a_plain_sentence_is_one_sentence_without_ffmpegs_words() -> None:
    assert NOT_MEDIA.count(".") == 1 and "FFmpeg" not in NOT_MEDIA and "exit code" not in NOT_MEDIA


# --- where the API has the file (local mode) ---------------------------------------------------------


@pytest.fixture
def local(settings: Settings) -> Iterator[tuple[TestClient, Runtime]]:
    rt = build_runtime(settings.model_copy(update={"workers": 0}))
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        yield client, rt
    rt.close()


def _upload(client: TestClient, data: bytes, name: str) -> str:
    ticket = client.post("/api/uploads").json()
    response = client.post(ticket["url"], data=ticket["fields"], files={"file": (name, data)})
    assert response.status_code == 204, response.text
    return str(ticket["upload_id"])


def _create(client: TestClient, upload_id: str, formats: list[str]) -> Any:
    return client.post("/api/jobs", json={"upload_id": upload_id, "filename": "song.mp3", "formats": formats})


def test_an_audio_only_file_refuses_video_formats_at_creation_naming_them(
    local: tuple[TestClient, Runtime], song: Path
) -> None:
    client, rt = local
    upload_id = _upload(client, song.read_bytes(), "song.mp3")
    refused = _create(client, upload_id, ["720p", "mp3", "gif", "webm"])
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "This file has no video stream, so it cannot be converted to MP4 720p, GIF or WebM; "
        "choose MP3 instead."
    }
    assert not rt.jobs.exists(upload_id) and rt.jobs.find_output(upload_id, "720p") is None
    assert isinstance(rt.queue, SqliteQueue) and rt.queue.counts()["visible"] == 0
    # The file is fine media: it stays, and the same upload makes a job of the formats it can give.
    created = _create(client, upload_id, ["mp3"])
    assert created.status_code == 201, created.text
    assert [o["format"] for o in created.json()["outputs"]] == ["mp3"]


def test_a_multipart_upload_refused_for_its_formats_keeps_nothing(
    local: tuple[TestClient, Runtime], song: Path, settings: Settings
) -> None:
    client, rt = local
    response = client.post(
        "/api/jobs", data={"formats": ["thumbnail"]}, files={"file": ("song.mp3", song.read_bytes(), "audio/mpeg")}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("This file has no video stream, so it cannot be converted to Thumbnail;")
    uploads = Path(settings.data_dir) / "uploads"
    assert [p for p in uploads.rglob("source") if p.is_file()] == []  # no one knows its id: deleted
    assert isinstance(rt.queue, SqliteQueue) and rt.queue.counts()["visible"] == 0


def test_a_silent_video_refuses_mp3_naming_it(local: tuple[TestClient, Runtime], tmp_path: Path) -> None:
    client, _ = local
    silent = make_clip_file(tmp_path / "silent.mp4", seconds=0.5, size="64x48", audio=False)
    refused = _create(client, _upload(client, silent.read_bytes(), "silent.mp4"), ["360p", "mp3"])
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("This file has no audio track, so it cannot be converted to MP3;")


def test_a_text_file_is_refused_with_the_plain_sentence(local: tuple[TestClient, Runtime]) -> None:
    client, _ = local
    ticket = client.post("/api/uploads").json()
    response = client.post(ticket["url"], data=ticket["fields"], files={"file": ("notes.txt", b"notes\n" * 500)})
    assert response.status_code == 422 and response.json() == {"detail": NOT_MEDIA}
