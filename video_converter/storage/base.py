"""The storage interface: what the core needs from a bucket or a directory, and nothing more."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


class Readable(Protocol):
    """What ``put_stream`` needs of a stream: ``read`` in chunks (an upload, a size-limited wrapper)."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Listed:
    """One object of a listing: its key, its size and when it was last written (seconds since the epoch)."""

    key: str
    size: int
    modified: float


class ObjectNotFound(KeyError):
    pass


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start``..``end`` (end excluded) of the object ``key`` of the same store."""

    key: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


Composed = Sequence[Sequence[bytes | ByteRange]]  # the parts of an object made by ``compose``, in order


@dataclass(frozen=True)
class Part:
    """One received part of a multipart upload: its number (1-10,000), size and ETag (quoted, as S3's)."""

    number: int
    size: int
    etag: str


PartList = list[Part]  # (a name of its own: inside the store classes ``list`` is their method)


def validate_prefix(prefix: str) -> str:
    """A listing prefix: a valid key ending in ``/``."""
    if not prefix.endswith("/"):
        raise ValueError(f"Invalid prefix: {prefix!r}")
    validate_key(prefix.rstrip("/"))
    return prefix


def validate_key(key: str) -> str:
    """Keys are built by the core, but a bug or a crafted id must never reach outside the store."""
    if not _KEY.fullmatch(key) or any(part in ("", ".", "..") for part in key.split("/")) or len(key) > 512:
        raise ValueError(f"Invalid object key: {key!r}")
    return key


class Storage(Protocol):
    def put_stream(self, key: str, stream: Readable, content_type: str | None = None) -> int:
        """Store a stream chunk by chunk; return the number of bytes written."""

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None: ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """For small records (status JSON); never for videos."""

    def create_bytes(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        """Store a small object only if ``key`` is absent, atomically: of any number of concurrent calls
        exactly one returns True (it created the object); the others return False and change nothing."""

    def get_bytes(self, key: str) -> bytes:
        """Read a small object; raise ObjectNotFound."""

    def local_path(self, key: str, workdir: Path) -> AbstractContextManager[Path]:
        """A readable local path for the object: the file itself on disk, a download in ``workdir`` on S3."""

    def size(self, key: str) -> int | None:
        """Object size in bytes, or None if it does not exist."""

    def delete(self, key: str) -> None: ...

    def folders(self, start_after: str = "", limit: int = 1000) -> list[str]:
        """The names of the top-level folders (job ids and the like), in key order, those after
        ``start_after`` only, at most ``limit`` (1 to 1000) of them: one listing call on S3."""

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """A small object and its version tag (S3's ETag) for ``replace_bytes``; raise ObjectNotFound."""

    def replace_bytes(self, key: str, data: bytes, tag: str, content_type: str | None = None) -> bool:
        """Overwrite a small object only if it still has version ``tag``, atomically (S3: If-Match); False,
        changing nothing, if it was changed or deleted since it was read."""

    def list(self, prefix: str) -> list[Listed]:
        """The objects whose keys start with ``prefix`` (a folder ending in ``/``), with size and time."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix/`` (a job's folder); return how many."""

    def open_read(self, key: str) -> AbstractContextManager[Readable]:
        """The object as a stream read in chunks (an archive of outputs), never whole; raise ObjectNotFound."""

    def download_url(self, key: str, filename: str, media_type: str, expires_in: int) -> str:
        """A time-limited URL that serves the object as an attachment named ``filename``."""

    def upload_form(self, key: str, max_bytes: int, expires_in: int) -> tuple[str, dict[str, str]]:
        """Where a browser POSTs a multipart form (``fields`` first, then ``file``) to store ``key``."""

    # --- ranges and objects composed by copy (long videos: pieces and joins that move no media) ---------

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from byte ``start`` (fewer past its end), held in memory: an
        index, a box header, a few MB of a piece's range at a time, never a whole video; raise
        ObjectNotFound."""

    def compose(self, key: str, parts: Composed, content_type: str | None = None) -> int:
        """Write ``key`` from ``parts`` in order, each a list of bytes and ranges of this store's objects,
        and return its size. A part that is one range is copied inside the store (S3: UploadPartCopy), so
        its bytes never pass through this process; on S3 every part but the last must be 5 MiB or more."""

    # --- multipart uploads (S3's protocol; local and memory stores keep the parts beside the objects) ---

    def start_multipart(self, key: str, part_size: int, content_type: str | None = None) -> str:
        """Begin a multipart upload of ``key`` whose parts are all ``part_size`` bytes but the last (which may
        be smaller) and numbered from 1 without gaps; return its upload id (S3's UploadId)."""

    def part_url(self, key: str, upload_id: str, number: int, size: int, expires_in: int) -> str:
        """A time-limited URL that takes a PUT of part ``number`` of exactly ``size`` bytes and answers
        its ``ETag`` (an S3 presigned UploadPart; local mode's signed stand-in)."""

    def put_part(self, key: str, upload_id: str, number: int, stream: Readable) -> Part:
        """Store part ``number`` from a stream read in chunks, replacing an earlier copy of it; a PUT cut
        short leaves the part as it was (S3) or not received (disk), never half of it marked received.
        Raise ObjectNotFound for an unknown upload, ValueError for a part over the part size."""

    def list_parts(self, key: str, upload_id: str) -> PartList:
        """The parts received so far, by number; raise ObjectNotFound for an unknown (or finished) upload."""

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        """Join these parts (by number and ETag, in order) into the object ``key``; the upload ends."""

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and its parts; nothing happens if it is already gone."""


def top_folders(keys: Iterable[str], start_after: str, limit: int) -> list[str]:
    """``Storage.folders`` over a sorted or unsorted set of keys (the memory and local stores)."""
    names = sorted({key.split("/", 1)[0] for key in keys if "/" in key}, key=lambda name: f"{name}/")  # as S3 does
    return [name for name in names if f"{name}/" > f"{start_after}/"][: max(1, min(limit, 1000))]


def tag_of(data: bytes) -> str:
    """The version tag of an object's bytes where the store keeps none (memory, disk): their MD5, as S3's
    ETag of a small object is."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def folder_prefix(prefix: str) -> str:
    """A folder of keys from ``job_id`` or ``job_id/``: a valid key followed by one slash (never the whole
    store), as ``delete_prefix`` takes it."""
    return validate_prefix(validate_key(prefix.rstrip("/")) + "/")


def range_chunks(read: Readable, length: int, size: int = CHUNK) -> Iterator[bytes]:
    """At most ``length`` bytes of ``read`` in chunks (a range of an object opened at its start)."""
    while length > 0 and (chunk := read.read(min(size, length))):
        length -= len(chunk)
        yield chunk


def iter_chunks(stream: Readable, size: int = CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


MAX_PARTS = 10_000  # S3's most parts in one multipart upload


def check_part_number(number: int) -> int:
    if not 1 <= number <= MAX_PARTS:
        raise ValueError(f"A part number is 1 to {MAX_PARTS}, not {number}.")
    return number
