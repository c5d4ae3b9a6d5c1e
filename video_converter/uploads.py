"""Originals coming in: upload tickets (where the browser sends a file directly) and storing an upload
streamed through the API, each refused with a sentence when it is empty, too large, not media (where
the API can probe it) or a reused ticket.

An original that no job is made from within ``UNCLAIMED_AFTER`` is deleted by local mode's sweep
(``purge_unclaimed``, run by ``housekeeping``); its ticket stays spent. On AWS the upload bucket's
lifecycle rule deletes every original after UploadExpirationDays, job or not (see the README).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import keys
from .budget import check_budget
from .conversion import source_problem
from .errors import Conflict, InvalidRequest, UploadTooLarge
from .ffmpeg import InvalidMedia
from .limits import Limits, MediaRejected, check_media, human_bytes
from .model import is_job_id, new_job_id
from .runtime import Runtime
from .storage import LocalStorage, Readable
from .views import UploadTicket

log = logging.getLogger(__name__)

TICKET_USED = "This upload link was already used; ask for a new one."
UNCLAIMED_AFTER = 3600.0  # seconds an uploaded original waits for its job before the sweep deletes it


def admit_upload(rt: Runtime, size: int | None) -> None:
    """The one place an upload is let in, before any byte of it is stored: a one-request ticket, a file
    sent with ``POST /api/jobs``, a multipart upload (its announced ``size``) and an import from a URL
    (size unknown until fetched; then, as a file sent whole, held to the same limit on the stream).
    Refused with a sentence (413) when it cannot be; owners and their quotas are checked here too."""
    limit = rt.settings.max_upload_bytes
    if size is not None and size > limit:
        raise UploadTooLarge(f"The file is {human_bytes(size)}, larger than the {human_bytes(limit)} limit.")


class Uploads:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def ticket(self) -> UploadTicket:
        """Where the browser sends the original directly (S3 presigned POST, or a signed local URL)."""
        settings = self.rt.settings
        admit_upload(self.rt, None)
        upload_id = new_job_id()
        url, fields = self.rt.uploads.upload_form(
            keys.source_key(upload_id), settings.max_upload_bytes, settings.upload_url_ttl
        )
        return UploadTicket(
            upload_id=upload_id,
            url=url,
            fields=fields,
            max_bytes=settings.max_upload_bytes,
            expires_in=settings.upload_url_ttl,
        )

    def store(self, upload_id: str, stream: Readable) -> int:
        """Stream an original into the upload store under its ticket's id; refuse empty or oversized files.

        A ticket stores one original, once. The upload first claims the ticket (an empty marker created
        only if absent), so a second upload with the same ticket is refused (Conflict), even while the
        first is still being stored. A job needs its original, so once a job exists the one upload that
        claimed the ticket has finished and nothing can replace the source, whatever the timing. An upload
        that stores nothing (too large, empty, interrupted) gives the ticket back.
        """
        if not self.rt.uploads.create_bytes(keys.ticket_key(upload_id), b""):
            raise Conflict(TICKET_USED)
        if self.rt.jobs.exists(upload_id):  # a job over an original stored without a ticket (a seeded job)
            raise Conflict(TICKET_USED)
        try:
            size = self._store(upload_id, stream)
        except Exception:
            self._give_back(upload_id)
            raise
        if self.rt.probe_uploads:  # received only once it is media: else refused (422) and deleted
            self.check_media(upload_id)
        return size

    def check_media(self, upload_id: str, formats: list[str] | None = None) -> None:
        """Probe an upload the API can read in place; refuse (and delete) one that is not media, is over
        a limit or would cost more work in these ``formats`` than a job may (once a job asks for them),
        with the sentence the worker would have recorded."""
        key = keys.source_key(upload_id)
        limits = Limits.from_settings(self.rt.settings)
        try:
            with self.rt.scratch.workdir("probe-") as workdir, self.rt.uploads.local_path(key, workdir) as path:
                facts = self.rt.ffmpeg.inspect(path)
            check_media(facts, limits)
            if formats is not None:
                check_budget(facts, formats, limits)
        except (InvalidMedia, MediaRejected) as exc:
            # The ticket stays spent (a re-upload could race a creation still probing the first file), and
            # an original that a concurrent creation's probe accepted is kept.
            if not self.rt.jobs.exists(upload_id):
                self.rt.uploads.delete(key)
            raise InvalidRequest(source_problem(exc)) from None

    def store_new(self, stream: Readable) -> str:
        """Stream an original under a new id no one else knows (no ticket to claim); return the id."""
        admit_upload(self.rt, None)
        upload_id = new_job_id()
        self._store(upload_id, stream)
        return upload_id

    def _store(self, upload_id: str, stream: Readable) -> int:
        """Stream the original to its key; on a refusal or a failure nothing stays stored."""
        key = keys.source_key(upload_id)
        limit = self.rt.settings.max_upload_bytes
        try:
            size = self.rt.uploads.put_stream(key, _Limited(stream, limit))
        except _TooLarge:
            self.rt.uploads.delete(key)
            raise UploadTooLarge(f"The file is larger than the {human_bytes(limit)} limit.") from None
        if size == 0:
            self.rt.uploads.delete(key)
            raise InvalidRequest("The uploaded file is empty.")
        return size

    def _give_back(self, upload_id: str) -> None:
        """Delete what a failed upload stored, then its claim on the ticket (in that order, so the upload
        that claims the ticket next never has its original deleted)."""
        self.rt.uploads.delete(keys.source_key(upload_id))
        self.rt.uploads.delete(keys.ticket_key(upload_id))


class _TooLarge(Exception):
    pass


class _Limited:
    """A reader that stops a stream as soon as it passes the size limit (before it is all stored)."""

    def __init__(self, stream: Readable, limit: int) -> None:
        self._stream, self._left = stream, limit

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._left -= len(chunk)
        if self._left < 0:
            raise _TooLarge
        return chunk


def purge_unclaimed(rt: Runtime, max_age: float = UNCLAIMED_AFTER, now: float | None = None) -> list[str]:
    """Local mode: delete the originals no job was made from within ``max_age`` seconds of their upload
    (the ticket's mark stays, so the ticket stays spent); return their ids. A job asked for later is
    refused with "the upload expired"."""
    store = rt.uploads
    if not isinstance(store, LocalStorage):
        return []
    cutoff = (now if now is not None else time.time()) - max_age
    purged = []
    for upload_id in sorted(_folders(store.root)):
        source = next((o for o in store.list(f"{upload_id}/") if o.key == keys.source_key(upload_id)), None)
        if source is not None and source.modified < cutoff and not rt.jobs.exists(upload_id):
            store.delete(source.key)
            purged.append(upload_id)
    if purged:
        log.info("deleted %d upload(s) no job was made from within %.0f s", len(purged), max_age)
    return purged


def _folders(root: Path) -> list[str]:
    try:
        return [p.name for p in root.iterdir() if p.is_dir() and is_job_id(p.name)]
    except FileNotFoundError:
        return []
