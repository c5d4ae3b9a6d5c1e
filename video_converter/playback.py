"""Serving a stream and a storyboard: the stored playlists and manifest name their files relatively
(so the folder plays from any static host); the API answers them with each media file's URL signed
afresh (local signed URLs or S3 presigned ones), and writes the storyboard's WebVTT track from its
layout, pointing at the sprite.

The master playlist names the media playlists relatively too: served at
``/api/jobs/{id}/stream/master.m3u8``, they resolve to the API's own routes beside it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from xml.sax.saxutils import escape, quoteattr

from .model import OutputRecord
from .presets import StoryboardLayout, storyboard_layout

Sign = Callable[[str], str]  # a file name of the stream -> its signed URL

# Our own names only: a track's file (video_360p.mp4, audio.mp4; a stream in pieces: video_360p-00003.mp4)
# or playlist, and the manifests.
FILE_NAME = re.compile(r"(?:video_\d{2,5}p|audio)(?:-\d{5})?\.mp4")
PLAYLIST_NAME = re.compile(r"(?:video_\d{2,5}p|audio|master)\.m3u8")
_MAP_URI = re.compile(r'URI="([^"]+)"')
_BASE_URL = re.compile(r"<BaseURL>([^<]+)</BaseURL>")
_FILE_ATTRIBUTE = re.compile(r'\b(media|sourceURL)="([^"]+)"')  # a stream in pieces: a file per segment


def _signed(name: str, sign: Sign) -> str:
    if not FILE_NAME.fullmatch(name):
        raise ValueError(f"Not a file of the stream: {name!r}")
    return sign(name)


def signed_playlist(text: str, sign: Sign) -> str:
    """A media playlist with its file's URL signed: the segment lines and the EXT-X-MAP's URI. The
    master playlist has no file of its own: it comes back unchanged. Each file is signed once: every
    segment names the same URL (a signature made a second later would differ, and a player caches by URL)."""
    sign = functools.cache(sign)
    lines = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MAP:"):
            line = _MAP_URI.sub(lambda match: f'URI="{_signed(match.group(1), sign)}"', line)
        elif line and not line.startswith("#") and not PLAYLIST_NAME.fullmatch(line):
            line = _signed(line, sign)
        lines.append(line)
    return "\n".join([*lines, ""])


def signed_manifest(text: str, sign: Sign) -> str:
    """The DASH manifest with each representation's BaseURL, or each segment's and init's file (a stream
    in pieces), signed (escaped for XML)."""
    sign = functools.cache(sign)
    text = _BASE_URL.sub(lambda match: f"<BaseURL>{escape(_signed(match.group(1), sign))}</BaseURL>", text)
    return _FILE_ATTRIBUTE.sub(lambda match: f"{match.group(1)}={quoteattr(_signed(match.group(2), sign))}", text)


def _clock(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def storyboard_track(record: OutputRecord, sprite_url: str) -> str:
    """The WebVTT thumbnails track of a completed storyboard: one cue per frame, naming its tile of
    the sprite by a media fragment (``#xywh=x,y,w,h``), as players' scrub-bar previews read it."""
    source = record.source
    if source is None or not record.width or not record.height:
        raise ValueError("The storyboard's record lacks its size or its source")
    layout: StoryboardLayout = storyboard_layout(source)
    width, height = record.width // layout.columns, record.height // layout.rows
    end_of_video = source.duration or layout.interval * layout.count
    cues = ["WEBVTT", ""]
    for index in range(layout.count):
        start = index * layout.interval
        end = min(start + layout.interval, max(end_of_video, start + 0.001))
        x, y = (index % layout.columns) * width, (index // layout.columns) * height
        cues += [f"{_clock(start)} --> {_clock(end)}", f"{sprite_url}#xywh={x},{y},{width},{height}", ""]
    return "\n".join(cues)
