"""Adaptive streams (the ``hls`` format): the renditions of a ladder packaged as CMAF, one fragmented
MP4 per rendition and one for the sound, described by an HLS master playlist, a media playlist per
file (byte ranges into it) and a DASH manifest over the same files.

The renditions are encoded elsewhere (``conversion``: beside the job's MP4 sizes, from one decode)
with a keyframe every GOP_SECONDS; packaging copies them (no encode). FFmpeg's mp4 muxer starts a
fragment at every keyframe (the sound: about every GOP_SECONDS); the segments are whole fragments
grouped on the HLS_SEGMENT_SECONDS grid, read from the files' boxes (``fmp4``), so every rendition has
the same boundaries and each segment starts with a keyframe. The manifests name the files relatively,
so the folder plays from any static host; the API serves them with signed URLs (``playback``).

A long video's stream is packaged in pieces instead (``streampieces``): a file per piece and track,
the playlists naming byte ranges of those files.

Keys (converted store): {job_id}/hls/master.m3u8      the master playlist (the output's key; written last)
                        {job_id}/hls/manifest.mpd     the DASH manifest
                        {job_id}/hls/{track}.m3u8     a media playlist per track
                        {job_id}/hls/{track}.mp4      a track: video_{size}p or audio
                        {job_id}/hls/{track}-{n}.mp4  or, of a stream in pieces, its piece n (``streampieces``)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .ffmpeg import FFmpeg, FFmpegError
from .fmp4 import Fragment, Layout, Malformed, read_layout
from .model import OutputRecord, SourceInfo
from .output import Output
from .presets import GOP_SECONDS, MAX_FPS, NO_METADATA, VideoRecipe
from .storage import Storage

DEFAULT_SEGMENT_SECONDS = 6  # HLS_SEGMENT_SECONDS: Apple's authoring spec's length
MASTER = "master.m3u8"
MANIFEST = "manifest.mpd"
AUDIO = "audio"
# Half a GOP: a fragment starting this close to a grid line starts the segment there (the sound's
# fragments end on whole AAC frames, a few milliseconds past the line).
GRID_SLACK = GOP_SECONDS / 4
VIDEO_FRAGMENTS = ["-movflags", "+cmaf+frag_keyframe+empty_moov+default_base_moof"]
SOUND_FRAGMENTS = ["-movflags", "+cmaf+empty_moov+default_base_moof", "-frag_duration", str(GOP_SECONDS * 1_000_000)]
MEDIA_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".mpd": "application/dash+xml", ".mp4": "video/mp4"}


def media_type(name: str) -> str:
    """The Content-Type of a file of the stream."""
    sound = name.endswith(".mp4") and (name == f"{AUDIO}.mp4" or name.startswith(f"{AUDIO}-"))  # or a piece
    return "audio/mp4" if sound else MEDIA_TYPES[Path(name).suffix]


def stream_prefix(job_id: str) -> str:
    return f"{job_id}/hls/"


def track_name(recipe: VideoRecipe) -> str:
    return f"video_{recipe.size}p"


def piece_file(track: str, index: int) -> str:
    """A track's piece ``index`` of a stream packaged in pieces (``video_720p-00003.mp4``)."""
    return f"{track}-{index:05d}.mp4"


class StreamInvalid(FFmpegError):
    """The packaged stream fails a check a player relies on (never expected: a bug, not the input)."""


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the track's first fragment
    duration: float
    offset: int
    length: int
    file: str = ""  # the file its bytes are in, when it is not the track's own (a stream in pieces)


