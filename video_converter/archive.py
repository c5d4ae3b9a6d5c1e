"""A job's completed outputs as one ZIP, generated chunk by chunk from the store (stream-zip).

Nothing is held whole: each output is read from the store in CHUNK-sized pieces while the archive's
bytes go out, so a 4 GiB archive costs about one chunk of memory and no disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .storage import Storage
from .storage.base import CHUNK

# Media is compressed already: the fastest deflate level saves little but costs little.
LEVEL = 1
FILE_MODE = 0o644


@dataclass(frozen=True)
class Member:
    """A file of the archive: an object of the store (``key``), or, for the files a stream's bundle
    adds (``bundle``), small bytes made for it (``data``) or a file of the app (``path``)."""

    name: str  # the name inside the archive
    key: str  # where its bytes are in the store ("" when they are ``data`` or ``path``)
    size: int
    modified: datetime
    data: bytes | None = None
    path: Path | None = None


def _chunks(store: Storage, member: Member) -> Iterator[bytes]:
    if member.data is not None:
        yield member.data
        return
    with member.path.open("rb") if member.path is not None else store.open_read(member.key) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def zip_stream(store: Storage, members: Iterable[Member]) -> Iterator[bytes]:
    """The ZIP's bytes; each member is opened only when the archive reaches it."""
    from stream_zip import ZIP_AUTO, stream_zip  # the API's extra; workers never build archives

    files = ((m.name, m.modified, FILE_MODE, ZIP_AUTO(m.size, level=LEVEL), _chunks(store, m)) for m in members)
    yield from stream_zip(files, chunk_size=CHUNK)
