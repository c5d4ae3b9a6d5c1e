"""MP4s joined without touching their media: the pieces' indexes (``moov``) become one index, and the
joined file is laid out as a list of byte ranges of the pieces, so a store can assemble it by copying
(S3: multipart UploadPartCopy; on disk: file copies) while the function that joins moves only the index.

Each input is one of our own single-track MP4s (an encoded piece of the picture, or a part of the sound
in an M4A), whose ``mdat`` box is copied whole into the joined file. The joined file is ``ftyp``,
``moov`` (before the media, as ``+faststart`` puts it), then the copied ``mdat`` boxes; a file may hold
any number of ``mdat`` boxes, and the chunk offsets of the new index point into them.

S3 takes parts of at least 5 MiB (all but the last): the leading part (``ftyp`` + ``moov``) is padded
with a ``free`` box to that size, and a piece too small to be a part of its own is carried in the
leading part instead (read through the function, counted in ``Layout.carried``). An output so small
that the padding would be more than ``PAD_SHARE`` of it is carried whole, unpadded. Formats other than
MP4 are not joined here: WebM (Matroska) has no index of byte offsets to rewrite and puts each
cluster's timestamps in the media itself, and a GIF is not encoded in pieces.

Everything here is pure: bytes in, bytes and numbers out.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

MIN_PART = 5 * 1024 * 1024  # S3's smallest part (all but the last of an upload)
MAX_PART = 5 * 1024**3  # and its largest
# A leading part padded to S3's minimum makes a small output larger; past this share of the output's
# size the padding is not worth it, and the pieces are carried instead (a small output: read once).
PAD_SHARE = 0.02
MOVIE_TIMESCALE = 1000  # as FFmpeg's MP4 muxer writes mvhd
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}
# The most samples of one track read from an index (4 h of 60 fps video is 864,000, of AAC 675,000):
# PCM in a MOV has a sample per audio sample (an hour: 172 million), and a crafted table may declare
# billions; such a track is not cut by its index (it is split by FFmpeg from the downloaded original).
MAX_SAMPLES = 2_000_000
HEADER_READ = 16  # a box header: size, type and, for a 64-bit size, the size


class NotJoinable(ValueError):
    """The inputs cannot be joined by copying their media (the caller joins them the usual way)."""


# --- boxes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int  # of the header, in the buffer it was read from
    end: int
    body: int  # where its payload starts

    def payload(self, data: bytes) -> bytes:
        return data[self.body : self.end]


def _header(data: bytes, at: int, end: int) -> tuple[bytes, int, int]:
    """(type, size, header length) of the box at ``at``; a size of 0 runs to ``end``."""
    if at + 8 > end:
        raise NotJoinable(f"A box header is cut short at byte {at}")
    size, kind = struct.unpack(">I4s", data[at : at + 8])
    length = 8
    if size == 1:
        if at + 16 > end:
            raise NotJoinable(f"A 64-bit box header is cut short at byte {at}")
        (size,) = struct.unpack(">Q", data[at + 8 : at + 16])
        length = 16
    elif size == 0:
        size = end - at
    if size < length or at + size > end:
        raise NotJoinable(f"The box {kind!r} at byte {at} runs past its parent")
    return kind, size, length


def children(data: bytes, start: int = 0, end: int | None = None) -> list[Box]:
    """The boxes one after the other in ``data[start:end]``."""
    end = len(data) if end is None else end
    found, at = [], start
    while at < end:
        kind, size, length = _header(data, at, end)
        found.append(Box(kind, at, at + size, at + length))
        at += size
    return found


def child(data: bytes, parent: Box, kind: bytes) -> Box | None:
    return next((box for box in children(data, parent.body, parent.end) if box.kind == kind), None)


def need(data: bytes, parent: Box, *path: bytes) -> Box:
    """The box at ``path`` under ``parent``; NotJoinable when one is missing."""
    box = parent
    for kind in path:
        found = child(data, box, kind)
        if found is None:
            raise NotJoinable(f"The index has no {kind.decode(errors='replace')} box")
        box = found
    return box


def make_box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    if len(body) + 8 > 0xFFFFFFFF:
        return struct.pack(">I4sQ", 1, kind, len(body) + 16) + body
    return struct.pack(">I4s", len(body) + 8, kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return make_box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def free_box(size: int) -> bytes:
    """Padding of exactly ``size`` bytes (8 at least)."""
    if size < 8:
        raise ValueError("A free box takes 8 bytes at least")
    return struct.pack(">I4s", size, b"free") + bytes(size - 8)


# --- one input's index -----------------------------------------------------------------------------------


@dataclass
class Track:
    """The sample tables of one track, as the pieces have them (run lengths kept as they are)."""

    handler: bytes  # b"vide" or b"soun"
    timescale: int
    tkhd: bytes  # whole boxes, copied into the joined index with their durations set again
    mdhd: bytes
    hdlr: bytes
    media_header: bytes  # vmhd or smhd
    dinf: bytes
    stsd: bytes
    deltas: list[tuple[int, int]]  # stts: (count, duration)
    offsets: list[tuple[int, int]] | None  # ctts: (count, composition offset)
    offsets_version: int
    sync: list[int] | None  # stss: 1-based sample numbers, None: every sample is a sync sample
    sizes: list[int]
    chunks: list[tuple[int, int, int]]  # stsc: (first chunk, samples per chunk, description)
    chunk_offsets: list[int]  # in the input file
    edits: list[tuple[int, int]] = field(default_factory=list)  # elst: (duration, media time)

    @property
    def samples(self) -> int:
        return len(self.sizes)

    @property
    def media_duration(self) -> int:
        return sum(count * delta for count, delta in self.deltas)

    @property
    def first_shown(self) -> int:
        """The media time the track is shown from: its edit's start, else its first composition offset."""
        media = [time for _, time in self.edits if time >= 0]
        if media:
            return media[0]
        return self.offsets[0][1] if self.offsets else 0


