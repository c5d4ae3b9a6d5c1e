"""Through HTTP with real FFmpeg: upload, convert, probe what comes out, download it."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import wait_for_job
from video_converter.ffmpeg import ffmpeg_path

pytestmark = pytest.mark.e2e


def submit(client: TestClient, path: Path, formats: list[str], filename: str | None = None) -> dict[str, Any]:
    with path.open("rb") as fh:
        response = client.post(
            "/api/jobs",
            files={"file": (filename or path.name, fh, "application/octet-stream")},
            data={"formats": formats},
        )
    assert response.status_code == 201, response.text
    return response.json()


def download(client: TestClient, job_id: str, format_id: str, tmp_path: Path) -> tuple[Path, str]:
    redirect = client.get(f"/api/jobs/{job_id}/outputs/{format_id}", follow_redirects=False)
    assert redirect.status_code == 307, redirect.text
    response = client.get(redirect.headers["location"])
    assert response.status_code == 200
    target = tmp_path / f"download_{format_id}"
    target.write_bytes(response.content)
    return target, response.headers["content-disposition"]


def streams(info: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def test_ten_second_clip_to_720p_480p_mp3_and_thumbnail(client, make_clip, probe, tmp_path):
    clip = make_clip("holiday.mov", seconds=10, size="1280x720")
    job = submit(client, clip, ["720p", "480p", "mp3", "thumbnail"], filename="Summer holiday.mov")
    assert job["status"] in ("queued", "processing")  # the workers may already have started
    assert [o["format"] for o in job["outputs"]] == ["720p", "480p", "mp3", "thumbnail"]

    done = wait_for_job(client, job["job_id"])
    assert done["status"] == "completed", done
    assert done["source"]["duration"] == pytest.approx(10, abs=0.1)
    assert (done["source"]["width"], done["source"]["height"]) == (1280, 720)
    by_format = {o["format"]: o for o in done["outputs"]}
    assert all(o["progress"] == 100 and o["download_url"] and o["error"] is None for o in by_format.values())

    for fmt, (width, height) in {"720p": (1280, 720), "480p": (854, 480)}.items():
        path, disposition = download(client, job["job_id"], fmt, tmp_path)
        assert f'filename="Summer_holiday_{fmt}.mp4"' in disposition
        info = probe(path)
        (video,) = streams(info, "video")
        (audio,) = streams(info, "audio")
        assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
        assert (video["width"], video["height"]) == (width, height)
        assert audio["codec_name"] == "aac"
        assert float(info["format"]["duration"]) == pytest.approx(10, abs=0.2)
        assert (by_format[fmt]["width"], by_format[fmt]["height"]) == (width, height)
        assert by_format[fmt]["size_bytes"] == path.stat().st_size
        # +faststart: the index (moov) comes before the media data (mdat).
        head = path.read_bytes()[:4096]
        assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))

    mp3, disposition = download(client, job["job_id"], "mp3", tmp_path)
    assert 'filename="Summer_holiday_mp3.mp3"' in disposition
    info = probe(mp3)
    assert [s["codec_name"] for s in info["streams"]] == ["mp3"]
    assert float(info["format"]["duration"]) == pytest.approx(10, abs=0.2)

    jpg, disposition = download(client, job["job_id"], "thumbnail", tmp_path)
    assert 'filename="Summer_holiday_thumbnail.jpg"' in disposition
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"
    (image,) = streams(probe(jpg), "video")
    assert (image["codec_name"], image["width"], image["height"]) == ("mjpeg", 1280, 720)


def test_webm_gif_and_capped_renditions(client, make_clip, probe, tmp_path):
    clip = make_clip(seconds=12, size="640x360")
    job = submit(client, clip, ["webm", "gif", "1080p", "360p"])
    done = wait_for_job(client, job["job_id"], timeout=180)
    assert done["status"] == "completed", done

    webm = probe(download(client, job["job_id"], "webm", tmp_path)[0])
    assert [s["codec_name"] for s in webm["streams"]] == ["vp9", "opus"]
    assert (webm["streams"][0]["width"], webm["streams"][0]["height"]) == (640, 360)

    gif = probe(download(client, job["job_id"], "gif", tmp_path)[0])
    (frames,) = streams(gif, "video")
    assert frames["codec_name"] == "gif"
    assert frames["width"] <= 480
    assert float(gif["format"]["duration"]) <= 10.1  # a preview, not the whole 12 s

    big = probe(download(client, job["job_id"], "1080p", tmp_path)[0])  # never upscaled
    assert (streams(big, "video")[0]["width"], streams(big, "video")[0]["height"]) == (640, 360)
    small = probe(download(client, job["job_id"], "360p", tmp_path)[0])
    assert streams(small, "video")[0]["height"] == 360


def test_an_output_identical_to_another_is_stored_once_and_downloads_under_both_names(
    client, make_clip, probe, tmp_path
):
    """1080p of a 720p source is the 720p encode (never upscaled): one file, ``same_as`` in the job JSON,
    both download names work, the ZIP holds it once."""
    clip = make_clip("trailer.mp4", seconds=2, size="1280x720")
    job = submit(client, clip, ["1080p", "720p", "480p"])
    done = wait_for_job(client, job["job_id"])
    assert done["status"] == "completed", done
    by_format = {o["format"]: o for o in done["outputs"]}
    assert by_format["1080p"]["same_as"] == "720p"
    assert by_format["720p"]["same_as"] is None and by_format["480p"]["same_as"] is None
    assert by_format["1080p"]["size_bytes"] == by_format["720p"]["size_bytes"]
    big, big_name = download(client, job["job_id"], "1080p", tmp_path)
    hd, hd_name = download(client, job["job_id"], "720p", tmp_path)
    assert 'filename="trailer_1080p.mp4"' in big_name and 'filename="trailer_720p.mp4"' in hd_name
    assert big.read_bytes() == hd.read_bytes()
    assert (streams(probe(big), "video")[0]["width"], streams(probe(big), "video")[0]["height"]) == (1280, 720)
    response = client.get(f"/api/jobs/{job['job_id']}/archive")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archived:
        assert sorted(archived.namelist()) == ["trailer_480p.mp4", "trailer_720p.mp4"]


def test_odd_and_portrait_sources_keep_aspect_with_even_sizes(client, make_clip, probe, tmp_path):
    odd = submit(client, make_clip(seconds=1, size="321x241"), ["360p"])
    portrait = submit(client, make_clip(seconds=1, size="720x1280"), ["480p", "360p", "1080p"])
    for job in (odd, portrait):
        assert wait_for_job(client, job["job_id"])["status"] == "completed"

    (video,) = streams(probe(download(client, odd["job_id"], "360p", tmp_path)[0]), "video")
    assert video["height"] == 240 and video["width"] % 2 == 0  # capped at the source, never upscaled
    assert video["width"] / video["height"] == pytest.approx(321 / 241, rel=0.02)

    # Portrait: the number is the short side (the width), as people and YouTube name sizes.
    for fmt, size in (("480p", (480, 854)), ("360p", (360, 640)), ("1080p", (720, 1280))):
        (video,) = streams(probe(download(client, portrait["job_id"], fmt, tmp_path)[0]), "video")
        assert (video["width"], video["height"]) == size, fmt
    notes = {o["format"]: o["note"] for o in client.get(f"/api/jobs/{portrait['job_id']}").json()["outputs"]}
    assert notes["480p"] is None and notes["360p"] is None
    assert notes["1080p"] is not None and "720x1280" in notes["1080p"] and "never upscaled" in notes["1080p"]


def refused(client: TestClient, path: Path, formats: list[str]) -> str:
    """A job the API refuses at creation (local mode probes the file): the sentence of its 422."""
    with path.open("rb") as fh:
        response = client.post("/api/jobs", files={"file": (path.name, fh)}, data={"formats": formats})
    assert response.status_code == 422, response.text
    return str(response.json()["detail"])


def test_silent_video_gives_silent_mp4_and_refuses_mp3_with_reason(client, make_clip, probe, tmp_path):
    clip = make_clip(seconds=2, audio=False)
    detail = refused(client, clip, ["480p", "mp3"])
    assert detail == "This file has no audio track, so it cannot be converted to MP3; " + (
        "choose MP4 1080p, MP4 720p, MP4 480p, MP4 360p, WebM, GIF, Thumbnail, HLS + DASH stream or Storyboard instead."
    )
    job = submit(client, clip, ["480p"])
    done = wait_for_job(client, job["job_id"])
    assert done["status"] == "completed"
    info = probe(download(client, job["job_id"], "480p", tmp_path)[0])
    assert [s["codec_type"] for s in info["streams"]] == ["video"]


def test_audio_only_source_refuses_the_video_formats_and_gives_mp3(client, make_clip):
    song = make_clip("song.mp3", seconds=2, video=False)
    detail = refused(client, song, ["mp3", "720p", "thumbnail"])
    assert (
        detail
        == "This file has no video stream, so it cannot be converted to MP4 720p or Thumbnail; choose MP3 instead."
    )
    done = wait_for_job(client, submit(client, song, ["mp3"])["job_id"])
    assert done["status"] == "completed" and [o["format"] for o in done["outputs"]] == ["mp3"]
    assert done["source"]["video_codec"] is None and done["source"]["audio_codec"] == "mp3"


def test_a_file_that_is_not_a_video_is_refused_at_once_in_local_mode(client, tmp_path):
    """The API has the file here, so it probes it: no job, no message, a 422 with a sentence. (Where the
    API does not have the file, on S3, the worker fails each output the same way: tests/aws.)"""
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my meeting notes, not a video\n" * 100)
    with fake.open("rb") as fh:
        response = client.post("/api/jobs", files={"file": (fake.name, fh)}, data={"formats": ["720p", "gif"]})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("This file is not a video or audio file")


def test_user_file_names_never_become_paths(client, make_clip, settings, tmp_path):
    job = submit(client, make_clip(seconds=1), ["thumbnail"], filename="../../etc/passwd.mp4")
    done = wait_for_job(client, job["job_id"])
    assert done["filename"] == "../../etc/passwd.mp4"  # shown as given, used nowhere as a path
    (output,) = done["outputs"]
    assert output["filename"] == "passwd_thumbnail.jpg"
    data_dir = Path(settings.data_dir).resolve()
    produced = [p for p in data_dir.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(data_dir) for p in produced)
    assert not (data_dir.parent / "etc").exists()


def remux(src: Path, dst: Path, *input_options: str) -> Path:
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-y", *input_options, "-i", str(src), "-c", "copy", str(dst)],
        check=True,
        timeout=60,
    )
    return dst


def test_awkward_sources_give_upright_square_pixel_outputs(client, make_clip, probe, tmp_path):
    """Phone clips (rotation metadata), anamorphic PAL, interlaced video, a single frame."""
    phone = remux(make_clip(seconds=1, size="640x360"), tmp_path / "phone.mp4", "-display_rotation", "90")
    anamorphic = make_clip(seconds=1, size="720x576", extra=("-vf", "setsar=64/45"))
    interlaced = make_clip(seconds=1, size="720x576", extra=("-vf", "interlace", "-flags", "+ildct+ilme"))
    one_frame = make_clip(seconds=0.04, audio=False)
    expected = {  # format -> (width, height) of the display-size, square-pixel result
        phone: {"480p": (360, 640), "gif": (360, 640), "thumbnail": (360, 640)},  # short side 360 < 480
        anamorphic: {"480p": (854, 480), "gif": (480, 270), "thumbnail": (1024, 576)},
        interlaced: {"480p": (600, 480)},
        one_frame: {"360p": (320, 240), "gif": (320, 240), "thumbnail": (320, 240)},
    }
    jobs = {src: submit(client, src, list(formats))["job_id"] for src, formats in expected.items()}
    for src, job_id in jobs.items():
        done = wait_for_job(client, job_id)
        assert done["status"] == "completed", done
        for fmt, size in expected[src].items():
            (video,) = streams(probe(download(client, job_id, fmt, tmp_path)[0]), "video")
            assert (video["width"], video["height"]) == size, (src.name, fmt)
            assert video.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1"), (src.name, fmt)
            assert not video.get("side_data_list"), "no rotation left for players to apply twice"
            if src is interlaced:
                assert video.get("field_order", "progressive") == "progressive"


def test_non_latin_file_names_survive_in_downloads_but_never_in_paths(client, make_clip, settings, tmp_path):
    job = submit(client, make_clip(seconds=1), ["thumbnail"], filename="Отпуск 2024.mp4")
    done = wait_for_job(client, job["job_id"])
    (output,) = done["outputs"]
    assert output["filename"] == "Отпуск_2024_thumbnail.jpg"
    _, disposition = download(client, job["job_id"], "thumbnail", tmp_path)
    assert "filename*=UTF-8''%D0%9E%D1%82%D0%BF%D1%83%D1%81%D0%BA_2024_thumbnail.jpg" in disposition
    assert 'filename="Otpusk_2024_thumbnail.jpg"' in disposition  # what curl -OJ saves
    stored = [p.relative_to(settings.data_dir).as_posix() for p in Path(settings.data_dir).rglob("*")]
    assert all(name.isascii() for name in stored)
    assert any(name.endswith("/2024_thumbnail.jpg") for name in stored)  # keys keep the ASCII stem
