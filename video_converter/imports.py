"""Imports from a URL: ``POST /api/jobs`` with ``{"source_url", "formats"}`` makes the job at once (its
outputs queued) and queues one ``Import`` message; a worker (the Lambda on AWS, so the API stays off the
data path) streams the file at the link into the upload store under the upload limit, then queues the
job's conversions. The link is held to the webhook's address checks (``outbound``: public addresses
only unless IMPORT_ALLOW_PRIVATE, metadata never, the connection made to the checked address), at most
``MAX_REDIRECTS`` redirects each checked again, all within IMPORT_TIMEOUT. A link that cannot give the
file fails the job with a sentence ("The link answered 404."); a network failure is retried.

The job record is written with the size unknown (0) and rewritten once, with the imported size, before
any conversion message exists, so the workers' check that the original was not replaced still holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from urllib.parse import unquote, urljoin, urlsplit

import httpcore

from . import keys, ownerindex
from .conversion import NOT_CONVERTED
from .errors import JobNotFound
from .jobs import JobService, new_job, register_job, validate_filename, validate_formats
from .limits import human_bytes
from .model import OutputRecord, OutputStatus, new_job_id
from .outbound import FAILED, AddressRefused, Deadline, Pinned, check_url, resolve, resolve_within
from .outcome import Outcome
from .owners import EVERYONE, Owner
from .runtime import Runtime
from .storage import ObjectNotFound
from .uploads import admit_upload
from .views import JobView
from .work import Import, divide, send

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
CHUNK = 1024 * 1024
FIELD = "source_url"
SETTING = "IMPORT_ALLOW_PRIVATE"


class ImportFailed(Exception):
    """The link cannot give the file: the job fails with this sentence, without another attempt."""


def create_import(
    service: JobService,
    source_url: str,
    formats: list[str],
    filename: str | None,
    callback_url: str | None,
    owner: Owner = EVERYONE,
    *,
    origin: str | None = None,
) -> JobView:
    """The job over a link, ``owner``'s: checked (422 with a sentence), recorded with its outputs queued,
    and its import queued. ``origin``: of the creating request, for the webhook's absolute links."""
    rt = service.rt
    formats = validate_formats(formats)
    url = source_url.strip()
    check_url(url, allow_private=rt.settings.import_allow_private, field=FIELD, setting=SETTING)
    name = validate_filename(filename or _name_in(url))
    callback_url = service.check_callback(callback_url)
    admit_upload(rt, None)  # the one place uploads are let in (size unknown until it is fetched)
    job_id = new_job_id()
    update = {
        "callback_url": callback_url,
        "source_key": keys.imported_key(job_id),
        "owner": owner.id,
        "origin": origin,
    }
    record = new_job(job_id, name, formats, 0).model_copy(update=update)
    rt.converted.put_bytes(keys.import_key(job_id), json.dumps({"url": url}).encode(), "application/json")
    register_job(rt.jobs, record)
    ownerindex.add(rt.converted, record)
    send(rt.queue, Import(job_id), record.owner)
    log.info("job %s created to import %r -> %s", job_id, url[:200], ",".join(formats))
    return service.documents.view(job_id)


def _name_in(url: str) -> str:
    """The file name at the end of the link's path (``/videos/trip.mp4`` -> ``trip.mp4``), or "video"."""
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]).strip()
    return name[:255] or "video"