@dataclass
class Index:
    """One input: its ``ftyp``, its ``mvhd``, its one track, and where its ``mdat`` box is."""

    ftyp: bytes
    mvhd: bytes
    track: Track
    mdat_start: int
    mdat_end: int

    @property
    def mdat_size(self) -> int:
        return self.mdat_end - self.mdat_start


def _u32s(data: bytes, at: int, count: int, width: int = 1) -> list[tuple[int, ...]]:
    size = 4 * width * count
    if at + size > len(data):
        raise NotJoinable("A sample table is cut short")
    values = struct.unpack(f">{width * count}I", data[at : at + size])
    return [values[i : i + width] for i in range(0, len(values), width)]


def _table(data: bytes, box: Box, width: int) -> tuple[int, list[tuple[int, ...]]]:
    """A full box holding a count and then ``count`` rows of ``width`` 32-bit numbers: (version, rows)."""
    version = data[box.body]
    (count,) = struct.unpack(">I", data[box.body + 4 : box.body + 8])
    return version, _u32s(data, box.body + 8, count, width)


def _sizes(data: bytes, stsz: Box) -> list[int]:
    constant, count = struct.unpack(">II", data[stsz.body + 4 : stsz.body + 12])
    if count > MAX_SAMPLES:  # a few bytes can declare billions of samples of one size
        raise NotJoinable(f"The track has {count} samples, more than are read from an index")
    if constant:
        return [constant] * count
    return [row[0] for row in _u32s(data, stsz.body + 12, count)]


def _chunk_offsets(data: bytes, stbl: Box) -> list[int]:
    stco = child(data, stbl, b"stco")
    if stco is not None:
        return [row[0] for row in _table(data, stco, 1)[1]]
    co64 = need(data, stbl, b"co64")
    _, rows = _table(data, co64, 2)
    return [(high << 32) | low for high, low in rows]


def _edits(data: bytes, trak: Box) -> list[tuple[int, int]]:
    elst = child(data, need(data, trak, b"edts"), b"elst") if child(data, trak, b"edts") else None
    if elst is None:
        return []
    version = data[elst.body]
    (count,) = struct.unpack(">I", data[elst.body + 4 : elst.body + 8])
    row, at, found = (20 if version else 12), elst.body + 8, []
    for _ in range(count):
        if version:
            duration, media_time = struct.unpack(">Qq", data[at : at + 16])
        else:
            duration, media_time = struct.unpack(">Ii", data[at : at + 8])
        found.append((duration, media_time))
        at += row
    return found


def _signed(value: int, version: int) -> int:
    return value - (1 << 32) if version and value >= 1 << 31 else value


