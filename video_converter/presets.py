"""Output formats. The ids are part of the public API; each preset knows its FFmpeg arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .model import HDR_TRANSFERS, SourceInfo


class Kind(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    IMAGE = "image"


class UnsuitableSource(ValueError):
    """The source cannot give this format (an mp3 from a silent video, a video from an audio file)."""


GIF_MAX_WIDTH = 480
GIF_MAX_SECONDS = 10
GIF_FPS = 12
WEBM_MAX_HEIGHT = 720
THUMBNAIL_MAX_SIDE = 1280
MAX_FPS = 60  # video outputs never carry more frames per second than this
# Renditions of an adaptive stream have a keyframe every GOP_SECONDS of their timeline, and nowhere
# else: every rendition then has the same boundaries, so a player can switch at any segment.
GOP_SECONDS = 2

# No source metadata in outputs (GPS location, serial numbers, comments, chapters): only what playback
# needs. Rotation is not metadata here: FFmpeg turns the picture upright before encoding.
NO_METADATA = ["-map_metadata", "-1", "-map_chapters", "-1"]

# Timestamps pass through (no frame is ever duplicated to fill a gap, so a 10-hour timestamp jump or a
# 0.001 fps source costs its real frames, not hours of copies); frames closer than 1/MAX_FPS s to the
# previous kept one are dropped, which caps the rate without duplicating anything.
CAP_FPS = f"select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,{1 / (MAX_FPS + 0.5):.5f})'"
VIDEO_TIMING = ["-fps_mode", "vfr"]


# Square pixels: anamorphic sources (DVD/PAL, some cameras) are widened to their display size, since
# GIF has no aspect flag and web players honour it unevenly.
SQUARE_PIXELS = "scale=w='trunc(iw*sar/2)*2':h=ih,setsar=1"


def _picture(source: SourceInfo) -> str:
    """Deinterlace when the source is interlaced, then square pixels: outputs look as the source does."""
    return f"yadif=deint=interlaced,{SQUARE_PIXELS}" if source.interlaced else SQUARE_PIXELS


def _short_side_scale(size: int) -> str:
    """Scale so the short side is ``size`` (landscape: the height; portrait: the width), as "1080p" means
    to people and to YouTube: a 1080x1920 phone clip stays 1080x1920. Never upscaled, always even; the
    long side follows the aspect ratio (-2). Decided by FFmpeg on the upright, square-pixel frame."""
    cap = f"min({size},trunc(%s/2)*2)"
    return f"scale=w='if(gte(iw,ih),-2,{cap % 'iw'})':h='if(gte(iw,ih),{cap % 'ih'},-2)':flags=bicubic"


# zscale's names for the colour tags ffprobe reports. Only these reach the filter graph (the tags come
# from the upload); anything else counts as untagged.
_ZSCALE_TRANSFER = {
    "arib-std-b67": "arib-std-b67",
    "smpte2084": "smpte2084",
    "bt709": "709",
    "bt2020-10": "2020_10",
    "bt2020-12": "2020_12",
    "smpte170m": "601",
}
_ZSCALE_PRIMARIES = {"bt2020": "2020", "bt709": "709", "smpte170m": "170m", "smpte432": "smpte432"}
_ZSCALE_MATRIX = {"bt2020nc": "2020_ncl", "bt2020c": "2020_cl", "bt709": "709", "smpte170m": "170m"}

# Nominal peak luminance: linear 1.0 is 100 nits, so HLG's peak (1000 nits on its reference display)
# and PQ's bright highlights land well above 1 and the tone curve brings them down.
HDR_NOMINAL_PEAK = 100


def _sdr(source: SourceInfo) -> list[str]:
    """For an HDR or BT.2020 source, the filters that turn it into 8-bit BT.709 SDR (yuv420p, TV range);
    nothing for any other source. Placed after scaling down: converting the small picture costs a
    fraction of converting the full-size one in float (measured in the README, "HDR video")."""
    if not source.hdr:
        return []
    # zscale converts from what it is told, so the probed tags are passed explicitly: frames may carry
    # none after the filters before (and the input's are what was detected). HDR video is BT.2020 with
    # the non-constant-luminance matrix unless it says otherwise.
    transfer = _ZSCALE_TRANSFER.get(source.color_transfer or "", "709")
    primaries = _ZSCALE_PRIMARIES.get(source.color_primaries or "", "2020")
    matrix = _ZSCALE_MATRIX.get(source.color_space or "", "2020_ncl")
    tags_in = f"tin={transfer}:pin={primaries}:min={matrix}"
    if source.color_transfer not in HDR_TRANSFERS:
        # BT.2020 with an SDR transfer: only the gamut is converted; a tone curve would dim it.
        return [f"zscale={tags_in}:t=709:p=709:m=709:r=tv", "format=yuv420p"]
    # To linear light (float) in BT.709 primaries, compress the highlights into SDR's range with the
    # Hable curve (desat=0: keep the colours of bright areas), back to the BT.709 curve and matrix.
    return [
        f"zscale={tags_in}:t=linear:npl={HDR_NOMINAL_PEAK}:p=709",
        "format=gbrpf32le",
        "tonemap=hable:desat=0",
        "zscale=t=709:m=709:r=tv",
        "format=yuv420p",
    ]


def _bt709_tags(source: SourceInfo) -> list[str]:
    """Encoder options tagging the output BT.709, for outputs converted from HDR. Other sources keep
    their arguments as they were: nothing is claimed about colours the converter did not convert."""
    if not source.hdr:
        return []
    return ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]


def shared_picture(source: SourceInfo) -> str:
    """The part of the picture's filters every video rendition of a source shares: decoded once, it
    can feed them all (see ``pictures_once``)."""
    return f"{CAP_FPS},{_picture(source)}"


def _sized(source: SourceInfo, max_height: int) -> str:
    """A rendition's own filters: its size, then (from HDR) the tone map, on the small picture."""
    return ",".join([_short_side_scale(max_height), "setsar=1", *(_sdr(source) or ["format=yuv420p"])])


