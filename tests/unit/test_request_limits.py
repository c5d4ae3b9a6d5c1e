"""api.request_limits: bodies limited while they are read (413), headers bounded (431), quiet disconnects."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import MemoryParts, memory_runtime
from video_converter.config import Settings
from video_converter.jobs import JobService
from video_converter.runtime import build_runtime
from video_converter.storage import MemoryStorage

BOUNDARY = "limits-test-boundary"


@pytest.fixture
def small(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_body_bytes": 1024, "max_upload_bytes": 200_000, "max_request_headers": 30})


@pytest.fixture
def app_and_uploads(small: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, MemoryStorage]]:
    rt = memory_runtime(small, tmp_path / "scratch")
    assert isinstance(rt.uploads, MemoryStorage)
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        yield client, rt.uploads
    rt.close()


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    """A generator body: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def multipart(payload: bytes, formats: str = "720p") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="formats"\r\n\r\n{formats}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def test_json_over_the_limit_is_refused_before_reading(app_and_uploads: tuple[TestClient, MemoryStorage]) -> None:
    client, _ = app_and_uploads
    body = json.dumps({"upload_id": "x", "filename": "a" * 5000, "formats": ["720p"]})
    response = client.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than the 1.0 KiB limit."}
    assert response.headers["x-content-type-options"] == "nosniff"  # refusals carry the security headers


def test_chunked_json_flood_is_cut_while_reading(app_and_uploads: tuple[TestClient, MemoryStorage]) -> None:
    client, _ = app_and_uploads
    sent = 0

    def flood() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"upload_id": "'
        for _ in range(10_000):  # 40 MB if it were all read
            sent += 4096
            yield b"a" * 4096

    response = client.post("/api/jobs", content=flood(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == "The request body is larger than the 1.0 KiB limit."


def test_urlencoded_and_unknown_bodies_have_the_same_limit(app_and_uploads: tuple[TestClient, MemoryStorage]) -> None:
    client, _ = app_and_uploads
    urlencoded = {"content-type": "application/x-www-form-urlencoded"}
    form = client.post("/api/jobs", content=b"formats=" + b"x" * 5000, headers=urlencoded)
    assert form.status_code == 413  # Content-Length said so: refused before reading
    other = client.post("/api/uploads", content=b"x" * 2000)
    assert other.status_code == 413


def test_small_bodies_pass(app_and_uploads: tuple[TestClient, MemoryStorage]) -> None:
    client, _ = app_and_uploads
    response = client.post("/api/jobs", json={"upload_id": "not-an-id", "filename": "a.mp4", "formats": ["720p"]})
    assert response.status_code == 422  # read and answered by the route, not by the limit
    assert client.get("/health").status_code == 200


def test_multipart_upload_may_be_large_but_not_over_the_upload_limit(
    app_and_uploads: tuple[TestClient, MemoryStorage],
) -> None:
    client, uploads = app_and_uploads
    content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    ok = client.post("/api/jobs", content=chunks(multipart(b"v" * 150_000)), headers=content_type)
    assert ok.status_code == 201, ok.text  # bigger than the JSON limit: uploads have their own
    stored = set(uploads.objects)
    too_big = client.post("/api/jobs", content=chunks(multipart(b"v" * 2_000_000)), headers=content_type)
    assert too_big.status_code == 413
    assert too_big.json() == {"detail": "The file is larger than the 195.3 KiB limit."}
    assert set(uploads.objects) == stored


def test_multipart_elsewhere_gets_the_small_limit(app_and_uploads: tuple[TestClient, MemoryStorage]) -> None:
    client, _ = app_and_uploads
    content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    response = client.post("/api/uploads", content=multipart(b"v" * 5000), headers=content_type)
    assert response.status_code == 413


def test_too_many_headers(app_and_uploads: tuple[TestClient, MemoryStorage]) -> None:
    client, _ = app_and_uploads
    response = client.get("/health", headers={f"x-h{n}": "1" for n in range(40)})
    assert response.status_code == 431
    assert response.json() == {"detail": "The request has more than 30 headers."}


def test_oversized_headers(app_and_uploads: tuple[TestClient, MemoryStorage]) -> None:
    client, _ = app_and_uploads
    response = client.get("/health", headers={"x-big": "a" * 40_000})
    assert response.status_code == 431
    assert response.json() == {"detail": "The request headers are larger than the 32.0 KiB limit."}


def test_chunked_local_upload_over_the_limit_leaves_nothing(small: Settings) -> None:
    rt = build_runtime(small)
    client = TestClient(create_app(rt), raise_server_exceptions=False)
    url = JobService(rt).uploads.ticket().url
    content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    response = client.post(url, content=chunks(multipart(b"v" * 2_000_000)), headers=content_type)
    assert response.status_code == 413
    uploads = Path(small.data_dir) / "uploads"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))


def test_a_client_that_goes_away_mid_upload_is_one_quiet_line(
    small: Settings, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Driven at the ASGI level: the body stops half-way with http.disconnect, as uvicorn reports it."""
    rt = memory_runtime(small, tmp_path / "scratch")
    app = create_app(rt)
    body = multipart(b"v" * 100_000)
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": body[:30_000], "more_body": True},
        {"type": "http.request", "body": body[30_000:60_000], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/jobs",
        "raw_path": b"/api/jobs",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))
    assert sent == []  # nobody to answer
    records = [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("api")]
    assert [r.getMessage() for r in records] == ["client went away during POST /api/jobs after 60000 bytes"]
    assert not any(r.exc_info for r in caplog.records)
    assert MemoryParts(rt).uploads.objects == {}
