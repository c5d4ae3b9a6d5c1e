"""Owners in AWS mode (moto): keys read from the converted bucket, isolation between keys, revocation,
share links and sessions signed alike by two API tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.aws.conftest import AwsResources, settings_for
from tests.ownership import assert_looks_unknown, assert_same_timing
from video_converter.apikeys import KeyStore, record_key
from video_converter.auth import SIGNING_KEY
from video_converter.owners import AuthMode
from video_converter.runtime import Runtime, build_runtime

pytestmark = pytest.mark.aws


@pytest.fixture
def runtime(aws: AwsResources, tmp_path: Path) -> Iterator[Runtime]:
    settings = settings_for(aws, tmp_path, key_cache_seconds=0, anonymous=True)
    assert settings.auth_mode is AuthMode.KEYS  # the AWS default
    rt = build_runtime(settings)
    yield rt
    rt.close()


def client_for(rt: Runtime, key: str | None = None) -> TestClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return TestClient(create_app(rt), headers=headers, raise_server_exceptions=False)


def create_job(client: TestClient) -> str:
    response = client.post("/api/jobs", files={"file": ("a.mp4", b"\0" * 1024)}, data={"formats": "mp3"})
    assert response.status_code == 201, response.text
    return str(response.json()["job_id"])


def test_keys_live_in_the_converted_bucket_as_hashes(aws: AwsResources, runtime: Runtime) -> None:
    record, key = KeyStore(runtime.converted).create("ci")
    body = aws.s3.get_object(Bucket=aws.converted_bucket, Key=record_key(record.key_id))["Body"].read()
    assert key.encode() not in body and record.sha256.encode() in body
    with client_for(runtime) as anonymous_less, client_for(runtime, key) as client:
        assert client.get("/api/jobs").status_code == 200
        assert anonymous_less.get("/api/jobs", headers={"Authorization": "Bearer vck_x"}).status_code == 401


def test_two_keys_cannot_reach_each_others_jobs(runtime: Runtime) -> None:
    keys = KeyStore(runtime.converted)
    _, alice_key = keys.create("alice")
    _, bob_key = keys.create("bob")
    with client_for(runtime, alice_key) as alice, client_for(runtime, bob_key) as bob:
        job_id = create_job(alice)
        assert alice.get(f"/api/jobs/{job_id}").status_code == 200
        assert_looks_unknown(bob, job_id)
        assert bob.get("/api/jobs").json()["jobs"] == []
        assert [j["job_id"] for j in alice.get("/api/jobs").json()["jobs"]] == [job_id]
        assert_same_timing(bob, job_id)
        assert alice.delete(f"/api/jobs/{job_id}").status_code == 204
        assert alice.get("/api/jobs").json()["jobs"] == []


def test_a_revoked_key_is_refused_on_its_next_request(runtime: Runtime) -> None:
    keys = KeyStore(runtime.converted)
    record, key = keys.create("leaving")
    with client_for(runtime, key) as client:
        assert client.get("/api/jobs").status_code == 200
        keys.revoke(record.key_id)
        assert client.get("/api/jobs").status_code == 401


def test_two_api_tasks_sign_sessions_and_share_links_alike(aws: AwsResources, runtime: Runtime, tmp_path: Path) -> None:
    other = build_runtime(settings_for(aws, tmp_path / "second", key_cache_seconds=0, anonymous=True))
    try:
        _, key = KeyStore(runtime.converted).create("sharer")
        with client_for(runtime, key) as first, client_for(other) as second:
            job_id = create_job(first)
            link: dict[str, Any] = first.post(f"/api/jobs/{job_id}/share").json()
            shared = second.get(urlsplit(link["api_url"]).path)
            assert shared.status_code == 200 and shared.json()["job_id"] == job_id
            assert second.delete(urlsplit(link["api_url"]).path).status_code == 405

            session_job = create_job(second)  # an anonymous session, made on the second task
            cookie = second.cookies.get("vc_session")
            assert cookie
            with client_for(runtime) as first_again:
                first_again.cookies.set("vc_session", cookie)
                assert first_again.get(f"/api/jobs/{session_job}").status_code == 200
            assert first.delete(f"/api/jobs/{job_id}").status_code == 204
            assert second.get(urlsplit(link["api_url"]).path).status_code == 404
        assert aws.s3.head_object(Bucket=aws.converted_bucket, Key=SIGNING_KEY)["ContentLength"] > 20
    finally:
        other.close()