def parse_track(data: bytes, trak: Box) -> Track:
    """The track of ``trak`` in ``data`` (a ``moov`` box's bytes)."""
    mdia = need(data, trak, b"mdia")
    mdhd, minf = need(data, mdia, b"mdhd"), need(data, mdia, b"minf")
    stbl = need(data, minf, b"stbl")
    timescale_at = mdhd.body + (20 if data[mdhd.body] else 12)
    (timescale,) = struct.unpack(">I", data[timescale_at : timescale_at + 4])
    hdlr = need(data, mdia, b"hdlr")
    header = child(data, minf, b"vmhd") or child(data, minf, b"smhd")
    if header is None or not timescale:
        raise NotJoinable("The track is neither picture nor sound")
    ctts = child(data, stbl, b"ctts")
    stss = child(data, stbl, b"stss")
    version, offsets = _table(data, ctts, 2) if ctts is not None else (0, [])

    def whole(box: Box) -> bytes:
        return data[box.start : box.end]

    return Track(
        handler=data[hdlr.body + 8 : hdlr.body + 12],
        timescale=timescale,
        tkhd=whole(need(data, trak, b"tkhd")),
        mdhd=whole(mdhd),
        hdlr=whole(hdlr),
        media_header=whole(header),
        dinf=whole(need(data, minf, b"dinf")),
        stsd=whole(need(data, stbl, b"stsd")),
        deltas=[(c, d) for c, d in _table(data, need(data, stbl, b"stts"), 2)[1]],
        offsets=[(c, _signed(o, version)) for c, o in offsets] if ctts is not None else None,
        offsets_version=version,
        sync=[row[0] for row in _table(data, stss, 1)[1]] if stss is not None else None,
        sizes=_sizes(data, need(data, stbl, b"stsz")),
        chunks=[(f, n, d) for f, n, d in _table(data, need(data, stbl, b"stsc"), 3)[1]],
        chunk_offsets=_chunk_offsets(data, stbl),
        edits=_edits(data, trak),
    )


Reader = Callable[[int, int], bytes]  # (start, length) -> those bytes of the input


def _peek(head: bytes, remaining: int) -> tuple[bytes, int]:
    """(type, size) of a top-level box from its first bytes, ``remaining`` bytes being left in the file."""
    if len(head) < 8:
        raise NotJoinable("A box header is cut short")
    size, kind = struct.unpack(">I4s", head[:8])
    if size == 1:
        if len(head) < 16:
            raise NotJoinable("A 64-bit box header is cut short")
        (size,) = struct.unpack(">Q", head[8:16])
    elif size == 0:
        size = remaining
    if size < 8 or size > remaining:
        raise NotJoinable(f"The box {kind!r} runs past the end of the file")
    return kind, size


