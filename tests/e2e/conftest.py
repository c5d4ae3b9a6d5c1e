"""An app with real workers (threads running real FFmpeg) behind FastAPI's TestClient."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from video_converter.config import Settings
from video_converter.runtime import build_runtime
from video_converter.worker import start_workers, stop_workers

FINISHED = {"completed", "failed", "partial"}


def wait_for_job(client: TestClient, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job did not finish in {timeout} s: {job}")
        time.sleep(0.2)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    rt = build_runtime(settings.model_copy(update={"workers": 2}))
    stop = threading.Event()
    threads = start_workers(rt, stop)
    with TestClient(create_app(rt)) as test_client:
        yield test_client
    stop_workers(threads, stop)
    rt.close()