def short_side(source: SourceInfo) -> int | None:
    if not source.width or not source.height:
        return None
    return min(source.width, source.height)


def _pan(source: SourceInfo) -> str | None:
    """The stereo matrix FFmpeg cannot pick itself, or None. FFmpeg's matrix needs a named layout (5.1,
    7.1); for unnamed or huge ones (a 64-channel WAV) even channels go left and odd ones right, normalised."""
    channels = source.audio_channels
    if channels is None or (source.audio_layout and channels <= 8):
        return None
    if channels == 1:
        return "pan=stereo|c0=c0|c1=c0"
    left = "+".join(f"c{n}" for n in range(0, channels, 2))
    right = "+".join(f"c{n}" for n in range(1, channels, 2))
    return f"pan=stereo|c0<{left}|c1<{right}"


def _stereo(source: SourceInfo) -> list[str]:
    """Audio downmixed to stereo whatever the layout."""
    pan = _pan(source)
    return ["-af", pan] if pan else ["-ac", "2"]


def downmix_filter(source: SourceInfo) -> str:
    """``_stereo`` as a filter, for a graph that cuts the sound into parts after the downmix."""
    return _pan(source) or "aformat=channel_layouts=stereo"


@dataclass(frozen=True)
class VideoRecipe:
    """A video format in parts, so a whole-file encode, the encode of one segment, an encode beside
    other renditions from one decode and the assembly of segments all use exactly the same settings:
    the size (short side), the video encoder, the sound (audio encoder) and the container."""

    size: int
    encoder: Callable[[SourceInfo], list[str]]
    audio: Callable[[SourceInfo], list[str]]
    container: tuple[str, ...]
    # AAC frames decode alone (only their windows overlap), so a segmented output's sound can be encoded
    # in parts and spliced frame by frame. Opus frames predict from the one before: one part.
    spliced_sound: bool = False
    # Renditions of one group are converted together, from one decode (``pictures_once``). Only encoders
    # of about the same speed share one: in one run every output goes at the pace of the slowest.
    decode_group: str | None = None
    # Keyframes on a fixed grid of this many seconds (a stream's renditions), else where the encoder likes.
    gop_seconds: int | None = None

    def aligned(self) -> VideoRecipe:
        """The same recipe with keyframes on the stream's grid (``GOP_SECONDS``)."""
        return dataclasses.replace(self, gop_seconds=GOP_SECONDS)

    def encoding(self, source: SourceInfo) -> list[str]:
        """The video encoder's options, with the keyframe grid when the recipe has one."""
        return [*self.encoder(source), *(fixed_keyframes(self.gop_seconds) if self.gop_seconds else [])]

    def filters(self, source: SourceInfo) -> str:
        return f"{shared_picture(source)},{_sized(source, self.size)}"

    def video(self, source: SourceInfo) -> list[str]:
        """The picture from input 0, filtered and encoded."""
        return ["-map", "0:v:0", "-vf", self.filters(source), *self.encoding(source)]

    def whole(self, source: SourceInfo) -> list[str]:
        """One output of the original: picture and sound."""
        sound = ["-map", "0:a:0", *self.audio(source)] if source.has_audio else ["-an"]
        return [*self.video(source), *sound, *VIDEO_TIMING, *NO_METADATA, "-sn", "-dn", *self.container]

    def segment(self, source: SourceInfo, picture: list[str] | None = None) -> list[str]:
        """The picture alone, timestamps kept (NUT keeps the stream's exact time base), no sound: one
        segment of a long video, or a rendition whose sound is encoded beside it and muxed in after.
        ``picture`` maps a filtered picture from a shared graph instead (``pictures_once``)."""
        video = [*picture, *self.encoding(source)] if picture else self.video(source)
        return [*video, "-an", *VIDEO_TIMING, *NO_METADATA, "-sn", "-dn", "-f", "nut"]

    def sound(self, source: SourceInfo, *, alone: bool = False) -> list[str]:
        """The sound without the picture: AAC frames (ADTS) to splice with other parts' when the recipe
        splices its sound, else the whole sound in NUT; or (``alone``) in the format's own container,
        which keeps the encoder's priming for the muxer (NUT and ADTS do not keep AAC's)."""
        frames = ["-f", "adts"] if self.spliced_sound else ["-f", "nut"]
        container = list(self.container) if alone else frames
        return ["-map", "0:a:0", *self.audio(source), "-vn", "-sn", "-dn", *NO_METADATA, *container]

    def assembly(self, source: SourceInfo, *, with_audio: bool, pictures: str = "0:v:0") -> list[str]:
        """Input 0: the encoded picture (a rendition's, or the segments concatenated; ``pictures`` maps
        more than one, a stream's renditions); input 1 (if any): the encoded sound. Both copied."""
        sound = ["-map", "1:a:0", "-c:a", "copy"] if with_audio else ["-an"]
        # The pieces (NUT) carry no colour tags: the container's are set again on the copy (WebM would
        # otherwise lose the primaries and transfer, which VP9 itself does not store).
        picture = ["-map", pictures, "-c:v", "copy", *_bt709_tags(source)]
        return [*picture, *sound, *NO_METADATA, "-sn", "-dn", *self.container]


