"""Long videos in segments, the FFmpeg work: split once, encode the pieces anywhere, join them seamlessly
(what is queued when, and where the pieces are kept, is ``segmenting``).

A video format of a source longer than SEGMENT_SECONDS is not encoded in one run. The first worker to
need it splits the original once: an MP4 or MOV is cut by its index (``cut_original``: each piece a
small head and a byte range of the original, nothing copied); other containers are stream-copied into
pieces that start at keyframes (MP4, which keeps rotation and the exact time base). The audio track is
copied out whole (NUT). Every piece is then its own queue message, encoded by whichever worker or
Lambda takes it, with the same encoder settings as a whole-file encode (an MP4 for the MP4 formats,
NUT with the original timestamps for WebM).

The sound is encoded beside the pieces. For AAC it is cut into parts too: decoded once (FLAC, lossless)
and cut at exact samples on AAC frame boundaries, each part with a few frames of its neighbours before
and after it. An encoder started early sees the signal a whole-file encoder saw, so the frames it makes
for its own span splice onto the previous part's frame for frame: no priming silence and no click at a
join (AAC frames decode alone; only their windows overlap, and both sides encoded the same samples).
Opus frames predict from the frame before, so WebM's sound stays one part. A single AAC encode would
be the slowest task of a long video (the encoder is single-threaded, ~10x realtime on a pure tone).

The worker that stores the last piece or sound part sends the assemble message. An MP4 output is joined
by copy (``join_by_copy``, ``mp4join``): one index made from the pieces', the media copied into place by
the store. WebM (and an MP4 whose pieces cannot be joined so) is assembled with the concat demuxer,
spaced by the original's timestamps, so no frame is repeated, lost or shifted at a join, and the sound
copied in: a join encodes nothing.

Nothing here is written twice by two workers in a way that matters: the pieces and the plan are
deterministic, stored whole (atomically), and a repeated message finds its work already done.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import mp4join
from .ffmpeg import FFmpeg, FFmpegError
from .ffmpeg.parse import ProbeFacts
from .model import SegmentPlan, SoundCut, SourceInfo
from .presets import Preset, VideoRecipe, downmix_filter, pictures_of, pictures_once
from .storage import ByteRange, ObjectNotFound, Storage

log = logging.getLogger(__name__)

AAC_FRAME = 1024  # samples per AAC frame: sound parts start and end on frame boundaries
AAC_PRIMING = 1024  # FFmpeg's AAC encoder starts with one frame of priming (its initial_padding)
# Frames of the neighbouring sound the encoder of a part reads before and after its own span, so its
# rate control and transient detection see at a join what a whole-file encoder saw (measured on noise:
# with none, the 90 ms around a join lose ~12 dB SNR against the source; with these, ~1.5 dB).
PRE_ROLL_FRAMES = 8
POST_ROLL_FRAMES = 2
INDEX_READS = 10  # the pieces' indexes read at once by a join (an hour in minute pieces: 120 of them)
M4A = ["-f", "mp4"]  # a sound part for a join by copy: its frames as they are, in an MP4 with its index
# Packets of the original's sound decoded before a part's first sample, and thrown away: an AAC frame's
# output overlaps the frame before it, so the decoder's state is a whole decode's after one.
WARM_PACKETS = 4
# Runs of a sound part's samples with less picture than this between them are read in one request: a
# request costs about what reading this much more does (a few ms at 100 MB/s). A camera's original
# (a second of picture between its sound's chunks) is read as its sound alone, one that interleaves
# frame by frame (FFmpeg's muxer) as the span's share of the original, as a piece reads its own.
SOUND_GAP = 256 * 1024
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


@dataclass
class Split:
    plan: SegmentPlan
    pieces: list[Path]  # the pieces copied out, or none when they are cut from the original (``heads``)
    audio: Path | None
    sound_parts: list[Path]
    heads: list[bytes] = field(default_factory=list)
    sound_heads: list[bytes] = field(default_factory=list)  # the sound parts' cuts (``Sound``)
    track_head: bytes | None = None  # the whole sound's cut


@dataclass(frozen=True)
class Sound:
    """The sound of an original cut by byte range from its index: the parts' cuts (their first samples
    at ``rate``, as ``sound_layout`` puts them) and the whole sound's, with their heads."""

    rate: int
    starts: list[int]
    parts: list[SoundCut]
    part_heads: list[bytes]
    track: SoundCut
    track_head: bytes


