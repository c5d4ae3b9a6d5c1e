"""Pure functions over what FFmpeg prints; tested on captured output."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..model import SourceInfo


def _float(value: object) -> float | None:
    if not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _rate(value: object) -> float | None:
    if not isinstance(value, str) or "/" not in value:
        return _float(value)
    num, _, den = value.partition("/")
    n, d = _float(num), _float(den)
    return round(n / d, 3) if n is not None and d else None


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return int(_float(side["rotation"]) or 0)
    return int(_float((stream.get("tags") or {}).get("rotate")) or 0)


def _color(value: object) -> str | None:
    """A colour tag as FFmpeg names it; None when absent or unknown."""
    if not isinstance(value, str) or value in ("", "unknown", "unspecified", "reserved"):
        return None
    return value


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


@dataclass(frozen=True)
class StreamFacts:
    """One stream as the container and decoder declare it: what the limits look at."""

    kind: str  # FFmpeg's codec_type: "video", "audio", "subtitle", "data", ...
    codec: str | None = None
    width: int | None = None  # stored (not rotated) size
    height: int | None = None
    coded_width: int | None = None
    coded_height: int | None = None
    start_time: float | None = None
    duration: float | None = None
    nb_frames: int | None = None  # from the container index (MP4, AVI); None in Matroska, MPEG-TS, ...
    r_frame_rate: float | None = None  # the smallest frame interval's rate; 1000 or 90000 in odd VFR files
    avg_frame_rate: float | None = None
    time_base: str | None = None
    channels: int | None = None
    sample_rate: int | None = None
    channel_layout: str | None = None
    attached_pic: bool = False  # cover art, not a video track


@dataclass(frozen=True)
class ProbeFacts:
    """``parse_probe``'s SourceInfo plus the raw facts behind it."""

    info: SourceInfo
    streams: tuple[StreamFacts, ...] = ()
    start_time: float | None = None
    duration: float | None = None
    size: int | None = None  # bytes, as the format reports them

    @property
    def video(self) -> StreamFacts | None:
        return next((s for s in self.streams if s.kind == "video" and not s.attached_pic), None)


def _stream_facts(stream: dict[str, Any]) -> StreamFacts:
    layout = stream.get("channel_layout")
    return StreamFacts(
        kind=str(stream.get("codec_type") or ""),
        codec=stream.get("codec_name"),
        width=_int(stream.get("width")),
        height=_int(stream.get("height")),
        coded_width=_int(stream.get("coded_width")),
        coded_height=_int(stream.get("coded_height")),
        start_time=_float(stream.get("start_time")),
        duration=_float(stream.get("duration")),
        nb_frames=_int(stream.get("nb_frames")),
        r_frame_rate=_rate(stream.get("r_frame_rate")),
        avg_frame_rate=_rate(stream.get("avg_frame_rate")),
        time_base=stream.get("time_base"),
        channels=_int(stream.get("channels")),
        sample_rate=_int(stream.get("sample_rate")),
        channel_layout=layout if isinstance(layout, str) and layout != "unknown" else None,
        attached_pic=bool((stream.get("disposition") or {}).get("attached_pic")),
    )


# What ffprobe is asked to print (its -show_entries): exactly the fields parse_probe_facts and
# _stream_facts read, and of the tags only ``rotate``. A file's other tags can be any size (60 MB of
# U+0001 in a Matroska tag is 377 MB of JSON escapes): they are never printed.
PROBE_ENTRIES = ":".join(
    [
        "stream=" + ",".join(
            [
                "codec_type", "codec_name", "width", "height", "coded_width", "coded_height",
                "start_time", "duration", "nb_frames", "r_frame_rate", "avg_frame_rate", "time_base",
                "channels", "sample_rate", "channel_layout", "field_order",
                "color_transfer", "color_primaries", "color_space",
            ]
        ),
        "stream_disposition=attached_pic",
        "stream_side_data=rotation",
        "stream_tags=rotate",
        "format=format_name,start_time,duration,size",
    ]
)  # fmt: skip