def fixed_keyframes(seconds: int) -> list[str]:
    """x264 options for a keyframe at the first frame of every ``seconds`` of the timeline and nowhere
    else: closed GOPs (IDR frames), no scene-cut keyframes, a maximum interval no source reaches first
    (MAX_FPS frames a second). The grid is the timeline's, not counted from the first frame, so the
    pieces of a long video cut on it give the same keyframes as one whole encode."""
    grid = f"if(isnan(prev_forced_t),1,gte(floor(t/{seconds}),floor(prev_forced_t/{seconds})+1))"
    return [
        "-force_key_frames", f"expr:{grid}", "-forced-idr", "1",
        "-g", str(4 * seconds * MAX_FPS), "-sc_threshold", "0", "-x264-params", "open-gop=0",
    ]  # fmt: skip


def pictures_once(source: SourceInfo, recipes: list[VideoRecipe]) -> tuple[list[int], dict[int, list[str]]]:
    """The pictures of several renditions from one decode: for each recipe, the index of the recipe
    whose picture it takes (``shared_pictures``); and, in order, the output arguments (``segment``) of
    each picture to encode, the first carrying the filter graph that runs the shared filters once and
    splits the picture into one branch per picture, each scaled to its size."""
    shares = shared_pictures(source, recipes)
    encoded = sorted(set(shares))
    if len(encoded) == 1:
        return shares, {encoded[0]: recipes[encoded[0]].segment(source)}
    branches = "".join(f"[p{i}]" for i in encoded)
    graph = [f"[0:v:0]{shared_picture(source)},split={len(encoded)}{branches}"]
    graph += [f"[p{i}]{_sized(source, recipes[i].size)}[v{i}]" for i in encoded]
    args = {i: recipes[i].segment(source, ["-map", f"[v{i}]"]) for i in encoded}
    args[encoded[0]] = ["-filter_complex", ";".join(graph), *args[encoded[0]]]
    return shares, args