@dataclass(frozen=True)
class Cuts:
    """The pieces of an original cut by byte range from its index: each one's head and range, and when
    each starts on the original's timeline; and its sound, when that can be cut so too."""

    cuts: list[mp4join.Cut]
    starts: list[float]
    sound: Sound | None = None


def cut_original(
    read: mp4join.Reader, size: int, facts: ProbeFacts, seconds: float, *, sound_in_parts: bool = True
) -> Cuts | None:
    """Where an MP4 or MOV original is cut into pieces of about ``seconds``, from its index alone (read
    by range: no media), and its sound (in parts too with ``sound_in_parts``); None for other
    containers, which the split copies into pieces."""
    try:
        movie = mp4join.read_movie(read, size)
        pictures = [track for track in movie.tracks if track.handler == b"vide"]
        if len(pictures) != 1 or facts.video is None:
            return None  # which track FFmpeg calls the video is then not certain
        track = pictures[0]
        samples = mp4join.Samples.of(track)
        points = mp4join.cut_points(samples, track.timescale, seconds)
        bounds = [*points, track.samples]
        cuts = [mp4join.cut(movie, track, samples, a, b) for a, b in itertools.pairwise(bounds)]
        sound = cut_sound(movie, facts, seconds, sound_in_parts)
    except mp4join.NotJoinable as exc:
        log.info("the original is split by FFmpeg: %s", exc)
        return None
    start, first = facts.video.start_time or 0.0, samples.shown(0)
    return Cuts(cuts, [round(start + (samples.shown(k) - first) / track.timescale, 6) for k in points], sound)


def _exact_sound(codec: str | None) -> bool:
    """Sound whose decode from a few packets before a span gives that span's samples exactly as a whole
    decode does: AAC (a frame overlaps only the one before it) and PCM. Others (MP3's bit reservoir,
    Opus's prediction, AC-3...) are decoded whole by the split, as before."""
    return codec == "aac" or (codec or "").startswith("pcm_")


def cut_sound(movie: mp4join.Movie, facts: ProbeFacts, seconds: float, in_parts: bool) -> Sound | None:
    """The sound's cuts, where reading it by range gives exactly the samples of a whole decode: one
    sound track that FFmpeg's first, a codec ``_exact_sound`` admits, a rate AAC has (nothing to
    resample) equal to the track's time scale, at most one edit. None: the split decodes it."""
    streams = [s for s in facts.streams if s.kind == "audio"]
    tracks = [t for t in movie.tracks if t.handler == b"soun"]
    if not streams or len(streams) != len(tracks) or not _exact_sound(streams[0].codec):
        return None
    track, rate = tracks[0], streams[0].sample_rate
    shown = [media for _, media in track.edits if media >= 0]
    if rate not in AAC_RATES or rate != track.timescale or len(shown) > 1 or not track.samples:
        return None
    if streams[0].codec == "aac" and {delta for _, delta in track.deltas[:-1]} - {AAC_FRAME}:
        return None  # not plain AAC-LC frames (HE-AAC's are 2048 samples; its SBR keeps more state)
    samples, origin = mp4join.Samples.of(track), shown[0] if shown else 0
    starts = sound_layout(facts, seconds)[1] if in_parts else []

    def span(first: int, end: int | None) -> tuple[SoundCut, bytes]:
        """Samples ``first``..``end`` of the whole decode (which starts at the edit's media time)."""
        at = origin + first
        warm = max(0, bisect.bisect_right(samples.dts, at) - 1 - WARM_PACKETS)
        last = track.samples if end is None else bisect.bisect_left(samples.dts, origin + end)
        piece = mp4join.cut(movie, track, samples, warm, max(last, warm + 1), gap=SOUND_GAP)
        keep = None if end is None else end - first
        return SoundCut(ranges=piece.ranges, skip=at - samples.dts[warm], keep=keep), piece.head

    parts = [
        span(max(0, start - PRE_ROLL_FRAMES * AAC_FRAME), _roll_end(starts, index))
        for index, start in enumerate(starts)
    ]
    whole, head = span(0, None)
    return Sound(rate, starts, [c for c, _ in parts], [h for _, h in parts], whole, head)


