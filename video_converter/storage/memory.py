"""An in-memory store for tests, shipped beside the real ones (like httpx's MockTransport)."""

from __future__ import annotations

import contextlib
import io
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

from .base import (
    ByteRange,
    Composed,
    Listed,
    ObjectNotFound,
    Part,
    PartList,
    Readable,
    check_part_number,
    folder_prefix,
    iter_chunks,
    tag_of,
    top_folders,
    validate_key,
    validate_prefix,
)


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str | None] = {}
        self.modified: dict[str, float] = {}
        self._lock = threading.Lock()
        self.uploads: dict[str, tuple[str, int, dict[int, bytes]]] = {}  # multipart: id -> (key, part size, parts)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        with self._lock:
            self.objects[validate_key(key)] = bytes(data)
            self.content_types[key] = content_type
            self.modified[key] = time.time()

    def create_bytes(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        with self._lock:
            if validate_key(key) in self.objects:
                return False
            self.objects[key] = bytes(data)
            self.content_types[key] = content_type
        return True

    def put_stream(self, key: str, stream: Readable, content_type: str | None = None) -> int:
        data = b"".join(iter_chunks(stream))
        self.put_bytes(key, data, content_type)
        return len(data)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        self.put_bytes(key, path.read_bytes(), content_type)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.objects[validate_key(key)]
        except KeyError:
            raise ObjectNotFound(key) from None

    @contextlib.contextmanager
    def local_path(self, key: str, workdir: Path) -> Iterator[Path]:
        path = workdir / "source"
        path.write_bytes(self.get_bytes(key))
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def size(self, key: str) -> int | None:
        data = self.objects.get(validate_key(key))
        return None if data is None else len(data)

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(validate_key(key), None)

    def folders(self, start_after: str = "", limit: int = 1000) -> list[str]:
        with self._lock:
            return top_folders(list(self.objects), start_after, limit)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        data = self.get_bytes(key)
        return data, tag_of(data)

    def replace_bytes(self, key: str, data: bytes, tag: str, content_type: str | None = None) -> bool:
        with self._lock:
            current = self.objects.get(validate_key(key))
            if current is None or tag_of(current) != tag:
                return False
            self.objects[key] = bytes(data)
            self.content_types[key] = content_type
            self.modified[key] = time.time()
        return True

    def list(self, prefix: str) -> list[Listed]:
        validate_prefix(prefix)
        with self._lock:
            return [
                Listed(key, len(data), self.modified.get(key, 0.0))
                for key, data in sorted(self.objects.items())
                if key.startswith(prefix)
            ]

    def delete_prefix(self, prefix: str) -> int:
        folder = folder_prefix(prefix)
        with self._lock:
            doomed = [key for key in self.objects if key.startswith(folder)]
            for key in doomed:
                del self.objects[key]
                self.content_types.pop(key, None)
                self.modified.pop(key, None)
        return len(doomed)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[io.BytesIO]:
        yield io.BytesIO(self.get_bytes(key))

    def download_url(self, key: str, filename: str, media_type: str, expires_in: int) -> str:
        return f"memory://{quote(validate_key(key))}?filename={quote(filename)}&expires_in={expires_in}"

    def upload_form(self, key: str, max_bytes: int, expires_in: int) -> tuple[str, dict[str, str]]:
        return f"memory://{quote(validate_key(key))}", {"max_bytes": str(max_bytes)}

    # --- ranges and objects composed by copy ------------------------------------------------------------

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self.get_bytes(key)[start : start + max(0, length)]

    def compose(self, key: str, parts: Composed, content_type: str | None = None) -> int:
        data = bytearray()
        for part in parts:
            for piece in part:
                if isinstance(piece, ByteRange):
                    source = self.get_bytes(piece.key)
                    if piece.end > len(source):
                        raise ValueError(f"The range {piece.start}-{piece.end} runs past the end of {piece.key}")
                    data += source[piece.start : piece.end]
                else:
                    data += piece
        self.put_bytes(key, bytes(data), content_type)
        return len(data)

    # --- multipart uploads ---

    def _parts(self, key: str, upload_id: str) -> tuple[int, dict[int, bytes]]:
        target, part_size, parts = self.uploads.get(upload_id, ("", 0, {}))
        if target != validate_key(key):
            raise ObjectNotFound(key)
        return part_size, parts

    def start_multipart(self, key: str, part_size: int, content_type: str | None = None) -> str:
        upload_id = uuid.uuid4().hex
        with self._lock:
            self.uploads[upload_id] = (validate_key(key), part_size, {})
        return upload_id

    def part_url(self, key: str, upload_id: str, number: int, size: int, expires_in: int) -> str:
        return f"memory://{quote(validate_key(key))}?upload={upload_id}&part={number}&size={size}"

    def put_part(self, key: str, upload_id: str, number: int, stream: Readable) -> Part:
        check_part_number(number)
        data = b"".join(iter_chunks(stream))
        with self._lock:
            part_size, parts = self._parts(key, upload_id)
            if len(data) > part_size:
                raise ValueError(f"A part of this upload is at most {part_size} bytes.")
            parts[number] = data
        return Part(number, len(data), tag_of(data))

    def list_parts(self, key: str, upload_id: str) -> PartList:
        with self._lock:
            parts = dict(self._parts(key, upload_id)[1])
        return [Part(n, len(data), tag_of(data)) for n, data in sorted(parts.items())]

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        with self._lock:
            part_size, received = self._parts(key, upload_id)
            if [p.number for p in parts] != list(range(1, len(parts) + 1)) or any(
                p.number not in received or tag_of(received[p.number]) != p.etag for p in parts
            ):
                raise ValueError("Name every part from 1 on, in order, as it was received.")
            if any(len(received[p.number]) != part_size for p in parts[:-1]):
                raise ValueError(f"Every part but the last must be {part_size} bytes.")
            data = b"".join(received[p.number] for p in parts)
            del self.uploads[upload_id]
        self.put_bytes(key, data)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with self._lock:
            if self.uploads.get(upload_id, ("",))[0] == key:
                del self.uploads[upload_id]