def shared_pictures(source: SourceInfo, recipes: list[VideoRecipe]) -> list[int]:
    """For each recipe, the index of the recipe whose encoded picture it takes. Renditions at or above
    the source's short side all keep the source's size (nothing is upscaled), so the smallest of them,
    whose bit rate cap is the one meant for that size, is encoded once for all of them."""
    side = short_side(source)
    kept = [index for index, recipe in enumerate(recipes) if side is not None and recipe.size >= side]
    if len(kept) < 2:
        return list(range(len(recipes)))
    smallest = min(kept, key=lambda index: recipes[index].size)
    return [smallest if index in kept else index for index in range(len(recipes))]


def _h264(max_height: int, maxrate_kbps: int) -> VideoRecipe:
    def encoder(source: SourceInfo) -> list[str]:
        return [
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
            "-maxrate", f"{maxrate_kbps}k", "-bufsize", f"{maxrate_kbps * 2}k",
            "-profile:v", "high", "-pix_fmt", "yuv420p", *_bt709_tags(source),
        ]  # fmt: skip

    def audio(source: SourceInfo) -> list[str]:
        return ["-c:a", "aac", "-b:a", "128k", *_stereo(source)]

    container = ("-movflags", "+faststart", "-f", "mp4")
    return VideoRecipe(max_height, encoder, audio, container, spliced_sound=True, decode_group="h264")


def _vp9_encoder(source: SourceInfo) -> list[str]:
    return [
        "-c:v", "libvpx-vp9", "-crf", "33", "-b:v", "0",
        "-deadline", "good", "-cpu-used", "4", "-row-mt", "1", "-pix_fmt", "yuv420p", *_bt709_tags(source),
    ]  # fmt: skip


def _opus_audio(source: SourceInfo) -> list[str]:
    return ["-c:a", "libopus", "-b:a", "96k", *_stereo(source)]


WEBM = VideoRecipe(WEBM_MAX_HEIGHT, _vp9_encoder, _opus_audio, ("-f", "webm"))


def _mp3_args(source: SourceInfo) -> list[str]:
    audio = ["-c:a", "libmp3lame", "-q:a", "2", *_stereo(source)]
    return ["-map", "0:a:0", "-vn", "-sn", "-dn", *audio, *NO_METADATA, "-f", "mp3"]


