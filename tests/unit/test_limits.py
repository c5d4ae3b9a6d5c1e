"""check_media and the probe facts behind it, on ffprobe JSON captured from crafted files (tests/unit/data).

The captures were made with the bundled FFmpeg 7.0.2 from clips crafted as the e2e tests craft them
(tests/e2e/test_hostile_media.py): a 1-hour timestamp jump (setpts), a video track behind a 10-hour
empty edit list (-itsoffset 36000 -use_editlist 1), 0.001 fps (testsrc2 rate=1/1000), a 64-channel
WAV (aevalsrc), and a 1 KB GIF whose logical screen was patched to 16000x16000.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from video_converter.config import Settings
from video_converter.ffmpeg.parse import ProbeFacts, StreamFacts, parse_probe_facts
from video_converter.limits import Limits, MediaRejected, check_media, human_bytes, human_duration
from video_converter.model import SourceInfo
from video_converter.runtime import Runtime

DATA = Path(__file__).parent / "data"


def facts(name: str) -> ProbeFacts:
    return parse_probe_facts((DATA / name).read_text())


def test_probe_facts_of_ordinary_mp4() -> None:
    probe = facts("probe_mp4_av.json")
    video = probe.video
    assert video is not None
    assert (video.width, video.height, video.coded_width, video.coded_height) == (320, 240, 320, 240)
    assert (video.r_frame_rate, video.avg_frame_rate, video.time_base) == (25.0, 25.0, "1/12800")
    assert video.nb_frames == 50 and video.start_time == 0.0 and video.duration == 2.0
    audio = next(s for s in probe.streams if s.kind == "audio")
    assert (audio.channels, audio.channel_layout) == (1, "mono")
    assert probe.info.audio_channels == 1 and probe.info.audio_layout == "mono"
    assert probe.size and probe.duration == 2.0 and probe.start_time == 0.0


def test_ordinary_files_pass() -> None:
    for name in (
        "probe_mp4_av.json",
        "probe_mp4_video_only.json",
        "probe_mp4_rotated90.json",
        "probe_mp3_cover_art.json",
    ):
        check_media(facts(name), Limits())


def test_huge_gif_canvas_is_refused_with_a_sentence() -> None:
    probe = facts("probe_gif_16000x16000.json")
    assert probe.size is not None and probe.size < 2000  # a 1 KB file
    with pytest.raises(MediaRejected) as info:
        check_media(probe, Limits())
    assert str(info.value) == "This video is 16000x16000 pixels; the limit is 8K (7680x4320)."


def test_pixel_limit_is_a_setting_and_counts_coded_size() -> None:
    probe = facts("probe_mp4_av.json")
    check_media(probe, Limits(max_pixels=320 * 240))
    with pytest.raises(MediaRejected, match=r"^This video is 320x240 pixels; the limit is 50000 pixels\.$"):
        check_media(probe, Limits(max_pixels=50_000))
    with pytest.raises(MediaRejected, match=r"the limit is 2\.1 megapixels\.$"):
        check_media(facts("probe_gif_16000x16000.json"), Limits(max_pixels=1920 * 1080))
    coded = ProbeFacts(
        info=SourceInfo(),
        streams=(StreamFacts(kind="video", width=16, height=16, coded_width=16000, coded_height=16000),),
    )
    with pytest.raises(MediaRejected, match="16000x16000"):
        check_media(coded, Limits())


def test_huge_cover_art_is_refused_too() -> None:
    cover = StreamFacts(kind="video", codec="mjpeg", width=20000, height=20000, attached_pic=True)
    probe = ProbeFacts(info=SourceInfo(audio_codec="mp3"), streams=(StreamFacts(kind="audio"), cover))
    with pytest.raises(MediaRejected, match=r"^This cover image is 20000x20000 pixels"):
        check_media(probe, Limits())


def test_video_behind_a_ten_hour_empty_edit_list_is_refused() -> None:
    probe = facts("probe_mp4_empty_edit_10h.json")
    video = probe.video
    assert video is not None and video.start_time == 36000.0
    with pytest.raises(MediaRejected) as info:
        check_media(probe, Limits())
    assert str(info.value) == (
        "The video track starts 10 h after the audio track (an empty edit list or shifted timestamps); "
        "files like this are refused."
    )


def test_duration_limit() -> None:
    probe = facts("probe_mp4_timestamp_gap_1h.json")  # 2 s of frames spread over an hour
    check_media(probe, Limits())  # under 4 h: normalised by the presets (no duplicated frames), not refused
    with pytest.raises(MediaRejected) as info:
        check_media(probe, Limits(max_duration=1800))
    assert str(info.value) == "This file lasts 1 h 0 min; the limit is 30 min."


def test_duration_counts_the_streams_extent_when_the_format_says_less() -> None:
    streams = (
        StreamFacts(kind="audio", start_time=0.0, duration=2.0),
        StreamFacts(kind="video", width=8, height=8, start_time=50.0, duration=5 * 3600.0),
    )
    with pytest.raises(MediaRejected, match=r"^This file lasts 5 h 1 min; the limit is 4 h\.$"):
        check_media(ProbeFacts(info=SourceInfo(), streams=streams, duration=2.0), Limits())


def test_tiny_frame_rate_and_mkv_gap_are_normalised_not_refused() -> None:
    tiny = facts("probe_mp4_0001fps.json")
    assert tiny.video is not None and tiny.video.r_frame_rate == 0.001 and tiny.video.nb_frames == 3
    check_media(tiny, Limits())
    mkv = facts("probe_mkv_timestamp_gap_1h.json")  # Matroska declares no frame count
    assert mkv.video is not None and mkv.video.nb_frames is None
    check_media(mkv, Limits())


def test_sixty_four_channels_are_reported_for_the_downmix() -> None:
    probe = facts("probe_wav_64ch.json")
    assert probe.info.audio_channels == 64
    assert probe.info.audio_layout is None  # FFmpeg says "unknown": the presets mix with pan
    check_media(probe, Limits())


def test_a_few_kilobytes_declaring_hours_of_8k_are_refused() -> None:
    video = StreamFacts(kind="video", width=7680, height=4320, r_frame_rate=60.0, avg_frame_rate=60.0)
    probe = ProbeFacts(info=SourceInfo(), streams=(video,), duration=3 * 3600.0, size=30_000)
    with pytest.raises(MediaRejected) as info:
        check_media(probe, Limits())
    assert str(info.value) == (
        "This 29.3 KiB file declares 648000 frames of 7680x4320 pixels, far more picture than it can hold; "
        "it looks crafted and is refused."
    )
    # The same picture in a plausible size passes: a static 8K clip compresses well, but not that well.
    check_media(ProbeFacts(info=SourceInfo(), streams=(video,), duration=3 * 3600.0, size=3_000_000_000), Limits())


def test_limits_from_settings_and_input_seconds() -> None:
    settings = Settings(max_pixels=1000, max_duration_seconds=600, _env_file=None)
    limits = Limits.from_settings(settings)
    assert (limits.max_pixels, limits.max_duration) == (1000, 600)
    probe = facts("probe_mp4_av.json")  # 2 s
    assert limits.input_seconds(probe) == 3.0  # the probed duration plus a margin (at least 1 s)
    long = ProbeFacts(info=SourceInfo(duration=300.0))
    assert limits.input_seconds(long) == 330.0  # or 10 %
    assert limits.input_seconds(probe, cap=1.5) == 1.5  # the GIF's own cap
    unknown = ProbeFacts(info=SourceInfo(video_codec="h264"))
    assert limits.input_seconds(unknown) == 600  # never more than the limit
    assert Limits().max_pixels == 7680 * 4320 and Limits().max_duration == 4 * 3600


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(14400, "4 h"), (36002, "10 h 0 min"), (3601.96, "1 h 0 min"), (1800, "30 min"), (45, "45 s")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (200_000, "195.3 KiB"),
        (32 * 1024, "32.0 KiB"),
        (3 * 1024**2, "3.0 MiB"),
        (1024**2 - 1, "1024.0 KiB"),  # rounded, not promoted: the unit is the largest the size reaches
        (4 * 1024**3, "4.0 GiB"),
        (5 * 1024**4, "5120.0 GiB"),
    ],
)
def test_human_bytes(size: int, text: str) -> None:
    """The words of every size limit's sentence (the API's 413 and 431 bodies, the upload check, the
    density refusal)."""
    assert human_bytes(size) == text


def test_the_api_answers_a_refusal_with_422_and_the_sentence(mem_runtime: Runtime) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    app = create_app(mem_runtime)

    def refuse() -> None:
        check_media(facts("probe_gif_16000x16000.json"), Limits())

    app.add_api_route("/refuse", refuse)
    response = TestClient(app).get("/refuse")
    assert response.status_code == 422
    assert response.json() == {"detail": "This video is 16000x16000 pixels; the limit is 8K (7680x4320)."}
