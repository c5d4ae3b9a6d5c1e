"""Reading a fragmented MP4 (CMAF) file's layout: where its initialization part ends, and each
fragment's byte range, decode time and duration, from the boxes themselves (ISO/IEC 14496-12).

Only the box headers are read from the file, and the small ``moov`` and ``moof`` boxes whole: a
fragment's media data (``mdat``) is skipped, so a 4 GiB rendition costs a few kilobytes of memory.
The files are our own (FFmpeg's mp4 muxer, fragmented); anything malformed raises ``Malformed``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    width: int = 0  # a video track's coded picture size, from its sample entry (0 for sound)
    height: int = 0
    init: bytes = field(default=b"", repr=False)  # the initialization part's bytes


def _full(data: bytes, box: Box) -> tuple[int, int]:
    """A full box's version and flags."""
    version_flags = struct.unpack_from(">I", data, box.body)[0]
    return version_flags >> 24, version_flags & 0xFFFFFF


@dataclass(frozen=True)
class _Movie:
    timescale: int
    default_duration: int
    codec: str
    width: int
    height: int


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
    width, height = _picture_size(moov, stsd)
    return _Movie(timescale, default, _codec(moov, stsd), width, height)


def _picture_size(moov: bytes, stsd: Box) -> tuple[int, int]:
    """A visual sample entry's width and height (after its 6 reserved bytes, data reference index and
    16 bytes of pre-defined and reserved fields); (0, 0) for sound."""
    entry = next(boxes_in(moov, _content(stsd), stsd.end), None)
    if entry is None or entry.kind not in ("avc1", "avc3", "hvc1", "hev1") or entry.size < entry.header + 28:
        return 0, 0
    width, height = struct.unpack_from(">HH", moov, entry.body + 24)
    return int(width), int(height)


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


Reader = Callable[[int, int], bytes]  # (offset, length) -> those bytes of the file (fewer at its end)


def read_layout(path: Path) -> Layout:
    """The layout of one of our fragmented MP4 files on disk."""
    with path.open("rb") as stream:

        def read(offset: int, length: int) -> bytes:
            stream.seek(offset)
            return stream.read(length)

        return layout_of(read, path.stat().st_size)


def layout_of(read: Reader, size: int) -> Layout:
    """The layout of one of our fragmented MP4 files of ``size`` bytes, read through ``read`` (by range,
    from a store): each top-level box's header, the ``moov`` and every ``moof`` whole, never an ``mdat``'s
    content. One read a fragment, mostly: the header of a box after an ``mdat`` is read with as many bytes
    as the last ``moof`` and the next ``mdat`` header took (fragments of one file are much alike)."""
    ahead = _Ahead(read, size)
    movie: _Movie | None = None
    init, offset, guess = b"", 0, 16
    fragments: list[Fragment] = []
    while offset < size:
        box = _box_at(ahead(offset, 16, guess), offset, size)
        if box.kind == "moov":  # read with what is before it (ftyp): the init, in one read
            init = read(0, box.end)
            movie = _movie(init[box.offset + box.header :])
        elif box.kind == "moof":
            if movie is None:
                raise Malformed("a fragment before the movie box")
            data = ahead(box.offset, box.size + 16)  # and the header of its mdat
            mdat = _box_at(data[box.size :], box.end, size) if box.end < size else None
            if mdat is None or mdat.kind != "mdat":
                raise Malformed("a fragment without its media data")
            if not fragments and box.offset > len(init):  # boxes between the movie and the first fragment
                init += read(len(init), box.offset - len(init))
            start, duration = _fragment_timing(data[box.header : box.size], movie.default_duration)
            fragments.append(Fragment(box.offset, mdat.end - box.offset, start, duration))
            box, guess = mdat, box.size + 32
        offset = box.end
    if movie is None or not fragments:
        raise Malformed("not a fragmented MP4 (no movie or no fragment)")
    return Layout(len(init), movie.timescale, movie.codec, fragments, size, movie.width, movie.height, init)


class _Ahead:
    """Reads through ``read``, keeping the last bytes read: a read may ask for more than it needs now
    (``more``), and a later one inside them costs nothing."""

    def __init__(self, read: Reader, size: int) -> None:
        self._read, self._size = read, size
        self._at, self._data = 0, b""

    def __call__(self, offset: int, length: int, more: int = 0) -> bytes:
        start = offset - self._at
        if start >= 0 and offset + length <= self._at + len(self._data):
            return self._data[start : start + length]
        self._at, self._data = offset, self._read(offset, min(self._size - offset, max(length, more)))
        return self._data[:length]


def shift_decode_times(path: Path, delta: int) -> None:
    """Add ``delta`` (in the track's timescale) to every fragment's decode time (``tfdt``), in place:
    the fragments of a piece packaged alone (FFmpeg starts them at 0) moved to where the piece is on
    the whole stream's timeline. Only the ``moof`` boxes are read and rewritten (same sizes)."""
    size = path.stat().st_size
    with path.open("r+b") as stream:
        for box in list(file_boxes(stream, size)):
            if box.kind != "moof":
                continue
            moof = bytearray(_read(stream, box)[box.header :])
            tfdt = child(bytes(moof), Box("moof", 0, len(moof), 0), "traf", "tfdt")
            if tfdt is None:
                raise Malformed("a fragment without its decode time")
            version, _ = _full(bytes(moof), tfdt)
            layout = ">Q" if version == 1 else ">I"
            (start,) = struct.unpack_from(layout, moof, tfdt.body + 4)
            if start + delta < 0 or (version != 1 and start + delta >= 1 << 32):
                raise Malformed(f"a decode time of {start + delta} does not fit the fragment's box")
            struct.pack_into(layout, moof, tfdt.body + 4, start + delta)
            stream.seek(box.offset + box.header)
            stream.write(moof)


def comparable_init(init: bytes) -> bytes:
    """An initialization part with what differs between pieces of one encode and never matters to a
    decoder blanked: the bit rates FFmpeg measures per file, in the ``btrt`` box and in an AAC track's
    decoder configuration (``esds``: buffer size, maximum and average bit rates)."""
    data = bytearray(init)
    at = data.find(b"btrt")
    while at >= 4:
        data[at + 4 : at + 16] = bytes(12)
        at = data.find(b"btrt", at + 16)
    at = data.find(b"esds")
    if at >= 4:
        config = _decoder_config(data, at + 8)  # after the type and the full box's version and flags
        if config is not None:
            data[config + 2 : config + 13] = bytes(11)  # after the object and stream types
    return bytes(data)


def _descriptor(data: bytes | bytearray, at: int, tag: int) -> int | None:
    """Where the body of the descriptor at ``at`` starts, if it is a ``tag`` one (ISO/IEC 14496-1: a
    tag byte, then a length in 7-bit groups)."""
    if at >= len(data) or data[at] != tag:
        return None
    at += 1
    for _ in range(4):
        if at >= len(data):
            return None
        more = data[at] & 0x80
        at += 1
        if not more:
            return at
    return None


def _decoder_config(data: bytes | bytearray, at: int) -> int | None:
    """The body of the DecoderConfigDescriptor inside the ES_Descriptor at ``at``, if there is one."""
    body = _descriptor(data, at, 0x03)
    if body is None or body + 3 > len(data):
        return None
    flags = data[body + 2]
    after = body + 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
    if flags & 0x40 and after < len(data):  # a URL: its length, then itself
        after += 1 + data[after]
    config = _descriptor(data, after, 0x04)
    return config if config is not None and config + 13 <= len(data) else None


def _read(stream: BinaryIO, box: Box) -> bytes:
    stream.seek(box.offset)
    return stream.read(box.size)