@dataclass(frozen=True)
class Track:
    """One packaged file: its layout, its segments, and (video) what the master playlist says of it."""

    name: str
    layout: Layout  # of its file, or of its first piece's (whose init every piece's equals)
    segments: list[Segment]
    picture: SourceInfo | None = None
    pieces: int = 0  # 0: one file of its own, packaged whole; else the files of its pieces
    stored: int = 0  # bytes of its pieces' files, already in the store

    @property
    def file(self) -> str:
        """Its file, or the file whose init every segment plays with (its first piece's)."""
        return piece_file(self.name, 0) if self.pieces else f"{self.name}.mp4"

    def file_of(self, segment: Segment) -> str:
        return segment.file or self.file

    @property
    def playlist(self) -> str:
        return f"{self.name}.m3u8"

    @property
    def peak_bps(self) -> int:
        """The highest bit rate of any segment but a short last one (which would overstate it)."""
        rates = [s.length * 8 / s.duration for s in self.segments if s.duration >= GOP_SECONDS / 2] or [
            s.length * 8 / max(s.duration, 0.001) for s in self.segments
        ]
        return math.ceil(max(rates))

    @property
    def average_bps(self) -> int:
        seconds = sum(s.duration for s in self.segments)
        return math.ceil(sum(s.length for s in self.segments) * 8 / max(seconds, 0.001))

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


def segments_of(layout: Layout, seconds: int) -> list[Segment]:
    """The layout's fragments grouped into segments on a ``seconds`` grid from its first fragment."""
    return segments_across([("", layout)], seconds)


def segments_across(files: Sequence[tuple[str, Layout]], seconds: int) -> list[Segment]:
    """The fragments of consecutive files of one track (a stream in pieces: each file's fragments on
    the stream's timeline), grouped into segments on a ``seconds`` grid from the first fragment; a
    segment is a byte range of one file, so one that a file starts inside is cut there."""
    if not files or not all(layout.fragments for _, layout in files):
        raise StreamInvalid("A packaged track has no fragment")
    scale, first = files[0][1].timescale, files[0][1].fragments[0].start
    groups: dict[tuple[int, int], list[Fragment]] = {}
    for number, (_, layout) in enumerate(files):
        for fragment in layout.fragments:
            line = math.floor(((fragment.start - first) / scale + GRID_SLACK) / seconds)
            groups.setdefault((line, number), []).append(fragment)
    segments = []
    for (_, number), members in groups.items():
        head, tail = members[0], members[-1]
        segments.append(
            Segment(
                start=(head.start - first) / scale,
                duration=(tail.start + tail.duration - head.start) / scale,
                offset=head.offset,
                length=tail.offset + tail.length - head.offset,
                file=files[number][0],
            )
        )
    return segments


@dataclass(frozen=True)
class Package:
    folder: Path
    videos: list[Track]  # largest first
    audio: Track | None

    @property
    def files(self) -> list[Path]:
        """Every file, the master playlist last (published in this order)."""
        tracks = [*self.videos, *([self.audio] if self.audio else [])]
        media = [t.file for t in tracks if not t.pieces]  # a stream in pieces has its media stored already
        names = media + [t.playlist for t in tracks] + [MANIFEST, MASTER]
        return [self.folder / name for name in names]

    @property
    def stored(self) -> int:
        """Bytes of its media already in the store (the pieces' files)."""
        return sum(t.stored for t in [*self.videos, *([self.audio] if self.audio else [])])


