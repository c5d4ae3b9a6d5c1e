"""An adaptive stream of a long video, packaged in pieces: no join of its media.

Each piece task packages its own piece right after encoding it: each rendition's picture into a
fragmented MP4 of its own (``video_720p-00003.mp4``, fragments at keyframes as ``streams.package``
makes them), and each sound part task its AAC frames (``audio-00003.mp4``). FFmpeg starts a file's
fragments at 0; their decode times (``tfdt``) are then moved to where the piece is on the stream's
timeline (``picture_at``, ``sound_at``), so that consecutive pieces continue each other exactly as
one whole packaging does. The files are stored at the stream's final prefix.

The stream's join (``pieced_track``) reads only each file's index (its init and ``moof`` boxes, by
range), checks that the pieces continue each other and share one init, groups the fragments into
segments on the grid (never across two files), and the playlists and the MPD name byte ranges of the
pieces' files. One init serves every piece of a track (its first piece's): FFmpeg writes the same one
for every piece of one encode but for the ``btrt`` box's measured bit rates, which no decoder reads.
One EXT-X-MAP per file would play in hls.js too, but it re-appends an init at each file and DASH cannot
change the init inside a Representation (a Period per piece, which players join with gaps); a track
whose pieces' inits differ otherwise is ``NotStreamable``, and the stream is joined and packaged whole.

Keys (converted store): {job_id}/hls/{track}-{n}.mp4   piece ``n`` of a track (video_{size}p, audio)
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .ffmpeg import FFmpeg
from .fmp4 import Layout, Malformed, comparable_init, layout_of, read_layout, shift_decode_times
from .model import SegmentPlan, SourceInfo
from .presets import MAX_FPS, NO_METADATA
from .segments import AAC_PRIMING
from .storage import Storage
from .streams import (
    AUDIO,
    SOUND_FRAGMENTS,
    VIDEO_FRAGMENTS,
    Package,
    Track,
    check_aligned,
    piece_file,
    segments_across,
    stream_prefix,
    write_manifests,
)

PIECE_FILE = re.compile(r"(?:video_\d{2,5}p|audio)-\d{5}\.mp4")
SEAM_SLACK = 0.001  # seconds: a piece may start this far from where the one before it ends
READERS = 8  # pieces' indexes read at once (each a few small range requests per fragment)


class NotStreamable(Exception):
    """The pieces' files cannot be played as one stream as they are (the reason says why)."""


class NotPackaged(NotStreamable):
    """A piece's file is not in the store (yet: its task stores it after the part the join waits for)."""


def picture_at(plan: SegmentPlan, index: int) -> float:
    """Where piece ``index``'s picture starts on the stream's timeline, in seconds: as far from the
    first piece as in the original, later by as much as the picture started after the sound there."""
    return plan.starts[index] - plan.starts[0] + max(0.0, -plan.audio_offset)


def sound_at(plan: SegmentPlan, index: int) -> float:
    """Where sound part ``index`` starts on the stream's timeline: the first part with its encoder's
    priming frame at the start, as in a whole packaging (which keeps it too: its fragments have no edit
    list), each later part right after the frames before it (``segments._own_frames``)."""
    if index == 0:
        return max(0.0, plan.audio_offset)
    return (plan.sound_starts[index] + AAC_PRIMING) / plan.sound_rate + max(0.0, plan.audio_offset)


def _move(path: Path, seconds: float) -> None:
    """The file's fragments moved so that its first starts at ``seconds`` on the stream's timeline."""
    layout = read_layout(path)
    shift_decode_times(path, round(seconds * layout.timescale) - layout.fragments[0].start)


def package_pictures(
    ffmpeg: FFmpeg,
    ladder: Path,
    names: list[str],
    index: int,
    seconds: float,
    folder: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Piece ``index`` of the stream's renditions (video track ``i`` of ``ladder`` is ``names[i]``),
    each copied into a fragmented MP4 of its own, in one FFmpeg run, starting at ``seconds``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / piece_file(name, index) for name in names]
    copied = ["-c", "copy", *NO_METADATA, "-f", "mp4", *VIDEO_FRAGMENTS]
    outputs = [(["-map", f"0:v:{i}", *copied], path) for i, path in enumerate(paths)]
    ffmpeg.convert(
        ladder, paths[-1], outputs[-1][0], more_outputs=outputs[:-1], timeout=timeout, cancel=cancel, trusted=True
    )
    for path in paths:
        _move(path, seconds)
    return paths


