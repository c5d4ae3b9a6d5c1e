"""The ``hls`` format of a long video, converted in pieces (SEGMENT_SECONDS small): the pieces are cut
on the stream's keyframe grid, encoded with the aligned recipes and each packaged on its own; the
playlists name byte ranges of the pieces' files. The stream passes every check of ``tests.streamcheck``
(playlists and MPD parse, each segment starts with a keyframe, durations within the target + 1 s, the
same boundaries in every rendition) and plays as one continuous stream."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import m3u8
import pytest
from fastapi.testclient import TestClient

from tests.conftest import H264_ULTRAFAST, make_clip_file, probe_file
from tests.e2e.conftest import served
from tests.e2e.test_streams import convert, fetcher, output, video_packets
from tests.streamcheck import Fetch, check_manifest, check_stream
from video_converter import segmenting, streampieces
from video_converter.config import Settings
from video_converter.ffmpeg import FFmpegError, ffmpeg_path, ffprobe_path
from video_converter.ffmpeg.runner import child_env
from video_converter.runtime import Runtime

pytestmark = pytest.mark.e2e


@pytest.fixture
def segmented(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    # 4 s pieces (SEGMENT_SECONDS under the 6 s stream segments: whole 2 s GOPs), a data folder of its own.
    update = {"workers": 2, "segment_seconds": 4, "data_dir": tmp_path / "segmented"}
    with served(settings.model_copy(update=update)) as both:
        yield both


def _played(fetch: Fetch, playlist: m3u8.M3U8, path: Path, stream: str) -> list[tuple[float, float]]:
    """A track as a player gets it over HTTP: its init, then every segment's byte range (of whichever
    file it is in) one after the other, in one file; each packet's (decode time, duration) as decoded."""
    init = playlist.segment_map[0]
    parts = [_range(fetch, init.absolute_uri, init.byterange)]
    parts += [_range(fetch, segment.absolute_uri, segment.byterange) for segment in playlist.segments]
    path.write_bytes(b"".join(parts))
    argv = [ffprobe_path(), "-v", "error", "-select_streams", stream, "-show_entries", "packet=dts_time,duration_time",
            "-of", "csv=p=0", str(path)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60, env=child_env()).stdout
    decoded = subprocess.run(
        [ffmpeg_path(), "-v", "error", "-i", str(path), "-map", f"0:{stream}", "-f", "null", "-"],
        capture_output=True, text=True, timeout=120, env=child_env(),
    )  # fmt: skip
    assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr[-500:]
    rows = [line.split(",")[:2] for line in out.split()]
    # ffprobe gives the sound's first packet (the encoder's priming) no duration: it lasts to the next
    return [(float(a), float(b) if b != "N/A" else float(rows[n + 1][0]) - float(a)) for n, (a, b) in enumerate(rows)]


def _range(fetch: Fetch, url: str, byterange: str) -> bytes:
    length, offset = (int(part) for part in byterange.split("@"))
    return fetch(url, (offset, offset + length - 1))


def _continuous(packets: list[tuple[float, float]]) -> float:
    """The packets follow each other with no gap and no overlap; their total duration."""
    for (dts, duration), (after, _) in itertools.pairwise(packets):
        assert after == pytest.approx(dts + duration, abs=0.0005), (dts, duration, after)
    return packets[-1][0] + packets[-1][1] - packets[0][0]


def _stream_file(key: str) -> bool:
    """A key of the stream's own prefix ({job}/hls/), not of its encoded pieces ({job}/segments/hls/)."""
    return key.split("/")[1] == "hls"


