"""The ``hls`` format end to end in local mode, through the API as a player uses it: the checks of
``tests.streamcheck`` on a landscape clip with MP4 sizes (whose encodes the stream shares), a portrait
clip, a clip without sound; the storyboard's sprite and WebVTT track."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_clip_file, probe_file
from tests.e2e.conftest import served, wait_for_job
from tests.streamcheck import Fetch, check_manifest, check_stream
from video_converter.config import Settings
from video_converter.ffmpeg import ffprobe_path
from video_converter.ffmpeg.runner import child_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with served(settings.model_copy(update={"workers": 1, "segment_seconds": 0})) as (test_client, _):
        yield test_client


def fetcher(client: TestClient) -> Fetch:
    def fetch(url: str, byte_range: tuple[int, int] | None) -> bytes:
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        response = client.get(url, headers=headers)
        assert response.status_code == (206 if byte_range else 200), (url, response.status_code, response.text[:200])
        return response.content

    return fetch


def convert(client: TestClient, clip: Path, formats: str) -> dict[str, Any]:
    with clip.open("rb") as handle:
        created = client.post("/api/jobs", files={"file": (clip.name, handle)}, data={"formats": formats})
    assert created.status_code == 201, created.text
    job = wait_for_job(client, created.json()["job_id"], timeout=240)
    assert job["status"] == "completed", job
    return job


def output(job: dict[str, Any], format_id: str) -> dict[str, Any]:
    return next(o for o in job["outputs"] if o["format"] == format_id)


def video_packets(path: Path) -> list[str]:
    argv = [ffprobe_path(), "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size,flags",
            "-of", "csv=p=0", str(path)]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60, env=child_env()).stdout.split()


def test_stream_beside_mp4_sizes_is_their_encode_packaged(client: TestClient, tmp_path: Path) -> None:
    clip = make_clip_file(tmp_path / "wide.mp4", seconds=13, size="854x480", rate=30)
    job = convert(client, clip, "480p,hls")
    stream = output(job, "hls")
    assert stream["playlist_url"] == f"/api/jobs/{job['job_id']}/stream/master.m3u8"
    assert stream["download_url"] == stream["playlist_url"]
    fetch = fetcher(client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    check_manifest(fetch, stream["dash_url"], checked)
    # The sizes the source allows, never upscaled: 480p (the source's) and 360p, largest first.
    assert checked.resolutions() == [(854, 480), (640, 360)]
    assert [len(p.segments) for p in checked.media.values()] == [3, 3]
    assert checked.audio is not None and len(checked.audio.segments) == 3
    # The 480p rendition is the 480p MP4's picture, copied: the same packets.
    mp4 = tmp_path / "480p.mp4"
    mp4.write_bytes(client.get(output(job, "480p")["download_url"]).content)
    track = tmp_path / "track.mp4"
    first = checked.media["video_480p.m3u8"]
    track.write_bytes(fetch(first.segment_map[0].absolute_uri, None))
    assert video_packets(track) == video_packets(mp4)
    # Every keyframe of the MP4 is on the 2 s grid too.
    keys = [p for p in video_packets(mp4) if p.endswith(",K__") or p.endswith(",K_")]
    assert len(keys) == 7  # 0, 2, ..., 12 s


def test_portrait_clip(client: TestClient, tmp_path: Path) -> None:
    clip = make_clip_file(tmp_path / "tall.mp4", seconds=7, size="480x854", rate=25)
    job = convert(client, clip, "hls")
    checked = check_stream(fetcher(client), output(job, "hls")["playlist_url"], tmp_path)
    assert checked.resolutions() == [(480, 854), (360, 640)]  # the short side is the size
    assert [s.duration for s in next(iter(checked.media.values())).segments] == pytest.approx([6.0, 1.0])


def test_clip_without_sound(client: TestClient, tmp_path: Path) -> None:
    clip = make_clip_file(tmp_path / "mute.mp4", seconds=5, size="320x240", audio=False)
    job = convert(client, clip, "hls")
    stream = output(job, "hls")
    fetch = fetcher(client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    assert checked.audio is None and checked.resolutions() == [(320, 240)]
    assert all(v.stream_info.codecs.count(",") == 0 for v in checked.variants)
    check_manifest(fetch, stream["dash_url"], checked)


def test_stream_routes_refuse_other_names_and_unfinished_jobs(client: TestClient, tmp_path: Path) -> None:
    clip = make_clip_file(tmp_path / "small.mp4", seconds=1, size="160x120")
    job = convert(client, clip, "360p")
    base = f"/api/jobs/{job['job_id']}"
    assert output(job, "360p")["playlist_url"] is None
    assert client.get(f"{base}/stream/master.m3u8").status_code == 404  # the job has no stream
    assert client.get(f"{base}/stream/..%2Fjob.json").status_code == 404
    assert client.get(f"{base}/stream/video_360p.mp4").status_code == 404  # media files: signed links only
    assert client.get(f"{base}/storyboard.vtt").status_code == 404


def test_storyboard_sprite_and_track(client: TestClient, tmp_path: Path) -> None:
    clip = make_clip_file(tmp_path / "story.mp4", seconds=12, size="640x360")
    job = convert(client, clip, "storyboard")
    board = output(job, "storyboard")
    sprite = tmp_path / "sprite.jpg"
    sprite.write_bytes(client.get(board["download_url"]).content)
    # 12 s: a frame every 2 s, six in one row of 160x90 tiles
    picture = probe_file(sprite)["streams"][0]
    assert (picture["width"], picture["height"]) == (960, 90) == (board["width"], board["height"])
    track = client.get(board["track_url"])
    assert track.status_code == 200 and track.headers["content-type"].startswith("text/vtt")
    lines = track.text.splitlines()
    assert lines[0] == "WEBVTT"
    cues = [line for line in lines if "#xywh=" in line]
    assert len(cues) == 6 and cues[-1].endswith("#xywh=800,0,160,90")
    assert "00:00:10.000 --> 00:00:12.000" in lines
    assert client.get(cues[0].split("#")[0]).status_code == 200  # the sprite's link works
