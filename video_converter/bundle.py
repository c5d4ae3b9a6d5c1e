"""A job's stream as a folder that plays anywhere, inside its archive: the stream's files as stored
(their playlists name them relatively), the poster (the thumbnail) and the storyboard when the job has
them, the player (its script, style and hls.js with its licence, from the app) and an ``index.html``
that plays the stream. Any static host serves it as it is (``python3 -m http.server`` in the folder,
a bucket, a CDN); a browser cannot play it from ``file://`` (no fetch there), which the page says.

Folder ({download stem}_stream/): index.html, master.m3u8, manifest.mpd, {track}.m3u8, {track}.mp4 (a
long video's stream: {track}-{n}.mp4, a file per piece, named relatively by the playlists too), poster.jpg,
storyboard.jpg, storyboard.vtt, player.js, player.css, vendor/hls.js/{hls.min.js,LICENSE}
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path

from . import playback, streams
from .archive import Member
from .model import JobRecord, OutputRecord, OutputStatus
from .storage import Storage

POSTER = "poster.jpg"
SPRITE = "storyboard.jpg"
TRACK = "storyboard.vtt"


def folder_name(record: JobRecord) -> str:
    return f"{record.download_stem or record.stem}_stream"


def index_page(title: str, *, poster: bool, storyboard: bool) -> str:
    """The bundle's page: the player over the relative master playlist, and what the folder holds."""
    attributes = {
        "data-stream-src": streams.MASTER,
        "data-stream-title": title,
        "data-stream-poster": POSTER if poster else None,
        "data-stream-track": TRACK if storyboard else None,
    }
    holder = " ".join(f'{key}="{html.escape(value)}"' for key, value in attributes.items() if value)
    name = html.escape(title)
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{name}</title>
  <link rel="stylesheet" href="player.css">
  <style>body {{ max-width: 64rem; margin: 2rem auto; padding: 0 1rem; font-family: system-ui, sans-serif; }}</style>
</head>
<body>
  <main>
    <h1>{name}</h1>
    <div {holder}></div>
    <p>HLS: <a href="{streams.MASTER}">{streams.MASTER}</a> · DASH: <a href="{streams.MANIFEST}">{streams.MANIFEST}</a>.
      Serve this folder from any web server (for example <code>python3 -m http.server</code> in it): browsers do
      not play streams from files opened directly.</p>
  </main>
  <script src="player.js"></script>
</body>
</html>
"""


def _completed(outputs: list[OutputRecord], format_id: str) -> OutputRecord | None:
    found = next((o for o in outputs if o.format == format_id), None)
    return found if found is not None and found.status is OutputStatus.COMPLETED and found.key else None


def members(
    converted: Storage, record: JobRecord, stream: OutputRecord, outputs: list[OutputRecord], assets: Mapping[str, Path]
) -> list[Member]:
    """The bundle's files, in the order a reader of the archive meets them (the page first)."""
    folder, modified = folder_name(record), stream.updated_at
    thumbnail, storyboard = _completed(outputs, "thumbnail"), _completed(outputs, "storyboard")
    page = index_page(record.filename, poster=thumbnail is not None, storyboard=storyboard is not None).encode()
    found = [Member(f"{folder}/index.html", "", len(page), modified, data=page)]
    for item in converted.list(streams.stream_prefix(record.job_id)):
        found.append(Member(f"{folder}/{item.key.rsplit('/', 1)[-1]}", item.key, item.size, modified))
    for extra, name in ((thumbnail, POSTER), (storyboard, SPRITE)):
        if extra is not None and extra.key is not None and extra.size_bytes is not None:
            found.append(Member(f"{folder}/{name}", extra.key, extra.size_bytes, extra.updated_at))
    if storyboard is not None:
        track = playback.storyboard_track(storyboard, SPRITE).encode()
        found.append(Member(f"{folder}/{TRACK}", "", len(track), storyboard.updated_at, data=track))
    for name, path in assets.items():
        found.append(Member(f"{folder}/{name}", "", path.stat().st_size, modified, path=path))
    return found