def parse_probe_facts(text: str) -> ProbeFacts:
    """Turn ``ffprobe -print_format json -show_entries PROBE_ENTRIES`` output (or the fuller
    ``-show_format -show_streams``) into SourceInfo and facts.

    Cover art in audio files (``attached_pic``) does not count as video. Width and height are the
    displayed ones: a phone video recorded in portrait reports portrait dimensions.
    """
    data = json.loads(text or "{}")
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)

    width = height = None
    if video is not None:
        width, height = video.get("width"), video.get("height")
        if width and height and abs(_rotation(video)) % 180 == 90:
            width, height = height, width

    duration = _float(fmt.get("duration"))
    if duration is None:
        durations = [_float(s.get("duration")) for s in (video, audio) if s]
        duration = max((d for d in durations if d is not None), default=None)

    audio_facts = _stream_facts(audio) if audio else None
    info = SourceInfo(
        duration=round(duration, 3) if duration is not None else None,
        width=width or None,
        height=height or None,
        video_codec=video.get("codec_name") if video else None,
        audio_codec=audio.get("codec_name") if audio else None,
        frame_rate=_rate(video.get("avg_frame_rate")) if video else None,
        format_name=fmt.get("format_name"),
        interlaced=video is not None and video.get("field_order") in ("tt", "bb", "tb", "bt"),
        audio_channels=audio_facts.channels if audio_facts else None,
        audio_layout=audio_facts.channel_layout if audio_facts else None,
        color_transfer=_color(video.get("color_transfer")) if video else None,
        color_primaries=_color(video.get("color_primaries")) if video else None,
        color_space=_color(video.get("color_space")) if video else None,
    )
    return ProbeFacts(
        info=info,
        streams=tuple(_stream_facts(s) for s in streams),
        start_time=_float(fmt.get("start_time")),
        duration=_float(fmt.get("duration")),
        size=_int(fmt.get("size")),
    )


def parse_probe(text: str) -> SourceInfo:
    """The SourceInfo of ``parse_probe_facts``."""
    return parse_probe_facts(text).info


@dataclass
class ProgressTracker:
    """Reads ``-progress`` key=value lines; reports a percentage each time a block ends."""

    duration: float | None
    _out_time: float = 0.0

    def feed(self, line: str) -> float | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key in ("out_time_us", "out_time_ms"):  # both are microseconds (a historic FFmpeg quirk)
            micros = _float(value)
            if micros is not None and micros >= 0:
                self._out_time = micros / 1_000_000
        elif key == "progress":
            if value == "end":
                return 100.0
            return self.percent()
        return None

    def percent(self) -> float:
        if not self.duration or self.duration <= 0:
            return 0.0
        return round(min(99.0, max(0.0, 100.0 * self._out_time / self.duration)), 1)


EIGHT_K = (7680, 4320)
# What a decoder prints when -max_pixels refuses a frame (libavutil's av_image_check_size2, FFmpeg 7).
_OVER_MAX_PIXELS = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count (\d+)")


def describe_pixels(max_pixels: int) -> str:
    """A pixel limit in words: ``8K (7680x4320)``, ``33.2 megapixels``, ``307200 pixels``."""
    if max_pixels == EIGHT_K[0] * EIGHT_K[1]:
        return "8K (7680x4320)"
    if max_pixels >= 1_000_000:
        return f"{max_pixels / 1e6:.1f} megapixels"
    return f"{max_pixels} pixels"


def frame_over_max_pixels(line: str) -> str | None:
    """The sentence for an FFmpeg stderr line saying a decoder refused a frame larger than -max_pixels
    (a stream that grows partway through, past what the probe saw); None for any other line."""
    found = _OVER_MAX_PIXELS.search(line)
    if found is None:
        return None
    width, height, limit = (int(group) for group in found.groups())
    return f"This video changes to {width}x{height} pixels partway through; the limit is {describe_pixels(limit)}."


_POINTER = re.compile(r" @ 0x[0-9a-f]+")
_OUT_OF_MEMORY = ("cannot allocate memory", "out of memory", "malloc of size", "failed to allocate")


def tail(lines: Iterable[str], count: int = 8, width: int = 600) -> str:
    """The last meaningful lines FFmpeg printed, joined, for error messages (minus memory addresses)."""
    kept = [_POINTER.sub("", line.strip()) for line in lines if line.strip()]
    text = " | ".join(kept[-count:])
    return text[-width:]


def parse_packet_times(text: str) -> list[float]:
    """``ffprobe -show_entries packet=pts_time -of csv=p=0`` lines as seconds (packets without one skipped)."""
    return [t for line in text.splitlines() if (t := _float(line.strip().rstrip(","))) is not None]


def says_out_of_memory(line: str) -> bool:
    """Whether an FFmpeg stderr line reports an allocation refused by the address-space limit, as FFmpeg
    and its libraries word it (a library may also abort on one: the runner counts SIGABRT/SIGSEGV too)."""
    text = line.lower()
    return any(sign in text for sign in _OUT_OF_MEMORY)
