"""The ``hls`` format of a long video, converted in pieces (SEGMENT_SECONDS small): the pieces are cut
on the stream's keyframe grid, encoded with the aligned recipes, joined by a copy and packaged; the
stream passes every check of ``tests.streamcheck`` (playlists and MPD parse, each segment starts with
a keyframe, durations within the target + 1 s, the same boundaries in every rendition)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_clip_file, probe_file
from tests.e2e.conftest import served
from tests.e2e.test_streams import convert, fetcher, output, video_packets
from tests.streamcheck import check_manifest, check_stream
from video_converter.config import Settings
from video_converter.runtime import Runtime

pytestmark = pytest.mark.e2e


@pytest.fixture
def segmented(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    # 4 s pieces (SEGMENT_SECONDS under the 6 s stream segments: whole 2 s GOPs), a data folder of its own.
    update = {"workers": 2, "segment_seconds": 4, "data_dir": tmp_path / "segmented"}
    with served(settings.model_copy(update=update)) as both:
        yield both


def test_a_long_stream_is_converted_in_pieces_on_the_grid(
    segmented: tuple[TestClient, Runtime], tmp_path: Path
) -> None:
    client, rt = segmented
    clip = make_clip_file(tmp_path / "long.mp4", seconds=13, size="854x480", rate=30, extra=("-g", "30"))
    job = convert(client, clip, "480p,hls")
    stream, mp4 = output(job, "hls"), output(job, "480p")
    assert stream["segments"] == mp4["segments"] == 4  # 0, 4, 8, 12 s: both in pieces
    fetch = fetcher(client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    check_manifest(fetch, stream["dash_url"], checked)
    assert checked.resolutions() == [(854, 480), (640, 360)]
    for playlist in checked.media.values():
        assert [s.duration for s in playlist.segments] == pytest.approx([6.0, 6.0, 1.0], abs=0.05)
    assert checked.audio is not None
    assert sum(s.duration for s in checked.audio.segments) == pytest.approx(13.0, abs=0.1)
    # The 480p MP4, joined from the same pieces, has the stream's keyframes: every 2 s, nowhere else.
    joined = tmp_path / "480p.mp4"
    joined.write_bytes(client.get(mp4["download_url"]).content)
    keys = [p for p in video_packets(joined) if ",K" in p]
    assert len(keys) == 7  # 0, 2, ..., 12 s
    assert float(probe_file(joined)["format"]["duration"]) == pytest.approx(13.0, abs=0.1)
    # The stream's 480p rendition is that picture, copied: the same packets, but for the parameter sets
    # the concat demuxer's copy puts in band at each keyframe (auto_convert: the same few bytes on each,
    # which keep a piece decodable even if its encoder's parameter sets differed).
    track = tmp_path / "track.mp4"
    track.write_bytes(fetch(checked.media["video_480p.m3u8"].segment_map[0].absolute_uri, None))
    packets, joined_packets = video_packets(track), video_packets(joined)
    assert [p.split(",")[1] for p in packets] == [p.split(",")[1] for p in joined_packets]
    extra = {int(a.split(",")[0]) - int(b.split(",")[0]) for a, b in zip(packets, joined_packets, strict=True)}
    assert extra <= {0, max(extra)} and max(extra) < 100
    assert not list(rt.converted.list(f"{job['job_id']}/segments/"))  # the pieces are gone


def test_off_grid_keyframes_still_give_aligned_segments(segmented: tuple[TestClient, Runtime], tmp_path: Path) -> None:
    """An original with a keyframe every 1.5 s (and no sound) is cut at 4.5 s, 9 s, 12 s: off the grid,
    each piece's first frame is a keyframe in every rendition alike, so the segments still line up and
    start with one."""
    client, _ = segmented
    clip = make_clip_file(tmp_path / "odd.mp4", seconds=13, size="854x480", rate=30, audio=False, extra=("-g", "45"))
    job = convert(client, clip, "hls")
    stream = output(job, "hls")
    assert stream["segments"] > 1
    fetch = fetcher(client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    check_manifest(fetch, stream["dash_url"], checked)
    assert checked.resolutions() == [(854, 480), (640, 360)] and checked.audio is None
    total = [sum(s.duration for s in p.segments) for p in checked.media.values()]
    assert total == pytest.approx([13.0, 13.0], abs=0.1)
    # The grid's keyframes (0, 2, ..., 12 s) and the pieces' first frames off it (4.5 s and 9 s).
    track = tmp_path / "track.mp4"
    track.write_bytes(fetch(checked.media["video_360p.m3u8"].segment_map[0].absolute_uri, None))
    assert len([p for p in video_packets(track) if ",K" in p]) == 9