def _roll_end(starts: list[int], index: int) -> int | None:
    """Where part ``index`` of the sound stops being read: a few frames into the next part (the last
    part: at the end)."""
    return starts[index + 1] + POST_ROLL_FRAMES * AAC_FRAME if index + 1 < len(starts) else None


def trim_filter(cut: SoundCut, source: SourceInfo) -> str:
    """The filter that makes a decoded cut the span of the whole decode it stands for, downmixed to
    stereo as the split's parts are."""
    keep = f":end_sample={cut.skip + cut.keep}" if cut.keep is not None else ""
    return f"atrim=start_sample={cut.skip}{keep},{downmix_filter(source)}"


def sound_layout(facts: ProbeFacts, seconds: float) -> tuple[int, list[int]]:
    """The sample rate of the sound parts (the source's, or 48 kHz where AAC has no such rate) and the
    first sample of each: whole frames, about ``seconds`` apart; the last part takes what is left."""
    sound = next((s for s in facts.streams if s.kind == "audio"), None)
    rate = sound.sample_rate if sound is not None and sound.sample_rate in AAC_RATES else None
    rate = rate or 48000
    length = max(1, round(seconds * rate / AAC_FRAME)) * AAC_FRAME
    declared = (sound.duration if sound is not None else None) or facts.info.duration or 0.0
    count = max(1, int(declared * rate) // length)
    return rate, [index * length for index in range(count)]


def _sound_graph(facts: ProbeFacts, rate: int, starts: list[int]) -> str:
    """One decode, downmixed and resampled once, then cut at exact samples into overlapping parts
    (atrim counts samples from the first one decoded, which is the whole-file encoder's first too)."""
    labels = "".join(f"[c{index}]" for index in range(len(starts)))
    graph = [f"[0:a:0]{downmix_filter(facts.info)},aresample={rate},asplit={len(starts)}{labels}"]
    for index, start in enumerate(starts):
        trim = f"start_sample={max(0, start - PRE_ROLL_FRAMES * AAC_FRAME)}"
        if (end := _roll_end(starts, index)) is not None:
            trim += f":end_sample={end}"
        graph.append(f"[c{index}]atrim={trim}[s{index}]")
    return ";".join(graph)


def split_needs_original(facts: ProbeFacts, cuts: Cuts | None) -> bool:
    """The split runs FFmpeg over the original (so the original must be fetched first): to copy out the
    pieces of a container that cannot be cut by its index, or to copy out and decode a sound that
    cannot be cut so either."""
    return cuts is None or (facts.info.has_audio and cuts.sound is None)


def split(
    ffmpeg: FFmpeg,
    source_path: Path | None,
    facts: ProbeFacts,
    workdir: Path,
    segment_seconds: float,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    sound_in_parts: bool = True,
    cuts: Cuts | None = None,
) -> Split:
    """Copy the original's audio out and, with ``sound_in_parts`` (a format of the job splices its
    sound), decode the sound into parts; and cut its video at keyframes about every
    ``segment_seconds``: by ``cuts`` (pieces read their byte range of the original; nothing of the
    picture is copied here), else copied into pieces by FFmpeg. When ``cuts`` has the sound too, nothing
    is run (``source_path`` may be None): the plan and the cuts' heads are the split."""
    if cuts is not None and not split_needs_original(facts, cuts):
        return _split_by_index(facts, cuts)
    source = facts.info
    folder = workdir / "split"
    folder.mkdir()
    audio = folder / "audio.nut" if source.has_audio else None
    rate, starts = sound_layout(facts, segment_seconds) if audio is not None and sound_in_parts else (0, [])
    sound_parts = [folder / f"sound-{index:05d}.flac" for index in range(len(starts))]
    graph = ["-filter_complex", _sound_graph(facts, rate, starts)] if sound_parts else []  # global: anywhere
    outputs: list[tuple[list[str], Path]] = []
    if cuts is None:
        outputs.append((
            [
                "-map", "0:v:0", "-c", "copy", "-an", "-sn", "-dn",
                "-f", "segment", "-segment_time", f"{segment_seconds:.3f}", "-reset_timestamps", "0",
                "-segment_format", "mp4",
            ],
            folder / "piece-%05d.mp4",
        ))  # fmt: skip
    outputs += [(["-map", f"[s{index}]", "-c:a", "flac", "-f", "flac"], part) for index, part in enumerate(sound_parts)]
    if audio is not None:
        outputs.append((["-map", "0:a:0", "-c", "copy", "-vn", "-sn", "-dn", "-f", "nut"], audio))
    if outputs:
        if source_path is None:
            raise ValueError("The split needs the original (split_needs_original)")
        (first_args, first), *more = outputs
        ffmpeg.convert(
            source_path,
            first,
            [*graph, *first_args],
            duration=source.duration,
            timeout=timeout,
            cancel=cancel,
            more_outputs=more,
        )
    pieces = sorted(folder.glob("piece-*.mp4"))
    if cuts is None and not pieces:
        raise RuntimeError("Splitting the original produced no pieces")
    times = cuts.starts if cuts is not None else [ffmpeg.first_video_time(piece) for piece in pieces]
    plan = _plan(facts, times, audio is not None, rate, starts, cuts)
    return Split(plan, pieces, audio, sound_parts, [c.head for c in cuts.cuts] if cuts is not None else [])


def _split_by_index(facts: ProbeFacts, cuts: Cuts) -> Split:
    """The split when the original's picture and sound are both cut by its index: the plan and the heads."""
    sound = cuts.sound
    plan = _plan(
        facts, cuts.starts, facts.info.has_audio, sound.rate if sound else 0, sound.starts if sound else [], cuts
    )
    heads = [c.head for c in cuts.cuts]
    return Split(plan, [], None, [], heads, sound.part_heads if sound else [], sound.track_head if sound else None)


def _plan(
    facts: ProbeFacts, times: list[float], has_audio: bool, rate: int, sound_starts: list[int], cuts: Cuts | None
) -> SegmentPlan:
    video, sound = facts.video, next((s for s in facts.streams if s.kind == "audio"), None)
    offset = 0.0
    if video is not None and sound is not None:
        offset = (sound.start_time or 0.0) - (video.start_time or 0.0)
    return SegmentPlan(
        source=facts.info,
        starts=times,
        duration=facts.info.duration or 0.0,
        has_audio=has_audio,
        audio_offset=round(offset, 6),
        sound_rate=rate,
        sound_starts=sound_starts,
        ranges=[c.ranges[0] for c in cuts.cuts] if cuts is not None else [],  # one range each
        sound_cuts=cuts.sound.parts if cuts is not None and cuts.sound is not None else [],
        sound_track=cuts.sound.track if cuts is not None and cuts.sound is not None else None,
    )


def recipe_of(preset: Preset) -> VideoRecipe | None:
    """The recipe a format's pieces are made by and its sound is encoded with: its own, or a stream's
    largest rendition's (every rendition of a stream has the same sound; its pieces are MP4s)."""
    return preset.stream.ladder[0] if preset.stream is not None else preset.recipe


def piece_recipes(presets: list[Preset]) -> list[VideoRecipe]:
    """``recipe_of`` each of the video formats (a stream is one) of a message about pieces."""
    recipes = [recipe for recipe in map(recipe_of, presets) if recipe is not None]
    if len(recipes) != len(presets):
        raise ValueError("Only video formats are converted in pieces")
    return recipes


def encode_piece(
    ffmpeg: FFmpeg,
    presets: list[Preset],
    plan: SegmentPlan,
    index: int,
    piece: Path,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """One piece's picture, encoded with each format's settings from one decode, its original
    timestamps kept; one file per preset (a stream's: an MP4 with a video track per rendition,
    largest first, copied from the renditions' encodes)."""
    recipes, takes = pictures_of(presets, plan.source)
    shares, pictures = pictures_once(plan.source, recipes)  # too small for several: one picture
    outputs = {i: workdir / f"{index:05d}-{i}.{piece_extension(recipes[i])}" for i in pictures}
    args = [_piece_container(pictures[i], recipes[i]) for i in pictures]
    paths = list(outputs.values())
    ffmpeg.convert(
        piece,
        paths[-1],
        args[-1],
        input_args=["-copyts"],  # keep the original timeline: the join spaces pieces by it
        duration=plan.length(index),
        timeout=timeout,
        cancel=cancel,
        more_outputs=list(zip(args[:-1], paths[:-1], strict=True)),
    )
    made = []
    for preset, indices in zip(presets, takes, strict=True):
        files = [outputs[shares[i]] for i in indices]
        if preset.stream is None:
            made.append(files[0])
            continue
        ladder = workdir / f"{index:05d}-{preset.id}.mp4"
        _tracks_together(ffmpeg, files, ladder, timeout=timeout, cancel=cancel)
        made.append(ladder)
    return made


def _tracks_together(
    ffmpeg: FFmpeg, files: list[Path], output: Path, *, timeout: float, cancel: threading.Event | None
) -> None:
    """The pictures of ``files`` as the video tracks of one MP4, copied, timestamps kept."""
    maps = [arg for i in range(len(files)) for arg in ("-map", f"{i}:v:0")]
    ffmpeg.convert(
        files[0],
        output,
        [*maps, "-c", "copy", "-f", "mp4"],
        input_args=["-copyts"],
        extra_inputs=[(["-copyts"], file) for file in files[1:]],
        timeout=timeout,
        cancel=cancel,
        trusted=True,
    )


def joined_by_copy(recipe: VideoRecipe) -> bool:
    """MP4 outputs are joined by copying the pieces' media into place (``mp4join``), so their pieces
    and sound parts are MP4s too. WebM is not: Matroska has no index of byte offsets to rewrite (each
    cluster carries its own timestamps, relative to the cluster, and the cues their positions), so
    its pieces are joined by FFmpeg as before (``assemble``)."""
    return tuple(recipe.container[-2:]) == ("-f", "mp4")


def piece_extension(recipe: VideoRecipe) -> str:
    return "mp4" if joined_by_copy(recipe) else "nut"


def sound_extension(recipe: VideoRecipe) -> str:
    """An MP4 format's sound parts are M4As (their frames copied into the output as they are); WebM's
    sound is one NUT file."""
    return "m4a" if joined_by_copy(recipe) else "nut"


def _piece_container(args: list[str], recipe: VideoRecipe) -> list[str]:
    """A piece's output arguments in the container its join wants: NUT (timestamps kept), or for a
    join by copy an MP4 (no +faststart: its index is read from wherever the muxer put it)."""
    if not joined_by_copy(recipe):
        return args
    assert args[-2:] == ["-f", "nut"]
    return [*args[:-2], "-f", "mp4"]


def spliced(recipe: VideoRecipe, plan: SegmentPlan) -> bool:
    """This format's sound is encoded in parts (from the split's decoded parts) and spliced."""
    return plan.has_audio and recipe.spliced_sound and bool(plan.sound_starts)


def sound_parts(recipe: VideoRecipe, plan: SegmentPlan) -> int:
    """How many parts this format's sound is encoded in: none without sound, one unless it is spliced."""
    if not plan.has_audio:
        return 0
    return len(plan.sound_starts) if spliced(recipe, plan) else 1


def encode_sound(
    ffmpeg: FFmpeg,
    preset: Preset,
    plan: SegmentPlan,
    index: int,
    audio: Path,
    workdir: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    cut: SoundCut | None = None,
) -> Path:
    """Part ``index`` of the sound, encoded: for a spliced format only the AAC frames of its own span
    (the neighbours' frames its encoder read are dropped), otherwise the whole sound. ``audio`` is the
    split's part (FLAC, downmixed) or track (NUT), or with ``cut`` that cut of the original, which is
    trimmed to its span and downmixed here."""
    recipe = recipe_of(preset)
    assert recipe is not None
    output = workdir / f"sound-{index:05d}.{sound_extension(recipe)}"
    frames = workdir / "frames.aac" if joined_by_copy(recipe) else output
    stereo = plan.source.model_copy(update={"audio_channels": 2, "audio_layout": "stereo"})
    trim = ["-af", trim_filter(cut, plan.source)] if cut is not None else []
    if not spliced(recipe, plan):
        how = [*trim, *recipe.sound(stereo if cut is not None else plan.source)]
        ffmpeg.convert(audio, frames, how, duration=plan.duration, timeout=timeout, cancel=cancel)
    else:  # downmixed by the split, or by the trim
        encoded = workdir / "encoded.aac"
        ffmpeg.convert(audio, encoded, [*trim, *recipe.sound(stereo)], timeout=timeout, cancel=cancel)
        first, end = _own_frames(plan, index)
        kept = adts_frames(encoded.read_bytes())[first:end]
        if not kept:
            raise FFmpegError(f"The encoded sound part {index + 1} has no frames of its own")
        frames.write_bytes(b"".join(kept))
    if frames != output:  # the frames into an M4A, whose media are copied into the output by the join
        ffmpeg.convert(
            frames, output, ["-map", "0:a:0", "-c", "copy", *M4A], timeout=timeout, cancel=cancel, trusted=True
        )
    return output


def _own_frames(plan: SegmentPlan, index: int) -> tuple[int, int | None]:
    """Which frames of a part's encode are its own: from the one that starts at the part's first sample
    (the first part keeps its priming frame: the join lines it up) to the one that ends at the next
    part's first sample; the last part keeps the encoder's final frames."""
    start = plan.sound_starts[index]
    read_from = max(0, start - PRE_ROLL_FRAMES * AAC_FRAME)
    first = 0 if index == 0 else (start - read_from) // AAC_FRAME + 1
    if index + 1 == len(plan.sound_starts):
        return first, None
    return first, (plan.sound_starts[index + 1] - read_from) // AAC_FRAME + 1


def adts_frames(data: bytes) -> list[bytes]:
    """Split an ADTS stream (AAC frames, each with a 7- or 9-byte header that gives its length)."""
    frames, at = [], 0
    while at < len(data):
        header = data[at : at + 7]
        if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
            raise FFmpegError(f"The encoded sound is not an AAC stream (byte {at})")
        length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
        if length < 7 or at + length > len(data):
            raise FFmpegError(f"The encoded sound has a damaged frame (byte {at})")
        frames.append(data[at : at + length])
        at += length
    return frames


def assemble(
    ffmpeg: FFmpeg,
    preset: Preset,
    plan: SegmentPlan,
    pieces: list[Path],
    sounds: list[Path],
    output: Path,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
) -> Path:
    """Join the encoded pieces, spaced as the pieces of the original were (the concat demuxer lines each
    file's own start up with the end of the one before, so a constant shift inside a piece, such as the
    encoder's B-frame delay, cancels out), with the encoded sound (its parts' frames one after the
    other), starting where it started against the video in the original. Nothing is encoded here. A
    stream's pieces give one MP4 with every rendition's picture, each a track (largest first)."""
    recipe = recipe_of(preset)
    assert recipe is not None
    starts = plan.starts
    gaps = [f"{starts[i + 1] - starts[i]:.6f}" for i in range(len(pieces) - 1)]
    listing = _listing(output.with_name("pieces.ffconcat"), pieces, gaps)
    # Whichever of picture and sound started later in the original starts later here by the same amount.
    video_delay, audio_delay = max(0.0, -plan.audio_offset), max(0.0, plan.audio_offset)
    # Neither ADTS nor our M4A parts say that their first frame is the encoder's priming: start it that
    # much earlier, and the MP4 muxer's edit list hides it, as it does for a whole-file encode.
    primed = f"{audio_delay - AAC_PRIMING / (plan.sound_rate or 48000):.6f}"
    extra: list[tuple[list[str], Path]] = []
    if sounds and joined_by_copy(recipe):  # M4A parts (this join is the fallback of the join by copy)
        extra = [
            (["-f", "concat", "-safe", "0", "-itsoffset", primed], _listing(output.with_name("sound.ffconcat"), sounds))
        ]
    elif sounds and spliced(recipe, plan):
        sound = output.with_name("sound.aac")
        with sound.open("wb") as joined:
            for part in sounds:
                with part.open("rb") as frames:
                    shutil.copyfileobj(frames, joined)
        extra = [(["-itsoffset", primed], sound)]
    elif sounds:
        extra = [(["-itsoffset", f"{audio_delay:.6f}"], sounds[0])]
    ffmpeg.convert(
        listing,
        output,
        recipe.assembly(plan.source, with_audio=bool(extra), pictures="0:v" if preset.stream else "0:v:0"),
        input_args=["-f", "concat", "-safe", "0", "-itsoffset", f"{video_delay:.6f}"],
        duration=plan.duration,
        timeout=timeout,
        cancel=cancel,
        extra_inputs=extra,
        trusted=True,
    )
    return output


def _listing(path: Path, files: list[Path], gaps: list[str] | None = None) -> Path:
    """A concat demuxer list of our own files, each but the last lasting its gap when ``gaps`` says."""
    lines = ["ffconcat version 1.0"]
    for index, file in enumerate(files):
        lines.append(f"file '{file.resolve()}'")
        if gaps is not None and index < len(gaps):
            lines.append(f"duration {gaps[index]}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Joined:
    """A join by copy, done: the output's size and what it is, and what passed through this process."""

    size: int
    info: SourceInfo
    carried: int  # media bytes of pieces too small to be copied as parts of their own (S3's 5 MiB)
    index_bytes: int  # bytes of the pieces' indexes (and box headers) read


def _index_of(store: Storage, key: str) -> tuple[mp4join.Index, int]:
    """The index of one of the store's MP4s, read by range, and the bytes that took."""
    size = store.size(key)
    if size is None:
        raise ObjectNotFound(key)
    reader = mp4join.BlockReader(functools.partial(store.read_range, key), size)
    return mp4join.read_index(reader, size), reader.fetched


def join_by_copy(
    store: Storage, plan: SegmentPlan, pieces: list[str], sounds: list[str], key: str, media_type: str
) -> Joined:
    """Join an MP4 output's encoded pieces and sound parts (keys of ``store``) into ``key`` without
    reading their media: one index is made from theirs (``mp4join``) and the store writes the file from
    it and byte ranges of theirs. Raises ``mp4join.NotJoinable`` when they cannot be joined so."""
    keys = [*pieces, *sounds]
    with ThreadPoolExecutor(max_workers=INDEX_READS) as pool:  # a few small requests each, side by side
        found = list(pool.map(functools.partial(_index_of, store), keys))
    indexes, read = [index for index, _ in found], sum(fetched for _, fetched in found)
    video, sound = indexes[: len(pieces)], indexes[len(pieces) :]
    layout = mp4join.join(
        video,
        plan.starts,
        sound,
        video_delay=max(0.0, -plan.audio_offset),
        audio_delay=max(0.0, plan.audio_offset),
        sound_skip=AAC_PRIMING,  # the first part keeps its encoder's priming frame: the edit list hides it
        min_part=mp4join.MIN_PART,
    )
    parts = [
        [s if isinstance(s, bytes) else ByteRange(keys[s.source], s.start, s.end) for s in part]
        for part in layout.parts
    ]
    written = store.compose(key, parts, media_type)
    if written != layout.size:
        raise FFmpegError(f"The joined file has {written} bytes where its index counts {layout.size}")
    width, height = mp4join.picture_size(video[0])
    info = SourceInfo(
        duration=round(layout.duration, 3),
        width=width,
        height=height,
        video_codec=mp4join.codec_name(video[0]),
        audio_codec=mp4join.codec_name(sound[0]) if sound else None,
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
    )
    return Joined(written, info, layout.carried, read)
