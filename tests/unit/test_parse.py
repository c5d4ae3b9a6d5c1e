"""parse_probe, ProgressTracker, tail and says_out_of_memory on output captured from the real FFmpeg 7
(tests/unit/data)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from video_converter.ffmpeg.parse import (
    ProgressTracker,
    frame_over_max_pixels,
    parse_probe,
    parse_probe_facts,
    says_out_of_memory,
    tail,
)

DATA = Path(__file__).parent / "data"


def captured(name: str) -> str:
    return (DATA / name).read_text()


# --- parse_probe on captured ffprobe JSON -------------------------------------------------------


def test_normal_mp4_with_audio() -> None:
    info = parse_probe(captured("probe_mp4_av.json"))
    assert info.duration == 2.0
    assert (info.width, info.height) == (320, 240)
    assert info.video_codec == "h264"
    assert info.audio_codec == "aac"
    assert info.frame_rate == 25.0
    assert info.format_name == "mov,mp4,m4a,3gp,3g2,mj2"
    assert info.has_video and info.has_audio


def test_video_only_mp4_has_no_audio() -> None:
    info = parse_probe(captured("probe_mp4_video_only.json"))
    assert info.has_video
    assert not info.has_audio
    assert info.audio_codec is None
    assert (info.width, info.height) == (320, 240)
    assert info.duration == 2.0


def test_mp3_cover_art_is_not_video() -> None:
    text = captured("probe_mp3_cover_art.json")
    # The capture really contains an attached_pic video stream: the test is about ignoring it.
    streams = json.loads(text)["streams"]
    assert any(s["codec_type"] == "video" and s["disposition"]["attached_pic"] == 1 for s in streams)

    info = parse_probe(text)
    assert not info.has_video
    assert info.video_codec is None
    assert info.width is None and info.height is None
    assert info.frame_rate is None
    assert info.audio_codec == "mp3"
    assert info.duration == pytest.approx(2.038, abs=0.001)
    assert info.format_name == "mp3"


def test_rotated_phone_clip_reports_display_dimensions() -> None:
    text = captured("probe_mp4_rotated90.json")
    video = json.loads(text)["streams"][0]
    # What FFmpeg 7 writes: coded size stays landscape, rotation lives in side_data_list (no rotate tag).
    assert (video["width"], video["height"]) == (320, 240)
    assert video["side_data_list"][0]["rotation"] == 90
    assert "rotate" not in (video.get("tags") or {})

    info = parse_probe(text)
    assert (info.width, info.height) == (240, 320)


def _with_video(**changes: object) -> str:
    data = json.loads(captured("probe_mp4_av.json"))
    video = data["streams"][0]
    assert video["codec_type"] == "video"
    video.pop("side_data_list", None)
    for key, value in changes.items():
        if value is None:
            video.pop(key, None)
        else:
            video[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("side_data", "tags", "expected"),
    [
        ([{"side_data_type": "Display Matrix", "rotation": -90}], None, (240, 320)),
        ([{"side_data_type": "Display Matrix", "rotation": 270}], None, (240, 320)),
        ([{"side_data_type": "Display Matrix", "rotation": 180}], None, (320, 240)),
        ([{"side_data_type": "Display Matrix", "rotation": 0}], None, (320, 240)),
        (None, {"rotate": "90"}, (240, 320)),  # what FFmpeg < 5 printed
        (None, {"rotate": "180"}, (320, 240)),
        (None, {"rotate": "garbage"}, (320, 240)),
    ],
)
def test_rotation_variants(
    side_data: list[dict[str, object]] | None, tags: dict[str, str] | None, expected: tuple[int, int]
) -> None:
    info = parse_probe(_with_video(side_data_list=side_data, tags=tags))
    assert (info.width, info.height) == expected


def test_duration_falls_back_to_streams_when_format_has_none() -> None:
    data = json.loads(captured("probe_mp4_av.json"))
    data["format"]["duration"] = "N/A"
    data["streams"][0]["duration"] = "3.5"
    data["streams"][1]["duration"] = "4.25"
    assert parse_probe(json.dumps(data)).duration == 4.25


def test_unknown_duration_is_none() -> None:
    data = json.loads(captured("probe_mp4_av.json"))
    data["format"].pop("duration")
    for stream in data["streams"]:
        stream.pop("duration", None)
    assert parse_probe(json.dumps(data)).duration is None


def test_zero_size_and_bad_frame_rate_become_none() -> None:
    info = parse_probe(_with_video(width=0, height=0, avg_frame_rate="0/0"))
    assert info.width is None and info.height is None
    assert info.frame_rate is None
    assert info.has_video


def test_ntsc_frame_rate_is_rounded() -> None:
    assert parse_probe(_with_video(avg_frame_rate="30000/1001")).frame_rate == 29.97


@pytest.mark.parametrize("text", ["", "{}", '{"streams": [], "format": {}}'])
def test_empty_probe_output_is_no_media(text: str) -> None:
    info = parse_probe(text)
    assert not info.has_video and not info.has_audio
    assert info.duration is None and info.width is None


@pytest.mark.parametrize("text", ["not json", "{", "Invalid data found when processing input"])
def test_garbage_probe_output_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_probe(text)


def test_nan_and_infinite_durations_are_ignored() -> None:
    data = json.loads(captured("probe_mp4_av.json"))
    data["format"]["duration"] = "nan"
    data["streams"][0]["duration"] = "inf"
    data["streams"][1]["duration"] = "1.5"
    assert parse_probe(json.dumps(data)).duration == 1.5


# --- ProgressTracker on captured -progress pipe:1 output ----------------------------------------


def feed_all(tracker: ProgressTracker, text: str) -> list[float]:
    return [p for line in text.splitlines() if (p := tracker.feed(line)) is not None]


def test_progress_on_captured_output() -> None:
    text = captured("progress.txt")
    assert "out_time_ms=N/A" in text  # the capture includes FFmpeg's N/A blocks
    reports = feed_all(ProgressTracker(duration=4.0), text)
    # one report per block (every "progress=" line)
    assert len(reports) == text.count("progress=")
    assert reports[-1] == 100.0
    assert all(a <= b for a, b in itertools.pairwise(reports))
    assert reports[0] == 0.0
    intermediate = [p for p in reports if 0 < p < 100]
    assert intermediate, reports
    # out_time 0.28 s of 4 s: 7 %, so the value is read as microseconds (not milliseconds)
    assert 7.0 in reports
    assert max(intermediate) <= 99.0


def test_progress_unknown_duration_reports_zero_until_end() -> None:
    reports = feed_all(ProgressTracker(duration=None), captured("progress.txt"))
    assert reports[:-1] == [0.0] * (len(reports) - 1)
    assert reports[-1] == 100.0
    assert feed_all(ProgressTracker(duration=0), "out_time_us=5000000\nprogress=continue\n") == [0.0]


def test_out_time_ms_is_microseconds() -> None:
    tracker = ProgressTracker(duration=10.0)
    assert tracker.feed("out_time_ms=2500000") is None
    assert tracker.feed("progress=continue") == 25.0


def test_progress_capped_at_99_until_end() -> None:
    tracker = ProgressTracker(duration=1.0)
    tracker.feed("out_time_us=5000000")  # past the (estimated) duration
    assert tracker.feed("progress=continue") == 99.0
    assert tracker.feed("progress=end") == 100.0


def test_progress_ignores_na_negative_and_junk_lines() -> None:
    tracker = ProgressTracker(duration=10.0)
    tracker.feed("out_time_us=1000000")
    for line in ["out_time_us=N/A", "out_time_ms=-5000", "no equals sign", "", "bitrate=  1.4kbits/s"]:
        assert tracker.feed(line) is None
    assert tracker.feed("progress=continue") == 10.0


def test_progress_line_endings_are_tolerated() -> None:
    tracker = ProgressTracker(duration=2.0)
    tracker.feed("out_time_us=1000000\r\n")
    assert tracker.feed("progress=continue\n") == 50.0


# --- tail ---------------------------------------------------------------------------------------


def test_tail_keeps_last_meaningful_lines() -> None:
    lines = [f"line {i}\n" for i in range(20)] + ["   \n", "\n"]
    assert tail(lines, count=3) == "line 17 | line 18 | line 19"


def test_tail_default_count_is_8() -> None:
    assert tail([str(i) for i in range(10)]).split(" | ") == [str(i) for i in range(2, 10)]


def test_tail_caps_width_keeping_the_end() -> None:
    text = tail(["x" * 1000, "the real error"], width=50)
    assert len(text) == 50
    assert text.endswith("the real error")


def test_tail_of_nothing_is_empty() -> None:
    assert tail([]) == ""
    assert tail(["", "  ", "\n"]) == ""


# --- a refused allocation ------------------------------------------------------------------------


def test_a_refused_allocation_is_recognised_in_captured_stderr() -> None:
    # FFmpeg 7 decoding a GIF whose logical screen says 16000x16000, under ulimit -v 524288 (512 MB).
    lines = captured("stderr_gif_memory_limit.txt").splitlines()
    flagged = [i for i, line in enumerate(lines) if says_out_of_memory(line)]
    assert flagged[0] == 2 and lines[2].endswith("Error submitting packet to decoder: Cannot allocate memory")
    # The decoder's consequences that follow are not signs of their own.
    assert not any(says_out_of_memory(line) for line in lines[3:12])
    for sign in ("malloc of size 123 failed", "Out of memory", "Failed to allocate buffer"):
        assert says_out_of_memory(sign)


@pytest.mark.parametrize(
    ("field_order", "interlaced"),
    [("tt", True), ("bb", True), ("tb", True), ("bt", True), ("progressive", False), (None, False)],
)
def test_interlaced_sources_are_recognised(field_order: str | None, interlaced: bool) -> None:
    stream = {"codec_type": "video", "codec_name": "h264", "width": 720, "height": 576}
    if field_order:
        stream["field_order"] = field_order
    assert parse_probe(json.dumps({"streams": [stream], "format": {}})).interlaced is interlaced


# --- colour tags: HDR detection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "transfer", "primaries", "space", "hdr"),
    [
        ("probe_mp4_hlg.json", "arib-std-b67", "bt2020", "bt2020nc", True),  # HLG, as phones record
        ("probe_mp4_pq.json", "smpte2084", "bt2020", "bt2020nc", True),  # PQ (HDR10)
        ("probe_mp4_bt709.json", "bt709", "bt709", "bt709", False),
        ("probe_mp4_av.json", None, None, None, False),  # untagged (ffprobe prints no colour fields)
    ],
)
def test_colour_tags(name: str, transfer: str | None, primaries: str | None, space: str | None, hdr: bool) -> None:
    info = parse_probe(captured(name))
    assert (info.color_transfer, info.color_primaries, info.color_space) == (transfer, primaries, space)
    assert info.hdr is hdr


def test_hdr_captures_are_ten_bit_hevc_with_sound() -> None:
    # What the two HDR captures are: a 10-bit HEVC picture, the way phones store HDR video.
    for name in ("probe_mp4_hlg.json", "probe_mp4_pq.json"):
        video = json.loads(captured(name))["streams"][0]
        assert (video["codec_name"], video["pix_fmt"]) == ("hevc", "yuv420p10le")
        assert parse_probe(captured(name)).has_audio


@pytest.mark.parametrize("value", ["unknown", "unspecified", "reserved", "", 7])
def test_unknown_colour_tags_are_none(value: object) -> None:
    info = parse_probe(_with_video(color_transfer=value, color_primaries=value, color_space=value))
    assert (info.color_transfer, info.color_primaries, info.color_space) == (None, None, None)
    assert not info.hdr


@pytest.mark.parametrize(
    ("transfer", "primaries", "hdr"),
    [
        ("arib-std-b67", None, True),  # the transfer alone is enough
        ("smpte2084", "bt709", True),
        (None, "bt2020", True),  # wide gamut with an SDR or missing transfer
        ("bt2020-10", "bt2020", True),
        ("bt709", None, False),
        ("smpte170m", "smpte170m", False),
    ],
)
def test_hdr_from_transfer_or_primaries(transfer: str | None, primaries: str | None, hdr: bool) -> None:
    assert parse_probe(_with_video(color_transfer=transfer, color_primaries=primaries)).hdr is hdr


def test_colour_tags_of_an_audio_file_are_none() -> None:
    info = parse_probe(captured("probe_mp3_cover_art.json"))  # the cover picture's tags are not the source's
    assert (info.color_transfer, info.color_primaries, info.color_space) == (None, None, None)


# --- the fields the runner asks for (-show_entries PROBE_ENTRIES), as FFmpeg 7.0.2 prints them --------


def test_the_asked_for_fields_give_the_rotated_display_size() -> None:
    facts = parse_probe_facts(captured("probe_entries_mp4_rotated90.json"))
    assert (facts.info.width, facts.info.height) == (240, 320)
    assert facts.info.video_codec == "h264" and facts.info.audio_codec == "aac"
    assert facts.video is not None and facts.video.nb_frames == 50 and facts.size == 194678


def test_the_asked_for_fields_tell_cover_art_from_video() -> None:
    facts = parse_probe_facts(captured("probe_entries_mp3_cover_art.json"))
    assert not facts.info.has_video and facts.info.audio_codec == "mp3"
    assert [s.attached_pic for s in facts.streams] == [False, True]


def test_the_asked_for_fields_of_a_transport_stream_count_each_stream_once() -> None:
    """ffprobe lists an MPEG-TS file's streams under its programs too; only the top-level list counts."""
    text = captured("probe_entries_ts_h264_aac.json")
    assert json.loads(text)["programs"][0]["streams"]
    facts = parse_probe_facts(text)
    assert [s.kind for s in facts.streams] == ["video", "audio"]
    assert (facts.info.width, facts.info.height, facts.info.format_name) == (160, 120, "mpegts")


