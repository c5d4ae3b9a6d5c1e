"""API error paths and local-mode file routes, through FastAPI's TestClient."""

from __future__ import annotations

import errno
import shutil
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import FakeBinary, MemoryParts, make_clip_file, memory_runtime
from video_converter import keys
from video_converter.config import Settings
from video_converter.conversion import NOT_MEDIA
from video_converter.ffmpeg import FFmpeg
from video_converter.model import OutputRecord, OutputStatus
from video_converter.queues import SqliteQueue
from video_converter.runtime import Runtime, build_runtime, sweep_scratch
from video_converter.storage import LocalStorage
from video_converter.uploads import Uploads

FORMAT_IDS = ["1080p", "720p", "480p", "360p", "webm", "mp3", "gif", "thumbnail"]


def app_over(rt: Runtime) -> tuple[TestClient, Runtime]:
    return TestClient(create_app(rt), raise_server_exceptions=False), rt


@pytest.fixture
def memory_app(mem_runtime: Runtime) -> Iterator[tuple[TestClient, Runtime]]:
    client, rt = app_over(mem_runtime)
    with client:
        yield client, rt


@pytest.fixture
def client(memory_app: tuple[TestClient, Runtime]) -> TestClient:
    return memory_app[0]


@pytest.fixture
def local(settings: Settings) -> Iterator[tuple[TestClient, Runtime]]:
    client, rt = app_over(build_runtime(settings))
    with client:
        yield client, rt
    rt.close()


def assert_sentence(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail[:1].isupper() and detail.rstrip().endswith((".", ")"))
    return detail


def post_job(client: TestClient, formats: list[str] | None = None, data: bytes = b"data", name: str = "a.mp4"):
    form = {"formats": formats} if formats is not None else {}
    return client.post("/api/jobs", data=form, files={"file": (name, data, "video/mp4")})


# --- basics -----------------------------------------------------------------------------------------


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_formats(client: TestClient) -> None:
    formats = client.get("/api/formats").json()
    assert [f["id"] for f in formats] == [*FORMAT_IDS, "hls", "storyboard"]
    assert {f["kind"] for f in formats} == {"video", "audio", "image"}


def test_index_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "720p" in response.text


def test_job_page(client: TestClient) -> None:
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 200
    for bad in ["nope", str(uuid.uuid1()), "..."]:
        response = client.get(f"/jobs/{bad}")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
    assert client.get("/jobs/..%2F..%2Fetc").status_code == 404


def test_unknown_route_and_method(client: TestClient) -> None:
    assert assert_sentence(client.get("/api/nothing"), 404) == "Nothing here: check the address."
    assert assert_sentence(client.delete("/api/formats"), 405) == "This address does not accept that method."


# --- POST /api/jobs ----------------------------------------------------------------------------------


def test_create_job_multipart(memory_app: tuple[TestClient, Runtime]) -> None:
    client, rt = memory_app
    response = post_job(client, ["720p,mp3", "gif"])
    assert response.status_code == 201, response.text
    job = response.json()
    assert [o["format"] for o in job["outputs"]] == ["720p", "mp3", "gif"]
    assert len(MemoryParts(rt).queue.pending()) == 3
    assert client.get(f"/api/jobs/{job['job_id']}").json() == job


def test_create_job_without_file(client: TestClient) -> None:
    response = client.post("/api/jobs", data={"formats": "720p"}, files={"other": ("a.mp4", b"x")})
    assert assert_sentence(response, 422) == "Attach the video as a file field named 'file'."


def test_create_job_without_formats(client: TestClient) -> None:
    assert assert_sentence(post_job(client), 422).startswith("Choose at least one format: 1080p")


def test_create_job_unknown_format(client: TestClient) -> None:
    assert "'avi'" in assert_sentence(post_job(client, ["avi"]), 422)


def test_create_job_empty_file(memory_app: tuple[TestClient, Runtime]) -> None:
    client, rt = memory_app
    assert assert_sentence(post_job(client, ["720p"], data=b""), 422) == "The uploaded file is empty."
    assert MemoryParts(rt).uploads.objects == {}


def test_create_job_too_large(settings: Settings, tmp_path: Path) -> None:
    client, rt = app_over(memory_runtime(settings.model_copy(update={"max_upload_bytes": 1000}), tmp_path / "s"))
    detail = assert_sentence(post_job(client, ["720p"], data=b"x" * 5000), 413)
    assert detail == "The file is larger than the 1000 bytes limit."
    assert MemoryParts(rt).uploads.objects == {}


def test_create_job_wrong_content_type(client: TestClient) -> None:
    detail = assert_sentence(client.post("/api/jobs", content=b"x", headers={"content-type": "text/plain"}), 422)
    assert "multipart/form-data" in detail


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"upload_id": str(uuid.uuid4())},
        {"upload_id": str(uuid.uuid4()), "filename": "a.mp4", "formats": "720p"},
        {"upload_id": 5, "filename": ["x"], "formats": [1]},
    ],
)
def test_create_job_json_missing_fields(client: TestClient, body: dict[str, object]) -> None:
    detail = assert_sentence(client.post("/api/jobs", json=body), 422)
    assert detail.startswith("Invalid request: ")


