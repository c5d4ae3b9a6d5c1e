"""mp4join on MP4s FFmpeg makes here: an index read by range and cut at sync samples, pieces joined
into one index, the layout S3 can copy (parts of at least the minimum, padding, small pieces carried),
and what cannot be joined so."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_clip_file
from video_converter import mp4join
from video_converter.ffmpeg import ffmpeg_path, ffprobe_path
from video_converter.ffmpeg.runner import child_env

RATE = 30


def run(*args: str) -> None:
    subprocess.run([ffmpeg_path(), "-v", "error", "-y", *args], check=True, timeout=120, env=child_env())


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mp4join")
    return make_clip_file(folder / "src.mp4", seconds=6, size="320x240", rate=RATE, extra=("-g", str(RATE), "-bf", "2"))


def piece(source: Path, start: int, end: int | None, out: Path, *extra: str) -> Path:
    """Seconds ``start``..``end`` of the picture encoded as a piece is (MP4, timestamps kept)."""
    span = ["-to", str(end)] if end is not None else []
    run("-copyts", "-ss", str(start), *span, "-i", str(source), "-map", "0:v:0", "-c:v", "libx264",
        "-preset", "veryfast", "-bf", "2", *extra, "-an", "-f", "mp4", str(out))  # fmt: skip
    return out


def index_of(path: Path) -> mp4join.Index:
    data = path.read_bytes()
    return mp4join.read_index(lambda at, n: data[at : at + n], len(data))


def write(layout: mp4join.Layout, inputs: list[Path], out: Path) -> Path:
    data = [p.read_bytes() for p in inputs]
    with out.open("wb") as fh:
        for part in layout.parts:
            for segment in part:
                fh.write(segment if isinstance(segment, bytes) else data[segment.source][segment.start : segment.end])
    return out


def probe(path: Path) -> dict[str, Any]:
    argv = [ffprobe_path(), "-v", "error", "-count_frames", "-show_entries",
            "stream=nb_read_frames,duration:format=duration", "-of", "json", str(path)]  # fmt: skip
    return json.loads(subprocess.run(argv, check=True, capture_output=True, timeout=60, env=child_env()).stdout)


def frame_times(path: Path) -> list[float]:
    argv = [ffprobe_path(), "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time", "-of", "csv=p=0",
            str(path)]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, timeout=60, env=child_env()).stdout.decode()
    return [float(line.split(",")[0]) for line in out.split()]


@pytest.fixture(scope="module")
def pieces(source: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pieces")
    return [piece(source, s, s + 2 if s < 4 else None, folder / f"p{s}.mp4") for s in (0, 2, 4)]


def test_an_index_is_read_by_range_without_the_media(pieces: list[Path]) -> None:
    data = pieces[1].read_bytes()
    reader = mp4join.BlockReader(lambda at, n: data[at : at + n], len(data))
    index = mp4join.read_index(reader, len(data))
    assert index.track.handler == b"vide" and index.track.samples == 2 * RATE
    assert index.track.sync is not None and index.track.sync[0] == 1
    assert reader.fetched < 8 * 1024 < index.mdat_size  # headers and the moov, not the media
    assert mp4join.picture_size(index) == (320, 240) and mp4join.codec_name(index) == "h264"


@pytest.fixture
def any_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pad however small the output: these pieces are far smaller than real ones."""
    monkeypatch.setattr(mp4join, "PAD_SHARE", 1.0)


@pytest.mark.usefixtures("any_padding")
def test_pieces_joined_by_copy_are_one_video_with_no_gap_or_repeat(pieces: list[Path], tmp_path: Path) -> None:
    layout = mp4join.join([index_of(p) for p in pieces], [0.0, 2.0, 4.0], min_part=20_000)
    joined = write(layout, pieces, tmp_path / "joined.mp4")
    assert joined.stat().st_size == layout.size
    data = joined.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart
    facts = probe(joined)
    assert int(facts["streams"][0]["nb_read_frames"]) == 6 * RATE
    assert abs(float(facts["format"]["duration"]) - 6.0) < 0.05 and abs(layout.duration - 6.0) < 0.05
    times = frame_times(joined)
    steps = {round(b - a, 4) for a, b in itertools.pairwise(times)}
    assert steps == {round(1 / RATE, 4)}  # every frame one frame after the last, at the joins too
    assert layout.carried == 0 and layout.copied == sum(index_of(p).mdat_size for p in pieces)
    lead = sum(len(s) if isinstance(s, bytes) else s.size for s in layout.parts[0])
    assert lead >= 20_000 and all(len(part) == 1 for part in layout.parts[1:])  # padded; one range per part


@pytest.mark.usefixtures("any_padding")
def test_small_pieces_are_carried_in_the_leading_part_and_the_largest_goes_last(pieces: list[Path]) -> None:
    indexes = [index_of(p) for p in pieces]
    sizes = [i.mdat_size for i in indexes]
    floor = sorted(sizes)[1] + 1  # two are smaller than a part may be, one is not
    layout = mp4join.join(indexes, [0.0, 2.0, 4.0], min_part=floor)
    copied = [part[0].source for part in layout.parts[1:] if isinstance(part[0], mp4join.Run)]
    small = sorted(range(3), key=sizes.__getitem__)[:2]
    assert copied[-1] == small[1]  # the larger small one: the last part may be small
    assert layout.carried == sizes[small[0]]
    assert [s.source for s in layout.parts[0] if isinstance(s, mp4join.Run)] == [small[0]]


