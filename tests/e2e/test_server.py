"""The served app as a process: clean stops, restarts that finish queued and interrupted work."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


def create_job(server: Server, clip: Path, formats: list[str]) -> str:
    with clip.open("rb") as fh:
        response = httpx.post(
            f"{server.url}/api/jobs",
            files={"file": (clip.name, fh, "video/mp4")},
            data={"formats": formats},
            timeout=30,
        )
    assert response.status_code == 201, response.text
    return response.json()["job_id"]


def job(server: Server, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()


def wait_until(server: Server, job_id: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (current := job(server, job_id))["status"] not in statuses:
        assert time.monotonic() < deadline, f"still {current['status']}: {current}"
        time.sleep(0.2)
    return current


def test_health_and_page(tmp_path):
    with Server(tmp_path / "data", workers=0) as server:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        page = httpx.get(server.url)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_queued_jobs_survive_a_restart(tmp_path, make_clip):
    data = tmp_path / "data"
    clip = make_clip(seconds=1)
    with Server(data, workers=0) as api_only:
        job_id = create_job(api_only, clip, ["360p", "thumbnail"])
        assert job(api_only, job_id)["status"] == "queued"
        assert api_only.stop() == 0
    with Server(data, workers=1) as server:
        assert wait_until(server, job_id, {"completed"})["status"] == "completed"


def test_sigterm_mid_conversion_stops_promptly_and_the_restart_finishes_it(tmp_path, make_clip):
    data = tmp_path / "data"
    clip = make_clip(seconds=20, size="640x360")
    server = Server(data, workers=1).start()
    job_id = create_job(server, clip, ["webm"])
    wait_until(server, job_id, {"processing"})
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    with Server(data, workers=0) as api_only:
        assert job(api_only, job_id)["status"] == "queued"  # handed back, not lost
    with Server(data, workers=1) as again:
        done = wait_until(again, job_id, {"completed", "failed"}, timeout=180)
    assert done["status"] == "completed", done


def test_a_killed_worker_is_retried_after_the_visibility_timeout(tmp_path, make_clip):
    data = tmp_path / "data"
    clip = make_clip(seconds=20, size="640x360")
    server = Server(data, workers=1, VISIBILITY_TIMEOUT="5").start()
    job_id = create_job(server, clip, ["webm"])
    wait_until(server, job_id, {"processing"})
    server.stop(signal.SIGKILL)
    with Server(data, workers=1, VISIBILITY_TIMEOUT="5") as again:
        done = wait_until(again, job_id, {"completed", "failed"}, timeout=180)
    assert done["status"] == "completed", done
    assert done["outputs"][0]["attempts"] == 2
