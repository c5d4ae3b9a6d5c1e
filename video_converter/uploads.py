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
from .budget import Budget, OverBudget, check_budget, job_work
from .conversion import source_problem, unsuitable
from .errors import Conflict, InvalidRequest, UploadTooLarge
from .ffmpeg import InvalidMedia
from .ffmpeg.parse import ProbeFacts
from .limits import Limits, MediaRejected, check_media, human_bytes
from .model import SourceInfo, is_job_id, new_job_id
from .owners import EVERYONE, Owner, OwnerKind, is_owner_id
from .presets import PRESETS
from .runtime import Runtime
from .storage import LocalStorage, ObjectNotFound, Readable
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

    def ticket(self, owner: Owner = EVERYONE) -> UploadTicket:
        """Where the browser sends the original directly (S3 presigned POST, or a signed local URL); the
        ticket is ``owner``'s, and only its owner can make a job of it."""
        settings = self.rt.settings
        admit_upload(self.rt, None)
        upload_id = new_job_id()
        self.claim(upload_id, owner)
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

    def check_media(self, upload_id: str, formats: list[str] | None = None) -> SourceInfo:
        """Probe an upload the API can read in place; refuse (and delete) one that is not media, is over
        a limit or would cost more work in these ``formats`` than a job may (once a job asks for them),
        with the sentence the worker would have recorded. Formats the file cannot give (a video format
        of an audio-only file) are refused too, naming them; the upload is kept for another choice."""
        key = keys.source_key(upload_id)
        limits = Limits.from_settings(self.rt.settings)
        try:
            facts = self._probe(upload_id)
            check_media(facts, limits)
            if formats is not None:
                check_formats(facts.info, formats)
                check_budget(facts, formats, limits)
        except (InvalidMedia, MediaRejected) as exc:
            # The ticket stays spent (a re-upload could race a creation still probing the first file), and
            # an original that a concurrent creation's probe accepted is kept.
            if not self.rt.jobs.exists(upload_id):
                self.rt.uploads.delete(key)
            raise InvalidRequest(source_problem(exc)) from None
        return facts.info

    def _probe(self, upload_id: str) -> ProbeFacts:
        key = keys.source_key(upload_id)
        with self.rt.scratch.workdir("probe-") as workdir, self.rt.uploads.local_path(key, workdir) as path:
            return self.rt.ffmpeg.inspect(path)

    def check_added(self, job_id: str, formats: list[str], added: list[str], source: SourceInfo | None) -> None:
        """Formats ``added`` to a job (``formats``: all of them, with the new ones): those the original
        cannot give are refused naming them, and the whole job must still fit the work budget. Probed
        again where the API can read the original; else judged from what a worker's probe recorded
        (``source``; before any probe the worker checks, as it does for a new job)."""
        limits = Limits.from_settings(self.rt.settings)
        try:
            if self.rt.probe_uploads:
                facts = self._probe(job_id)
                check_formats(facts.info, added)
                check_budget(facts, formats, limits)
            elif source is not None:
                check_formats(source, added)
                seconds = min(source.duration or limits.max_duration, limits.max_duration)
                budget = Budget(job_work(formats, source, seconds), limits.max_job_work_minutes, seconds, source)
                if not budget.fits:
                    raise OverBudget(budget.refusal(source))
        except OverBudget as exc:
            raise InvalidRequest(f"{exc} Nothing was added.") from None
        except InvalidMedia as exc:
            raise InvalidRequest(source_problem(exc)) from None

    def store_new(self, stream: Readable, owner: Owner = EVERYONE) -> str:
        """Stream an original under a new id no one else knows (no ticket to claim); return the id."""
        admit_upload(self.rt, None)
        upload_id = new_job_id()
        self._store(upload_id, stream)
        self.claim(upload_id, owner)  # after: a refused upload leaves nothing behind
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

    def claim(self, upload_id: str, owner: Owner) -> None:
        """Record whose upload this is (``keys.ticket_owner_key``), before anything can be uploaded. Not
        under AUTH=none, where every upload is everyone's (and the store stays as it always was)."""
        if owner.kind is not OwnerKind.EVERYONE:
            self.rt.uploads.put_bytes(keys.ticket_owner_key(upload_id), owner.id.encode(), "text/plain")

    def owner_of(self, upload_id: str) -> str | None:
        """The owner id the upload's ticket was given to; None for an unknown id (or a ticket from before
        owners, which only AUTH=none accepts)."""
        if not is_job_id(upload_id):
            return None
        try:
            owner_id = self.rt.uploads.get_bytes(keys.ticket_owner_key(upload_id)).decode()
        except (ObjectNotFound, UnicodeDecodeError):
            return None
        return owner_id if is_owner_id(owner_id) else None


def check_formats(source: SourceInfo, formats: list[str]) -> None:
    """Refuse, naming them, the formats this source cannot give (video formats of an audio-only file,
    an MP3 of a silent video), saying which it can."""
    refused = unsuitable([PRESETS[f] for f in formats], source)
    if not refused:
        return
    labels = [PRESETS[f].label for f in formats if f in refused]
    possible = [p.label for p in PRESETS.values() if p.id not in unsuitable([p], source)]
    what = "no video stream" if not source.has_video else "no audio track"
    choose = f"choose {_listed(possible, 'or')} instead" if possible else "choose another file"
    raise UnsuitableFormats(f"This file has {what}, so it cannot be converted to {_listed(labels, 'or')}; {choose}.")


def _listed(items: list[str], last: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


class UnsuitableFormats(InvalidRequest):
    """The file is fine media, but not for some of the formats asked (422; the upload is kept)."""


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