def test_create_job_json_missing_fields_names_them(client: TestClient) -> None:
    detail = assert_sentence(client.post("/api/jobs", json={"filename": "a.mp4"}), 422)
    assert "formats" in detail and "filename" not in detail
    detail = assert_sentence(client.post("/api/jobs", json={"filename": "a.mp4", "formats": ["mp3"]}), 422)
    assert "upload_id" in detail and "source_url" in detail  # one or the other


def test_create_job_malformed_json(client: TestClient) -> None:
    response = client.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert assert_sentence(response, 422).startswith("Invalid request")


def test_create_job_json_unknown_upload(client: TestClient) -> None:
    body = {"upload_id": str(uuid.uuid4()), "filename": "a.mp4", "formats": ["720p"]}
    assert "Nothing was uploaded" in assert_sentence(client.post("/api/jobs", json=body), 422)
    body["upload_id"] = "../../etc/passwd"
    assert assert_sentence(client.post("/api/jobs", json=body), 422) == "Unknown upload id."


# --- GET jobs and outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "nope", "...", str(uuid.uuid4()).upper()])
def test_unknown_job(client: TestClient, job_id: str) -> None:
    assert assert_sentence(client.get(f"/api/jobs/{job_id}"), 404).startswith("No such job")
    assert assert_sentence(client.get(f"/api/jobs/{job_id}/outputs/720p"), 404).startswith("No such job")


def test_job_id_with_trailing_newline_is_refused(client: TestClient) -> None:
    job_id = f"{uuid.uuid4()}\n"
    in_url = job_id.replace("\n", "%0A")
    assert client.get(f"/api/jobs/{in_url}").status_code == 404
    assert client.get(f"/api/jobs/{in_url}/outputs/720p").status_code == 404
    assert client.get(f"/jobs/{in_url}").status_code == 404
    body = {"upload_id": job_id, "filename": "a.mp4", "formats": ["720p"]}
    assert assert_sentence(client.post("/api/jobs", json=body), 422) == "Unknown upload id."


def test_output_not_ready_is_409(client: TestClient) -> None:
    job = post_job(client, ["720p", "mp3"]).json()
    detail = assert_sentence(client.get(f"/api/jobs/{job['job_id']}/outputs/720p", follow_redirects=False), 409)
    assert detail == "The 720p output is not ready yet (queued)."
    assert assert_sentence(client.get(f"/api/jobs/{job['job_id']}/outputs/gif"), 404)


def test_unexpected_error_is_a_json_500(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Uploads, "ticket", broken)
    detail = assert_sentence(client.post("/api/uploads"), 500)
    assert "disk on fire" not in detail


# --- local mode: signed downloads and uploads ---------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real, tiny clip: in local mode the API probes what it receives and refuses what is not media."""
    return make_clip_file(tmp_path_factory.mktemp("clip") / "tiny.mp4", seconds=0.5, size="64x64").read_bytes()


def complete_output(rt: Runtime, client: TestClient, media: bytes, data: bytes = b"MP4DATA") -> tuple[str, str]:
    job = post_job(client, ["720p"], data=media, name="Holiday Clip.mov").json()
    job_id = job["job_id"]
    key = keys.output_key(job_id, "Holiday_Clip", "720p", "mp4")
    rt.converted.put_bytes(key, data)
    rt.jobs.save_output(
        job_id, OutputRecord(format="720p", status=OutputStatus.COMPLETED, key=key, size_bytes=len(data))
    )
    return job_id, key


