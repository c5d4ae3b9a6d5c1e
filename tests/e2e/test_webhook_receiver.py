"""Webhooks a receiver on another host can use (issue 18, item 6), through the served app with real
workers and FFmpeg: absolute links it can download, an event type, id and timestamp in a body signed
as "<timestamp>.<body>", and the delivery's outcome in the job document."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.conftest import wait_for
from tests.e2e.conftest import served, wait_for_job
from tests.unit.test_webhooks import Receiver
from video_converter.config import Settings

pytestmark = pytest.mark.e2e

SECRET = "receiver-test-secret"


def readme_verify(secret: str, body: bytes, timestamp: str, signature: str, tolerance: int = 300) -> bool:
    """The README's receiver snippet, as a receiver would paste it."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False  # too old (or from the future): a replayed request
    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def create(client: TestClient, clip: Path, formats: list[str], callback: str) -> str:
    with clip.open("rb") as fh:
        response = client.post(
            "/api/jobs", files={"file": ("clip.mp4", fh)}, data={"formats": formats, "callback_url": callback}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["job_id"])


def delivered(client: TestClient, job_id: str, count: int = 1) -> dict[str, Any]:
    """The job document once its webhook's delivery number ``count`` is recorded as delivered."""
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(client.get(f"/api/jobs/{job_id}").json())
        hook = found.get("webhook") or {}
        return hook.get("state") == "delivered" and found["status"] in ("completed", "partial", "failed")

    wait_for(done, f"webhook {count} delivered", timeout=120)
    return found


@pytest.fixture
def settings_with_hooks(settings: Settings) -> Settings:
    return settings.model_copy(update={"workers": 2, "webhook_secret": SECRET, "webhook_allow_private": True})


def test_the_receiver_gets_a_signed_event_with_links_it_can_download(
    settings_with_hooks: Settings, make_clip: Any
) -> None:
    clip = make_clip(seconds=1, size="160x120")
    with Receiver() as receiver, served(settings_with_hooks) as (client, _):
        job_id = create(client, clip, ["360p", "thumbnail"], receiver.url)
        job = delivered(client, job_id)
        (request,) = receiver.requests
        headers, body = request["headers"], request["body"]
        assert readme_verify(SECRET, body, headers["X-Webhook-Timestamp"], headers["X-Webhook-Signature"])
        event = json.loads(body)
        assert event["type"] == headers["X-Webhook-Event"] == "job.completed"
        assert event["id"] == headers["X-Webhook-Id"] == job["webhook"]["event_id"]
        assert abs(event["timestamp"] - time.time()) < 120
        assert event["job_url"] == f"http://testserver/api/jobs/{job_id}"  # the creating request's origin
        assert "webhook" not in event["job"]
        for output in event["job"]["outputs"]:
            url = urlsplit(output["download_url"])
            assert (url.scheme, url.netloc) == ("http", "testserver") and url.path.startswith("/files/")
            download = client.get(output["download_url"])  # absolute: usable from another host
            assert download.status_code == 200 and len(download.content) == output["size_bytes"]
        assert job["webhook"] | {"at": None} == {
            "state": "delivered",
            "attempts": 1,
            "result": "HTTP 204",
            "at": None,
            "event_id": event["id"],
            "created_at": job["webhook"]["created_at"],
        }


def test_public_url_makes_the_links_and_a_retried_output_sends_a_new_event(
    settings_with_hooks: Settings, make_clip: Any
) -> None:
    clip = make_clip(seconds=1, size="160x120")
    settings = settings_with_hooks.model_copy(update={"public_url": "https://video.example.com"})
    with Receiver() as receiver, served(settings) as (client, rt):
        job_id = create(client, clip, ["thumbnail", "mp3"], receiver.url)
        delivered(client, job_id)
        first = json.loads(receiver.requests[0]["body"])
        assert first["job_url"] == f"https://video.example.com/api/jobs/{job_id}"
        assert all(o["download_url"].startswith("https://video.example.com/files/") for o in first["job"]["outputs"])
        # The job again, after a retry: once it is finished again, a new event.
        rt.jobs.save_output(job_id, rt.jobs.output(job_id, "mp3").failed("Failed on purpose by the test."))
        assert client.post(f"/api/jobs/{job_id}/outputs/mp3/retry").status_code == 202
        wait_for(lambda: len(receiver.requests) == 2, "the second event", timeout=120)
        second = json.loads(receiver.requests[1]["body"])
        assert second["id"] != first["id"] and second["type"] == "job.completed"
        assert wait_for_job(client, job_id)["status"] == "completed"
