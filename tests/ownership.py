"""Checks shared by the owner tests (unit, e2e against the server, AWS through moto): another owner's
job must answer every job route exactly as an unknown one, and take as long."""

from __future__ import annotations

import statistics
import time
import uuid

import httpx

# Every job route (the others' new routes join this list as they come).
ROUTES = [
    ("GET", ""),
    ("HEAD", ""),
    ("GET", "/outputs/mp3"),
    ("GET", "/archive"),
    ("POST", "/share"),
    ("POST", "/outputs/mp3/retry"),
    ("POST", "/outputs"),
    ("GET", "/stream/master.m3u8"),
    ("GET", "/storyboard.vtt"),
    ("DELETE", ""),
]
_VARYING = {"date", "set-cookie"}


def assert_looks_unknown(client: httpx.Client, job_id: str) -> None:
    """Every job route answers for ``job_id`` exactly as for a job that does not exist: status, bytes and
    headers (but the date)."""
    unknown = str(uuid.uuid4())
    for method, suffix in ROUTES:
        theirs = client.request(method, f"/api/jobs/{job_id}{suffix}")
        nobody = client.request(method, f"/api/jobs/{unknown}{suffix}")
        assert theirs.status_code == nobody.status_code == 404, (method, suffix)
        assert theirs.content == nobody.content
        assert _stable(theirs.headers) == _stable(nobody.headers)


def _stable(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in _VARYING}


def assert_same_timing(client: httpx.Client, foreign: str, tries: int = 100) -> None:
    """GETs of another owner's job and of unknown jobs, interleaved (a busy machine slows both alike):
    their medians within 25 % (+0.5 ms)."""
    times: dict[str, list[float]] = {"theirs": [], "nobody": []}
    for _ in range(tries):
        for name, job_id in (("theirs", foreign), ("nobody", str(uuid.uuid4()))):
            start = time.perf_counter()
            assert client.get(f"/api/jobs/{job_id}").status_code == 404
            times[name].append((time.perf_counter() - start) * 1000)
    theirs, nobody = statistics.median(times["theirs"]), statistics.median(times["nobody"])
    assert abs(theirs - nobody) <= 0.25 * max(theirs, nobody) + 0.5, (theirs, nobody)
