"""Several processes on one DATA_DIR, started the way the README says: ``WORKERS=0 make run`` for the API
and ``make worker`` beside it. A process that starts must never touch another's upload spool or
conversion files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_clip_file
from tests.e2e.server import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FINISHED = {"completed", "failed", "partial"}


class MakeProcess:
    """``make <target>`` in the repository, in its own process group so a stop reaches the whole tree."""

    def __init__(self, target: str, log: Path, **env: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["make", "--no-print-directory", "-C", str(ROOT), target],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None, f"exited early:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log.read_text()}"
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM to what make runs (as a service manager would); make then exits with its status."""
        if self.proc.poll() is None:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            for pid in children:
                os.kill(int(pid), signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


def wait_for_job(url: str, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json())["status"] not in FINISHED:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_a_worker_started_beside_the_api_breaks_neither_an_upload_nor_a_conversion(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"DATA_DIR": str(data), "SECRET_KEY": "e2e-secret", "HOST": "127.0.0.1", "PORT": str(port)}
    converting = make_clip_file(tmp_path / "converting.mp4", seconds=12, size="640x360")
    big = make_clip_file(  # about 20 MB of noisy frames: Starlette spools it to disk in the API's scratch folder
        tmp_path / "big.mp4",
        seconds=4,
        size="640x360",
        audio=False,
        extra=("-vf", "noise=alls=30:allf=t", "-crf", "10"),
    )
    assert big.stat().st_size > 15 * 1024 * 1024

    api = MakeProcess("run", tmp_path / "api.log", WORKERS="0", **env)
    first = MakeProcess("worker", tmp_path / "worker-1.log", WORKERS="1", **env)
    second: MakeProcess | None = None
    try:
        api.wait_for_log("serving on")
        first.wait_for_log("worker(s) polling")
        with converting.open("rb") as fh:
            created = httpx.post(
                f"{url}/api/jobs", files={"file": ("converting.mp4", fh)}, data={"formats": ["webm"]}, timeout=30
            )
        assert created.status_code == 201, created.text
        converting_id = created.json()["job_id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/api/jobs/{converting_id}").json()["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.1)

        # While the first worker converts, a second one starts: it must leave the API's upload spool and
        # the first worker's files alone. Then a 20 MB upload goes through the API's spool on disk.
        second = MakeProcess("worker", tmp_path / "worker-2.log", WORKERS="1", **env)
        second.wait_for_log("worker(s) polling")
        assert httpx.get(f"{url}/api/jobs/{converting_id}").json()["status"] == "processing"
        with big.open("rb") as fh:
            response = httpx.post(
                f"{url}/api/jobs", files={"file": ("big.mp4", fh)}, data={"formats": ["thumbnail", "360p"]}, timeout=120
            )
        assert response.status_code == 201, response.text
        uploaded = wait_for_job(url, response.json()["job_id"])
        assert uploaded["status"] == "completed", uploaded
        converted = wait_for_job(url, converting_id)
        assert converted["status"] == "completed", converted
        assert converted["outputs"][0]["attempts"] == 1  # never lost its files and started again
    finally:
        codes = [p.stop() for p in (second, first, api) if p is not None]
    assert codes == [0] * len(codes), [p.log.read_text() for p in (api, first)]
    assert list((data / "tmp").iterdir()) == []  # every process removed its own scratch folder