def test_an_output_too_small_to_pad_is_carried_whole(pieces: list[Path]) -> None:
    layout = mp4join.join([index_of(p) for p in pieces], [0.0, 2.0, 4.0])  # 5 MiB parts: padding > 2 %
    assert len(layout.parts) == 1 and layout.carried == sum(index_of(p).mdat_size for p in pieces)
    assert not any(isinstance(s, bytes) and s[4:8] == b"free" for s in layout.parts[0])


@pytest.mark.usefixtures("any_padding")
def test_a_piece_larger_than_a_part_may_be_is_copied_in_several(
    pieces: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mp4join, "MAX_PART", 10_000)
    index = index_of(pieces[0])
    layout = mp4join.join([index], [0.0], min_part=1_000)
    runs = [r for part in layout.parts[1:] for r in part if isinstance(r, mp4join.Run)]
    assert len(runs) == len(layout.parts) - 1 == -(-index.mdat_size // 10_000)
    assert sum(r.size for r in runs) == index.mdat_size and max(r.size for r in runs) <= 10_000


def test_pieces_encoded_otherwise_are_not_joined(source: Path, pieces: list[Path], tmp_path: Path) -> None:
    other = piece(source, 2, 4, tmp_path / "other.mp4", "-video_track_timescale", "90000")
    with pytest.raises(mp4join.NotJoinable, match="time scales"):
        mp4join.join([index_of(pieces[0]), index_of(other)], [0.0, 2.0])
    bigger = tmp_path / "bigger.mp4"
    run("-i", str(pieces[1]), "-vf", "scale=640:480", "-c:v", "libx264", "-f", "mp4", str(bigger))
    with pytest.raises(mp4join.NotJoinable):
        mp4join.join([index_of(pieces[0]), index_of(bigger)], [0.0, 2.0])
    with pytest.raises(mp4join.NotJoinable):
        index_of(source)  # two tracks: a piece has one


def test_an_original_is_cut_at_sync_samples_into_heads_and_ranges(source: Path, tmp_path: Path) -> None:
    data = source.read_bytes()
    movie = mp4join.read_movie(lambda at, n: data[at : at + n], len(data))
    track = movie.first(b"vide")
    assert track is not None
    samples = mp4join.Samples.of(track)
    points = mp4join.cut_points(samples, track.timescale, 2.0)
    assert points == [0, 2 * RATE, 4 * RATE] and all(p in samples.sync for p in points)
    bounds = [*points, track.samples]
    frames = 0
    for n, (first, end) in enumerate(itertools.pairwise(bounds)):
        cut = mp4join.cut(movie, track, samples, first, end)
        (start, stop), *more = cut.ranges
        assert not more and stop - start < 0.5 * len(data) and len(cut.head) < 4096
        path = tmp_path / f"cut{n}.mp4"
        path.write_bytes(cut.head + data[start:stop])
        frames += int(probe(path)["streams"][0]["nb_read_frames"])
    assert frames == 6 * RATE  # every frame in exactly one piece


@pytest.mark.parametrize("gap", [0, 1 << 20], ids=["every-run", "runs-merged"])
def test_a_sound_track_is_cut_into_the_runs_of_its_own_samples(source: Path, tmp_path: Path, gap: int) -> None:
    """Cut with a gap, a track reads its own samples' runs (the sound between the picture's chunks), and
    the head's chunk offsets point into their concatenation: the cut decodes to the track's packets."""
    data = source.read_bytes()
    movie = mp4join.read_movie(lambda at, n: data[at : at + n], len(data))
    track = movie.first(b"soun")
    assert track is not None
    samples = mp4join.Samples.of(track)
    cut = mp4join.cut(movie, track, samples, 10, track.samples - 5, gap=gap)
    if gap == 0:
        assert len(cut.ranges) > 1 and cut.size == sum(samples.sizes[10 : track.samples - 5])
    else:
        assert len(cut.ranges) == 1
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(cut.ranges))
    path = tmp_path / "sound.m4a"
    path.write_bytes(cut.head + b"".join(data[start:stop] for start, stop in cut.ranges))
    packets = subprocess.run(
        [ffprobe_path(), "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size", "-of", "csv=p=0",
         str(path)], capture_output=True, text=True, check=True, env=child_env(),
    ).stdout.split()  # fmt: skip
    assert [int(size) for size in packets] == samples.sizes[10 : track.samples - 5]
    decoded = subprocess.run(
        [ffmpeg_path(), "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True,
        env=child_env(),
    )  # fmt: skip
    assert decoded.returncode == 0 and decoded.stderr == ""


def test_what_is_not_an_mp4_has_no_index_to_cut(tmp_path: Path) -> None:
    clip = make_clip_file(tmp_path / "clip.ts", seconds=1)
    data = clip.read_bytes()
    with pytest.raises(mp4join.NotJoinable):
        mp4join.read_movie(lambda at, n: data[at : at + n], len(data))


def test_a_track_declaring_more_samples_than_an_index_holds_is_not_read(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few bytes of table may declare billions of samples (one size for all, or run lengths): such a
    track is left out of the movie (the original is then split by FFmpeg), never expanded in memory."""
    data = source.read_bytes()
    movie = mp4join.read_movie(lambda at, n: data[at : at + n], len(data))
    counts = sorted(track.samples for track in movie.tracks)
    monkeypatch.setattr(mp4join, "MAX_SAMPLES", counts[0])
    kept = mp4join.read_movie(lambda at, n: data[at : at + n], len(data)).tracks
    assert [track.samples for track in kept] == [counts[0]]
    (track,) = kept
    monkeypatch.setattr(mp4join, "MAX_SAMPLES", counts[0] - 1)
    with pytest.raises(mp4join.NotJoinable):
        mp4join.Samples.of(track)
