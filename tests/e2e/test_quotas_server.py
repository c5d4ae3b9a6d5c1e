"""Quotas and the rate limit over HTTP against the real server (``video-converter serve``, AUTH=keys):
each limit answers 429 with Retry-After and a sentence, owners are counted apart, and a place frees
when a job is deleted or when a worker (another process, started later) finishes it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ClipFactory
from tests.e2e.server import Server
from video_converter.apikeys import KeyStore
from video_converter.config import Settings
from video_converter.runtime import build_runtime

pytestmark = pytest.mark.e2e


def make_keys(data_dir: Path) -> dict[str, str]:
    """Two keys in the server's stores: alice may have 2 unfinished jobs (her key's own limit), bob the
    default of QUOTA_ACTIVE_JOBS (1)."""
    rt = build_runtime(Settings(data_dir=data_dir, workers=0, secret_key="e2e-secret", _env_file=None))
    store = KeyStore(rt.converted)
    keys = {"alice": store.create("alice", max_concurrent_jobs=2)[1], "bob": store.create("bob")[1]}
    rt.close()
    return keys


def post_job(server: Server, key: str, clip: Path) -> httpx.Response:
    with clip.open("rb") as fh:
        return httpx.post(
            f"{server.url}/api/jobs",
            headers={"Authorization": f"Bearer {key}"},
            data={"formats": "thumbnail"},
            files={"file": (clip.name, fh, "video/mp4")},
            timeout=60,
        )


def refused(response: httpx.Response) -> tuple[str, int]:
    assert response.status_code == 429, response.text
    detail = response.json()["detail"]
    assert detail[:1].isupper() and detail.endswith(".")
    return detail, int(response.headers["retry-after"])


def me(server: Server, key: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_finished(server: Server, key: str, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        if job.json()["status"] in ("completed", "failed", "partial"):
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_quotas_and_rate_limit_over_http(tmp_path: Path, make_clip: ClipFactory) -> None:
    data = tmp_path / "data"
    keys = make_keys(data)
    clip = make_clip(seconds=1.0, size="160x120")
    with Server(
        data, workers=0, AUTH="keys", QUOTA_ACTIVE_JOBS="1", RATE_LIMIT_PER_MINUTE="8"
    ) as server:  # no worker: jobs stay unfinished
        alice, bob = keys["alice"], keys["bob"]
        first = post_job(server, alice, clip).json()["job_id"]
        assert post_job(server, alice, clip).status_code == 201
        detail, retry = refused(post_job(server, alice, clip))
        assert "2 unfinished jobs, the most you may have at once (2)" in detail and retry == 30
        assert me(server, alice)["usage"]["active_jobs"] == 2 and me(server, alice)["limits"]["active_jobs"] == 2

        assert post_job(server, bob, clip).status_code == 201  # bob's usage is his own
        refused(post_job(server, bob, clip))
        assert me(server, bob)["limits"]["active_jobs"] == 1

        deleted = httpx.delete(f"{server.url}/api/jobs/{first}", headers={"Authorization": f"Bearer {alice}"})
        assert deleted.status_code == 204
        assert post_job(server, alice, clip).status_code == 201  # deleting freed her place

        # Six creations counted against this address so far, refused ones too.
        for key in (bob, alice):  # both at their limit: no ticket for a job they could not create
            ticket = httpx.post(f"{server.url}/api/uploads", headers={"Authorization": f"Bearer {key}"})
            assert "unfinished jobs" in refused(ticket)[0]
        # The ninth from this address is refused by the rate limit, whoever asks.
        detail, retry = refused(httpx.post(f"{server.url}/api/uploads", headers={"Authorization": f"Bearer {alice}"}))
        assert detail.startswith("Too many new jobs and upload tickets from your address: at most 8 a minute.")
        assert 1 <= retry <= 60

    # A worker in a new server process finishes bob's job; the place it held frees.
    with Server(data, workers=1, AUTH="keys", QUOTA_ACTIVE_JOBS="1") as server:
        listing = httpx.get(f"{server.url}/api/jobs", headers={"Authorization": f"Bearer {bob}"}).json()
        (job,) = listing["jobs"]
        wait_finished(server, bob, job["job_id"])
        assert me(server, bob)["usage"]["active_jobs"] == 0
        assert post_job(server, bob, clip).status_code == 201
