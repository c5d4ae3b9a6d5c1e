"""A job's completed outputs as one ZIP, generated chunk by chunk from the store (stream-zip).

Nothing is held whole: each output is read from the store in CHUNK-sized pieces while the archive's
bytes go out, so a 4 GiB archive costs about one chunk of memory and no disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from .storage import Storage
from .storage.base import CHUNK

# Media is compressed already: the fastest deflate level saves little but costs little.
LEVEL = 1
FILE_MODE = 0o644


@dataclass(frozen=True)
class Member:
    name: str  # the name inside the archive
    key: str  # where its bytes are in the store
    size: int
    modified: datetime


def _chunks(store: Storage, key: str) -> Iterator[bytes]:
    with store.open_read(key) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def zip_stream(store: Storage, members: Iterable[Member]) -> Iterator[bytes]:
    """The ZIP's bytes; each member is opened only when the archive reaches it."""
    from stream_zip import ZIP_AUTO, stream_zip  # the API's extra; workers never build archives

    files = ((m.name, m.modified, FILE_MODE, ZIP_AUTO(m.size, level=LEVEL), _chunks(store, m.key)) for m in members)
    yield from stream_zip(files, chunk_size=CHUNK)