def split(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_local_download_flow(local: tuple[TestClient, Runtime], media: bytes) -> None:
    client, rt = local
    job_id, _ = complete_output(rt, client, media)
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "completed"
    url = job["outputs"][0]["download_url"]
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == b"MP4DATA"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Holiday_Clip_720p.mp4\"; filename*=UTF-8''Holiday_Clip_720p.mp4"
    )
    assert response.headers["content-type"] == "video/mp4"

    redirect = client.get(f"/api/jobs/{job_id}/outputs/720p", follow_redirects=False)
    assert redirect.status_code == 307
    assert client.get(redirect.headers["location"]).content == b"MP4DATA"


def test_local_download_refuses_tampering(local: tuple[TestClient, Runtime], media: bytes) -> None:
    client, rt = local
    job_id, _ = complete_output(rt, client, media)
    path, q = split(client.get(f"/api/jobs/{job_id}").json()["outputs"][0]["download_url"])
    bad_sig = q["signature"][:-2] + ("00" if q["signature"][-2:] != "00" else "11")
    for query in (
        {**q, "signature": bad_sig},
        {**q, "filename": "evil.exe"},
        {**q, "expires": str(int(q["expires"]) + 10)},
    ):
        assert assert_sentence(client.get(f"{path}?{urlencode(query)}"), 403).startswith("This link has expired")
    other = path.replace("720p", "1080p")
    assert assert_sentence(client.get(f"{other}?{urlencode(q)}"), 403)
    # the same signed path in the other store is not the same URL
    assert assert_sentence(client.get(f"{path.replace('converted', 'uploads')}?{urlencode(q)}"), 403)
    missing = {k: v for k, v in q.items() if k != "signature"}
    assert assert_sentence(client.get(f"{path}?{urlencode(missing)}"), 422)


def test_local_download_expired(local: tuple[TestClient, Runtime], media: bytes) -> None:
    client, rt = local
    _, key = complete_output(rt, client, media)
    url = rt.converted.download_url(key, "x.mp4", "video/mp4", -10)
    assert assert_sentence(client.get(url), 403)


def test_local_download_of_deleted_file(local: tuple[TestClient, Runtime], media: bytes) -> None:
    client, rt = local
    _, key = complete_output(rt, client, media)
    url = rt.converted.download_url(key, "x.mp4", "video/mp4", 60)
    rt.converted.delete(key)
    assert assert_sentence(client.get(url), 404) == "This file no longer exists."


def test_local_download_traversal(local: tuple[TestClient, Runtime], settings: Settings) -> None:
    client, _ = local
    (Path(settings.data_dir) / "secret.txt").write_text("s")
    for key in ("..%2Fsecret.txt", "a/..%2F..%2Fsecret.txt", "%2Fetc%2Fpasswd"):
        response = client.get(f"/files/converted/{key}?filename=x&expires=9999999999&signature=abc")
        assert response.status_code in (403, 404), (key, response.status_code)
        assert response.content != b"s"


def test_files_route_is_absent_with_memory_stores(client: TestClient) -> None:
    response = client.get("/files/converted/a/b?filename=x&expires=9999999999&signature=abc")
    assert assert_sentence(response, 404)