def package(
    ffmpeg: FFmpeg,
    pictures: Sequence[tuple[VideoRecipe, Path]],
    sound: Path | None,
    folder: Path,
    segment_seconds: int,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    tracks: Sequence[int] | None = None,
) -> Package:
    """Copy each encoded picture (largest first; video track ``tracks[i]`` of its file, else the
    first) and the sound into its fragmented MP4 in ``folder``, in one FFmpeg run, then check them
    and write the playlists and the manifest beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [track_name(recipe) for recipe, _ in pictures]
    inputs = [path for _, path in pictures] + ([sound] if sound else [])
    chosen = list(tracks) if tracks is not None else [0] * len(names)
    copied = ["-c", "copy", *NO_METADATA, "-f", "mp4", *VIDEO_FRAGMENTS]
    outputs = [(["-map", f"{i}:v:{chosen[i]}", *copied], folder / f"{n}.mp4") for i, n in enumerate(names)]
    if sound is not None:
        sound_args = ["-map", f"{len(names)}:a:0", "-c", "copy", *NO_METADATA, "-f", "mp4", *SOUND_FRAGMENTS]
        outputs.append((sound_args, folder / f"{AUDIO}.mp4"))
    ffmpeg.convert(
        inputs[0],
        outputs[-1][1],
        outputs[-1][0],
        extra_inputs=[([], path) for path in inputs[1:]],
        more_outputs=outputs[:-1],
        timeout=timeout,
        cancel=cancel,
        trusted=True,
    )
    videos = [_track(ffmpeg, folder, name, segment_seconds, video=True) for name in names]
    audio = _track(ffmpeg, folder, AUDIO, segment_seconds, video=False) if sound is not None else None
    done = Package(folder, videos, audio)
    check_aligned(done, segment_seconds)
    write_manifests(done, segment_seconds)
    return done


def _track(ffmpeg: FFmpeg, folder: Path, name: str, segment_seconds: int, *, video: bool) -> Track:
    path = folder / f"{name}.mp4"
    try:
        layout = read_layout(path)
    except Malformed as exc:
        raise StreamInvalid(f"A packaged track could not be read: {exc}") from exc
    picture = ffmpeg.probe(path, trusted=True) if video else None
    return Track(name, layout, segments_of(layout, segment_seconds), picture)


def check_aligned(done: Package, segment_seconds: int) -> None:
    """What switching needs: every video rendition cut at the same times, no segment longer than the
    target by more than a second."""
    first = done.videos[0]
    for track in done.videos[1:]:
        starts = [round(s.start, 2) for s in track.segments]
        if starts != [round(s.start, 2) for s in first.segments]:
            raise StreamInvalid(f"The renditions' segments do not line up ({track.name} and {first.name})")
    for track in [*done.videos, *([done.audio] if done.audio else [])]:
        longest = max(s.duration for s in track.segments)
        if longest > segment_seconds + 1:
            raise StreamInvalid(f"A segment of {track.name} lasts {longest:.2f} s, over {segment_seconds} s + 1")


def write_manifests(done: Package, segment_seconds: int) -> None:
    tracks = [*done.videos, *([done.audio] if done.audio else [])]
    for track in tracks:
        (done.folder / track.playlist).write_text(media_playlist(track))
    (done.folder / MASTER).write_text(master_playlist(done.videos, done.audio))
    (done.folder / MANIFEST).write_text(dash_manifest(done.videos, done.audio, segment_seconds))


def media_playlist(track: Track) -> str:
    """A VOD media playlist of byte ranges into the track's one file, or its pieces' files (one
    EXT-X-MAP: the pieces' inits are the same, ``pieced_track``) (RFC 8216, version 7)."""
    target = max(round(s.duration) for s in track.segments)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, target)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{track.file}",BYTERANGE="{track.layout.init_length}@0"',
    ]
    for segment in track.segments:
        file = track.file_of(segment)
        lines += [f"#EXTINF:{segment.duration:.3f},", f"#EXT-X-BYTERANGE:{segment.length}@{segment.offset}", file]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def frame_rate(picture: SourceInfo | None) -> float:
    rate = picture.frame_rate if picture is not None and picture.frame_rate else float(MAX_FPS)
    return min(float(MAX_FPS), rate)