def _gif_args(source: SourceInfo) -> list[str]:
    # palettegen waits for the end of its input, so everything before it must end: the input is cut at
    # GIF_MAX_SECONDS (the preset's max_seconds, applied as input -t by the runner) and trim ends the
    # graph there too, since fps would otherwise repeat the last frame read up to its (declared, maybe
    # hours-long) duration. Frames are scaled down before split, so the palette step holds small ones.
    # eof_action=pass: a clip shorter than one GIF frame still gives a (one-frame) GIF.
    frames = ",".join(
        [
            f"[0:v:0]fps={GIF_FPS}:eof_action=pass",
            f"trim=end={GIF_MAX_SECONDS}",
            _picture(source),
            f"scale=w='min({GIF_MAX_WIDTH},iw)':h=-2:flags=lanczos",
            "setsar=1",
            *_sdr(source),
        ]
    )
    graph = (
        f"{frames},split[a][b];"
        "[a]palettegen=max_colors=128:stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=5"
    )
    return ["-filter_complex", graph, "-an", *NO_METADATA, "-loop", "0", "-f", "gif"]


def thumbnail_time(source: SourceInfo) -> float:
    """A poster frame a little into the video, past fade-ins, never past its end."""
    if not source.duration or source.duration < 1.0:
        return 0.0  # a very short clip may have a single frame: seeking would skip it
    return round(min(source.duration * 0.1, 5.0), 3)


def _thumbnail_args(source: SourceInfo) -> list[str]:
    box = f"w='min({THUMBNAIL_MAX_SIDE},iw)':h='min({THUMBNAIL_MAX_SIDE},ih)':force_original_aspect_ratio=decrease"
    # Pick first: the filters after run on one frame. The tone map too, although the picker works on
    # 8-bit frames: 8-bit HLG/PQ is fine for a JPEG, tone mapping all 12 full-size frames is not cheap.
    vf = ",".join(["thumbnail=n=12", _picture(source), f"scale={box}", "setsar=1", *_sdr(source)])
    image = ["-frames:v", "1", "-q:v", "3", "-an", *NO_METADATA, "-f", "image2", "-update", "1"]
    return ["-map", "0:v:0", "-vf", vf, *image]


STORYBOARD_TILE_WIDTH = 160
STORYBOARD_COLUMNS = 10
STORYBOARD_MAX_TILES = 200
STORYBOARD_INTERVAL = 5  # seconds between frames of a video of a minute or more


