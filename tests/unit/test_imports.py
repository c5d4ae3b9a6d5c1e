"""Imports from a URL against a local HTTP server (allowed with IMPORT_ALLOW_PRIVATE): the job converts
from the imported file, redirects are followed (at most 3), failures are job-level sentences; and the
refusals without the allowance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ClipFactory
from tests.e2e.conftest import served, wait_for_job
from tests.fileserver import serve_files
from video_converter.config import Settings
from video_converter.work import Import, from_body, to_body

CLIP: dict[str, bytes] = {}


@pytest.fixture
def site(make_clip: ClipFactory) -> Iterator[str]:
    CLIP["/clip.mp4"] = make_clip("clip.mp4", seconds=1.0, size="160x120").read_bytes()
    with serve_files(CLIP) as url:
        yield url


def allowed(settings: Settings, **more: Any) -> Settings:
    return settings.model_copy(update={"workers": 1, "import_allow_private": True, **more})


def test_the_import_message_round_trips() -> None:
    assert from_body(to_body(Import("j"))) == Import("j")
    assert from_body({"job_id": "j", "step": "import", "format": "mp3"}) is None


def test_an_imported_video_is_converted(settings: Settings, site: str) -> None:
    with served(allowed(settings)) as (client, rt):
        created = client.post("/api/jobs", json={"source_url": f"{site}/hop/3", "formats": ["thumbnail", "mp3"]})
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["filename"] == "3" and job["status"] == "queued"
        done = wait_for_job(client, job["job_id"])
        assert done["status"] == "completed", done
        assert rt.jobs.job(job["job_id"]).source_size == len(CLIP["/clip.mp4"])


def test_the_file_name_comes_from_the_link_or_the_request(settings: Settings, site: str) -> None:
    with served(allowed(settings)) as (client, _):
        named = client.post("/api/jobs", json={"source_url": f"{site}/clip.mp4", "formats": ["mp3"]}).json()
        assert named["filename"] == "clip.mp4"
        given = client.post(
            "/api/jobs", json={"source_url": f"{site}/clip.mp4", "formats": ["mp3"], "filename": "Beach.mp4"}
        ).json()
        assert given["filename"] == "Beach.mp4"


@pytest.mark.parametrize(
    ("path", "sentence", "limit"),
    [
        ("/missing.mp4", "The link answered 404.", None),
        ("/hop/4", "The link redirected more than 3 times.", None),
        ("/clip.mp4", "The file at the link is larger than the 1000 bytes limit.", 1000),
    ],
)
def test_a_link_that_cannot_give_the_file_fails_the_job_with_a_sentence(
    settings: Settings, site: str, path: str, sentence: str, limit: int | None
) -> None:
    extra = {"max_upload_bytes": limit} if limit else {}
    with served(allowed(settings, **extra)) as (client, rt):
        job = client.post("/api/jobs", json={"source_url": f"{site}{path}", "formats": ["mp3", "gif"]}).json()
        done = wait_for_job(client, job["job_id"])
        assert done["status"] == "failed" and done["error"] == sentence
        assert {o["status"] for o in done["outputs"]} == {"failed"}
        assert rt.uploads.size(f"{job['job_id']}/imported/source") is None  # nothing half-imported kept


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/clip.mp4",
        "http://10.0.0.1/clip.mp4",
        "http://[::1]/clip.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "ftp://example.com/clip.mp4",
        "http://user:pass@example.com/clip.mp4",
    ],
)
def test_private_links_are_refused_without_the_allowance(settings: Settings, url: str) -> None:
    with served(settings.model_copy(update={"workers": 0})) as (client, _):
        refused = client.post("/api/jobs", json={"source_url": url, "formats": ["mp3"]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].endswith(".")


def test_metadata_links_are_refused_even_with_the_allowance(settings: Settings) -> None:
    with served(allowed(settings, workers=0)) as (client, _):
        refused = client.post("/api/jobs", json={"source_url": "http://169.254.169.254/x", "formats": ["mp3"]})
        assert refused.status_code == 422 and "metadata" in refused.json()["detail"]


def test_the_worker_checks_the_address_it_connects_to(settings: Settings, site: str) -> None:
    """Every hop is checked again where the worker connects (a name that resolved to a public address
    when the job was made may not any more): without the allowance the loopback server is refused."""
    from video_converter import imports, outbound

    with served(settings.model_copy(update={"workers": 0})) as (_, rt):
        for path in ("/clip.mp4", "/hop/1"):
            with pytest.raises(imports.ImportFailed, match="private, loopback"):
                imports.fetch(rt, f"{site}{path}", "x/source", outbound.Deadline(5))
        assert rt.uploads.size("x/source") is None
