"""Reading a fragmented MP4 (CMAF) file's layout: where its initialization part ends, and each
fragment's byte range, decode time and duration, from the boxes themselves (ISO/IEC 14496-12).

Only the box headers are read from the file, and the small ``moov`` and ``moof`` boxes whole: a
fragment's media data (``mdat``) is skipped, so a 4 GiB rendition costs a few kilobytes of memory.
The files are our own (FFmpeg's mp4 muxer, fragmented); anything malformed raises ``Malformed``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEADER = struct.Struct(">I4s")


class Malformed(ValueError):
    """The file is not a fragmented MP4 as FFmpeg writes one."""


@dataclass(frozen=True)
class Box:
    kind: str
    offset: int  # of the header, in the buffer or the file
    size: int  # header included
    header: int  # 8, or 16 with a 64-bit size

    @property
    def body(self) -> int:
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size


def _box_at(head: bytes, offset: int, limit: int) -> Box:
    if len(head) < 8:
        raise Malformed("a box header is cut short")
    size, kind = _HEADER.unpack_from(head)
    header = 8
    if size == 1:  # a 64-bit size follows the type
        if len(head) < 16:
            raise Malformed("a box header is cut short")
        (size,) = struct.unpack_from(">Q", head, 8)
        header = 16
    elif size == 0:  # to the end of the enclosing space
        size = limit - offset
    if size < header or offset + size > limit:
        raise Malformed(f"the {kind!r} box overruns its space")
    return Box(kind.decode("latin-1"), offset, size, header)


def boxes_in(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes in ``data[start:end]``, in order."""
    limit = len(data) if end is None else end
    offset = start
    while offset < limit:
        box = _box_at(data[offset : offset + 16], offset, limit)
        yield box
        offset = box.end


def file_boxes(stream: BinaryIO, length: int) -> Iterator[Box]:
    """The top-level boxes of a file of ``length`` bytes, reading their headers only."""
    offset = 0
    while offset < length:
        stream.seek(offset)
        box = _box_at(stream.read(16), offset, length)
        yield box
        offset = box.end


def child(data: bytes, parent: Box, *path: str) -> Box | None:
    """The first box down ``path`` inside ``parent``, or None."""
    box: Box | None = parent
    for kind in path:
        assert box is not None
        box = next((b for b in boxes_in(data, _content(box), box.end) if b.kind == kind), None)
        if box is None:
            return None
    return box


_FULL_BOXES_WITH_CHILDREN = {"meta": 4, "stsd": 8}


def _content(box: Box) -> int:
    """Where a box's child boxes start (after a full box's version and flags, and stsd's entry count)."""
    return box.body + _FULL_BOXES_WITH_CHILDREN.get(box.kind, 0)


@dataclass(frozen=True)
class Fragment:
    offset: int  # of its moof
    length: int  # moof + mdat
    start: int  # decode time of its first sample, in the track's timescale
    duration: int  # in the track's timescale


@dataclass(frozen=True)
class Layout:
    """A single-track fragmented MP4: its initialization part is bytes ``0 .. init_length - 1``."""

    init_length: int
    timescale: int
    codec: str  # the RFC 6381 codecs string ("avc1.64001f", "mp4a.40.2")
    fragments: list[Fragment]
    size: int


def _full(data: bytes, box: Box) -> tuple[int, int]:
    """A full box's version and flags."""
    version_flags = struct.unpack_from(">I", data, box.body)[0]
    return version_flags >> 24, version_flags & 0xFFFFFF


@dataclass(frozen=True)
class _Movie:
    timescale: int
    default_duration: int
    codec: str


def _movie(moov: bytes) -> _Movie:
    """The track's timing and codec, from the movie box's content."""
    top = Box("moov", 0, len(moov), 0)
    mdhd = child(moov, top, "trak", "mdia", "mdhd")
    stsd = child(moov, top, "trak", "mdia", "minf", "stbl", "stsd")
    if mdhd is None or stsd is None:
        raise Malformed("the movie box has no track")
    version, _ = _full(moov, mdhd)
    (timescale,) = struct.unpack_from(">I", moov, mdhd.body + (20 if version == 1 else 12))
    trex = child(moov, top, "mvex", "trex")
    default = struct.unpack_from(">I", moov, trex.body + 12)[0] if trex is not None else 0
    return _Movie(timescale, default, _codec(moov, stsd))


