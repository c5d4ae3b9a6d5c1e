"""Owners against the real server process (``video-converter serve``, AUTH=keys with ANONYMOUS), keys made
with the real CLI on the same DATA_DIR: two keys (and two anonymous sessions) cannot see, download,
delete or list each other's jobs, and cannot tell them from unknown ones by the answer or its timing;
a revoked key is refused on its next request; cross-site cookie requests are refused; share links."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.server import Server
from tests.ownership import assert_looks_unknown, assert_same_timing

pytestmark = pytest.mark.e2e

FINISHED = {"completed", "failed", "partial"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("owners") / "data"
    # KEY_CACHE_SECONDS=0: a revocation is seen on the very next request (the default, 5 s, is unit-tested)
    with Server(data, workers=1, AUTH="keys", ANONYMOUS="true", KEY_CACHE_SECONDS="0", LOG_LEVEL="WARNING") as served:
        yield served


def cli(server: Server, *args: str) -> str:
    env = {**os.environ, "DATA_DIR": server.env["DATA_DIR"], "SECRET_KEY": server.env["SECRET_KEY"]}
    done = subprocess.run(
        [sys.executable, "-m", "video_converter.cli", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def new_key(server: Server, name: str) -> str:
    key = cli(server, "create", "--name", name).splitlines()[-1]
    assert key.startswith("vck_")
    return key


def keyed(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def finished_job(client: httpx.Client, clip: Path, formats: str = "mp3,thumbnail") -> dict[str, Any]:
    with clip.open("rb") as fh:
        created = client.post("/api/jobs", data={"formats": formats}, files={"file": ("clip.mp4", fh)})
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 120
    while True:
        job = client.get(f"/api/jobs/{created.json()['job_id']}").json()
        if job["status"] in FINISHED:
            assert job["status"] == "completed", job
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_two_keys_cannot_see_download_delete_or_list_each_others_jobs(
    server: Server, make_clip: Callable[..., Path]
) -> None:
    clip = make_clip("owned.mp4", seconds=1, size="160x120")
    with keyed(server, new_key(server, "alice")) as alice, keyed(server, new_key(server, "bob")) as bob:
        job = finished_job(alice, clip)
        job_id = job["job_id"]
        assert alice.get(f"/api/jobs/{job_id}/outputs/mp3").status_code == 307
        assert_looks_unknown(bob, job_id)
        assert job_id not in {j["job_id"] for j in bob.get("/api/jobs").json()["jobs"]}
        assert alice.get("/api/jobs").json()["jobs"][0]["job_id"] == job_id

        assert_same_timing(bob, job_id)

        assert alice.get(f"/api/jobs/{job_id}").json()["status"] == "completed"  # bob's DELETE did nothing
        assert alice.delete(f"/api/jobs/{job_id}").status_code == 204


def test_anonymous_sessions_are_isolated_and_cross_site_posts_refused(
    server: Server, make_clip: Callable[..., Path]
) -> None:
    clip = make_clip("anon.mp4", seconds=1, size="160x120")
    with (
        httpx.Client(base_url=server.url, timeout=30) as first,
        httpx.Client(base_url=server.url, timeout=30) as second,
    ):
        assert first.get("/api/jobs").status_code == 200  # hands out the session cookie
        cookie = first.get("/api/jobs").headers.get("set-cookie")
        assert cookie is None  # only once
        job = finished_job(first, clip, formats="mp3")
        assert second.get("/api/jobs").json()["jobs"] == []
        assert_looks_unknown(second, job["job_id"])

        evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        refused = first.post("/api/uploads", headers=evil)
        assert refused.status_code == 403 and "Cross-site" in refused.json()["detail"]
        assert first.delete(f"/api/jobs/{job['job_id']}", headers=evil).status_code == 403
        assert first.get(f"/api/jobs/{job['job_id']}").status_code == 200  # still there
        with keyed(server, new_key(server, "scripts")) as script:
            assert script.post("/api/uploads", headers=evil).status_code == 201  # Bearer: no CSRF check
        assert (
            first.post("/api/uploads", headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"}).status_code
            == 201
        )


def test_a_revoked_key_is_refused_on_its_next_request(server: Server) -> None:
    key = new_key(server, "leaving")
    with keyed(server, key) as client:
        assert client.get("/api/jobs").status_code == 200
        key_id = key.split("_")[1]
        assert key_id in cli(server, "list")
        cli(server, "revoke", key_id)
        refused = client.get("/api/jobs")
        assert refused.status_code == 401 and "not valid" in refused.json()["detail"]
        assert "revoked" in cli(server, "list")


def test_a_share_link_shows_and_downloads_but_cannot_delete_and_dies(
    server: Server, make_clip: Callable[..., Path]
) -> None:
    clip = make_clip("shared.mp4", seconds=1, size="160x120")
    with keyed(server, new_key(server, "sharer")) as owner, httpx.Client(timeout=30) as stranger:
        job = finished_job(owner, clip)
        link = owner.post(f"/api/jobs/{job['job_id']}/share").json()
        shared = stranger.get(link["api_url"])
        assert shared.status_code == 200 and shared.json()["status"] == "completed"
        page = stranger.get(link["url"])
        assert page.status_code == 200 and "job-delete" not in page.text
        download = stranger.get(f"{link['api_url']}/outputs/thumbnail", follow_redirects=True)
        assert download.status_code == 200 and download.content[:3] == b"\xff\xd8\xff"  # a JPEG
        archive = stranger.get(f"{link['api_url']}/archive")
        assert archive.status_code == 200 and archive.content[:2] == b"PK"
        assert stranger.delete(link["api_url"]).status_code == 405
        assert stranger.delete(f"{server.url}/api/jobs/{job['job_id']}").status_code == 404  # no key, no cookie
        assert owner.get(f"/api/jobs/{job['job_id']}").status_code == 200

        short = owner.post(f"/api/jobs/{job['job_id']}/share", json={"expires_in": 1}).json()
        deadline = time.monotonic() + 10
        while stranger.get(short["api_url"]).status_code == 200:  # until its second is over
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert stranger.get(short["api_url"]).json()["detail"] == "This share link has expired, or its job was deleted."

        assert owner.delete(f"/api/jobs/{job['job_id']}").status_code == 204
        assert stranger.get(link["api_url"]).status_code == 404
        assert stranger.get(f"{link['api_url']}/outputs/thumbnail").status_code == 404
        assert urlsplit(link["url"]).path.startswith("/share/")


def test_auth_none_keeps_the_readme_curls_and_lists_every_job(tmp_path: Path, make_clip: Callable[..., Path]) -> None:
    clip = make_clip("open.mp4", seconds=1, size="160x120")
    with (
        Server(tmp_path / "data", workers=1, LOG_LEVEL="WARNING") as served,
        httpx.Client(base_url=served.url, timeout=30) as client,
    ):
        assert client.get("/api/formats").status_code == 200
        job = finished_job(client, clip, formats="mp3")
        assert [j["job_id"] for j in client.get("/api/jobs").json()["jobs"]] == [job["job_id"]]
        assert client.head(f"/api/jobs/{job['job_id']}").status_code == 200
        assert client.get(f"/api/jobs/{job['job_id']}/outputs/mp3").status_code == 307
        assert client.get(f"/api/jobs/{job['job_id']}/archive").status_code == 200
        assert "set-cookie" not in client.get("/api/jobs").headers
        assert client.delete(f"/api/jobs/{job['job_id']}").status_code == 204
        assert client.get("/api/jobs").json()["jobs"] == []
