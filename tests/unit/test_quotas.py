"""Quotas per owner and the rate limit per address: each answers 429 with Retry-After and a sentence
saying which limit and when it frees, and frees when it should (TestClient over the memory stores)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.rate_limit import RateLimiter
from tests.conftest import memory_runtime
from tests.quota_race import admitted
from video_converter.config import Settings
from video_converter.errors import OverLimit
from video_converter.jobs import JobService
from video_converter.model import OutputRecord, OutputStatus, SourceInfo
from video_converter.owners import EVERYONE, AuthMode, Owner, OwnerKind, Quota
from video_converter.queues import MemoryQueue
from video_converter.quotas import ANONYMOUS_DEFAULTS, DAY, KEY_DEFAULTS, Quotas, quota_of, usage_key
from video_converter.runtime import Runtime

ALICE = Owner(id="key:alice", kind=OwnerKind.KEY, name="alice")
SESSION = Owner(id="session:" + "s" * 20, kind=OwnerKind.SESSION, name="visitor")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def app_with(settings: Settings, tmp_path: Path, clock: Clock, **limits: Any) -> tuple[TestClient, Runtime]:
    rt = memory_runtime(settings.model_copy(update=limits), tmp_path / "scratch")
    app = create_app(rt)
    app.state.quotas = Quotas(rt.jobs, rt.settings, clock=clock)
    app.state.rate_limiter.clock = clock
    return TestClient(app, raise_server_exceptions=False), rt


@pytest.fixture
def make_app(settings: Settings, tmp_path: Path, clock: Clock) -> Iterator[Any]:
    made: list[tuple[TestClient, Runtime]] = []

    def make(**limits: Any) -> tuple[TestClient, Runtime]:
        made.append(app_with(settings, tmp_path, clock, **limits))
        return made[-1]

    yield make
    for client, rt in made:
        client.close()
        rt.close()


def post_job(client: TestClient, data: bytes = b"data", formats: str = "720p") -> Any:
    return client.post("/api/jobs", data={"formats": formats}, files={"file": ("a.mp4", data, "video/mp4")})


def refused(response: Any) -> tuple[str, int]:
    """The sentence and Retry-After of a 429."""
    assert response.status_code == 429, response.text
    detail = response.json()["detail"]
    assert detail[:1].isupper() and detail.endswith(".")
    return detail, int(response.headers["retry-after"])


def finish(rt: Runtime, job_id: str, size: int = 0, source: SourceInfo | None = None) -> None:
    """Every output of the job completed, as a worker writes it."""
    for format_id in rt.jobs.job(job_id).formats:
        record = OutputRecord(format=format_id, status=OutputStatus.COMPLETED, key=f"{job_id}/x", size_bytes=size)
        rt.jobs.save_output(job_id, record.model_copy(update={"source": source}))


def probed(rt: Runtime, job_id: str, source: SourceInfo) -> None:
    for format_id in rt.jobs.job(job_id).formats:
        rt.jobs.save_output(job_id, OutputRecord(format=format_id, status=OutputStatus.PROCESSING, source=source))


# --- the limits of each owner --------------------------------------------------------------------------------


def test_defaults_by_mode_and_kind(settings: Settings) -> None:
    none = settings.model_copy(update={"auth": AuthMode.NONE})
    keys = settings.model_copy(update={"auth": AuthMode.KEYS})
    assert quota_of(EVERYONE, none) == Quota()  # one person on a laptop: no limit unless set
    assert quota_of(ALICE, keys) == KEY_DEFAULTS
    assert quota_of(SESSION, keys) == ANONYMOUS_DEFAULTS
    assert (ANONYMOUS_DEFAULTS.active_jobs or 0) < (KEY_DEFAULTS.active_jobs or 0)
    set_ = keys.model_copy(update={"quota_active_jobs": 3, "quota_storage_bytes": 0, "anonymous_quota_active_jobs": 1})
    assert quota_of(ALICE, set_) == Quota(3, KEY_DEFAULTS.source_minutes_per_day, None)  # 0: no limit
    assert quota_of(SESSION, set_).active_jobs == 1
    assert quota_of(EVERYONE, none.model_copy(update={"quota_active_jobs": 2})).active_jobs == 2


def test_a_keys_own_limits_override_the_settings(settings: Settings) -> None:
    keys = settings.model_copy(update={"auth": AuthMode.KEYS, "quota_active_jobs": 3})
    own = Owner(id="key:bob", kind=OwnerKind.KEY, name="bob", quota=Quota(active_jobs=7, source_minutes_per_day=0))
    assert quota_of(own, keys) == Quota(7, None, KEY_DEFAULTS.storage_bytes)


# --- unfinished jobs -----------------------------------------------------------------------------------------


def test_unfinished_jobs_at_once(make_app: Any) -> None:
    client, rt = make_app(quota_active_jobs=2)
    first, second = (post_job(client).json()["job_id"] for _ in range(2))
    detail, retry = refused(post_job(client))
    assert "2 unfinished jobs" in detail and "as soon as one of them finishes" in detail and retry == 30
    # A ticket is refused too, so no one uploads a file only to have its job refused.
    assert refused(client.post("/api/uploads"))[0] == detail
    finish(rt, first)  # a worker made its last output final
    assert post_job(client).status_code == 201
    refused(post_job(client))
    assert client.delete(f"/api/jobs/{second}").status_code == 204  # deleting frees a place at once
    assert post_job(client).status_code == 201


def test_a_failed_creation_gives_its_place_back(make_app: Any) -> None:
    client, rt = make_app(quota_active_jobs=1)
    assert post_job(client, data=b"").status_code == 422  # empty: refused after the place was taken
    assert post_job(client, formats="avi").status_code == 422
    assert post_job(client).status_code == 201
    usage = rt.jobs.store.get_bytes(usage_key(EVERYONE.id))
    assert b"pending" not in usage  # the reservation became the job's entry


def test_a_deleted_or_expired_job_frees_its_place_whoever_deleted_it(make_app: Any, clock: Clock) -> None:
    client, rt = make_app(quota_active_jobs=1, retention_days=7)
    job_id = post_job(client).json()["job_id"]
    refused(post_job(client))
    rt.jobs.delete_job(job_id)  # not through this API task (another task, the CLI)
    second = post_job(client)
    assert second.status_code == 201
    finish(rt, second.json()["job_id"])
    clock.now += 8 * DAY  # past the retention: deleted by the store's lifecycle
    assert client.get("/api/me").json()["usage"] == {"active_jobs": 0, "source_minutes_today": 0, "storage_bytes": 0}


def test_concurrent_creations_on_many_tasks_take_exactly_the_places_left(make_app: Any, settings: Settings) -> None:
    """Two API tasks over one store: of 12 creations at once exactly the limit's get in."""
    _, rt = make_app()
    tasks = [Quotas(rt.jobs, settings.model_copy(update={"quota_active_jobs": 4})) for _ in range(2)]

    assert admitted(tasks, EVERYONE, 12, threads=6) == 4
    assert tasks[0].usage(EVERYONE).unfinished() == 4


