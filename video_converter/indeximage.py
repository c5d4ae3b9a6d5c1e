"""An MP4 or MOV original described from its index alone, so that the split of a long video never
downloads it.

The split needs two things from the original: what ffprobe says of it (the limits are checked on that,
and the plan keeps it) and its index (where the pieces are cut). Both come from an **image** of the
original: a sparse file of the original's size holding its ``ftyp`` and ``moov`` where they are in the
original, the header of every other top-level box, and the start of each track's first sample (its
FIRST_BYTES), read by range. Everything else is a hole: it reads as zeros and takes no disk. The first
samples' starts are there because FFmpeg takes some facts from the first frame rather than the index
(an H.264 picture's field order from its slice header, an MPEG-4 Part 2 picture's size from its VOL
header), and those headers open the frame; with them ffprobe says of the image what it says of the
whole file (the tests compare the two on interlaced, rotated, HDR, MPEG-4 Part 2, PCM and MP3
originals).

An original that is no MP4 or MOV with an index before its end, or whose index is larger than a split
should read (a crafted ``moov`` of gigabytes), gets no image: it is downloaded and probed whole, as
every short original is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from . import mp4join

# The largest index read by range: an hour of 60 fps video with its sound has about 2 MB of sample
# tables, the longest original the limits admit (MAX_DURATION_SECONDS, 4 h by default) under 10 MB.
MAX_INDEX_BYTES = 32 * 1024 * 1024
# A frame's parameter sets, SEI messages and first slice header are in its first few KB (a keyframe of
# 1080p is a few hundred KB: its picture data is not needed).
FIRST_BYTES = 16 * 1024


@dataclass(frozen=True)
class Image:
    """The image of an original (``path``), the index read from it, and what reading it cost."""

    path: Path
    movie: mp4join.Movie
    size: int  # the original's size, which is the image's too
    fetched: int  # bytes of the original read to make it

    def read(self, start: int, length: int) -> bytes:
        """Bytes of the image by range, as ``Storage.read_range`` gives those of the original (only the
        index and the first samples are the original's; the rest reads as zeros)."""
        return read_file(self.path, start, length)

    def longer_than(self, seconds: float) -> bool:
        """Some track of the original lasts more than ``seconds`` by its index (its media, before edit
        lists): the original may be split, so the image is worth probing."""
        return any(track.media_duration > seconds * track.timescale for track in self.movie.tracks)


def read_file(path: Path, start: int, length: int) -> bytes:
    """Bytes of a local file by range (a ``mp4join.Reader`` once the path is given)."""
    with path.open("rb") as file:
        file.seek(start)
        return file.read(length)


class _Counted:
    """A reader that counts the bytes it returned."""

    def __init__(self, read: mp4join.Reader) -> None:
        self._read, self.fetched = read, 0

    def __call__(self, start: int, length: int) -> bytes:
        data = self._read(start, length)
        self.fetched += len(data)
        return data


def make(read: mp4join.Reader, size: int, path: Path) -> Image | None:
    """Write the image of an original of ``size`` bytes, read by range with ``read``, at ``path``;
    None when the original is not an MP4 or MOV whose index can be read so."""
    counted = _Counted(read)
    try:
        boxes = list(mp4join.top_level(counted, size))
        index = {(start, end) for kind, start, end in boxes if kind in (b"ftyp", b"moov")}
        if sum(end - start for start, end in index) > MAX_INDEX_BYTES:
            return None
        with path.open("wb") as image:
            image.truncate(size)
            for _, start, end in boxes:
                image.seek(start)
                image.write(counted(start, end - start if (start, end) in index else mp4join.HEADER_READ))
        movie = mp4join.read_movie(functools.partial(read_file, path), size)  # the index is read once
        firsts = _first_samples(movie, size)
    except mp4join.NotJoinable:
        return None
    if firsts is None:
        return None
    with path.open("r+b") as image:
        for start, length in firsts:
            image.seek(start)
            image.write(counted(start, length))
    return Image(path, movie, size, counted.fetched)


def _first_samples(movie: mp4join.Movie, size: int) -> list[tuple[int, int]] | None:
    """Where each track's first sample starts, and its first FIRST_BYTES (start, length); None when
    one is outside the file."""
    found = []
    for track in movie.tracks:
        if not track.samples:
            continue
        samples = mp4join.Samples.of(track)  # NotJoinable when its tables do not agree
        start, length = samples.offsets[0], min(samples.sizes[0], FIRST_BYTES)
        if start + length > size:
            return None
        found.append((start, length))
    return found
