"""What a packager's test suite checks of a stream, over HTTP as a player sees it: the master playlist
and every media playlist parse (``m3u8``), the DASH manifest parses (``mpegdash``) and describes the
same byte ranges, every segment's byte range starts with a keyframe (probed: the init part and the
segment as one file), no segment lasts more than the target + 1 s, and the renditions' boundaries match."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import m3u8
from mpegdash.parser import MPEGDASHParser

from video_converter.ffmpeg import ffprobe_path
from video_converter.ffmpeg.runner import child_env

Fetch = Callable[[str, tuple[int, int] | None], bytes]  # url, (first, last) byte or None -> the body


@dataclass
class Checked:
    variants: list[m3u8.Playlist]
    media: dict[str, m3u8.M3U8] = field(default_factory=dict)  # playlist name -> parsed
    audio: m3u8.M3U8 | None = None
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # init file -> (offset, length)
    files: dict[str, list[str]] = field(default_factory=dict)  # init file -> each segment's file

    def resolutions(self) -> list[tuple[int, int]]:
        return [v.stream_info.resolution for v in self.variants]


def _ranged(fetch: Fetch, url: str, byterange: str) -> bytes:
    length, offset = (int(part) for part in byterange.split("@"))
    data = fetch(url, (offset, offset + length - 1))
    assert len(data) == length, f"{url}: asked {length} bytes, got {len(data)}"
    return data


def first_packet_is_key(data: bytes, path: Path, stream: str) -> bool:
    path.write_bytes(data)
    argv = [
        ffprobe_path(), "-v", "error", "-select_streams", stream, "-read_intervals", "%+#1",
        "-show_entries", "packet=flags", "-of", "csv=p=0", str(path),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=child_env(), check=True)
    return done.stdout.splitlines()[0].startswith("K")


def _check_media(fetch: Fetch, url: str, kind: str, target: int, folder: Path, checked: Checked) -> m3u8.M3U8:
    playlist = m3u8.loads(fetch(url, None).decode(), uri=url)
    assert playlist.is_endlist and playlist.playlist_type == "vod"
    init = playlist.segment_map[0]
    file_url = urljoin(url, init.uri)
    head = _ranged(fetch, file_url, init.byterange)
    name = init.uri.split("?")[0].rsplit("/", 1)[-1]
    checked.ranges[name], checked.files[name] = [], []
    assert len(playlist.segment_map) == 1  # one init for every segment (a stream in pieces: the first's)
    for n, segment in enumerate(playlist.segments):
        assert segment.duration <= target + 1, f"{url}: segment {n} lasts {segment.duration} s"
        segment_url = urljoin(url, segment.uri)  # the rendition's file, or a piece's of it
        body = _ranged(fetch, segment_url, segment.byterange)
        length, offset = (int(part) for part in segment.byterange.split("@"))
        checked.ranges[name].append((offset, length))
        checked.files[name].append(segment.uri.split("?")[0].rsplit("/", 1)[-1])
        assert first_packet_is_key(head + body, folder / f"{name}-{n}.mp4", kind), (
            f"{name}: segment {n} starts without a keyframe"
        )
    return playlist


def check_stream(fetch: Fetch, master_url: str, folder: Path, target: int = 6) -> Checked:
    master = m3u8.loads(fetch(master_url, None).decode(), uri=master_url)
    assert master.is_variant and master.playlists
    checked = Checked(variants=list(master.playlists))
    for variant in master.playlists:
        info = variant.stream_info
        assert info.bandwidth >= info.average_bandwidth > 0 and info.resolution and info.frame_rate
        assert info.codecs.startswith("avc1.64")
        url = urljoin(master_url, variant.uri)
        checked.media[variant.uri] = _check_media(fetch, url, "v:0", target, folder, checked)
    audio = [m for m in master.media if m.type == "AUDIO"]
    if audio:
        assert all("mp4a.40.2" in v.stream_info.codecs for v in master.playlists)
        checked.audio = _check_media(fetch, urljoin(master_url, audio[0].uri), "a:0", target, folder, checked)
    starts = [_starts(p) for p in checked.media.values()]
    assert all(s == starts[0] for s in starts), f"boundaries differ: {starts}"
    return checked


def _starts(playlist: m3u8.M3U8) -> list[float]:
    times, at = [], 0.0
    for segment in playlist.segments:
        times.append(round(at, 3))
        at += segment.duration
    return times


def check_manifest(fetch: Fetch, mpd_url: str, checked: Checked) -> None:
    """The manifest parses and names the same files and byte ranges as the playlists."""
    mpd = MPEGDASHParser.parse(fetch(mpd_url, None).decode())
    sets = mpd.periods[0].adaptation_sets
    representations = [r for s in sets for r in s.representations]
    assert len(representations) == len(checked.ranges)
    for rep in representations:
        listed = rep.segment_lists[0]
        if rep.base_urls:  # one file
            base = rep.base_urls[0].base_url_value
            urls = [base] * len(listed.segment_urls)
        else:  # a stream in pieces: each segment names its piece's file, the init the first's
            base = listed.initializations[0].source_url
            urls = [seg.media for seg in listed.segment_urls]
        name = base.split("?")[0].rsplit("/", 1)[-1]
        ranges = [seg.media_range for seg in listed.segment_urls]
        assert ranges == [f"{o}-{o + n - 1}" for o, n in checked.ranges[name]], name
        assert [u.split("?")[0].rsplit("/", 1)[-1] for u in urls] == checked.files[name], name
        for url, media_range in zip(urls, ranges, strict=True):
            first, last = (int(x) for x in media_range.split("-"))
            assert len(fetch(urljoin(mpd_url, url), (first, last))) == last - first + 1