def _codec(moov: bytes, stsd: Box) -> str:
    """The codecs string of the track's sample entry: H.264 from its avcC, AAC from its profile."""
    entry = next(boxes_in(moov, _content(stsd), stsd.end), None)
    if entry is None:
        raise Malformed("the track has no sample entry")
    if entry.kind in ("avc1", "avc3"):
        at = moov.find(b"avcC", entry.body, entry.end)
        if at < 0:
            raise Malformed("an H.264 track without its configuration")
        profile, constraints, level = moov[at + 5 : at + 8]
        return f"{entry.kind}.{profile:02x}{constraints:02x}{level:02x}"
    if entry.kind == "mp4a":
        return "mp4a.40.2"  # AAC-LC: FFmpeg's encoder
    return entry.kind


def _fragment_timing(moof: bytes, default_duration: int) -> tuple[int, int]:
    """A fragment's decode time and duration (the sum of its samples'), from its moof's content."""
    top = Box("moof", 0, len(moof), 0)
    traf = child(moof, top, "traf")
    tfdt = child(moof, top, "traf", "tfdt")
    tfhd = child(moof, top, "traf", "tfhd")
    if traf is None or tfdt is None or tfhd is None:
        raise Malformed("a fragment without its track's timing")
    version, _ = _full(moof, tfdt)
    start = struct.unpack_from(">Q" if version == 1 else ">I", moof, tfdt.body + 4)[0]
    duration = _tfhd_duration(moof, tfhd) or default_duration
    total = 0
    for trun in (b for b in boxes_in(moof, traf.body, traf.end) if b.kind == "trun"):
        total += _trun_duration(moof, trun, duration)
    return start, total


def _tfhd_duration(moof: bytes, tfhd: Box) -> int:
    _, flags = _full(moof, tfhd)
    at = tfhd.body + 8  # after version, flags and track id
    for flag, size in ((0x01, 8), (0x02, 4)):  # base data offset, sample description index
        at += size if flags & flag else 0
    return int(struct.unpack_from(">I", moof, at)[0]) if flags & 0x08 else 0


def _trun_duration(moof: bytes, trun: Box, default: int) -> int:
    _, flags = _full(moof, trun)
    (count,) = struct.unpack_from(">I", moof, trun.body + 4)
    if not flags & 0x100:
        return int(count) * default
    at = trun.body + 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
    per_sample = 4 * bin(flags & 0xF00).count("1")
    return sum(int(struct.unpack_from(">I", moof, at + n * per_sample)[0]) for n in range(count))


def read_layout(path: Path) -> Layout:
    """The layout of one of our fragmented MP4 files."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        tops = list(file_boxes(stream, size))
        moov = next((b for b in tops if b.kind == "moov"), None)
        first = next((i for i, b in enumerate(tops) if b.kind == "moof"), None)
        if moov is None or first is None:
            raise Malformed("not a fragmented MP4 (no movie or no fragment)")
        movie = _movie(_read(stream, moov)[moov.header :])
        fragments = []
        for index in range(first, len(tops)):
            box = tops[index]
            if box.kind != "moof":
                continue
            mdat = tops[index + 1] if index + 1 < len(tops) else None
            if mdat is None or mdat.kind != "mdat":
                raise Malformed("a fragment without its media data")
            start, duration = _fragment_timing(_read(stream, box)[box.header :], movie.default_duration)
            fragments.append(Fragment(box.offset, mdat.end - box.offset, start, duration))
    return Layout(tops[first].offset, movie.timescale, movie.codec, fragments, size)


def _read(stream: BinaryIO, box: Box) -> bytes:
    stream.seek(box.offset)
    return stream.read(box.size)
