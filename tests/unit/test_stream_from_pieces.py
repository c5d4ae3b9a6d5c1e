"""A stream in pieces without FFmpeg, on the captured indexes of a real one (``data/stream_pieces.json``:
each file's init and ``moof`` boxes and its ``mdat`` sizes, rebuilt here with silent media): the join
reads only the indexes, the tracks over the pieces' files, their playlists and MPD, signing them, and
what makes pieces unplayable as one stream."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from tests.conftest import Env
from video_converter import playback, segmenting, streampieces, streams
from video_converter.fmp4 import comparable_init, read_layout, shift_decode_times
from video_converter.model import OutputStatus, SegmentPlan, SourceInfo
from video_converter.output import Output
from video_converter.presets import PRESETS
from video_converter.storage.local import LocalStorage

CAPTURED = json.loads((Path(__file__).parent / "data" / "stream_pieces.json").read_text())["files"]
JOB = "0f0e0d0c-0b0a-4908-8706-050403020100"


def rebuilt(entry: dict[str, Any]) -> bytes:
    """A captured file: its init and fragments, each ``mdat`` of its size with zeros for media."""
    data = bytes.fromhex(entry["init"])
    for fragment in entry["fragments"]:
        data += bytes.fromhex(fragment["moof"]) + struct.pack(">I", fragment["mdat"]) + b"mdat"
        data += bytes(fragment["mdat"] - 8)
    return data


class Recording(LocalStorage):
    """A local store that counts the bytes read from it, by range and whole."""

    by_range = 0
    reads = 0
    whole = 0

    def read_range(self, key: str, start: int, length: int) -> bytes:
        data = super().read_range(key, start, length)
        self.by_range += len(data)
        self.reads += 1
        return data

    def get_bytes(self, key: str) -> bytes:
        data = super().get_bytes(key)
        self.whole += len(data)
        return data


@pytest.fixture
def store(tmp_path: Path) -> Recording:
    recording = Recording(tmp_path / "converted")
    for entry in CAPTURED:
        recording.put_bytes(streams.stream_prefix(JOB) + entry["name"], rebuilt(entry), "video/mp4")
    return recording


def names(track: str, count: int) -> list[str]:
    return [streams.piece_file(track, n) for n in range(count)]


def tracks(store: Recording) -> tuple[list[streams.Track], streams.Track]:
    source = SourceInfo(width=854, height=480, frame_rate=30.0, video_codec="h264")
    videos = []
    for name in ("video_480p", "video_360p"):
        pieces = streampieces.read_pieces(store, JOB, names(name, 4))
        videos.append(streampieces.pieced_track(name, pieces, 6, streampieces.picture_of(pieces[0].layout, source)))
    audio = streampieces.pieced_track("audio", streampieces.read_pieces(store, JOB, names("audio", 3)), 6)
    return videos, audio


def test_the_join_reads_the_indexes_only(store: Recording) -> None:
    videos, audio = tracks(store)
    total = sum(t.stored for t in [*videos, audio])
    index = sum(len(bytes.fromhex(e["init"])) + sum(len(f["moof"]) // 2 for f in e["fragments"]) for e in CAPTURED)
    assert store.whole == 0 and index <= store.by_range <= 1.5 * index
    # one read a fragment but the first of a file (its header, then its moof), beside the init's three
    assert store.reads <= sum(len(e["fragments"]) + 4 for e in CAPTURED)
    assert store.by_range < 0.01 * total  # about 0.7 % here: 13 s of 854x480; a minute-long piece far less


def test_segments_cut_on_the_grid_and_at_each_pieces_start(store: Recording) -> None:
    videos, audio = tracks(store)
    for track in videos:
        assert [(round(s.start, 3), round(s.duration, 3)) for s in track.segments] == [
            (0, 4), (4, 2), (6, 2), (8, 4), (12, 1),
        ]  # fmt: skip
        assert [s.file[-9:-4] for s in track.segments] == ["00000", "00001", "00001", "00002", "00003"]
        assert track.file == f"{track.name}-00000.mp4" and track.pieces == 4
    assert videos[0].picture is not None and (videos[0].picture.width, videos[0].picture.height) == (854, 480)
    assert sum(s.duration for s in audio.segments) == pytest.approx(13.0, abs=0.05)
    assert {s.file for s in audio.segments} == set(names("audio", 3))
    sizes = {e["name"]: len(rebuilt(e)) for e in CAPTURED}
    for track in [*videos, audio]:  # each a byte range of one file, after its init
        assert all(
            track.layout.init_length <= s.offset and s.offset + s.length <= sizes[s.file] for s in track.segments
        )
    streams.check_aligned(streams.Package(Path("."), videos, audio), 6)


def test_playlists_and_mpd_name_the_pieces_files_with_one_init(store: Recording) -> None:
    videos, audio = tracks(store)
    media = m3u8.loads(streams.media_playlist(videos[0]))
    assert len(media.segment_map) == 1 and media.segment_map[0].uri == "video_480p-00000.mp4"
    assert media.segment_map[0].byterange == f"{videos[0].layout.init_length}@0"
    assert [s.uri for s in media.segments] == [s.file for s in videos[0].segments]
    mpd = MPEGDASHParser.parse(streams.dash_manifest(videos, audio, 6))
    (period,) = mpd.periods
    representation = period.adaptation_sets[0].representations[0]
    assert not representation.base_urls
    listed = representation.segment_lists[0]
    assert listed.initializations[0].source_url == "video_480p-00000.mp4"
    assert [u.media for u in listed.segment_urls] == [s.file for s in videos[0].segments]
    master = m3u8.loads(streams.master_playlist(videos, audio))
    assert [p.stream_info.resolution for p in master.playlists] == [(854, 480), (640, 360)]
    assert master.playlists[0].stream_info.bandwidth == videos[0].peak_bps + audio.peak_bps


def test_the_pieces_files_are_signed_and_nothing_else(store: Recording) -> None:
    videos, audio = tracks(store)

    def sign(name: str) -> str:
        return f"https://bucket.example/{name}?X-Amz-Signature=abc&x=1"

    signed = playback.signed_playlist(streams.media_playlist(videos[0]), sign)
    assert signed.count("https://bucket.example/video_480p-00001.mp4?") == 2
    mpd = playback.signed_manifest(streams.dash_manifest(videos, audio, 6), sign)
    assert 'sourceURL="https://bucket.example/video_480p-00000.mp4?X-Amz-Signature=abc&amp;x=1"' in mpd
    assert 'media="https://bucket.example/audio-00002.mp4?X-Amz-Signature=abc&amp;x=1"' in mpd
    assert not re.search(r'(media|sourceURL)="(?!https://bucket)', mpd)
    for name in ("video_480p-1.mp4", "video_480p-000001.mp4", "../video_480p-00001.mp4", "x-00001.mp4"):
        assert not playback.FILE_NAME.fullmatch(name)
    assert streams.media_type("audio-00002.mp4") == "audio/mp4" and streams.media_type("video_480p-00002.mp4") == (
        "video/mp4"
    )


def test_pieces_that_do_not_continue_each_other_are_refused(store: Recording, tmp_path: Path) -> None:
    late = tmp_path / "late.mp4"
    late.write_bytes(store.get_bytes(streams.stream_prefix(JOB) + "video_480p-00002.mp4"))
    shift_decode_times(late, 15360 // 25)  # 40 ms late
    assert read_layout(late).fragments[0].start == 8 * 15360 + 15360 // 25
    store.put_file(streams.stream_prefix(JOB) + "video_480p-00002.mp4", late, "video/mp4")
    pieces = streampieces.read_pieces(store, JOB, names("video_480p", 4))
    with pytest.raises(streampieces.NotStreamable, match=r"video_480p-00002.mp4 starts \+40.0 ms"):
        streampieces.pieced_track("video_480p", pieces, 6)


def test_pieces_whose_inits_differ_but_for_bit_rates_are_refused(store: Recording) -> None:
    first, second = (bytes.fromhex(e["init"]) for e in CAPTURED if e["name"] in names("video_480p", 2))
    assert first != second and comparable_init(first) == comparable_init(second)  # btrt only
    sound = [bytes.fromhex(e["init"]) for e in CAPTURED if e["name"] in names("audio", 2)]
    assert sound[0] != sound[1] and comparable_init(sound[0]) == comparable_init(sound[1])  # btrt and esds
    pieces = streampieces.read_pieces(store, JOB, names("video_480p", 4))
    at = pieces[1].init.index(b"avcC") + 8  # the level in the picture's configuration
    changed = streampieces.PieceFile(
        pieces[1].name, pieces[1].layout, pieces[1].init[:at] + b"\x29" + pieces[1].init[at + 1 :]
    )
    with pytest.raises(streampieces.NotStreamable, match=re.escape("init of video_480p-00001.mp4 differs")):
        streampieces.pieced_track("video_480p", [pieces[0], changed, *pieces[2:]], 6)


def test_a_missing_piece_file_is_said(store: Recording) -> None:
    store.delete(streams.stream_prefix(JOB) + "audio-00001.mp4")
    with pytest.raises(streampieces.NotPackaged, match=re.escape("audio-00001.mp4 is not packaged")):
        streampieces.read_pieces(store, JOB, names("audio", 3))
    streampieces.remove_pieces(store, JOB)
    assert not list(store.list(streams.stream_prefix(JOB)))


def test_where_pieces_start_on_the_streams_timeline() -> None:
    source = SourceInfo(width=854, height=480, video_codec="h264", audio_codec="aac", duration=13.0)
    plan = SegmentPlan(
        source=source, starts=[0.5, 4.5, 8.5], duration=13.0, has_audio=True, audio_offset=0.0,
        sound_rate=44100, sound_starts=[0, 176128, 352256],
    )  # fmt: skip
    assert [streampieces.picture_at(plan, n) for n in range(3)] == [0.0, 4.0, 8.0]
    # The first part's frames are the priming frame and its own: the second starts one frame later.
    assert [streampieces.sound_at(plan, n) * 44100 for n in range(3)] == pytest.approx([0, 177152, 353280])
    later = plan.model_copy(update={"audio_offset": 0.25})  # the sound started later in the original
    assert streampieces.sound_at(later, 0) == 0.25 and streampieces.picture_at(later, 1) == 4.0


def test_a_failed_stream_output_takes_its_pieces_files_with_it(env: Env) -> None:
    job_id = env.job(b"\x00" * 64, ["hls"])
    prefix = streams.stream_prefix(job_id)
    for name in ("video_360p-00000.mp4", "audio-00001.mp4"):
        env.converted.put_bytes(prefix + name, b"piece", "video/mp4")
    env.converted.put_bytes(f"{job_id}/segments/hls/00000.mp4", b"encoded", "application/octet-stream")
    output = Output(env.rt.jobs, env.rt.jobs.job(job_id), PRESETS["hls"], env.record(job_id, "hls"))
    segmenting.fail(env.rt, [output], "The pieces of the original are missing (they may have expired).")
    assert env.record(job_id, "hls").status is OutputStatus.FAILED
    assert not list(env.converted.list(prefix)) and not list(env.converted.list(f"{job_id}/segments/"))
