"""Streams without FFmpeg: the vendored player's checksum, the fMP4 reader on crafted bytes, grouping
fragments into aligned segments, the manifests, signing the playlists, the storyboard's layout and track."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import struct
from pathlib import Path

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from video_converter import playback, streams
from video_converter.config import Settings
from video_converter.fmp4 import Fragment, Layout, Malformed, read_layout
from video_converter.model import OutputRecord, OutputStatus, SourceInfo
from video_converter.presets import PRESETS, fixed_keyframes, storyboard_layout

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
HLS_JS = STATIC / "vendor" / "hls.js"


def test_vendored_hls_js_matches_its_pinned_checksum_and_the_players_integrity_hash() -> None:
    data = (HLS_JS / "hls.min.js").read_bytes()
    (line,) = (HLS_JS / "SHA256SUMS").read_text().splitlines()
    assert line.split()[0] == hashlib.sha256(data).hexdigest()
    assert "hls.js v1.7.4" in data[:400].decode(errors="replace") or b"1.7.4" in data
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()
    assert f'"{integrity}"' in (STATIC / "player.js").read_text()
    assert "Apache License" in (HLS_JS / "LICENSE").read_text()


def test_the_ladder_is_never_upscaled() -> None:
    stream = PRESETS["hls"].stream
    assert stream is not None

    def sizes(width: int, height: int) -> list[int]:
        assert stream is not None
        return [r.size for r in stream.renditions(SourceInfo(width=width, height=height, video_codec="h264"))]

    assert sizes(3840, 2160) == [1080, 720, 480, 360]
    assert sizes(1280, 720) == [720, 480, 360]
    assert sizes(1000, 562) == [720, 480, 360]  # 720 keeps the source's 562p
    assert sizes(1080, 1920) == [1080, 720, 480, 360]  # portrait: the short side
    assert sizes(160, 120) == [360]
    assert all(r.gop_seconds == 2 for r in stream.ladder)


def test_keyframes_on_a_fixed_grid_without_scene_cuts() -> None:
    args = fixed_keyframes(2)
    assert args[args.index("-sc_threshold") + 1] == "0" and "open-gop=0" in args
    assert args[args.index("-force_key_frames") + 1].startswith("expr:if(isnan(prev_forced_t),1,")
    aligned = PRESETS["720p"].recipe
    assert aligned is not None and "-force_key_frames" in aligned.aligned().video(SourceInfo())
    assert "-force_key_frames" not in aligned.video(SourceInfo())  # MP4s alone keep the encoder's choice


def test_segment_length_is_a_multiple_of_the_gop() -> None:
    assert Settings(_env_file=None).hls_segment_seconds == 6
    with pytest.raises(ValueError):
        Settings(_env_file=None, hls_segment_seconds=5)


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def test_the_reader_refuses_what_is_not_a_fragmented_mp4(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(box(b"ftyp", b"isom") + box(b"moov", b""))
    with pytest.raises(Malformed):
        read_layout(path)
    path.write_bytes(box(b"ftyp", b"isom") + struct.pack(">I", 4000) + b"moov")  # overruns the file
    with pytest.raises(Malformed):
        read_layout(path)


def layout(starts: list[float], scale: int = 1000, length: int = 100) -> Layout:
    fragments = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else start + 1.0
        fragments.append(Fragment(700 + n * length, length, round(start * scale), round((end - start) * scale)))
    return Layout(700, scale, "avc1.64001f", fragments, 700 + len(starts) * length)


def test_fragments_group_into_segments_on_the_grid() -> None:
    video = streams.segments_of(layout([0, 2, 4, 6, 8, 10, 12]), 6)
    assert [(s.start, s.duration, s.offset, s.length) for s in video] == [
        (0, 6, 700, 300), (6, 6, 1000, 300), (12, 1, 1300, 100),
    ]  # fmt: skip
    sound = streams.segments_of(layout([0, 2.02, 4.04, 6.06, 8.08]), 6)  # a few ms past the lines
    assert [s.start for s in sound] == [0, 6.06]


def track(name: str, starts: list[float], picture: SourceInfo | None) -> streams.Track:
    shape = layout(starts)
    if name == "audio":
        shape = dataclasses.replace(shape, codec="mp4a.40.2")
    return streams.Track(name, shape, streams.segments_of(shape, 6), picture)


def test_manifests_parse_and_describe_the_same_ranges(tmp_path: Path) -> None:
    big = track("video_720p", [0, 2, 4, 6, 8], SourceInfo(width=1280, height=720, frame_rate=30000 / 1001))
    small = track("video_360p", [0, 2, 4, 6, 8], SourceInfo(width=640, height=360, frame_rate=30000 / 1001))
    audio = track("audio", [0, 2.02, 4.04, 6.06, 8.08], None)
    master = m3u8.loads(streams.master_playlist([big, small], audio))
    assert [p.stream_info.resolution for p in master.playlists] == [(1280, 720), (640, 360)]
    info = master.playlists[0].stream_info
    assert info.bandwidth == big.peak_bps + audio.peak_bps and info.average_bandwidth <= info.bandwidth
    assert info.frame_rate == pytest.approx(29.97, abs=0.001) and info.codecs == "avc1.64001f,mp4a.40.2"
    media = m3u8.loads(streams.media_playlist(big))
    assert media.target_duration == 6 and [s.byterange for s in media.segments] == ["300@700", "200@1000"]
    assert media.segment_map[0].byterange == "700@0"
    mpd = MPEGDASHParser.parse(streams.dash_manifest([big, small], audio, 6))
    video_set = mpd.periods[0].adaptation_sets[0]
    ranges = [u.media_range for u in video_set.representations[0].segment_lists[0].segment_urls]
    assert ranges == ["700-999", "1000-1199"] and video_set.representations[0].frame_rate == "30000/1001"


def test_misaligned_renditions_are_refused(tmp_path: Path) -> None:
    done = streams.Package(
        tmp_path, [track("video_720p", [0, 2, 4, 6], None), track("video_360p", [0, 2, 4, 7.5], None)], None
    )
    with pytest.raises(streams.StreamInvalid, match="do not line up"):
        streams.check_aligned(done, 6)


def test_playlists_are_signed_file_by_file_and_nothing_else() -> None:
    def sign(name: str) -> str:
        return f"https://bucket.example/{name}?X-Amz-Signature=abc&x=1"

    big = track("video_720p", [0, 2, 4, 6], SourceInfo(width=1280, height=720))
    signed = playback.signed_playlist(streams.media_playlist(big), sign)
    assert signed.count("https://bucket.example/video_720p.mp4?") == 3  # the map and two segments
    master = streams.master_playlist([big], None)
    assert playback.signed_playlist(master, sign) == master  # names the API's own playlists
    mpd = playback.signed_manifest(streams.dash_manifest([big], None, 6), sign)
    assert "<BaseURL>https://bucket.example/video_720p.mp4?X-Amz-Signature=abc&amp;x=1</BaseURL>" in mpd
    with pytest.raises(ValueError):
        playback.signed_playlist("#EXTM3U\n../../job.json\n", sign)


def test_storyboard_layout_and_track() -> None:
    assert storyboard_layout(SourceInfo(duration=12)).interval == 2
    long = storyboard_layout(SourceInfo(duration=7200))
    assert (long.interval, long.count, long.columns, long.rows) == (36, 200, 10, 20)
    source = SourceInfo(duration=12, width=640, height=360, video_codec="h264")
    record = OutputRecord(
        format="storyboard", status=OutputStatus.COMPLETED, key="k", width=960, height=90, source=source
    )
    text = playback.storyboard_track(record, "sprite.jpg")
    cues = re.findall(r"(\S+) --> (\S+)\nsprite\.jpg#xywh=(\d+),(\d+),160,90", text)
    assert text.startswith("WEBVTT\n") and len(cues) == 6
    assert cues[0] == ("00:00:00.000", "00:00:02.000", "0", "0") and cues[-1][3] == "0" and cues[-1][2] == "800"
