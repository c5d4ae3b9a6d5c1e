"""Files under a directory, written atomically (temp file + rename) and streamed in chunks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from ..signing import Signer
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
    range_chunks,
    tag_of,
    top_folders,
    validate_key,
    validate_prefix,
)


class LocalStorage:
    def __init__(self, root: Path, *, signer: Signer | None = None, url_prefix: str = "") -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._signer = signer
        self._url_prefix = url_prefix.rstrip("/")

    def path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"Invalid object key: {key!r}")
        return path

    @contextlib.contextmanager
    def _atomic(self, key: str, *, exclusive: bool = False) -> Iterator[BinaryIO]:
        """Write a temp file beside the target, then rename it over the target; or, ``exclusive``, link
        it to the target, which fails with FileExistsError if the target exists (rename never fails)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with tmp.open("wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                os.link(tmp, target)
            else:
                tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_stream(self, key: str, stream: Readable, content_type: str | None = None) -> int:
        written = 0
        with self._atomic(key) as fh:
            for chunk in iter_chunks(stream):
                fh.write(chunk)
                written += len(chunk)
        return written

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        with path.open("rb") as src, self._atomic(key) as fh:
            shutil.copyfileobj(src, fh, length=1024 * 1024)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        with self._atomic(key) as fh:
            fh.write(data)

    def create_bytes(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        try:
            with self._atomic(key, exclusive=True) as fh:
                fh.write(data)
        except FileExistsError:
            return False
        return True

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    @contextlib.contextmanager
    def local_path(self, key: str, workdir: Path) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        yield path

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def folders(self, start_after: str = "", limit: int = 1000) -> list[str]:
        names = [f"{p.name}/" for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return top_folders(names, start_after, limit)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        data = self.get_bytes(key)  # whole: writes are renamed into place
        return data, tag_of(data)

    def replace_bytes(self, key: str, data: bytes, tag: str, content_type: str | None = None) -> bool:
        """Compare and write under an exclusive lock beside the object, which every process writing it
        this way takes (the disk has no conditional rename)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target.with_name(f".{target.name}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = target.read_bytes()
            except FileNotFoundError:
                return False
            if tag_of(current) != tag:
                return False
            self.put_bytes(key, data, content_type)
            return True
        finally:
            os.close(fd)  # releases the lock

    def list(self, prefix: str) -> list[Listed]:
        folder = self.path(validate_prefix(prefix).rstrip("/"))
        found = []
        try:
            paths = sorted(folder.rglob("*"))
        except FileNotFoundError:  # the folder went while it was being read: nothing there
            return []
        for path in paths:
            if path.name.startswith("."):  # the temp files of unfinished writes
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # deleted since the folder was read (another worker tidying up)
            if S_ISREG(stat.st_mode):
                found.append(Listed(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return found

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(folder_prefix(prefix).rstrip("/"))
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part"))
        # Renamed aside first, so a reader never sees half a folder and a writer finishing meanwhile
        # (a worker publishing an output) recreates a fresh folder that the next sweep of it removes.
        doomed = folder.with_name(f".deleting-{folder.name}-{uuid.uuid4().hex[:8]}")
        try:
            folder.rename(doomed)
        except FileNotFoundError:
            return 0
        shutil.rmtree(doomed, ignore_errors=True)
        return count

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            fh = self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        with fh:
            yield fh

    def download_url(self, key: str, filename: str, media_type: str, expires_in: int) -> str:
        if self._signer is None:
            raise RuntimeError("This store has no signer, so it cannot hand out URLs")
        return self._signer.sign(f"{self._url_prefix}/{validate_key(key)}", expires_in, filename=filename)

    def upload_form(self, key: str, max_bytes: int, expires_in: int) -> tuple[str, dict[str, str]]:
        if self._signer is None:
            raise RuntimeError("This store has no signer, so it cannot hand out URLs")
        url = self._signer.sign(f"{self._url_prefix}/{validate_key(key)}", expires_in, max_bytes=str(max_bytes))
        return url, {}

    def verify(self, key: str, expires: str, signature: str, **params: str) -> bool:
        """Check a URL this store signed (download or upload) before serving or accepting it."""
        if self._signer is None:
            return False
        try:
            path = f"{self._url_prefix}/{validate_key(key)}"
        except ValueError:
            return False
        return self._signer.verify(path, expires, signature, None, **params)  # None: the real clock

    # --- ranges and objects composed by copy ------------------------------------------------------------

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with self.open_read(key) as fh:
            fh.seek(start)
            return fh.read(max(0, length))

    def compose(self, key: str, parts: Composed, content_type: str | None = None) -> int:
        """The parts written one after the other into a new file (renamed into place), each range
        copied from its file by the kernel (copy_file_range) where it can."""
        written = 0
        with self._atomic(key) as out:
            for part in parts:
                for piece in part:
                    if isinstance(piece, ByteRange):
                        self._copy_range(piece, out)
                    else:
                        out.write(piece)
                    written += piece.size if isinstance(piece, ByteRange) else len(piece)
        return written

    def _copy_range(self, piece: ByteRange, out: BinaryIO) -> None:
        with self.open_read(piece.key) as src:
            if (self.size(piece.key) or 0) < piece.end:
                raise ValueError(f"The range {piece.start}-{piece.end} runs past the end of {piece.key}")
            out.flush()
            at, left = piece.start, piece.size
            with contextlib.suppress(OSError):  # a file system without it: copied through Python below
                while left > 0 and (done := os.copy_file_range(src.fileno(), out.fileno(), left, at)):
                    at, left = at + done, left - done
            src.seek(at)
            for chunk in range_chunks(src, left):
                out.write(chunk)

    # --- multipart uploads: the parts of ``{folder}/{name}`` are written into one file at their offsets in
    # ``{folder}/.multipart-{id}/`` (hidden from listings; removed with the folder), each with a mark
    # naming its size and ETag once it is whole, so completing is a rename: no 50 GB copy at the end.

    def _parts_dir(self, key: str, upload_id: str) -> tuple[Path, int]:
        """The upload's folder and its part size."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ObjectNotFound(key)
        folder = self.path(key).parent / f"{MULTIPART_DIR}{upload_id}"
        try:
            target, part_size = (folder / ".target").read_text().rsplit("\n", 1)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise ObjectNotFound(key) from None
        if target != validate_key(key):
            raise ObjectNotFound(key)
        return folder, int(part_size)

    @contextlib.contextmanager
    def _lock_on(self, path: Path, *, shared: bool = False) -> Iterator[None]:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def start_multipart(self, key: str, part_size: int, content_type: str | None = None) -> str:
        upload_id = uuid.uuid4().hex
        folder = self.path(key).parent / f"{MULTIPART_DIR}{upload_id}"
        folder.mkdir(parents=True)
        (folder / ".data").touch()
        (folder / ".target").write_text(f"{validate_key(key)}\n{part_size}")
        return upload_id

    def part_url(self, key: str, upload_id: str, number: int, size: int, expires_in: int) -> str:
        if self._signer is None:
            raise RuntimeError("This store has no signer, so it cannot hand out URLs")
        path = f"{self._url_prefix}/{validate_key(key)}"
        return self._signer.sign(path, expires_in, upload=upload_id, part=str(number), size=str(size))

    def put_part(self, key: str, upload_id: str, number: int, stream: Readable) -> Part:
        """Written straight to its place in the upload's file. An earlier copy's mark goes first, so a
        PUT cut short leaves the part missing (sent again), never half-written and marked received."""
        folder, part_size = self._parts_dir(key, upload_id)
        check_part_number(number)
        size = 0
        # Shared: parts go in side by side, while completing or aborting waits for them; one PUT per part.
        with self._lock_on(folder / ".lock", shared=True), self._lock_on(folder / f".{number:05d}.lock"):
            if not (folder / ".target").exists():
                raise ObjectNotFound(key)  # completed or aborted meanwhile
            for old in folder.glob(f".{number:05d}-*"):
                old.unlink(missing_ok=True)
            with (folder / ".data").open("r+b") as data:
                data.seek((number - 1) * part_size)
                for chunk in iter_chunks(stream):
                    size += len(chunk)
                    if size > part_size:
                        raise ValueError(f"A part of this upload is at most {part_size} bytes.")
                    data.write(chunk)
            # Names this copy of the part, as S3's ETag does (S3's is its MD5: hashing 50 GB here would cost
            # minutes of CPU for a tag no one recomputes).
            etag = uuid.uuid4().hex
            (folder / f".{number:05d}-{etag}").write_text(str(size))
        return Part(number, size, f'"{etag}"')

    def list_parts(self, key: str, upload_id: str) -> PartList:
        folder, _ = self._parts_dir(key, upload_id)
        parts = []
        for path in sorted(folder.glob(".[0-9][0-9][0-9][0-9][0-9]-*")):
            number, etag = path.name[1:].split("-", 1)
            with contextlib.suppress(FileNotFoundError, ValueError):  # replaced just now
                parts.append(Part(int(number), int(path.read_text()), f'"{etag}"'))
        return parts

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        folder, part_size = self._parts_dir(key, upload_id)
        with self._lock_on(folder / ".lock"):
            received = {(p.number, p.etag): p for p in self.list_parts(key, upload_id)}
            named = [received.get((p.number, p.etag)) for p in parts]
            if None in named or [p.number for p in parts] != list(range(1, len(parts) + 1)):
                raise ValueError("Name every part from 1 on, in order, as it was received.")
            if any(p is not None and p.size != part_size for p in named[:-1]):
                raise ValueError(f"Every part but the last must be {part_size} bytes.")
            with (folder / ".data").open("r+b") as data:
                data.truncate((len(parts) - 1) * part_size + parts[-1].size)
                os.fsync(data.fileno())
            (folder / ".data").replace(self.path(key))
            (folder / ".target").unlink()
        shutil.rmtree(folder, ignore_errors=True)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            folder, _ = self._parts_dir(key, upload_id)
        except ObjectNotFound:
            return
        with self._lock_on(folder / ".lock"):
            (folder / ".target").unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)

    def unfinished_multipart(self) -> Unfinished:
        """Local mode's janitor: every multipart upload not completed or aborted, as (key, upload id, when
        its last part or its start was written)."""
        found: Unfinished = []
        for target in self.root.glob(f"*/{MULTIPART_DIR}*/.target"):
            with contextlib.suppress(FileNotFoundError, ValueError):  # finished meanwhile
                changed = max(p.stat().st_mtime for p in target.parent.iterdir())
                key = target.read_text().rsplit("\n", 1)[0]
                found.append((key, target.parent.name.removeprefix(MULTIPART_DIR), changed))
        return found


MULTIPART_DIR = ".multipart-"
Unfinished = list[tuple[str, str, float]]
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