def test_local_upload_ticket_flow(local: tuple[TestClient, Runtime], media: bytes) -> None:
    client, rt = local
    ticket = client.post("/api/uploads")
    assert ticket.status_code == 201
    t = ticket.json()
    assert t["url"].startswith(f"/files/uploads/{t['upload_id']}/source?")
    uploaded = client.post(t["url"], data=t["fields"], files={"file": ("clip.mov", media)})
    assert uploaded.status_code == 204, uploaded.text
    assert rt.uploads.get_bytes(keys.source_key(t["upload_id"])) == media

    body = {"upload_id": t["upload_id"], "filename": "clip.mov", "formats": ["720p", "mp3", "720p"]}
    created = client.post("/api/jobs", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["job_id"] == t["upload_id"]
    assert isinstance(rt.queue, SqliteQueue)
    assert rt.queue.counts() == {"visible": 2, "in_flight": 0, "dead": 0}
    again = client.post("/api/jobs", json=body)
    assert "already exists" in assert_sentence(again, 409)


def _upload(client: TestClient, ticket: dict[str, Any], data: bytes) -> Any:
    return client.post(ticket["url"], data=ticket["fields"], files={"file": ("clip.mov", data)})


def test_concurrent_creations_from_one_upload_give_one_201(local: tuple[TestClient, Runtime], media: bytes) -> None:
    client, rt = local
    ticket = client.post("/api/uploads").json()
    assert _upload(client, ticket, media).status_code == 204
    body = {"upload_id": ticket["upload_id"], "filename": "clip.mov", "formats": ["720p", "mp3"]}
    start = threading.Barrier(20)

    def create(_: int) -> Any:
        start.wait()
        return client.post("/api/jobs", json=body)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(create, range(20)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    assert {assert_sentence(r, 409) for r in responses if r.status_code == 409} == {
        "A job already exists for this upload."
    }
    assert isinstance(rt.queue, SqliteQueue)
    assert rt.queue.counts() == {"visible": 2, "in_flight": 0, "dead": 0}  # one set of messages


def test_a_ticket_is_spent_once_its_job_exists(local: tuple[TestClient, Runtime], media: bytes) -> None:
    client, rt = local
    ticket = client.post("/api/uploads").json()
    assert _upload(client, ticket, media).status_code == 204
    body = {"upload_id": ticket["upload_id"], "filename": "clip.mov", "formats": ["mp3"]}
    assert client.post("/api/jobs", json=body).status_code == 201
    again = _upload(client, ticket, media + b"\0" * 100_000)
    assert assert_sentence(again, 409) == "This upload link was already used; ask for a new one."
    assert rt.uploads.get_bytes(keys.source_key(ticket["upload_id"])) == media
    assert rt.jobs.job(ticket["upload_id"]).source_size == len(media)


def test_uploads_racing_job_creations_store_one_original(local: tuple[TestClient, Runtime], media: bytes) -> None:
    """Uploads with one ticket and creations from it, all at once: one upload is stored, at most one job
    is created, and the job's original is that upload, whatever the order."""
    client, rt = local
    ticket = client.post("/api/uploads").json()
    datas = [media + bytes([n]) * n * 1000 for n in range(10)]  # each upload a different size
    body = {"upload_id": ticket["upload_id"], "filename": "clip.mov", "formats": ["mp3"]}
    start = threading.Barrier(20)

    def upload(n: int) -> Any:
        start.wait()
        return _upload(client, ticket, datas[n])

    def create(_: int) -> Any:
        start.wait()
        return client.post("/api/jobs", json=body)

    with ThreadPoolExecutor(20) as pool:
        uploads = [pool.submit(upload, n) for n in range(10)]
        creations = [pool.submit(create, n) for n in range(10)]
    upload_codes = [f.result().status_code for f in uploads]
    assert sorted(upload_codes) == [204] + [409] * 9
    stored = datas[upload_codes.index(204)]
    assert rt.uploads.get_bytes(keys.source_key(ticket["upload_id"])) == stored
    created = [f.result() for f in creations]
    assert {r.status_code for r in created} <= {201, 409, 422}  # 422: nothing was stored yet
    assert [r.status_code for r in created].count(201) <= 1
    if not rt.jobs.exists(ticket["upload_id"]):
        assert client.post("/api/jobs", json=body).status_code == 201
    assert rt.jobs.job(ticket["upload_id"]).source_size == len(stored)
    assert assert_sentence(_upload(client, ticket, media), 409)
    assert rt.uploads.get_bytes(keys.source_key(ticket["upload_id"])) == stored


def test_a_local_upload_is_probed_before_it_counts_as_received(local: tuple[TestClient, Runtime]) -> None:
    """Unprobed bytes used to sit in the upload store until the retention sweep: the upload route now
    refuses what is not media (422, the sentence a job would get) and deletes it at once."""
    client, rt = local
    ticket = client.post("/api/uploads").json()
    refused = _upload(client, ticket, b"#!/bin/sh\necho not a video\n" * 100)
    detail = assert_sentence(refused, 422)
    assert detail == NOT_MEDIA  # one plain sentence, not FFmpeg's words
    assert rt.uploads.size(keys.source_key(ticket["upload_id"])) is None
    assert not rt.jobs.exists(ticket["upload_id"])
    # The ticket stays spent: a re-upload could race a job creation still probing the first file.
    again = _upload(client, ticket, b"again")
    assert assert_sentence(again, 409) == "This upload link was already used; ask for a new one."


def test_local_upload_refuses_tampered_ticket(local: tuple[TestClient, Runtime]) -> None:
    client, rt = local
    t = client.post("/api/uploads").json()
    path, q = split(t["url"])
    for query in ({**q, "max_bytes": str(int(q["max_bytes"]) * 2)}, {**q, "signature": "0" * 64}):
        response = client.post(f"{path}?{urlencode(query)}", files={"file": ("a", b"x")})
        assert assert_sentence(response, 403)
    other = path.replace(t["upload_id"], str(uuid.uuid4()))
    assert assert_sentence(client.post(f"{other}?{urlencode(q)}", files={"file": ("a", b"x")}), 403)
    assert rt.uploads.size(keys.source_key(t["upload_id"])) is None


def test_local_upload_expired_ticket(local: tuple[TestClient, Runtime]) -> None:
    client, rt = local
    upload_id = str(uuid.uuid4())
    url, _ = rt.uploads.upload_form(keys.source_key(upload_id), 1000, -5)
    assert assert_sentence(client.post(url, files={"file": ("a", b"x")}), 403)


def test_local_upload_without_file_field(local: tuple[TestClient, Runtime]) -> None:
    client, _ = local
    t = client.post("/api/uploads").json()
    response = client.post(t["url"], data={"file": "not a file"}, files={"other": ("a", b"x")})
    assert assert_sentence(response, 422) == "Attach the video as a file field named 'file'."


def test_local_upload_over_limit(settings: Settings) -> None:
    client, rt = app_over(build_runtime(settings.model_copy(update={"max_upload_bytes": 1000})))
    with client:
        t = client.post("/api/uploads").json()
        assert t["max_bytes"] == 1000
        response = client.post(t["url"], files={"file": ("big.mov", b"x" * 5000)})
        assert assert_sentence(response, 413) == "The file is larger than the 1000 bytes limit."
        assert rt.uploads.size(keys.source_key(t["upload_id"])) is None
        upload_dir = Path(settings.data_dir) / "uploads"
        assert not any(p.is_file() for p in upload_dir.rglob("*"))  # no partial file left behind


def test_local_upload_empty(local: tuple[TestClient, Runtime]) -> None:
    client, rt = local
    t = client.post("/api/uploads").json()
    response = client.post(t["url"], files={"file": ("empty.mov", b"")})
    assert assert_sentence(response, 422) == "The uploaded file is empty."
    assert rt.uploads.size(keys.source_key(t["upload_id"])) is None


def test_local_stores_are_local(local: tuple[TestClient, Runtime]) -> None:
    _, rt = local
    assert isinstance(rt.uploads, LocalStorage) and isinstance(rt.converted, LocalStorage)


def test_security_headers_on_pages_api_and_errors(client: TestClient) -> None:
    for response in (client.get("/"), client.get("/api/formats"), client.get("/api/jobs/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"  # job links are capabilities
        assert response.headers["x-frame-options"] == "DENY"


def test_local_mode_spools_uploads_in_its_scratch_folder_not_in_tmp(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    aws_like = memory_runtime(settings.model_copy(update={"backend": "aws"}), tmp_path / "s")
    aws_like.spool_uploads_in_scratch()
    assert tempfile.tempdir is None  # a container's /tmp is disk: left alone
    rt = build_runtime(settings)
    rt.spool_uploads_in_scratch()
    spool = Path(tempfile.gettempdir())
    assert spool == rt.scratch.path / "spool" and spool.is_dir()
    assert spool.is_relative_to(Path(settings.data_dir).resolve() / "tmp")
    rt.close()


def test_health_brings_back_a_removed_scratch_folder_and_uploads_work_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DATA_DIR/tmp removed under a running process every upload over the in-memory spool limit
    answered 500 while /health said 200: the check now recreates the folder (and its lock, so that no
    other process's sweep takes it for a dead one's), and says so when it cannot."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    rt = build_runtime(settings)
    rt.spool_uploads_in_scratch()
    raw = ("-c:v", "rawvideo", "-pix_fmt", "yuv420p")
    big = make_clip_file(Path(settings.data_dir).parent / "big.mkv", seconds=2, size="160x120", encoder=raw)
    assert big.stat().st_size > 1024 * 1024
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            shutil.rmtree(Path(settings.data_dir) / "tmp")
            assert client.get("/health").json() == {"status": "ok"}
            assert (rt.scratch.path / "spool").is_dir() and rt.scratch.lock.is_file()
            assert rt.scratch.path.name not in sweep_scratch(rt.scratch.path.parent)  # claimed again: alive
            assert post_job(client, ["mp3"], big.read_bytes()).status_code == 201
            shutil.rmtree(Path(settings.data_dir) / "tmp")
            with ThreadPoolExecutor(8) as pool:  # checks at once: one claims the lock again, none fails
                assert set(pool.map(lambda _: rt.health_problem(), range(8))) == {None}

            real = tempfile.TemporaryFile

            def refused(dir: Path) -> Any:
                if Path(dir).is_relative_to(rt.scratch.path):
                    raise OSError(errno.EACCES, "Permission denied")
                return real(dir=dir)

            monkeypatch.setattr("video_converter.runtime.tempfile.TemporaryFile", refused)
            assert client.get("/health").json() == {
                "status": "unhealthy",
                "detail": "The scratch folder cannot be written to (permission denied).",
            }
    finally:
        rt.close()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 503),
        (OSError(errno.EROFS, "Read-only file system"), 503),
        (OSError(errno.EIO, "EIO"), 500),
    ],
)
def test_a_full_or_read_only_data_folder_is_503_other_io_errors_500(
    memory_app: tuple[TestClient, Runtime], error: OSError, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rt = memory_app

    def failing_put(*args: object, **kwargs: object) -> int:
        raise error

    monkeypatch.setattr(rt.uploads, "put_stream", failing_put)
    response = post_job(client, ["720p"])
    assert response.status_code == status
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "No space" not in detail and "EIO" not in detail and "Read-only" not in detail
    if status == 503:
        assert response.headers["retry-after"] == "30"


def test_health_says_unhealthy_when_the_data_folder_takes_no_writes(
    local: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = local
    assert client.get("/health").json() == {"status": "ok"}

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("video_converter.runtime.tempfile.TemporaryFile", read_only)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unhealthy",
        "detail": "The data folder cannot be written to (read-only file system).",
    }


def test_health_says_unhealthy_when_the_disk_is_full(
    local: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = local
    monkeypatch.setattr("video_converter.runtime.shutil.disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 0))
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unhealthy",
        "detail": "The data folder's disk is full (under 64 MB free): uploads are refused and conversions wait "
        "for room.",
    }


def test_local_mode_refuses_what_is_not_media_at_once(local: tuple[TestClient, Runtime]) -> None:
    client, rt = local
    detail = assert_sentence(post_job(client, ["720p", "mp3"], data=b"just some notes\n" * 100, name="notes.mp4"), 422)
    assert detail == NOT_MEDIA
    assert str(rt.settings.data_dir) not in detail  # no server paths
    assert isinstance(rt.queue, SqliteQueue) and rt.queue.counts()["visible"] == 0
    assert not any(p.is_file() for p in (Path(rt.settings.data_dir) / "uploads").rglob("*"))  # nothing kept


@pytest.fixture
def bomb_app(settings: Settings, fake_binary: FakeBinary) -> Iterator[tuple[TestClient, Runtime]]:
    """Local mode over an FFmpeg whose ffprobe reports the issue's cost bomb, a 43.5 MB file of 3 h 59 min
    of static 8K at 60 fps (it prints the captured JSON; nothing is decoded), and whose ffmpeg only leaves
    a mark (``ffmpeg-was-called`` beside the data folder) if it is ever run."""
    marker = Path(settings.data_dir).parent / "ffmpeg-was-called"
    bomb = Path(__file__).parent / "data" / "probe_mp4_8k60_4h_static.json"
    ffmpeg = FFmpeg(ffmpeg=fake_binary(f"touch {marker}; exit 1"), ffprobe=fake_binary(f"cat {bomb}"))
    client, rt = app_over(build_runtime(settings, ffmpeg=ffmpeg))
    with client:
        yield client, rt
    rt.close()


def test_local_mode_refuses_the_cost_bomb_at_once_saying_what_would_fit(bomb_app: tuple[TestClient, Runtime]) -> None:
    client, rt = bomb_app
    detail = assert_sentence(post_job(client, FORMAT_IDS, data=b"\0" * 4096, name="static.mp4"), 422)
    assert detail.startswith("Converting this 3 h 59 min video (7680x4320 at 60 fps) to 1080p, 720p, 480p,")
    assert "about 2585 minutes of work" in detail and "a job may cost at most 600." in detail
    assert "What would fit: mp3, gif, thumbnail (5 min)" in detail
    assert detail.endswith("or all these formats for a video of at most 55 min. Nothing was converted.")
    assert isinstance(rt.queue, SqliteQueue) and rt.queue.counts()["visible"] == 0
    data = Path(rt.settings.data_dir)
    assert not any(p.is_file() for d in ("uploads", "converted") for p in (data / d).rglob("*"))  # nothing kept
    assert not (data.parent / "ffmpeg-was-called").exists()  # FFmpeg never ran


def test_what_the_refusal_offers_is_accepted(bomb_app: tuple[TestClient, Runtime]) -> None:
    client, rt = bomb_app
    offered = ["mp3", "gif", "thumbnail"]
    response = post_job(client, offered, data=b"\0" * 4096, name="static.mp4")
    assert response.status_code == 201, response.text
    assert isinstance(rt.queue, SqliteQueue) and rt.queue.counts()["visible"] > 0


def test_local_download_of_a_non_latin_name_has_an_ascii_fallback(local: tuple[TestClient, Runtime], media) -> None:
    """``curl -OJ`` reads only ``filename=``: it must be a sensible ASCII name with the extension."""
    client, rt = local
    job_id = post_job(client, ["720p"], data=media, name="отпуск 2026.mp4").json()["job_id"]
    key = keys.output_key(job_id, "video", "720p", "mp4")
    rt.converted.put_bytes(key, b"MP4")
    rt.jobs.save_output(job_id, OutputRecord(format="720p", status=OutputStatus.COMPLETED, key=key, size_bytes=3))
    response = client.get(client.get(f"/api/jobs/{job_id}").json()["outputs"][0]["download_url"])
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=\"otpusk_2026_720p.mp4\"; filename*=UTF-8''")
    assert disposition.endswith("%D0%BE%D1%82%D0%BF%D1%83%D1%81%D0%BA_2026_720p.mp4")


@pytest.mark.parametrize("path", ["/", "/health"])
def test_head_on_pages_and_health(client: TestClient, path: str) -> None:
    response = client.head(path)
    assert response.status_code == 200 and response.content == b""


def test_head_on_a_job(memory_app: tuple[TestClient, Runtime]) -> None:
    client, _ = memory_app
    job_id = post_job(client, ["720p"]).json()["job_id"]
    response = client.head(f"/api/jobs/{job_id}")
    assert response.status_code == 200 and response.content == b""
    assert client.head(f"/api/jobs/{uuid.uuid4()}").status_code == 404


def test_the_openapi_document_shows_the_response_schemas(client: TestClient) -> None:
    """What /docs renders: every JSON response has its model, so the contract lives in one place."""
    spec = client.get("/openapi.json").json()
    assert {"JobView", "OutputView", "FormatView", "UploadTicket", "Health", "SourceInfo"} <= set(
        spec["components"]["schemas"]
    )

    def schema(path: str, method: str, status: str) -> dict[str, Any]:
        content: dict[str, Any] = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
        return content["schema"]

    assert schema("/api/jobs/{job_id}", "get", "200") == {"$ref": "#/components/schemas/JobView"}
    assert schema("/api/jobs", "post", "201") == {"$ref": "#/components/schemas/JobView"}
    assert schema("/api/uploads", "post", "201")["anyOf"] == [
        {"$ref": "#/components/schemas/UploadTicket"},
        {"$ref": "#/components/schemas/MultipartTicket"},
    ]
    assert schema("/api/formats", "get", "200")["items"] == {"$ref": "#/components/schemas/FormatView"}
    output = spec["components"]["schemas"]["OutputView"]["properties"]
    assert {"status", "progress", "download_url", "segments", "note"} <= set(output)