def package_sound(
    ffmpeg: FFmpeg,
    part: Path,
    index: int,
    seconds: float,
    folder: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> Path:
    """Sound part ``index`` (an M4A of its AAC frames) copied into the stream's sound fragments,
    starting at ``seconds``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / piece_file(AUDIO, index)
    args = ["-map", "0:a:0", "-c", "copy", *NO_METADATA, "-f", "mp4", *SOUND_FRAGMENTS]
    ffmpeg.convert(part, path, args, timeout=timeout, cancel=cancel, trusted=True)
    _move(path, seconds)
    return path


@dataclass(frozen=True)
class PieceFile:
    """A piece's file of a track as the join reads it: its name, its layout and its init's bytes."""

    name: str
    layout: Layout
    init: bytes


def read_pieces(store: Storage, job_id: str, names: list[str]) -> list[PieceFile]:
    """The index of each named file of the stream (its init and its fragments' boxes, by range: never
    the media), several at once."""
    prefix = stream_prefix(job_id)

    def one(name: str) -> PieceFile:
        key = prefix + name
        size = store.size(key)
        if size is None:
            raise NotPackaged(f"{name} is not packaged")
        read = functools.partial(store.read_range, key)
        try:
            layout = layout_of(read, size)
        except Malformed as exc:
            raise NotStreamable(f"{name} could not be read: {exc}") from exc
        return PieceFile(name, layout, layout.init)

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return list(pool.map(one, names))


def pieced_track(name: str, pieces: list[PieceFile], seconds: int, picture: SourceInfo | None = None) -> Track:
    """One track of the stream over its pieces' files: they must share one init (but for ``btrt``) and
    continue each other on the timeline; its segments are whole fragments on the ``seconds`` grid."""
    first = pieces[0]
    for piece in pieces[1:]:
        if comparable_init(piece.init) != comparable_init(first.init):
            raise NotStreamable(f"the init of {piece.name} differs from that of {first.name}")
    scale = first.layout.timescale
    for before, after in itertools.pairwise(pieces):
        last = before.layout.fragments[-1]
        gap = (after.layout.fragments[0].start - last.start - last.duration) / scale
        if abs(gap) > SEAM_SLACK:
            raise NotStreamable(f"{after.name} starts {gap * 1000:+.1f} ms from the end of {before.name}")
    segments = segments_across([(p.name, p.layout) for p in pieces], seconds)
    return Track(name, first.layout, segments, picture, pieces=len(pieces), stored=sum(p.layout.size for p in pieces))


def from_pieces(
    store: Storage, job_id: str, names: list[str], plan: SegmentPlan, sound_parts: int, seconds: int, folder: Path
) -> Package:
    """The stream over its pieces' files (renditions ``names``, largest first; ``sound_parts`` of its
    sound), read from their indexes, checked (``pieced_track``, the renditions lined up), its playlists
    and manifest written in ``folder``."""
    videos = []
    for name in names:
        pieces = read_pieces(store, job_id, [piece_file(name, n) for n in range(plan.count)])
        videos.append(pieced_track(name, pieces, seconds, picture_of(pieces[0].layout, plan.source)))
    audio = None
    if sound_parts:
        parts = read_pieces(store, job_id, [piece_file(AUDIO, n) for n in range(sound_parts)])
        audio = pieced_track(AUDIO, parts, seconds)
    done = Package(folder, videos, audio)
    check_aligned(done, seconds)
    folder.mkdir(parents=True, exist_ok=True)
    write_manifests(done, seconds)
    return done


def picture_of(layout: Layout, source: SourceInfo) -> SourceInfo:
    """What the master playlist says of a rendition read from its init: its size, and the source's frame
    rate (a rendition's is the source's, up to MAX_FPS)."""
    rate = min(float(MAX_FPS), source.frame_rate) if source.frame_rate else None
    return SourceInfo(width=layout.width, height=layout.height, video_codec="h264", frame_rate=rate)


def remove_pieces(store: Storage, job_id: str) -> None:
    """Delete the pieces' files of a stream (one that failed, or was packaged whole after all)."""
    for item in store.list(stream_prefix(job_id)):
        if PIECE_FILE.fullmatch(item.key.rsplit("/", 1)[-1]):
            store.delete(item.key)
