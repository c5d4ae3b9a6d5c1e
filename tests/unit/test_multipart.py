"""Multipart uploads in local mode through the API (TestClient): begin, part URLs, signed part PUTs
streamed to disk, the list a client resumes from, completion (probed, as any upload), abort, expiry and
the janitor; and the one-request ticket beside it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import ClipFactory
from video_converter import keys, multipart
from video_converter.config import Settings
from video_converter.model import utcnow
from video_converter.multipart import MIB, MultipartRecord, plan_parts, purge_abandoned, record_key
from video_converter.runtime import Runtime, build_runtime
from video_converter.storage import LocalStorage

SMALL_PART = 32 * 1024


@pytest.fixture
def app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Runtime]]:
    monkeypatch.setattr(multipart, "MIN_PART", SMALL_PART)  # a small clip in several parts
    rt = build_runtime(settings)
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        yield client, rt
    rt.close()


@pytest.fixture
def clip(make_clip: ClipFactory) -> bytes:
    data = make_clip("clip.mp4", seconds=2.0, size="320x240").read_bytes()
    assert len(data) > 3 * SMALL_PART
    return data


def begin(client: TestClient, data: bytes, name: str = "holiday.mp4") -> dict[str, Any]:
    response = client.post("/api/uploads", json={"filename": name, "size": len(data), "content_type": "video/mp4"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def chunk(data: bytes, ticket: dict[str, Any], number: int) -> bytes:
    size = ticket["part_size"]
    return data[(number - 1) * size : number * size]


def send(client: TestClient, data: bytes, ticket: dict[str, Any], numbers: list[int]) -> dict[int, str]:
    urls = client.post(f"/api/uploads/{ticket['upload_id']}/parts", json={"numbers": numbers})
    assert urls.status_code == 200, urls.text
    etags = {}
    for part in urls.json()["parts"]:
        assert part["method"] == "PUT"
        put = client.put(part["url"], content=chunk(data, ticket, part["number"]))
        assert put.status_code == 200, put.text
        etags[part["number"]] = put.headers["etag"]
    return etags


def complete(client: TestClient, upload_id: str, etags: dict[int, str]) -> Any:
    parts = [{"number": n, "etag": e} for n, e in sorted(etags.items())]
    return client.post(f"/api/uploads/{upload_id}/complete", json={"parts": parts})


def test_plan_parts() -> None:
    assert plan_parts(1) == (8 * MIB, 1)
    assert plan_parts(2 * 1024**3) == (8 * MIB, 256)
    part, count = plan_parts(50 * 1000**3)  # 50 GB: about 1,000 parts of whole MiB
    assert 8 * MIB < part <= 64 * MIB and part % MIB == 0 and count <= 1000
    assert plan_parts(625 * 1024**3) == (64 * MIB, 10_000)


def test_a_multipart_upload_becomes_a_job(app: tuple[TestClient, Runtime], clip: bytes) -> None:
    client, rt = app
    ticket = begin(client, clip)
    parts = ticket["parts"]
    assert ticket["part_size"] == SMALL_PART and parts == -(-len(clip) // SMALL_PART)
    etags = send(client, clip, ticket, list(range(1, parts + 1)))
    view = client.get(f"/api/uploads/{ticket['upload_id']}").json()
    assert view["state"] == "uploading"
    assert [(p["number"], p["etag"]) for p in view["received"]] == sorted(etags.items())
    assert sum(p["size"] for p in view["received"]) == len(clip)
    done = complete(client, ticket["upload_id"], etags)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "complete"
    assert rt.uploads.get_bytes(keys.source_key(ticket["upload_id"])) == clip
    assert complete(client, ticket["upload_id"], etags).status_code == 200  # a retry of a lost answer
    job = client.post("/api/jobs", json={"upload_id": ticket["upload_id"], "formats": ["thumbnail"]})
    assert job.status_code == 201, job.text
    assert job.json()["filename"] == "holiday.mp4"  # named when the upload began


def test_a_resumed_upload_sends_only_the_missing_parts(app: tuple[TestClient, Runtime], clip: bytes) -> None:
    client, _ = app
    ticket = begin(client, clip)
    etags = send(client, clip, ticket, [1, 3])
    received = {p["number"]: p["etag"] for p in client.get(f"/api/uploads/{ticket['upload_id']}").json()["received"]}
    assert received == etags
    missing = [n for n in range(1, ticket["parts"] + 1) if n not in received]
    incomplete = complete(client, ticket["upload_id"], {**etags, **{n: '"x"' for n in missing}})
    assert incomplete.status_code == 422 and "Part 2 has not arrived" in incomplete.json()["detail"]
    etags |= send(client, clip, ticket, missing)
    assert complete(client, ticket["upload_id"], etags).status_code == 200


def test_a_part_of_the_wrong_size_is_refused(app: tuple[TestClient, Runtime], clip: bytes) -> None:
    client, _ = app
    ticket = begin(client, clip)
    first = send(client, clip, ticket, [1])
    url = client.post(f"/api/uploads/{ticket['upload_id']}/parts", json={"numbers": [1]}).json()["parts"][0]["url"]
    short = client.put(url, content=b"x" * 100)
    assert short.status_code == 422 and "this one says 100" in short.json()["detail"]
    long = client.put(url, content=b"x" * (SMALL_PART + 1))
    assert long.status_code == 422 and "this one says" in long.json()["detail"]
    received = client.get(f"/api/uploads/{ticket['upload_id']}").json()["received"]
    assert [(p["number"], p["etag"]) for p in received] == list(first.items())  # refused before a byte
    # Without a Content-Length (chunked), the size is found out at the end: the part is then missing.
    cut = client.put(url, content=iter([b"x" * 100]))
    assert cut.status_code == 422 and "only 100 arrived" in cut.json()["detail"]
    more = client.put(url, content=iter([b"x" * SMALL_PART, b"y"]))
    assert more.status_code == 422
    assert client.get(f"/api/uploads/{ticket['upload_id']}").json()["received"] == []


def test_part_urls_are_signed_for_their_part(app: tuple[TestClient, Runtime], clip: bytes) -> None:
    client, _ = app
    ticket = begin(client, clip)
    url = client.post(f"/api/uploads/{ticket['upload_id']}/parts", json={"numbers": [2]}).json()["parts"][0]["url"]
    forged = url.replace("part=2", "part=1")
    assert client.put(forged, content=chunk(clip, ticket, 1)).status_code == 403
    assert client.put(url.replace("signature=", "signature=0"), content=b"x").status_code == 403


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"filename": "a.mp4", "size": 0}, 422),
        ({"filename": "", "size": 10}, 422),
        ({"filename": "a.mp4", "size": "many"}, 422),
        ({"filename": "a.mp4", "size": 5 * 1024**4}, 413),
    ],
)
def test_bad_requests_to_begin_are_sentences(
    app: tuple[TestClient, Runtime], body: dict[str, Any], status: int
) -> None:
    response = app[0].post("/api/uploads", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"].endswith(".")


def test_bad_part_numbers_and_unknown_uploads(app: tuple[TestClient, Runtime], clip: bytes) -> None:
    client, _ = app
    ticket = begin(client, clip)
    for numbers in ([], [0], [ticket["parts"] + 1], list(range(1, 102))):
        answer = client.post(f"/api/uploads/{ticket['upload_id']}/parts", json={"numbers": numbers})
        assert answer.status_code == 422, numbers
    unknown = "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11"
    for answer in (
        client.get(f"/api/uploads/{unknown}"),
        client.post(f"/api/uploads/{unknown}/parts", json={"numbers": [1]}),
        client.delete(f"/api/uploads/{unknown}"),
        client.get("/api/uploads/not-an-id"),
    ):
        assert answer.status_code == 404


def test_abort_drops_the_parts(app: tuple[TestClient, Runtime], clip: bytes) -> None:
    client, rt = app
    ticket = begin(client, clip)
    send(client, clip, ticket, [1])
    assert isinstance(rt.uploads, LocalStorage)
    assert rt.uploads.unfinished_multipart()
    assert client.delete(f"/api/uploads/{ticket['upload_id']}").status_code == 204
    assert rt.uploads.unfinished_multipart() == []
    assert client.get(f"/api/uploads/{ticket['upload_id']}").status_code == 404
    job = client.post("/api/jobs", json={"upload_id": ticket["upload_id"], "formats": ["mp3"], "filename": "a.mp4"})
    assert job.status_code == 422


def test_a_completed_upload_that_is_not_media_is_refused_and_deleted(app: tuple[TestClient, Runtime]) -> None:
    client, rt = app
    data = b"not a video " * 20_000
    ticket = begin(client, data, "notes.mp4")
    etags = send(client, data, ticket, list(range(1, ticket["parts"] + 1)))
    refused = complete(client, ticket["upload_id"], etags)
    assert refused.status_code == 422, refused.text
    assert rt.uploads.size(keys.source_key(ticket["upload_id"])) is None


def test_an_expired_upload_takes_no_parts_and_the_janitor_drops_it(
    app: tuple[TestClient, Runtime], clip: bytes
) -> None:
    client, rt = app
    ticket = begin(client, clip)
    send(client, clip, ticket, [1])
    record = MultipartRecord.model_validate_json(rt.uploads.get_bytes(record_key(ticket["upload_id"])))
    past = record.model_copy(update={"expires_at": utcnow() - timedelta(seconds=1)})
    rt.uploads.put_bytes(record_key(ticket["upload_id"]), past.model_dump_json().encode())
    expired = client.post(f"/api/uploads/{ticket['upload_id']}/parts", json={"numbers": [2]})
    assert expired.status_code == 404 and "expired" in expired.json()["detail"]
    assert purge_abandoned(rt) == []  # recent activity: kept until MULTIPART_TTL after its last part
    assert purge_abandoned(rt, now=time.time() + rt.settings.multipart_ttl + 1) == [ticket["upload_id"]]
    assert isinstance(rt.uploads, LocalStorage) and rt.uploads.unfinished_multipart() == []
    assert rt.uploads.size(record_key(ticket["upload_id"])) is None


def test_the_one_request_ticket_still_works(app: tuple[TestClient, Runtime], clip: bytes, tmp_path: Path) -> None:
    client, _ = app
    for body in (None, {}, {"filename": "x.mp4"}):
        ticket = client.post("/api/uploads", json=body) if body is not None else client.post("/api/uploads")
        assert ticket.status_code == 201 and "fields" in ticket.json()
    stored = client.post(ticket.json()["url"], files={"file": ("clip.mp4", clip, "video/mp4")})
    assert stored.status_code == 204, stored.text
    job = client.post(
        "/api/jobs", json={"upload_id": ticket.json()["upload_id"], "filename": "clip.mp4", "formats": ["mp3"]}
    )
    assert job.status_code == 201, job.text
