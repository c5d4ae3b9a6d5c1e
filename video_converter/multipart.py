"""Resumable multipart uploads, one protocol for both modes, shaped after S3's: begin one with the file's
size (``begin``), ask for signed part URLs (``part_urls``: S3 presigned UploadPart on AWS, the app's own
signed URLs in local mode, streamed to disk by ``receive_part``), PUT each part, see which arrived
(``view``: a client resumes with only the others), then ``complete`` it, or ``abort`` it.

The upload's record, ``{upload_id}/multipart.json`` in the upload store, says what was promised: the
file's size, the part size and count, the name and when it expires. Every part has an exact size (the
last one the rest), so the joined original is exactly the size announced: S3 is held to it by the signed
Content-Length of each part URL, local mode by ``receive_part``. An upload not completed by its
``expires_at`` (MULTIPART_TTL) is dropped: by ``purge_abandoned`` in local mode, by the upload bucket's
AbortIncompleteMultipartUpload rule on AWS.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta

from pydantic import BaseModel, ValidationError

from . import keys
from .errors import Conflict, InvalidRequest, NotFound, UploadTooLarge
from .model import is_job_id, new_job_id, utcnow
from .owners import EVERYONE, Owner
from .runtime import Runtime
from .storage import LocalStorage, ObjectNotFound, Readable
from .storage.base import MAX_PARTS, Part
from .uploads import Uploads, admit_upload
from .views import MultipartTicket, MultipartView, PartUrl, PartUrls, ReceivedPart

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART = 8 * MIB
MAX_PART = 64 * MIB  # also the body limit of local mode's part PUT (api.request_limits)
TARGET_PARTS = 1000  # parts grow past 8 MiB only for files over ~8 GB, up to 64 MiB
MAX_URLS = 100  # part URLs one request may ask for
UNKNOWN = "No such upload here (it may have been completed, cancelled or dropped after it expired)."


class MultipartRecord(BaseModel):
    storage_id: str  # the store's own upload id (S3's UploadId)
    filename: str
    content_type: str | None = None
    size: int
    part_size: int
    parts: int
    created_at: datetime
    expires_at: datetime
    complete: bool = False

    def part_size_of(self, number: int) -> int:
        """Every part is ``part_size`` bytes but the last, which is the rest."""
        return self.part_size if number < self.parts else self.size - (self.parts - 1) * self.part_size


def record_key(upload_id: str) -> str:
    return f"{upload_id}/multipart.json"


def plan_parts(size: int) -> tuple[int, int]:
    """(part size, part count) for a file: 8 MiB parts, larger (whole MiB, up to 64) to keep a very large
    file to about 1,000 parts, never more than 10,000."""
    part = MIN_PART if size <= MIN_PART * TARGET_PARTS else min(MAX_PART, math.ceil(size / TARGET_PARTS / MIB) * MIB)
    return part, max(1, math.ceil(size / part))


class Multipart:
    def __init__(self, rt: Runtime, uploads: Uploads | None = None) -> None:
        self.rt = rt
        self.uploads = uploads or Uploads(rt)

    def begin(
        self, filename: str, size: int, content_type: str | None = None, owner: Owner = EVERYONE
    ) -> MultipartTicket:
        """A multipart upload of ``size`` bytes, ``owner``'s: only its owner sees, sends, completes or
        cancels it, and makes a job of it (another owner's upload answers as an unknown one)."""
        name = (filename or "").strip()
        if not name or len(name) > 255:
            raise InvalidRequest("Give the file's name (at most 255 characters).")
        if size <= 0:
            raise InvalidRequest("The file is empty.")
        admit_upload(self.rt, size)
        part_size, parts = plan_parts(size)
        if parts > MAX_PARTS:  # only past 640 GiB
            raise UploadTooLarge("The file is too large for one upload.")
        upload_id = new_job_id()
        self.uploads.claim(upload_id, owner)
        self.rt.uploads.create_bytes(keys.ticket_key(upload_id), b"")  # its one-request ticket is spent
        storage_id = self.rt.uploads.start_multipart(keys.source_key(upload_id), part_size, content_type)
        now = utcnow()
        record = MultipartRecord(
            storage_id=storage_id,
            filename=name,
            content_type=content_type,
            size=size,
            part_size=part_size,
            parts=parts,
            created_at=now,
            expires_at=now + timedelta(seconds=self.rt.settings.multipart_ttl),
        )
        self._save(upload_id, record)
        log.info("upload %s begun: %d bytes in %d part(s) of %d", upload_id, size, parts, part_size)
        return MultipartTicket(upload_id=upload_id, part_size=part_size, parts=parts, expires_at=record.expires_at)

    def part_urls(self, upload_id: str, numbers: list[int], owner: Owner = EVERYONE) -> PartUrls:
        record = self._open(upload_id, owner)
        wanted = list(dict.fromkeys(numbers))
        if not wanted or len(wanted) > MAX_URLS:
            raise InvalidRequest(f"Ask for 1 to {MAX_URLS} part numbers at a time.")
        if bad := [n for n in wanted if not 1 <= n <= record.parts]:
            raise InvalidRequest(f"This upload has parts 1 to {record.parts}; there is no part {bad[0]}.")
        key, ttl = keys.source_key(upload_id), self.rt.settings.upload_url_ttl
        return PartUrls(
            parts=[
                PartUrl(number=n, url=self.rt.uploads.part_url(key, record.storage_id, n, size, ttl), size=size)
                for n in wanted
                for size in [record.part_size_of(n)]
            ]
        )

    def receive_part(
        self, upload_id: str, storage_id: str, number: int, stream: Readable, declared: int | None = None
    ) -> Part:
        """Local mode's part PUT (its URL signed by ``part_urls``): streamed to disk, refused unless it is
        exactly the part's size: up front when its Content-Length (``declared``) says otherwise (an earlier
        copy stays), else when it ends (the part then counts as not received). Its signed URL is the
        permission: no owner is asked for."""
        record = self._open(upload_id, None)
        if storage_id != record.storage_id or not 1 <= number <= record.parts:
            raise NotFound(UNKNOWN)
        expected = record.part_size_of(number)
        if declared is not None and declared != expected:
            raise InvalidRequest(f"Part {number} is {expected} bytes; this one says {declared}.")
        try:
            return self.rt.uploads.put_part(keys.source_key(upload_id), storage_id, number, _Exact(stream, expected))
        except _WrongSize as exc:
            raise InvalidRequest(f"Part {number} is {expected} bytes; {exc}.") from None
        except ObjectNotFound:
            raise NotFound(UNKNOWN) from None

    def view(self, upload_id: str, owner: Owner = EVERYONE) -> MultipartView:
        record = self._record(upload_id, owner)
        received: list[Part] = []
        if not record.complete:
            try:
                received = self.rt.uploads.list_parts(keys.source_key(upload_id), record.storage_id)
            except ObjectNotFound:
                raise NotFound(UNKNOWN) from None
        return MultipartView(
            upload_id=upload_id,
            filename=record.filename,
            size=record.size,
            part_size=record.part_size,
            parts=record.parts,
            state="complete" if record.complete else "uploading",
            expires_at=record.expires_at,
            received=[ReceivedPart(number=p.number, size=p.size, etag=p.etag) for p in received],
        )

    def complete(self, upload_id: str, named: list[tuple[int, str]], owner: Owner = EVERYONE) -> MultipartView:
        """Join the parts into the original, once every one arrived whole and the ETags the client names
        are those received; then (local mode) probe it, as any upload."""
        record = self._record(upload_id, owner)
        if record.complete:
            return self.view(upload_id, owner)  # completed already (a retry of a lost answer)
        key = keys.source_key(upload_id)
        try:
            received = {p.number: p for p in self.rt.uploads.list_parts(key, record.storage_id)}
        except ObjectNotFound:
            raise NotFound(UNKNOWN) from None
        parts = self._check_complete(record, received, dict(named))
        try:
            self.rt.uploads.complete_multipart(key, record.storage_id, parts)
        except ObjectNotFound:
            raise NotFound(UNKNOWN) from None
        except ValueError as exc:
            raise InvalidRequest(f"The parts could not be joined ({exc}); send them again.") from None
        self._save(upload_id, record.model_copy(update={"complete": True}))
        log.info("upload %s complete: %d bytes", upload_id, record.size)
        if self.rt.probe_uploads:  # what is not media is refused (422) and deleted, as a one-request upload
            self.uploads.check_media(upload_id)
        return self.view(upload_id, owner)

    @staticmethod
    def _check_complete(record: MultipartRecord, received: dict[int, Part], named: dict[int, str]) -> list[Part]:
        if sorted(named) != list(range(1, record.parts + 1)):
            raise InvalidRequest(f"Name every part, 1 to {record.parts}, with its ETag.")
        missing = [n for n in named if n not in received or received[n].size != record.part_size_of(n)]
        if missing:
            raise InvalidRequest(f"Part {missing[0]} has not arrived whole ({len(missing)} missing); send it again.")
        changed = [n for n, etag in named.items() if etag.strip('"') != received[n].etag.strip('"')]
        if changed:
            raise InvalidRequest(f"Part {changed[0]} was received with another ETag; send it again.")
        return [received[n] for n in sorted(received)]

    def abort(self, upload_id: str, owner: Owner = EVERYONE) -> None:
        """Cancel an upload: its parts are dropped (and a completed original no job was made from)."""
        record = self._record(upload_id, owner)
        if self.rt.jobs.exists(upload_id):
            raise Conflict("A job was made from this upload; delete the job instead.")
        self.rt.uploads.abort_multipart(keys.source_key(upload_id), record.storage_id)
        if record.complete:
            self.rt.uploads.delete(keys.source_key(upload_id))
        self.rt.uploads.delete(record_key(upload_id))
        log.info("upload %s cancelled", upload_id)

    def _record(self, upload_id: str, owner: Owner | None) -> MultipartRecord:
        """The upload's record; another ``owner``'s upload is unknown (None: no owner asked, a signed URL)."""
        if not is_job_id(upload_id) or (owner is not None and not owner.owns(self.uploads.owner_of(upload_id))):
            raise NotFound(UNKNOWN)
        try:
            return MultipartRecord.model_validate_json(self.rt.uploads.get_bytes(record_key(upload_id)))
        except (ObjectNotFound, ValidationError):
            raise NotFound(UNKNOWN) from None

    def _open(self, upload_id: str, owner: Owner | None) -> MultipartRecord:
        record = self._record(upload_id, owner)
        if record.complete:
            raise Conflict("This upload is complete; create the job from it.")
        if record.expires_at <= utcnow():
            raise NotFound("This upload expired; start it again.")
        return record

    def _save(self, upload_id: str, record: MultipartRecord) -> None:
        self.rt.uploads.put_bytes(record_key(upload_id), record.model_dump_json().encode(), "application/json")


def filename_of(rt: Runtime, upload_id: str) -> str | None:
    """The file name a multipart upload was begun with, for a job created without one."""
    try:
        return Multipart(rt)._record(upload_id, None).filename
    except NotFound:
        return None


class _WrongSize(Exception):
    pass


class _Exact:
    """A reader that refuses a stream unless it is exactly ``size`` bytes (before anything is kept)."""

    def __init__(self, stream: Readable, size: int) -> None:
        self._stream, self._size, self._seen = stream, size, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._seen += len(chunk)
        if self._seen > self._size:
            raise _WrongSize("more was sent")
        if not chunk and self._seen < self._size:
            raise _WrongSize(f"only {self._seen} arrived")
        return chunk


def purge_abandoned(rt: Runtime, now: float | None = None) -> list[str]:
    """Local mode's janitor: drop the multipart uploads begun (or last sent a part) more than MULTIPART_TTL
    ago and not completed, with their records; return their ids. On AWS the upload bucket's lifecycle
    rule AbortIncompleteMultipartUpload does this."""
    store = rt.uploads
    if not isinstance(store, LocalStorage):
        return []
    cutoff = (now if now is not None else time.time()) - rt.settings.multipart_ttl
    dropped = []
    for key, storage_id, changed in store.unfinished_multipart():
        if changed < cutoff:
            store.abort_multipart(key, storage_id)
            upload_id = key.split("/", 1)[0]
            store.delete(record_key(upload_id))
            dropped.append(upload_id)
    if dropped:
        log.info("dropped %d unfinished multipart upload(s) older than %d s", len(dropped), rt.settings.multipart_ttl)
    return dropped
