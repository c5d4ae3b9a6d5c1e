"""An app with real workers (threads running real FFmpeg) behind FastAPI's TestClient."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from video_converter.config import Settings
from video_converter.runtime import Runtime, build_runtime
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


@contextmanager
def served(settings: Settings) -> Iterator[tuple[TestClient, Runtime]]:
    """The app with real worker threads over a runtime built from ``settings`` (both yielded, so a test
    can look into the stores); all stopped after."""
    rt = build_runtime(settings)
    stop = threading.Event()
    threads = start_workers(rt, stop)
    try:
        with TestClient(create_app(rt)) as test_client:
            yield test_client, rt
    finally:
        stop_workers(threads, stop)
        rt.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with served(settings.model_copy(update={"workers": 2})) as (test_client, _):
        yield test_client
