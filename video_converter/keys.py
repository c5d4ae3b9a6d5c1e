"""Object-key layout, shared by disk and S3 (the pieces of long videos: ``segmenting``).

Upload store:     {job_id}/source                       the original
                  {job_id}/ticket-used                  empty: an upload claimed this upload ticket
                  {job_id}/owner                        the owner id the upload ticket was given to
                  {job_id}/imported/source              an original imported from a link
                  {job_id}/segments/...                 a long source split for segmenting
Converted store:  {job_id}/job.json                     the job record
                  {job_id}/status/{format}.json         one output record per format
                  {job_id}/failure.json                 why no output of the job can be made, if so
                  {job_id}/webhook.json                 the job-finished webhook's marker and outcome
                  {job_id}/import.json                  the link of an imported original, and the import's end
                  {job_id}/segments/...                 encoded pieces of long videos, until joined
                  {job_id}/{stem}_{format}.{ext}        the result
                  identity/keys/{key_id}.json           an API key's record (video_converter.apikeys)
                  identity/signing.key                  AWS: signs sessions and share links (auth)
                  owners/{owner hash}/{entry}           each owner's jobs, newest first (ownerindex)
                  usage/{owner}.json                    what each owner with a quota uses (quotas)
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 80


def _stem_of(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def safe_stem(filename: str) -> str:
    """A file-name stem that is safe in a key, a path and a Content-Disposition header.

    User file names never become paths: only letters, digits, dot, dash and underscore survive.
    """
    stem = _stem_of(filename)
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_stem).strip("._-")[:MAX_STEM].strip("._-")
    return cleaned or "video"


_NOT_IN_NAMES = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|;%\s]+')  # unsafe in names and headers


def _visible(text: str) -> str:
    """Drop invisible format characters (Unicode category Cf): the bidirectional controls (U+202A-U+202E,
    U+2066-U+2069, U+200E/U+200F, U+061C) that make ``cod.exe`` display as ``exe.doc``, zero-width
    spaces and joiners, soft hyphens, BOMs."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def download_stem(filename: str) -> str:
    """The stem of the names people download: ``safe_stem``, unless that would drop the letters of a
    non-Latin script (видео, 我的视频), which are then kept; keys and paths always use ``safe_stem``."""
    stem = _visible(unicodedata.normalize("NFC", _stem_of(filename)))
    if not any(ch.isalpha() and not unicodedata.normalize("NFKD", ch).encode("ascii", "ignore") for ch in stem):
        return safe_stem(filename)
    cleaned = _NOT_IN_NAMES.sub("_", stem).strip("._-")[:MAX_STEM].strip("._-")
    return cleaned or safe_stem(filename)


def source_key(job_id: str) -> str:
    return f"{job_id}/source"


def imported_key(job_id: str) -> str:
    """An original imported from a link: a key of its own, so the workers that write it never may write
    (or replace) uploaded originals."""
    return f"{job_id}/imported/source"


def ticket_key(job_id: str) -> str:
    return f"{job_id}/ticket-used"


def ticket_owner_key(job_id: str) -> str:
    return f"{job_id}/owner"


def job_key(job_id: str) -> str:
    return f"{job_id}/job.json"


def status_key(job_id: str, format_id: str) -> str:
    return f"{job_id}/status/{format_id}.json"


def summary_key(job_id: str) -> str:
    """Every output's record in one object, so that a poll reads one (video_converter.summary)."""
    return f"{job_id}/summary.json"


def failure_key(job_id: str) -> str:
    """Why the whole job failed (the original is not usable), written once by the first worker to see it."""
    return f"{job_id}/failure.json"


def import_key(job_id: str) -> str:
    """The link a job's original is imported from, and how the import went (video_converter.imports)."""
    return f"{job_id}/import.json"


def webhook_key(job_id: str) -> str:
    """The job-finished webhook's marker: created once, so only one worker sends it."""
    return f"{job_id}/webhook.json"


def output_filename(stem: str, format_id: str, extension: str) -> str:
    return f"{stem}_{format_id}.{extension}"


def output_key(job_id: str, stem: str, format_id: str, extension: str) -> str:
    return f"{job_id}/{output_filename(stem, format_id, extension)}"


def ascii_filename(filename: str) -> str:
    """An ASCII stand-in for a download name (``отпуск.mp4`` -> ``otpusk.mp4``), for clients that read only
    ``filename=`` (``curl -OJ``, old browsers): transliterated with anyascii, then anything that is not
    printable ASCII, unsafe in a quoted header value or in a file name replaced with ``_``."""
    from anyascii import anyascii  # a small pure-Python table; imported where needed

    text = anyascii(_visible(unicodedata.normalize("NFC", filename)))
    cleaned = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\;%/:*?<>|' else "_" for c in text).strip()
    return cleaned or "download"


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` fallback and the exact name in RFC 5987 ``filename*``
    (RFC 6266: clients that understand ``filename*`` prefer it), for local downloads and S3 alike."""
    return f"attachment; filename=\"{ascii_filename(filename)}\"; filename*=UTF-8''{quote(filename, safe='')}"