# --- work per day --------------------------------------------------------------------------------------------


def test_work_per_day_counts_the_budgets_minutes_and_frees_after_24_hours(make_app: Any, clock: Clock) -> None:
    client, rt = make_app(quota_source_minutes_per_day=10)
    source = SourceInfo(duration=600.0, width=1920, height=1080, frame_rate=30.0, video_codec="h264")
    job_id = post_job(client, formats="1080p").json()["job_id"]
    probed(rt, job_id, source)  # 10 min of 1080p30, plus its decode: 11 min of work
    me = client.get("/api/me").json()
    assert me["usage"]["source_minutes_today"] == 11.0 and me["usage"]["active_jobs"] == 1
    clock.now += 3600
    detail, retry = refused(post_job(client))
    assert "11 of your 10 minutes of work a day" in detail and "1080p at 30 fps" in detail
    assert retry == 23 * 3600 and "at 08:00 UTC, in 23 h," in detail
    finish(rt, job_id, source=source)  # finishing does not give the day's work back
    refused(post_job(client))
    clock.now += 23 * 3600
    assert post_job(client).status_code == 201


# --- bytes stored --------------------------------------------------------------------------------------------


def test_bytes_stored_count_originals_and_outputs(make_app: Any, clock: Clock) -> None:
    client, rt = make_app(quota_storage_bytes=100, retention_days=7)
    job_id = post_job(client, data=b"x" * 40).json()["job_id"]
    finish(rt, job_id, size=70)  # 40 + 70 > 100
    detail, retry = refused(post_job(client, data=b"y"))
    assert detail.startswith("Your storage is full: your jobs keep 110 bytes of your 100 bytes.")
    assert "your oldest job expires" in detail and retry == 7 * DAY
    assert client.get("/api/me").json()["usage"]["storage_bytes"] == 110
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert post_job(client, data=b"y").status_code == 201