def master_playlist(videos: list[Track], audio: Track | None) -> str:
    """One variant per rendition, largest first: its peak and average bit rates (with the sound's),
    size, codecs and frame rate; the sound as the audio group every variant plays."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Sound",DEFAULT=YES,AUTOSELECT=YES,'
            f'CHANNELS="2",URI="{audio.playlist}"'
        )
    for track in videos:
        picture = track.picture or SourceInfo()
        codecs = [track.layout.codec, *([audio.layout.codec] if audio else [])]
        attributes = [
            f"BANDWIDTH={track.peak_bps + (audio.peak_bps if audio else 0)}",
            f"AVERAGE-BANDWIDTH={track.average_bps + (audio.average_bps if audio else 0)}",
            f"RESOLUTION={picture.width}x{picture.height}",
            f'CODECS="{",".join(codecs)}"',
            f"FRAME-RATE={frame_rate(track.picture):.3f}",
            *(['AUDIO="audio"'] if audio else []),
        ]
        lines += [f"#EXT-X-STREAM-INF:{','.join(attributes)}", track.playlist]
    return "\n".join([*lines, ""])


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _representation(track: Track, attributes: dict[str, str]) -> list[str]:
    """A DASH representation of a track: its file, and its segments as byte ranges on a timeline."""
    layout, scale = track.layout, track.layout.timescale
    first = layout.fragments[0].start
    attrs = " ".join(f"{key}={quoteattr(value)}" for key, value in {"id": track.name, **attributes}.items())
    init = f'range="0-{layout.init_length - 1}"'
    lines = [f"      <Representation {attrs}>"]
    if track.pieces:  # each segment names its piece's file; one init (the first piece's) for all
        init = f"sourceURL={quoteattr(track.file)} {init}"
    else:
        lines.append(f"        <BaseURL>{escape(track.file)}</BaseURL>")
    lines += [f'        <SegmentList timescale="{scale}">', f"          <Initialization {init}/>"]
    lines.append("          <SegmentTimeline>")
    lines += [
        f'            <S t="{first + round(s.start * scale)}" d="{round(s.duration * scale)}"/>' for s in track.segments
    ]
    lines.append("          </SegmentTimeline>")
    for s in track.segments:
        media = f"media={quoteattr(track.file_of(s))} " if track.pieces else ""
        lines.append(f'          <SegmentURL {media}mediaRange="{s.offset}-{s.offset + s.length - 1}"/>')
    return [*lines, "        </SegmentList>", "      </Representation>"]


def dash_manifest(videos: list[Track], audio: Track | None, segment_seconds: int) -> str:
    """A static MPD over the same files: one adaptation set for the renditions, one for the sound."""
    duration = max(t.duration for t in [*videos, *([audio] if audio else [])])
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" profiles="urn:mpeg:dash:profile:full:2011" '
        f'mediaPresentationDuration="{_iso_duration(duration)}" minBufferTime="PT{segment_seconds}S">',
        '  <Period id="0" start="PT0S">',
        '    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">',
    ]
    for track in videos:
        picture = track.picture or SourceInfo()
        rate = Fraction(frame_rate(track.picture)).limit_denominator(1001)
        attributes = {
            "bandwidth": str(track.peak_bps),
            "codecs": track.layout.codec,
            "width": str(picture.width),
            "height": str(picture.height),
            "frameRate": f"{rate.numerator}/{rate.denominator}" if rate.denominator != 1 else str(rate.numerator),
        }
        lines += _representation(track, attributes)
    lines.append("    </AdaptationSet>")
    if audio is not None:
        lines.append('    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und" startWithSAP="1">')
        lines += _representation(audio, {"bandwidth": str(audio.peak_bps), "codecs": audio.layout.codec})
        lines.append("    </AdaptationSet>")
    return "\n".join([*lines, "  </Period>", "</MPD>", ""])


def publish(converted: Storage, output: Output, done: Package) -> OutputRecord:
    """Store every file of the stream (of a stream in pieces: its playlists and manifest, its media being
    stored already), the master playlist last, then mark the output completed with the master playlist's
    key and the stream's total size (the largest rendition's size and duration)."""
    prefix = stream_prefix(output.job_id)
    total = done.stored
    for path in done.files:
        converted.put_file(f"{prefix}{path.name}", path, media_type(path.name))
        total += path.stat().st_size
    top = done.videos[0]
    result = (top.picture or SourceInfo()).model_copy(update={"duration": top.duration})
    return output.completed(f"{prefix}{MASTER}", total, result)