# --- a decoder refusing a frame over -max_pixels ----------------------------------------------------------


def test_a_frame_over_max_pixels_is_worded_from_the_decoders_line() -> None:
    """Captured from FFmpeg 7.0.2 decoding a 160x120 H.264 stream whose SPS turns 1280x720, with
    -max_pixels 307200: the first line says it; the others are its consequences."""
    lines = captured("stderr_h264_over_max_pixels.txt").splitlines()
    sentences = [s for line in lines if (s := frame_over_max_pixels(line))]
    assert sentences and set(sentences) == {
        "This video changes to 1280x720 pixels partway through; the limit is 307200 pixels."
    }
    assert frame_over_max_pixels(lines[0]) is not None
    assert frame_over_max_pixels("[h264] decode_slice_header error") is None


@pytest.mark.parametrize(
    ("limit", "words"), [(7680 * 4320, "8K (7680x4320)"), (3840 * 2160, "8.3 megapixels"), (307200, "307200 pixels")]
)
def test_pixel_limits_in_words(limit: int, words: str) -> None:
    line = f"[IMGUTILS] Picture size 16000x16000 exceeds specified max pixel count {limit}, see the documentation"
    assert (
        frame_over_max_pixels(line)
        == f"This video changes to 16000x16000 pixels partway through; the limit is {words}."
    )