def test_an_upload_that_would_pass_the_storage_is_refused_with_its_size(make_app: Any) -> None:
    client, rt = make_app(quota_storage_bytes=100)
    ticket = client.post("/api/uploads").json()
    rt.uploads.put_bytes(f"{ticket['upload_id']}/source", b"z" * 150)
    body = {"upload_id": ticket["upload_id"], "filename": "a.mp4", "formats": ["720p"]}
    detail, _ = refused(client.post("/api/jobs", json=body))
    assert "with this upload (150 bytes) your jobs would keep 150 bytes of your 100 bytes" in detail


# --- GET /api/me ---------------------------------------------------------------------------------------------


def test_me_without_limits(make_app: Any) -> None:
    client, _ = make_app()
    assert client.get("/api/me").json() == {
        "owner": {"id": "everyone", "kind": "everyone", "name": "everyone"},
        "limits": dict.fromkeys(["active_jobs", "source_minutes_per_day", "storage_bytes", "requests_per_minute"]),
        "usage": None,
    }


def test_me_with_limits(make_app: Any) -> None:
    client, _ = make_app(quota_active_jobs=3, quota_storage_bytes=1000, rate_limit_per_minute=5)
    post_job(client, data=b"x" * 10)
    me = client.get("/api/me").json()
    limits = {"active_jobs": 3, "source_minutes_per_day": None, "storage_bytes": 1000, "requests_per_minute": 5}
    assert me["limits"] == limits
    assert me["usage"] == {"active_jobs": 1, "source_minutes_today": 0.0, "storage_bytes": 10}


def test_owners_are_counted_apart(mem_runtime: Runtime, settings: Settings) -> None:
    quotas = Quotas(mem_runtime.jobs, settings.model_copy(update={"auth": AuthMode.KEYS}))
    for _ in range(ANONYMOUS_DEFAULTS.active_jobs or 0):
        quotas.reserve(SESSION)
    with pytest.raises(OverLimit, match="unfinished jobs"):
        quotas.reserve(SESSION)
    quotas.reserve(ALICE)  # another owner's usage is its own
    assert quotas.usage(ALICE).unfinished() == 1


# --- the rate limit per address ------------------------------------------------------------------------------


def test_rate_limit_per_address(make_app: Any, clock: Clock) -> None:
    client, _ = make_app(rate_limit_per_minute=3)
    assert client.post("/api/uploads").status_code == 201
    assert post_job(client).status_code == 201
    clock.now += 20
    assert client.post("/api/uploads").status_code == 201
    detail, retry = refused(client.post("/api/uploads"))
    assert detail == (
        "Too many new jobs and upload tickets from your address: at most 3 a minute. The next one is accepted in 40 s."
    )
    assert retry == 40
    refused(post_job(client))
    assert client.get("/api/jobs/" + "0" * 32).status_code != 429  # reads are not counted
    clock.now += 40
    assert client.post("/api/uploads").status_code == 201


def test_rate_limit_behind_a_load_balancer_counts_the_address_it_saw(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    client, _ = make_app(rate_limit_per_minute=1)
    alb = {"x-forwarded-for": "203.0.113.9"}
    assert client.post("/api/uploads", headers=alb).status_code == 201
    # A client writing its own X-Forwarded-For only puts addresses in front of the one the ALB appends.
    refused(client.post("/api/uploads", headers={"x-forwarded-for": "198.51.100.1, 203.0.113.9"}))
    assert client.post("/api/uploads", headers={"x-forwarded-for": "203.0.113.10"}).status_code == 201


def test_rate_limiter_forgets_idle_addresses(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("api.rate_limit.MAX_ADDRESSES", 10)
    limiter = RateLimiter(1, clock=clock)
    for n in range(10):
        limiter.hit(f"10.0.0.{n}")
    clock.now += 61
    limiter.hit("10.0.1.1")
    assert len(limiter._hits) == 1


# --- the owner reaches the queue -----------------------------------------------------------------------------


def test_a_jobs_messages_carry_its_owner_for_fair_scheduling(mem_runtime: Runtime) -> None:
    service = JobService(mem_runtime)
    job_id = service.uploads.store_new(io.BytesIO(b"data"), ALICE)
    service.create_job(job_id, "a.mp4", ["720p", "gif"], owner=ALICE)
    assert isinstance(mem_runtime.queue, MemoryQueue)
    entries = list(mem_runtime.queue.entries.values())
    assert [(e.group, e.owner) for e in entries] == [(job_id, ALICE.id), (job_id, ALICE.id)]