@pytest.fixture
def whole(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    """A server converting every video whole, to compare with."""
    update = {"workers": 1, "segment_seconds": 0, "data_dir": tmp_path / "whole"}
    with served(settings.model_copy(update=update)) as (test_client, _):
        yield test_client


@pytest.fixture
def recorded(segmented: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Bytes read from the stream's prefix of the converted store (by range, or whole), by kind."""
    store, read = segmented[1].converted, {"range": 0, "whole": 0}
    by_range, whole, fetched = store.read_range, store.get_bytes, store.local_path

    def read_range(key: str, start: int, length: int) -> bytes:
        data = by_range(key, start, length)
        read["range"] += len(data) if _stream_file(key) else 0
        return data

    def get_bytes(key: str) -> bytes:
        data = whole(key)
        read["whole"] += len(data) if _stream_file(key) else 0
        return data

    def local_path(key: str, workdir: Path) -> Any:
        read["whole"] += (store.size(key) or 0) if _stream_file(key) else 0
        return fetched(key, workdir)

    monkeypatch.setattr(store, "read_range", read_range)
    monkeypatch.setattr(store, "get_bytes", get_bytes)
    monkeypatch.setattr(store, "local_path", local_path)
    return read


def test_a_long_stream_is_played_from_its_pieces_files(
    segmented: tuple[TestClient, Runtime], recorded: dict[str, int], whole: TestClient, tmp_path: Path
) -> None:
    """Each piece packaged where it stands on the stream's timeline; the join wrote only the playlists
    and the MPD over the pieces' files, reading their indexes (under 1 % of the stream's bytes). Played
    through the API segment by segment, each track is one continuous stream as long as the source, its
    sound lined up with the picture as in the same stream converted whole."""
    segmented_client, rt = segmented
    clip = make_clip_file(tmp_path / "long.mp4", seconds=13, size="854x480", rate=30, extra=("-g", "30"))
    job = convert(segmented_client, clip, "480p,hls")
    stream, mp4 = output(job, "hls"), output(job, "480p")
    assert stream["segments"] == mp4["segments"] == 4  # 0, 4, 8, 12 s: both in pieces
    job_id = job["job_id"]
    assert recorded["whole"] == 0 and 0 < recorded["range"] <= 0.01 * stream["size_bytes"], recorded
    names = sorted(item.key.rsplit("/", 1)[-1] for item in rt.converted.list(f"{job_id}/hls/"))
    pieces = [f"{track}-{n:05d}.mp4" for track in ("audio", "video_360p", "video_480p") for n in range(4)]
    assert names == sorted(
        [*pieces[:3], *pieces[4:], "audio.m3u8", "video_360p.m3u8", "video_480p.m3u8", "manifest.mpd", "master.m3u8"]
    )  # fmt: skip  (3 sound parts: 0, ~4, ~8 s)
    assert stream["size_bytes"] == sum(item.size for item in rt.converted.list(f"{job_id}/hls/"))
    fetch = fetcher(segmented_client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    check_manifest(fetch, stream["dash_url"], checked)
    assert checked.resolutions() == [(854, 480), (640, 360)]
    for playlist in checked.media.values():  # cut on the grid and at each piece's start (4, 8, 12 s)
        assert [s.duration for s in playlist.segments] == pytest.approx([4.0, 2.0, 2.0, 4.0, 1.0], abs=0.05)
        assert len({s.uri.split("?")[0] for s in playlist.segments}) == 4
    videos = [_played(fetch, p, tmp_path / f"{name}.mp4", "v:0") for name, p in checked.media.items()]
    for packets in videos:
        assert _continuous(packets) == pytest.approx(13.0, abs=1 / 30)
    assert checked.audio is not None
    sound = _played(fetch, checked.audio, tmp_path / "audio.mp4", "a:0")
    # The same clip converted whole: its sound starts and lasts as ours, against the picture.
    fetch_whole = fetcher(whole)
    entire = check_stream(fetch_whole, output(convert(whole, clip, "hls"), "hls")["playlist_url"], tmp_path)
    assert entire.audio is not None
    whole_video = _played(fetch_whole, entire.media["video_480p.m3u8"], tmp_path / "whole.mp4", "v:0")
    whole_sound = _played(fetch_whole, entire.audio, tmp_path / "whole-audio.mp4", "a:0")
    assert sound[0][0] - videos[0][0][0] == pytest.approx(whole_sound[0][0] - whole_video[0][0], abs=0.001)
    assert _continuous(sound) == pytest.approx(_continuous(whole_sound), abs=1024 / 44100)
    assert not list(rt.converted.list(f"{job_id}/segments/"))  # the encoded pieces are gone


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
    playlist = checked.media["video_360p.m3u8"]
    assert _continuous(_played(fetch, playlist, tmp_path / "track.mp4", "v:0")) == pytest.approx(13.0, abs=1 / 30)
    assert len([p for p in video_packets(tmp_path / "track.mp4") if ",K" in p]) == 9


def test_a_stream_whose_pieces_were_not_all_packaged_is_joined_whole(
    segmented: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A sound part that FFmpeg could not package leaves its file missing: the join says why, removes the
    pieces' files and joins and packages the stream as before (one file per track)."""
    client, rt = segmented

    def broken(*_: Any, **__: Any) -> Path:
        raise FFmpegError("could not package", stderr_tail="(a test)")

    monkeypatch.setattr(streampieces, "package_sound", broken)
    clip = make_clip_file(tmp_path / "long.mp4", seconds=9, size="640x360", rate=30, extra=("-g", "30"))
    job = convert(client, clip, "hls")
    assert "the stream is joined and packaged whole: sound part 1 could not be packaged" in caplog.text
    names = sorted(item.key.rsplit("/", 1)[-1] for item in rt.converted.list(f"{job['job_id']}/hls/"))
    assert names == ["audio.m3u8", "audio.mp4", "manifest.mpd", "master.m3u8", "video_360p.m3u8", "video_360p.mp4"]
    fetch = fetcher(client)
    checked = check_stream(fetch, output(job, "hls")["playlist_url"], tmp_path)
    check_manifest(fetch, output(job, "hls")["dash_url"], checked)
    assert _continuous(_played(fetch, checked.media["video_360p.m3u8"], tmp_path / "v.mp4", "v:0")) == pytest.approx(
        9.0, abs=1 / 30
    )


def test_sound_that_starts_late_keeps_its_place_against_the_picture(
    segmented: tuple[TestClient, Runtime], tmp_path: Path
) -> None:
    """An original whose sound starts half a second after its picture: the stream's sound is placed as
    far after the picture (as the MP4 join places it), and every part follows the one before with no gap.
    (The same stream converted whole starts its sound at 0: ``streams.package`` keeps no offset.)"""
    clip = tmp_path / "late.mp4"
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=13",
         "-itsoffset", "0.5", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=12",
         *H264_ULTRAFAST, "-g", "30", "-c:a", "aac", str(clip)],
        check=True, timeout=120, env=child_env(),
    )  # fmt: skip
    starts = {s["codec_type"]: float(s["start_time"]) for s in probe_file(clip)["streams"]}
    client, _ = segmented
    stream = output(convert(client, clip, "hls"), "hls")
    fetch = fetcher(client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    assert checked.audio is not None and len({s.uri.split("?")[0] for s in checked.audio.segments}) == 3
    picture = _played(fetch, checked.media["video_360p.m3u8"], tmp_path / "v.mp4", "v:0")
    sound = _played(fetch, checked.audio, tmp_path / "a.mp4", "a:0")
    # Where the original's sound starts (its priming frame, which its edit list hides), against the picture
    assert sound[0][0] - picture[0][0] == pytest.approx(starts["audio"] - starts["video"], abs=0.001)
    assert _continuous(sound) == pytest.approx(12.0 + 1024 / 44100, abs=2048 / 44100)


def test_a_stream_whose_sound_was_never_packaged_is_joined_whole_after_the_grace(
    segmented: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A sound part stored without its packaged file and without a reason (a job whose parts were
    encoded before they were packaged): once the grace for its task to package it is over, the join
    joins and packages the stream whole."""
    client, rt = segmented
    monkeypatch.setattr(segmenting._Parts, "_stream_sound", lambda *_: None)
    monkeypatch.setattr(segmenting, "PACKAGING_GRACE", 0.0)
    clip = make_clip_file(tmp_path / "long.mp4", seconds=9, size="640x360", rate=30, extra=("-g", "30"))
    job = convert(client, clip, "hls")
    assert "the stream is joined and packaged whole: audio-00000.mp4 is not packaged" in caplog.text
    assert "audio.mp4" in {item.key.rsplit("/", 1)[-1] for item in rt.converted.list(f"{job['job_id']}/hls/")}
