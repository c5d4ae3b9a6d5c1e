"""Quotas on AWS (moto): the usage record lives in the converted bucket and is changed with S3's
conditional writes, so API tasks share one count; each limit answers 429 with Retry-After and a
sentence, and frees when the job finishes or is deleted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.aws.conftest import AwsResources, settings_for
from tests.quota_race import admitted
from video_converter.apikeys import KeyStore
from video_converter.model import OutputRecord, OutputStatus
from video_converter.quotas import Quotas, usage_key
from video_converter.runtime import Runtime, build_runtime
from video_converter.storage.s3 import S3Storage

pytestmark = pytest.mark.aws


@pytest.fixture
def tasks(aws: AwsResources, tmp_path: Path) -> Iterator[list[tuple[TestClient, Runtime]]]:
    """Two API tasks over the same buckets and queue, AUTH=keys (the AWS default)."""
    made = []
    for n in range(2):
        settings = settings_for(aws, tmp_path / f"task{n}", quota_active_jobs=2, quota_storage_bytes=1000)
        rt = build_runtime(settings)
        assert isinstance(rt.converted, S3Storage)
        made.append((TestClient(create_app(rt), raise_server_exceptions=False), rt))
    yield made
    for client, rt in made:
        client.close()
        rt.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(client: TestClient, rt: Runtime, key: str, size: int = 10) -> Any:
    """A ticket, the original put in the upload bucket (as the browser does), and the job."""
    ticket = client.post("/api/uploads", headers=bearer(key))
    if ticket.status_code != 201:
        return ticket
    upload_id = ticket.json()["upload_id"]
    rt.uploads.put_bytes(f"{upload_id}/source", b"v" * size)
    body = {"upload_id": upload_id, "filename": "a.mp4", "formats": ["720p"]}
    return client.post("/api/jobs", json=body, headers=bearer(key))


def refused(response: Any) -> str:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    detail: str = response.json()["detail"]
    return detail


def test_tasks_share_one_count_and_it_frees(tasks: list[tuple[TestClient, Runtime]]) -> None:
    (one, rt), (two, _) = tasks
    key = KeyStore(rt.converted).create("alice")[1]
    first = create(one, rt, key).json()["job_id"]
    assert create(two, rt, key).status_code == 201  # the other task sees the first job
    assert "2 unfinished jobs" in refused(create(one, rt, key))
    assert "2 unfinished jobs" in refused(create(two, rt, key))
    assert rt.converted.size(usage_key(two.get("/api/me", headers=bearer(key)).json()["owner"]["id"]))

    # A worker (Lambda) finishes the first job: both tasks see the place free.
    done = OutputRecord(format="720p", status=OutputStatus.COMPLETED, key=f"{first}/a_720p.mp4", size_bytes=900)
    rt.jobs.save_output(first, done)
    assert two.get("/api/me", headers=bearer(key)).json()["usage"] == {
        "active_jobs": 1,
        "source_minutes_today": 0.0,
        "storage_bytes": 920,
    }
    detail = refused(create(one, rt, key, size=100))  # 920 + 100 > 1000
    assert detail.startswith("Your storage is full: with this upload (100 bytes) your jobs would keep 1020 bytes")
    assert two.delete(f"/api/jobs/{first}", headers=bearer(key)).status_code == 204
    assert create(one, rt, key, size=100).status_code == 201


def test_concurrent_creations_on_two_tasks_take_exactly_the_places_left(
    tasks: list[tuple[TestClient, Runtime]],
) -> None:
    """S3's If-Match decides: of 8 reservations at once on two tasks exactly the limit's get in."""
    rt, rt2 = (task[1] for task in tasks)
    owner = KeyStore(rt.converted).authenticate(KeyStore(rt.converted).create("bob")[1])
    assert owner is not None
    quotas = [Quotas(rt.jobs, rt.settings), Quotas(rt2.jobs, rt2.settings)]

    assert admitted(quotas, owner, 8) == 2