def handle(rt: Runtime, work: Import, attempt: int, deadline: float | None = None) -> Outcome:
    """One attempt at the import: the file streamed into the upload store, then the conversions queued."""
    job_id = work.job_id
    try:
        record = rt.jobs.job(job_id)
        url = str(json.loads(rt.converted.get_bytes(keys.import_key(job_id)))["url"])
    except (JobNotFound, ObjectNotFound):
        return Outcome.ack("no such job")  # deleted meanwhile
    if record.source_size > 0:
        return Outcome.ack("already imported")  # a redelivery
    seconds = float(rt.settings.import_timeout)
    if deadline is not None:
        seconds = max(1.0, min(seconds, deadline - time.monotonic() - 30))
    try:
        size = fetch(rt, url, record.source_key, Deadline(seconds))
    except ImportFailed as exc:
        return _fail(rt, job_id, str(exc))
    except (*FAILED, OSError) as exc:
        reason = f"The link could not be read ({type(exc).__name__}: {exc})."
        if attempt >= rt.settings.max_attempts:
            return _fail(rt, job_id, reason)
        log.warning("job %s import attempt %d failed, will retry: %s", job_id, attempt, reason)
        return Outcome.retry(attempt, reason)
    rt.jobs.save_job(record.model_copy(update={"source_size": size}))
    for message in divide(job_id, record.formats):
        send(rt.queue, message, record.owner)
    log.info("job %s imported %d bytes", job_id, size)
    return Outcome.ack("imported")


def _fail(rt: Runtime, job_id: str, sentence: str) -> Outcome:
    rt.jobs.save_failure(job_id, sentence)
    for format_id in rt.jobs.job(job_id).formats:
        failed = OutputRecord(format=format_id, status=OutputStatus.FAILED, error=NOT_CONVERTED)
        rt.jobs.save_output(job_id, failed)
    log.warning("job %s import failed: %s", job_id, sentence)
    return Outcome.finished("import failed")


def fetch(rt: Runtime, url: str, key: str, deadline: Deadline) -> int:
    """GET the link (following at most MAX_REDIRECTS redirects, each checked) and stream its body to
    ``key``; return the size. Raises ImportFailed for what another attempt would meet again."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            _, _, address = check_url(
                url,
                allow_private=rt.settings.import_allow_private,
                resolver=resolve_within(resolve, deadline),
                field="The link",
                setting=SETTING,
            )
        except AddressRefused as exc:
            raise ImportFailed(str(exc)) from None
        headers = [("Host", urlsplit(url).netloc), ("User-Agent", "video-converter import"), ("Accept", "*/*")]
        with (
            httpcore.ConnectionPool(network_backend=Pinned(address, deadline, chunk=CHUNK), max_connections=1) as pool,
            pool.stream("GET", url, headers=headers) as response,
        ):
            answer = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
            if response.status in (301, 302, 303, 307, 308) and answer.get("location"):
                url = urljoin(url, answer["location"])
                continue
            if not 200 <= response.status < 300:
                raise ImportFailed(f"The link answered {response.status}.")
            return _store(rt, key, answer.get("content-length", ""), response.iter_stream())
    raise ImportFailed(f"The link redirected more than {MAX_REDIRECTS} times.")


def _store(rt: Runtime, key: str, declared: str, chunks: Iterator[bytes]) -> int:
    limit = rt.settings.max_upload_bytes
    too_large = f"The file at the link is larger than the {human_bytes(limit)} limit."
    if declared.isdigit() and int(declared) > limit:
        raise ImportFailed(too_large)
    reader = _Reader(chunks, limit)
    try:
        size = rt.uploads.put_stream(key, reader)
    except _TooLarge:
        rt.uploads.delete(key)
        raise ImportFailed(too_large) from None
    except BaseException:
        rt.uploads.delete(key)
        raise
    if size == 0:
        rt.uploads.delete(key)
        raise ImportFailed("The file at the link is empty.")
    return size


class _TooLarge(Exception):
    pass


class _Reader:
    """The answer's body as a stream read in chunks, stopped as soon as it passes ``limit``."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        self._chunks, self._left, self._buffer = chunks, limit, b""

    def read(self, size: int = -1) -> bytes:
        want = size if size > 0 else CHUNK
        while len(self._buffer) < want:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:want], self._buffer[want:]
        self._left -= len(data)
        if self._left < 0:
            raise _TooLarge
        return data