def top_level(read: Reader, size: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of each top-level box of an input of ``size`` bytes, reading only headers."""
    at = 0
    while at < size:
        kind, length = _peek(read(at, min(HEADER_READ, size - at)), size - at)
        yield kind, at, at + length
        at += length


def read_index(read: Reader, size: int) -> Index:
    """The index of one input: its ``ftyp`` and ``moov`` read whole (small), its ``mdat`` located."""
    found: dict[bytes, tuple[int, int]] = {}
    for kind, start, end in top_level(read, size):
        if kind in found and kind == b"mdat":
            raise NotJoinable("The piece has more than one mdat box")
        found.setdefault(kind, (start, end))
    if not {b"ftyp", b"moov", b"mdat"} <= set(found):
        raise NotJoinable("The piece is not an MP4 with an index and its media")
    ftyp = read(found[b"ftyp"][0], found[b"ftyp"][1] - found[b"ftyp"][0])
    moov = read(found[b"moov"][0], found[b"moov"][1] - found[b"moov"][0])
    return parse_index(ftyp, moov, *found[b"mdat"])


def parse_index(ftyp: bytes, moov: bytes, mdat_start: int, mdat_end: int) -> Index:
    (root,) = children(moov)
    traks = [box for box in children(moov, root.body, root.end) if box.kind == b"trak"]
    if len(traks) != 1:
        raise NotJoinable(f"A piece has {len(traks)} tracks; one is joined at a time")
    mvhd = need(moov, root, b"mvhd")
    return Index(ftyp, moov[mvhd.start : mvhd.end], parse_track(moov, traks[0]), mdat_start, mdat_end)


# --- the joined index ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Bytes ``start``..``end`` of input ``source`` (its place in the list of inputs)."""

    source: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


Segment = bytes | Run  # what a part of the joined file is made of, in order
Part = tuple[Segment, ...]


@dataclass(frozen=True)
class Layout:
    """The joined file as upload parts: the first made of the new ``ftyp`` + ``moov``, the inputs carried
    in it and the padding; each other one a single input's ``mdat``, copied."""

    parts: list[Part]
    size: int
    carried: int  # bytes of the inputs read into the leading part (through the function that joins)
    duration: float  # seconds, as the joined index says (its longest track, edits included)

    @property
    def copied(self) -> int:
        return sum(s.size for part in self.parts[1:] for s in part if isinstance(s, Run))


@dataclass
class _Joined:
    """One track of the joined file, in the making: its tables, and the inputs its media come from."""

    first: Track
    sources: list[int]
    tracks: list[Track]
    deltas: list[tuple[int, int]]
    edits: list[tuple[int, int]]


def _rle(rows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for count, value in rows:
        if count and merged and merged[-1][1] == value:
            merged[-1] = (merged[-1][0] + count, value)
        elif count:
            merged.append((count, value))
    return merged


_CONFIGS = (b"avcC", b"hvcC", b"av1C", b"vpcC", b"esds")


def _codec_config(stsd: bytes) -> bytes:
    """What must match for two pieces' samples to decode with one sample description: the sample
    entry's type and fixed fields, and its decoder configuration (for AAC, whose ``esds`` also holds bit
    rates a muxer computes per file, the fields before that box: channels and sample rate)."""
    entry = stsd[20:24]
    for kind in _CONFIGS:
        at = stsd.find(kind)
        if at >= 4 and kind != b"esds":
            (size,) = struct.unpack(">I", stsd[at - 4 : at])
            return entry + stsd[at - 4 : at - 4 + size]
    return entry + stsd[16 + 24 : 16 + 36]


def _check_alike(tracks: list[Track], handler: bytes) -> None:
    first = tracks[0]
    for track in tracks:
        if track.handler != handler:
            raise NotJoinable(f"A piece holds {track.handler!r} where {handler!r} was expected")
        if track.timescale != first.timescale:
            raise NotJoinable("The pieces have different time scales")
        if _codec_config(track.stsd) != _codec_config(first.stsd):
            raise NotJoinable("The pieces were encoded with different settings")


def _spaced_deltas(tracks: list[Track], starts: list[int]) -> list[tuple[int, int]]:
    """The pieces' sample durations, each piece's last one set so that the next piece starts at its
    place on the original's timeline (``starts``, in the track's units, for the first picture shown)."""
    rows: list[tuple[int, int]] = []
    for index, track in enumerate(tracks):
        own = list(track.deltas)
        if index + 1 < len(tracks):
            begin = starts[index] - track.first_shown
            end = starts[index + 1] - tracks[index + 1].first_shown
            count, delta = own[-1]
            rest = sum(c * d for c, d in own) - delta
            last = end - begin - rest
            if last <= 0:
                raise NotJoinable(f"Piece {index + 1} lasts longer than the gap to the next one")
            own[-1:] = [(count - 1, delta), (1, last)]
        rows += own
    return _rle(rows)


def _video(inputs: list[Index], starts: list[float], delay: float) -> _Joined:
    tracks = [index.track for index in inputs]
    _check_alike(tracks, b"vide")
    scale = tracks[0].timescale
    at = [round((start - starts[0]) * scale) + tracks[0].first_shown for start in starts]
    deltas = _spaced_deltas(tracks, at)
    shown = sum(c * d for c, d in deltas)
    return _Joined(
        tracks[0], list(range(len(inputs))), tracks, deltas, _edit(delay, shown, scale, tracks[0].first_shown)
    )


def _sound(inputs: list[Index], first: int, delay: float, skip: int) -> _Joined:
    tracks = [index.track for index in inputs]
    _check_alike(tracks, b"soun")
    deltas = _rle([row for track in tracks for row in track.deltas])
    total = sum(c * d for c, d in deltas)
    edits = _edit(delay, max(0, total - skip), tracks[0].timescale, skip)
    return _Joined(tracks[0], list(range(first, first + len(inputs))), tracks, deltas, edits)


def _edit(delay: float, shown: int, scale: int, media_time: int) -> list[tuple[int, int]]:
    """An edit list: an empty edit for a track that starts later than the other, then the media from
    ``media_time`` (the B-frame delay of a picture, the priming of a sound) for ``shown`` units."""
    empty = [(round(delay * MOVIE_TIMESCALE), -1)] if round(delay * MOVIE_TIMESCALE) > 0 else []
    return [*empty, (round(shown * MOVIE_TIMESCALE / scale), media_time)]


def _u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def _counted(kind: bytes, rows: Sequence[tuple[int, ...]], version: int = 0, signed: bool = False) -> bytes:
    width = len(rows[0]) if rows else 0
    fmt = ">" + ("i" if signed else "I") * (width * len(rows))
    return full_box(kind, version, 0, _u32(len(rows)), struct.pack(fmt, *(v for row in rows for v in row)))


def _times(version: int, *values: int) -> bytes:
    """creation, modification (zero, as FFmpeg writes them without metadata) then the given fields."""
    return struct.pack(">QQ" if version else ">II", 0, 0) + b"".join(
        struct.pack(">I" if i % 2 == 0 else (">Q" if version else ">I"), v) for i, v in enumerate(values)
    )


def _tkhd(template: bytes, track_id: int, duration: int) -> bytes:
    version = template[8]
    rest = template[8 + 4 + (32 if version else 20) :]  # reserved, layer, volume, matrix, width, height
    new = 1 if duration > 0xFFFFFFFF else 0
    head = struct.pack(">QQIIQ" if new else ">IIIII", 0, 0, track_id, 0, duration)
    return full_box(b"tkhd", new, 3, head, rest)  # enabled, in the movie


def _mdhd(template: bytes, timescale: int, duration: int) -> bytes:
    version = template[8]
    language = template[8 + 4 + (28 if version else 16) :][:4]
    new = 1 if duration > 0xFFFFFFFF else 0
    return full_box(b"mdhd", new, 0, _times(new, timescale, duration)[: (28 if new else 16)], language)


def _elst(edits: list[tuple[int, int]]) -> bytes:
    wide = any(d > 0xFFFFFFFF or abs(t) > 0x7FFFFFFF for d, t in edits)
    rows = b"".join(struct.pack(">QqI" if wide else ">IiI", d, t, 0x00010000) for d, t in edits)
    return make_box(b"edts", full_box(b"elst", 1 if wide else 0, 0, _u32(len(edits)), rows))


def _mvhd(duration: int, next_track: int) -> bytes:
    version = 1 if duration > 0xFFFFFFFF else 0
    times = _times(version, MOVIE_TIMESCALE, duration)[: (28 if version else 16)]
    matrix = _u32(0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
    rest = struct.pack(">IH10x", 0x00010000, 0x0100) + matrix + bytes(24) + _u32(next_track)
    return full_box(b"mvhd", version, 0, times, rest)


def _stbl(joined: _Joined, bases: dict[int, int], wide: bool) -> bytes:
    """The sample tables: the pieces' one after the other, chunk offsets moved to where each piece's
    media lands (``bases``: input -> its mdat's offset in the joined file)."""
    sizes, chunks, offsets, sync, shifts = [], [], [], [], []
    samples = chunk_count = 0
    for source, track in zip(joined.sources, joined.tracks, strict=True):
        sizes += track.sizes
        chunks += [(first + chunk_count, n, 1) for first, n, _ in track.chunks]
        offsets += [offset + bases[source] for offset in track.chunk_offsets]
        sync += [samples + n for n in (track.sync or [])]
        shifts += track.offsets or []
        samples, chunk_count = samples + track.samples, chunk_count + len(track.chunk_offsets)
    tables = [joined.first.stsd, _counted(b"stts", joined.deltas)]
    if any(track.offsets for track in joined.tracks):
        signed = any(track.offsets_version for track in joined.tracks)
        tables.append(_counted(b"ctts", _rle(shifts), version=1 if signed else 0, signed=signed))
    if any(track.sync is not None for track in joined.tracks):
        tables.append(_counted(b"stss", [(n,) for n in sync]))
    tables.append(_counted(b"stsc", chunks))
    tables.append(full_box(b"stsz", 0, 0, _u32(0, len(sizes)), struct.pack(f">{len(sizes)}I", *sizes)))
    if wide:
        tables.append(full_box(b"co64", 0, 0, _u32(len(offsets)), struct.pack(f">{len(offsets)}Q", *offsets)))
    else:
        tables.append(_counted(b"stco", [(o,) for o in offsets]))
    return make_box(b"stbl", *tables)


def _trak(joined: _Joined, track_id: int, bases: dict[int, int], wide: bool) -> bytes:
    first = joined.first
    shown = sum(d for d, _ in joined.edits)
    minf = make_box(b"minf", first.media_header, first.dinf, _stbl(joined, bases, wide))
    mdia = make_box(b"mdia", _mdhd(first.mdhd, first.timescale, sum(c * d for c, d in joined.deltas)), first.hdlr, minf)
    return make_box(b"trak", _tkhd(first.tkhd, track_id, shown), _elst(joined.edits), mdia)


def _moov(tracks: list[_Joined], bases: dict[int, int], wide: bool) -> bytes:
    duration = max(sum(d for d, _ in t.edits) for t in tracks)
    traks = [_trak(t, n + 1, bases, wide) for n, t in enumerate(tracks)]
    return make_box(b"moov", _mvhd(duration, len(tracks) + 1), *traks)


def _placement(inputs: list[Index], min_part: int) -> tuple[list[int], list[int]]:
    """Which inputs are carried in the leading part and which are copied, in file order: every input of
    ``min_part`` or more is copied; of the smaller ones, the largest goes last (the last part may be
    small), the others are carried."""
    small = [n for n, index in enumerate(inputs) if index.mdat_size < min_part]
    last = max(small, key=lambda n: inputs[n].mdat_size) if small else None
    copied = [n for n in range(len(inputs)) if n not in small] + ([last] if last is not None else [])
    return [n for n in small if n != last], copied


def _copies(index: Index, source: int) -> list[Part]:
    """One input's mdat as parts of at most MAX_PART each (of equal size, so none is too small)."""
    count = -(-index.mdat_size // MAX_PART)
    bounds = [index.mdat_start + index.mdat_size * n // count for n in range(count + 1)]
    return [(Run(source, a, b),) for a, b in itertools.pairwise(bounds)]


def join(
    video: list[Index],
    starts: list[float],
    sound: Sequence[Index] = (),
    *,
    video_delay: float = 0.0,
    audio_delay: float = 0.0,
    sound_skip: int = 0,
    min_part: int = MIN_PART,
) -> Layout:
    """The layout of the pieces of the picture (``starts``: where each begins on the original's
    timeline, in seconds) and the parts of the sound joined into one MP4: inputs are numbered picture
    pieces first, then sound parts. ``video_delay`` and ``audio_delay`` start one track later than the
    other; ``sound_skip`` samples of the sound are its encoder's priming, hidden by the edit list."""
    if not video or len(starts) != len(video):
        raise NotJoinable("Every piece of the picture needs its start")
    inputs = [*video, *sound]
    tracks = [_video(video, starts, video_delay)]
    if sound:
        tracks.append(_sound(list(sound), len(video), audio_delay, sound_skip))
    carried, copied = _placement(inputs, min_part)
    media = sum(index.mdat_size for index in inputs)
    if min_part > PAD_SHARE * media:  # too small to pad the leading part: everything is carried in it
        carried, copied = list(range(len(inputs))), []
    wide = media + 2 * min_part + 64 * 1024 * 1024 > 0xFFFFFFFF
    ftyp = video[0].ftyp
    probe = _moov(tracks, dict.fromkeys(range(len(inputs)), 0), wide)
    lead = len(ftyp) + len(probe) + sum(inputs[n].mdat_size for n in carried)
    pad = max(8, min_part - lead) if copied and lead < min_part else 0
    bases, at = {}, len(ftyp) + len(probe)
    for n in carried:
        bases[n], at = at - inputs[n].mdat_start, at + inputs[n].mdat_size
    at += pad
    for n in copied:
        bases[n], at = at - inputs[n].mdat_start, at + inputs[n].mdat_size
    moov = _moov(tracks, bases, wide)
    assert len(moov) == len(probe)
    head: list[Segment] = [ftyp + moov, *(Run(n, inputs[n].mdat_start, inputs[n].mdat_end) for n in carried)]
    if pad:
        head.append(free_box(pad))
    parts = [tuple(head), *(part for n in copied for part in _copies(inputs[n], n))]
    duration = max(sum(d for d, _ in t.edits) for t in tracks) / MOVIE_TIMESCALE
    return Layout(parts, at, sum(inputs[n].mdat_size for n in carried), duration)


def picture_size(index: Index) -> tuple[int, int]:
    """The display width and height of a picture track (its tkhd's 16.16 fixed-point numbers)."""
    width, height = struct.unpack(">II", index.track.tkhd[-8:])
    return width >> 16, height >> 16


class BlockReader:
    """Reads an input in aligned blocks and keeps them, so walking its box headers and reading its
    index costs a few range requests (each header would otherwise be one) and never the media."""

    def __init__(self, read: Reader, size: int, block: int = 512) -> None:
        self._read, self._size, self._block = read, size, block
        self._blocks: dict[int, bytes] = {}
        self.fetched = 0  # bytes asked of the store

    def __call__(self, start: int, length: int) -> bytes:
        end = min(self._size, start + length)
        first, last = start // self._block, (max(start, end - 1)) // self._block
        missing = [n for n in range(first, last + 1) if n not in self._blocks]
        if missing:  # one request for the run of blocks not read yet
            at = missing[0] * self._block
            data = self._read(at, (missing[-1] + 1) * self._block - at)
            self.fetched += len(data)
            for n in missing:
                self._blocks[n] = data[(n - missing[0]) * self._block : (n - missing[0] + 1) * self._block]
        joined = b"".join(self._blocks[n] for n in range(first, last + 1))
        return joined[start - first * self._block : end - first * self._block]


_CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc", b"mp4a": "aac"}


def codec_name(index: Index) -> str:
    """FFmpeg's name of the codec of the input's track (from its sample entry), or the entry's type."""
    entry = index.track.stsd[20:24]
    return _CODECS.get(entry, entry.decode(errors="replace"))


# --- pieces cut from an original by byte range ------------------------------------------------------------


@dataclass
class Movie:
    """An original's index: its ``ftyp`` and every track (pieces are cut from one of them)."""

    ftyp: bytes
    tracks: list[Track]

    def first(self, handler: bytes) -> Track | None:
        return next((track for track in self.tracks if track.handler == handler), None)


def read_movie(read: Reader, size: int) -> Movie:
    """An original's index, read by range: its box headers, its ``ftyp`` and its ``moov``; NotJoinable
    when it is not an MP4 or MOV whose index can be read so (then it is split by FFmpeg)."""
    found: dict[bytes, tuple[int, int]] = {}
    for kind, start, end in top_level(read, size):
        found.setdefault(kind, (start, end))
        if b"moov" in found and b"ftyp" in found:
            break
    if b"moov" not in found or b"ftyp" not in found:
        raise NotJoinable("The original is not an MP4 or MOV with an index")
    (f0, f1), (m0, m1) = found[b"ftyp"], found[b"moov"]
    moov = read(m0, m1 - m0)
    (root,) = children(moov)
    if child(moov, root, b"mvex") is not None:
        raise NotJoinable("The original is fragmented; its index is spread through the file")
    traks = [box for box in children(moov, root.body, root.end) if box.kind == b"trak"]
    tracks = []
    for trak in traks:
        with contextlib.suppress(NotJoinable):  # a timed-metadata or subtitle track is not cut
            tracks.append(parse_track(moov, trak))
    return Movie(read(f0, f1 - f0), tracks)


def _expand(rows: list[tuple[int, int]]) -> list[int]:
    return [value for count, value in rows for _ in range(count)]


@dataclass(frozen=True)
class Samples:
    """A track's samples one by one: where each is in the file, how big, when it is decoded and shown."""

    offsets: list[int]
    sizes: list[int]
    dts: list[int]
    shifts: list[int]
    sync: set[int]  # 0-based

    @classmethod
    def of(cls, track: Track) -> Samples:
        counted = (sum(count for count, _ in rows) for rows in (track.deltas, track.offsets or []))
        if any(count > MAX_SAMPLES for count in counted):  # run lengths: a few bytes for billions
            raise NotJoinable("The track's tables count more samples than are read from an index")
        per_chunk, offsets = [], []
        for n, (first, count, _) in enumerate(track.chunks):
            last = track.chunks[n + 1][0] if n + 1 < len(track.chunks) else len(track.chunk_offsets) + 1
            per_chunk += [count] * (last - first)
        at = 0
        for chunk, count in zip(track.chunk_offsets, per_chunk, strict=False):
            for size in track.sizes[at : at + count]:
                offsets.append(chunk)
                chunk += size
            at += count
        deltas = _expand(track.deltas)
        if len(offsets) != track.samples or len(deltas) != track.samples:
            raise NotJoinable("The original's sample tables do not agree")
        dts = list(itertools.accumulate(deltas, initial=0))[:-1]
        shifts = _expand(track.offsets) if track.offsets else [0] * track.samples
        sync = {n - 1 for n in track.sync} if track.sync is not None else set(range(track.samples))
        return cls(offsets, track.sizes, dts, shifts[: track.samples], sync)

    def shown(self, n: int) -> int:
        return self.dts[n] + self.shifts[n]

    def duration(self, n: int, track: Track) -> int:
        """How long sample ``n`` lasts: to the next one's decode time (the last: as the table says)."""
        return self.dts[n + 1] - self.dts[n] if n + 1 < len(self.dts) else track.deltas[-1][1]


def cut_points(samples: Samples, timescale: int, seconds: float) -> list[int]:
    """The samples pieces start at: the first, then the first sync sample shown at or after each
    multiple of ``seconds`` (as FFmpeg's segment muxer cuts); a grid of other times can be given the
    same way, by the times it wants (``cut_at``)."""
    first = samples.shown(0)
    total = samples.dts[-1] - samples.dts[0] if samples.dts else 0
    grid = [first + round(k * seconds * timescale) for k in range(1, int(total / (seconds * timescale)) + 1)]
    return cut_at(samples, grid)


def cut_at(samples: Samples, times: list[int]) -> list[int]:
    """Sample 0, then for each time (track units) the first sync sample shown at or after it."""
    keys = sorted(samples.sync)
    points = [0]
    for time in times:
        later = next((k for k in keys if samples.shown(k) >= time and k > points[-1]), None)
        if later is not None and later not in points:
            points.append(later)
    return points


@dataclass(frozen=True)
class Cut:
    """Samples ``first``..``end`` of a track as a file of its own: ``head`` (``ftyp``, ``moov`` and the
    ``mdat`` header), then byte ranges ``ranges`` of the original one after the other, which hold those
    samples."""

    head: bytes
    ranges: list[tuple[int, int]]

    @property
    def size(self) -> int:
        """The bytes of the original it reads."""
        return sum(stop - start for start, stop in self.ranges)


def spans(samples: Samples, first: int, end: int, gap: int | None) -> list[tuple[int, int]]:
    """The byte ranges holding samples ``first``..``end``: one (from the first byte of any of them to the
    last; ``gap`` None), or each run of them with less than ``gap`` bytes of other data between."""
    found = sorted((samples.offsets[n], samples.offsets[n] + samples.sizes[n]) for n in range(first, end))
    merged = [list(found[0])]
    for start, stop in found[1:]:
        if gap is None or start - merged[-1][1] < gap:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(start, stop) for start, stop in merged]


def _positions(offsets: list[int], ranges: list[tuple[int, int]]) -> list[int]:
    """Where each offset of the original is in the concatenation of ``ranges`` (sorted, disjoint)."""
    bases = list(itertools.accumulate((stop - start for start, stop in ranges), initial=0))
    starts = [start for start, _ in ranges]
    found = []
    for offset in offsets:
        at = bisect.bisect_right(starts, offset) - 1
        found.append(bases[at] + offset - starts[at])
    return found


def cut(movie: Movie, track: Track, samples: Samples, first: int, end: int, gap: int | None = None) -> Cut:
    """The piece of ``track`` from sample ``first`` (a sync sample) to ``end`` (excluded). Its media are
    one byte range of the original (with the other tracks' samples between them, unread by FFmpeg), or
    with ``gap`` the runs of its samples (``spans``): a track of sound reads its own bytes only."""
    ranges = spans(samples, first, end, gap)
    own = Track(
        handler=track.handler,
        timescale=track.timescale,
        tkhd=track.tkhd,
        mdhd=track.mdhd,
        hdlr=track.hdlr,
        media_header=track.media_header,
        dinf=track.dinf,
        stsd=track.stsd,
        deltas=_rle([(1, samples.duration(n, track)) for n in range(first, end)]),
        offsets=_rle([(1, samples.shifts[n]) for n in range(first, end)]) if track.offsets else None,
        offsets_version=track.offsets_version,
        sync=[n - first + 1 for n in range(first, end) if n in samples.sync] if track.sync is not None else None,
        sizes=samples.sizes[first:end],
        chunks=[(1, 1, 1)],
        chunk_offsets=_positions(samples.offsets[first:end], ranges),
    )
    joined = _Joined(
        own,
        [0],
        [own],
        own.deltas,
        [(math.ceil(own.media_duration * MOVIE_TIMESCALE / track.timescale), samples.shifts[first])],  # never cut short
    )
    probe = _moov([joined], {0: 0}, True)
    data_at = len(movie.ftyp) + len(probe) + 16
    moov = _moov([joined], {0: data_at}, True)
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + sum(stop - start for start, stop in ranges))
    return Cut(movie.ftyp + moov + mdat, ranges)