@dataclass(frozen=True)
class StoryboardLayout:
    """Where the frames of a storyboard are: one every ``interval`` seconds, ``count`` of them, in a grid
    ``columns`` wide, row by row. A function of the source's duration alone, so the worker that draws the
    sprite and the API that writes its WebVTT track agree without storing it."""

    interval: float
    count: int
    columns: int

    @property
    def rows(self) -> int:
        return -(-self.count // self.columns)


def storyboard_layout(source: SourceInfo) -> StoryboardLayout:
    """About ten frames for a short clip, one every STORYBOARD_INTERVAL s for longer ones, and never more
    than STORYBOARD_MAX_TILES (a two-hour film: one every 36 s)."""
    duration = max(source.duration or 0.0, 0.001)
    if duration < 10 * STORYBOARD_INTERVAL:
        interval = max(1.0, float(-(-int(duration * 1000) // 10_000)))
    else:
        interval = float(max(STORYBOARD_INTERVAL, -(-int(duration) // STORYBOARD_MAX_TILES)))
    count = max(1, -(-int(duration * 1000) // int(interval * 1000)))
    return StoryboardLayout(interval, count, min(STORYBOARD_COLUMNS, count))


def _storyboard_args(source: SourceInfo) -> list[str]:
    layout = storyboard_layout(source)
    # fps picks the frame nearest each interval's start; tile fills the grid row by row and, at the end of
    # the video, sends the grid it has (the rest black).
    vf = ",".join(
        [
            f"fps=1/{layout.interval:g}:round=down",
            _picture(source),
            f"scale=w={STORYBOARD_TILE_WIDTH}:h=-2:flags=bicubic",
            "setsar=1",
            *_sdr(source),
            f"tile={layout.columns}x{layout.rows}",
        ]
    )
    image = ["-frames:v", "1", "-q:v", "4", "-an", *NO_METADATA, "-f", "image2", "-update", "1"]
    return ["-map", "0:v:0", "-vf", vf, *image]


def _thumbnail_input_args(source: SourceInfo) -> list[str]:
    return ["-ss", str(thumbnail_time(source))]  # fast seek to the poster frame


def _no_input_args(source: SourceInfo) -> list[str]:
    return []


@dataclass(frozen=True)
class Stream:
    """An adaptive stream's ladder: the video recipes of its renditions (H.264 MP4 sizes), largest
    first, each with keyframes on the GOP grid so that their segments line up."""

    ladder: tuple[VideoRecipe, ...]
    decode_group: str

    def renditions(self, source: SourceInfo) -> list[VideoRecipe]:
        """The sizes this source allows, never upscaled: the sizes below its short side, and the smallest
        of those at or above it once (which keeps the source's size); the same recipes as the MP4 sizes,
        aligned, so a job's MP4 encodes of those sizes are the stream's renditions."""
        side = short_side(source) or 0
        below = [recipe for recipe in self.ladder if recipe.size < side]
        above = [recipe for recipe in self.ladder if recipe.size >= side]
        kept = [min(above, key=lambda recipe: recipe.size)] if above else []
        return sorted([*kept, *below], key=lambda recipe: recipe.size, reverse=True)


def _packaged(source: SourceInfo) -> list[str]:
    raise ValueError("A stream has no single FFmpeg output: its renditions are encoded, then packaged")


@dataclass(frozen=True)
class Preset:
    id: str
    label: str
    extension: str
    media_type: str
    kind: Kind
    description: str
    output_args: Callable[[SourceInfo], list[str]]
    input_args: Callable[[SourceInfo], list[str]] = _no_input_args  # options placed before ``-i``
    needs_video: bool = True
    needs_audio: bool = False
    max_height: int | None = None
    max_width: int | None = None
    max_seconds: float | None = None
    recipe: VideoRecipe | None = None  # video formats: long sources can be converted in segments
    stream: Stream | None = None  # an adaptive stream: the renditions of a ladder, packaged (``streams``)

    @property
    def encodes_video(self) -> bool:
        """A video encode (an MP4 size, WebM, a stream's renditions), as opposed to quick work (MP3, GIF, stills)."""
        return (self.recipe or self.stream) is not None

    @property
    def decode_group(self) -> str | None:
        """Formats of one group are converted together, from one decode (``work.divide``)."""
        holder = self.recipe or self.stream
        return holder.decode_group if holder is not None else None

    def size_note(self, source: SourceInfo) -> str | None:
        """Why this output is smaller than its name says, or None: renditions are never upscaled."""
        side = short_side(source)
        if self.max_height is None or self.kind is not Kind.VIDEO or side is None or side >= self.max_height:
            return None
        return (
            f"The source is {source.width}x{source.height}, smaller than {self.max_height}p, "
            f"so this output keeps the source's size ({side}p): it is never upscaled."
        )

    def check_source(self, source: SourceInfo) -> None:
        if self.needs_video and not source.has_video:
            raise UnsuitableSource(f"The source has no video stream, so it cannot be converted to {self.label}.")
        if self.needs_audio and not source.has_audio:
            raise UnsuitableSource(f"The source has no audio track, so there is nothing to put in an {self.label}.")


def recipes_of(presets: list[Preset]) -> list[VideoRecipe]:
    """The recipes of video formats converted together (only those have one)."""
    recipes = [preset.recipe for preset in presets if preset.recipe is not None]
    if len(recipes) != len(presets):
        raise ValueError("Only video formats are converted together")
    return recipes


def pictures_of(presets: list[Preset], source: SourceInfo) -> tuple[list[VideoRecipe], list[list[int]]]:
    """The pictures video formats converted together are encoded to (each distinct recipe once) and,
    for each format, the indices of those it takes: an MP4 size its own, a stream its renditions. With
    a stream among them every picture has its keyframes on the stream's grid, so the MP4 sizes the job
    asks for are the stream's renditions of those sizes, encoded once."""
    streamed = any(preset.stream is not None for preset in presets)
    recipes: list[VideoRecipe] = []
    takes = []
    for preset in presets:
        wanted = preset.stream.renditions(source) if preset.stream is not None else recipes_of([preset])
        aligned = [recipe.aligned() if streamed and preset.recipe is not None else recipe for recipe in wanted]
        for recipe in aligned:
            if recipe not in recipes:
                recipes.append(recipe)
        takes.append([recipes.index(recipe) for recipe in aligned])
    return recipes, takes


def mp4_id(height: int) -> str:
    """The format id of the MP4 size ``height``."""
    return f"{height}p"


def _mp4(height: int, maxrate_kbps: int) -> Preset:
    recipe = _h264(height, maxrate_kbps)
    return Preset(
        id=mp4_id(height),
        label=f"MP4 {height}p",
        extension="mp4",
        media_type="video/mp4",
        kind=Kind.VIDEO,
        description=f"H.264 + AAC, {height} px on the short side (portrait too); plays everywhere.",
        output_args=recipe.whole,
        max_height=height,
        recipe=recipe,
    )


MP4_SIZES = (_mp4(1080, 8000), _mp4(720, 5000), _mp4(480, 2500), _mp4(360, 1200))
HLS = Stream(tuple(p.recipe.aligned() for p in MP4_SIZES if p.recipe is not None), decode_group="h264")

PRESETS: dict[str, Preset] = {
    p.id: p
    for p in (
        *MP4_SIZES,
        Preset(
            id="webm",
            label="WebM",
            extension="webm",
            media_type="video/webm",
            kind=Kind.VIDEO,
            description=f"VP9 + Opus, {WEBM_MAX_HEIGHT} px on the short side; small files for the web.",
            output_args=WEBM.whole,
            max_height=WEBM_MAX_HEIGHT,
            recipe=WEBM,
        ),
        Preset(
            id="mp3",
            label="MP3",
            extension="mp3",
            media_type="audio/mpeg",
            kind=Kind.AUDIO,
            description="The audio track only (VBR, about 190 kbit/s).",
            output_args=_mp3_args,
            needs_video=False,
            needs_audio=True,
        ),
        Preset(
            id="gif",
            label="GIF",
            extension="gif",
            media_type="image/gif",
            kind=Kind.IMAGE,
            description=f"A looping preview: the first {GIF_MAX_SECONDS} s, up to {GIF_MAX_WIDTH} px wide.",
            output_args=_gif_args,
            max_width=GIF_MAX_WIDTH,
            max_seconds=GIF_MAX_SECONDS,
        ),
        Preset(
            id="thumbnail",
            label="Thumbnail",
            extension="jpg",
            media_type="image/jpeg",
            kind=Kind.IMAGE,
            description=f"A JPEG poster frame, at most {THUMBNAIL_MAX_SIDE} px on its long side.",
            output_args=_thumbnail_args,
            input_args=_thumbnail_input_args,
            max_width=THUMBNAIL_MAX_SIDE,
        ),
        Preset(
            id="hls",
            label="HLS + DASH stream",
            extension="m3u8",
            media_type="application/vnd.apple.mpegurl",
            kind=Kind.VIDEO,
            description="Plays at the quality the network allows: the MP4 sizes as one HLS and DASH stream.",
            output_args=_packaged,
            stream=HLS,
        ),
        Preset(
            id="storyboard",
            label="Storyboard",
            extension="jpg",
            media_type="image/jpeg",
            kind=Kind.IMAGE,
            description="Frames every few seconds in one sprite: previews on a player's scrub bar.",
            output_args=_storyboard_args,
            max_width=STORYBOARD_TILE_WIDTH * STORYBOARD_COLUMNS,
        ),
    )
}

# What a new job suggests (the form's ticked boxes, the API docs' "Try it out"): quick, and plays everywhere.
DEFAULT_FORMATS = ["720p", "mp3", "thumbnail"]
