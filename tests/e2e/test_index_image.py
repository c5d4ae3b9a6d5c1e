"""An original described from its index alone (``indeximage``): ffprobe says of the image what it says
of the whole file, for originals whose facts come from the index and from the first frame alike, while
only the index and the first samples are read; and what cannot be read so gets no image."""

from __future__ import annotations

import functools
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import H264_ULTRAFAST, ClipFactory
from video_converter import indeximage
from video_converter.ffmpeg import FFmpeg, ffmpeg_path
from video_converter.ffmpeg.runner import child_env

HDR10 = "colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:log-level=error"
ORIGINALS: dict[str, dict[str, Any]] = {
    "h264-aac.mp4": {"seconds": 4.0},
    "faststart.mov": {"seconds": 4.0, "extra": ("-movflags", "+faststart")},
    # the field order is in the first frame, not the index
    "interlaced.mp4": {"seconds": 2.0, "encoder": (*H264_ULTRAFAST, "-flags", "+ildct+ilme", "-x264opts", "tff=1")},
    # an MPEG-4 Part 2 picture's size is in its first frame (the stsd has none FFmpeg reads)
    "part2.mp4": {"seconds": 2.0, "encoder": ("-c:v", "mpeg4")},
    "hdr.mp4": {
        "seconds": 1.0,
        "encoder": ("-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1", "-x265-params", HDR10),
    },
    "pcm.mov": {"seconds": 2.0, "extra": ("-c:a", "pcm_s16le")},
    "mp3.mp4": {"seconds": 2.0, "extra": ("-c:a", "libmp3lame")},
    "silent.mp4": {"seconds": 2.0, "audio": False},
}


class Reads:
    """A range reader over a file that records what it was asked for."""

    def __init__(self, path: Path) -> None:
        self.path, self.spans = path, list[tuple[int, int]]()

    def __call__(self, start: int, length: int) -> bytes:
        self.spans.append((start, length))
        return indeximage.read_file(self.path, start, length)


def rotated(make_clip: ClipFactory, tmp_path: Path) -> Path:
    """A phone's portrait video: the picture stored landscape, a display matrix turning it."""
    plain, turned = make_clip("plain.mp4", seconds=2.0), tmp_path / "rotated.mp4"
    argv = [ffmpeg_path(), "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(turned)]
    subprocess.run(argv, check=True, timeout=60, env=child_env())
    return turned


@pytest.mark.parametrize("name", [*sorted(ORIGINALS), "rotated.mp4"])
def test_the_image_of_an_original_probes_as_the_original_does(
    name: str, make_clip: ClipFactory, tmp_path: Path
) -> None:
    original = rotated(make_clip, tmp_path) if name == "rotated.mp4" else make_clip(name, **ORIGINALS[name])
    size, reads = original.stat().st_size, Reads(original)
    image = indeximage.make(reads, size, tmp_path / "image.mp4")
    assert image is not None and image.size == size
    ffmpeg = FFmpeg()
    assert ffmpeg.inspect(image.path) == ffmpeg.inspect(original)
    # read: the top-level boxes' headers, the ftyp and the moov whole, each track's first sample
    boxes = [span for span in reads.spans if span[1] == 16]
    assert len(reads.spans) <= 2 * len(boxes) + len(image.movie.tracks)
    assert image.fetched == sum(length for _, length in reads.spans)
    assert image.path.stat().st_blocks * 512 <= image.fetched + 64 * 1024  # the rest is a hole


def test_a_long_original_reads_a_tiny_share_of_itself(make_clip: ClipFactory, tmp_path: Path) -> None:
    original = make_clip("long.mp4", seconds=30.0, size="640x360")
    size = original.stat().st_size
    image = indeximage.make(functools.partial(indeximage.read_file, original), size, tmp_path / "image.mp4")
    assert image is not None
    assert image.fetched < 0.05 * size, (image.fetched, size)
    assert image.longer_than(29.0) and not image.longer_than(31.0)
    assert image.read(0, size) != original.read_bytes()  # the media are not in it


def box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">I4s", size if size is not None else 8 + len(payload), kind) + payload


@pytest.mark.parametrize(
    "data",
    [
        b"\x47" * 4096,  # MPEG-TS: no boxes at all
        box(b"ftyp", b"isom\0\0\0\0") + box(b"mdat", b"\0" * 64),  # no index
        box(b"ftyp", b"isom\0\0\0\0") + box(b"moov", b"", size=1 << 30),  # an index past the end
    ],
    ids=["transport-stream", "no-moov", "truncated"],
)
def test_what_has_no_readable_index_gets_no_image(data: bytes, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    read = functools.partial(indeximage.read_file, source)
    assert indeximage.make(read, len(data), tmp_path / "image.mp4") is None


def test_an_index_larger_than_a_split_reads_gets_no_image(
    make_clip: ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_clip("clip.mp4", seconds=2.0)
    monkeypatch.setattr(indeximage, "MAX_INDEX_BYTES", 512)
    read = Reads(original)
    assert indeximage.make(read, original.stat().st_size, tmp_path / "image.mp4") is None
    assert sum(length for _, length in read.spans) <= 64  # box headers only: the moov was not read
