"""The job-finished webhook: when every output of a job is final, POST the job's JSON to its
``callback_url``, signed, retried with back-off, and never to an address inside the operator's network.

Delivery is work of its own, off the conversion path. The worker that makes a job's last output final
only queues a ``Notify`` message (``notify_if_finished``); "once" is a create-if-absent marker in the
converted store, so of several workers finishing a job's last outputs together exactly one queues it.
Whichever worker receives the notice makes one attempt (``deliver``): at most ``TIMEOUT`` seconds in all
(resolving, connecting, TLS, sending, the answer's head: a wall-clock deadline, not a per-read timeout),
the answer's body never read, and a failed attempt goes back to the queue with its back-off
(``Outcome.retry``), never a sleep in the worker. The marker records each attempt's result, and after
``ATTEMPTS`` "failed". A worker that dies mid-attempt leaves the notice to come back, so a receiver may
see a job twice (at least once; its ``job_id`` tells).

Receivers check ``X-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body under the webhook key
(``Runtime.webhook_secret``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpcore

from . import keys, outbound
from .documents import JobDocuments
from .errors import JobNotFound
from .model import utcnow
from .outbound import FAILED, AddressRefused, Deadline, Pinned, Resolver, resolve, resolve_within
from .outcome import Outcome
from .runtime import Runtime
from .storage import ObjectNotFound
from .work import Notify, to_body

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds one delivery attempt may take in all, whatever the receiver does
ATTEMPTS = 4  # deliveries of a notice, the queue's back-off between them (5, 20, 45 s); fewer if MAX_ATTEMPTS is
READ_CHUNK = 4096  # bytes asked of the socket at a time
MAX_ANSWER = 32 * 1024  # bytes of the answer read at most: enough for its status line and headers
SIGNATURE_HEADER = "X-Signature"


class WebhookRefused(AddressRefused):
    """The callback URL is not one this service will call (422 at job creation)."""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (documented in the README): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> tuple[str, int, str]:
    """Refuse a callback URL this service will not call (``outbound.check_url``); return (host, port, the
    checked address to connect to)."""
    return outbound.check_url(
        url,
        allow_private=allow_private,
        resolver=resolver,
        field="callback_url",
        setting="WEBHOOK_ALLOW_PRIVATE",
        refused=WebhookRefused,
    )


def deliver(
    url: str, body: bytes, secret: str, *, allow_private: bool, resolver: Resolver = resolve, timeout: float = TIMEOUT
) -> tuple[bool, str]:
    """One POST of ``body``, over within ``timeout`` seconds whatever the receiver does; return (delivered:
    a 2xx answer, what happened). The host is resolved and checked again and the request goes to that
    checked address, so a DNS answer that changes after the check is never used. Redirects are not
    followed and the answer's body is never read. Raises ``WebhookRefused`` (final: no retry)."""
    deadline = Deadline(timeout)
    try:
        _, _, address = check_url(url, allow_private=allow_private, resolver=resolve_within(resolver, deadline))
        headers: list[tuple[bytes | str, bytes | str]] = [
            ("Host", urlsplit(url).netloc),
            ("Content-Type", "application/json"),
            (SIGNATURE_HEADER, sign(secret, body)),
            ("User-Agent", "video-converter"),
        ]
        backend = Pinned(address, deadline, max_bytes=MAX_ANSWER, chunk=READ_CHUNK)
        with (
            httpcore.ConnectionPool(network_backend=backend, max_connections=1) as pool,
            pool.stream("POST", url, headers=headers, content=body) as response,
        ):
            status = response.status
    except httpcore.TimeoutException:  # the socket's own "timed out" is the deadline too
        return False, f"Timeout: {deadline.missed}"
    except FAILED as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return 200 <= status < 300, f"HTTP {status}"


def notify_if_finished(rt: Runtime, job_id: str) -> bool:
    """Queue the job's notice if it has a callback and every output is final; return whether this call
    queued it. Sends nothing: a conversion never waits for a receiver."""
    try:
        record = rt.jobs.job(job_id)
    except JobNotFound:
        return False
    if not record.callback_url:
        return False
    outputs = [rt.jobs.find_output(job_id, f) for f in record.formats]
    if not all(out is not None and out.status.finished for out in outputs):
        return False
    if not rt.converted.create_bytes(keys.webhook_key(job_id), _state("queued")):
        return False  # another worker finished the last output at the same time and queued it
    try:
        rt.queue.send(to_body(Notify(job_id)), group=job_id)
    except Exception:
        _record(rt, job_id, "failed", 0, "the notice could not be queued")
        raise
    return True


def handle(rt: Runtime, notice: Notify, attempt: int) -> Outcome:
    """One delivery of a job's notice: a 2xx answer or a refused URL ends it, any other failure comes back
    with the queue's back-off until the attempts run out."""
    job_id = notice.job_id
    try:
        state = json.loads(rt.converted.get_bytes(keys.webhook_key(job_id))).get("state")
        record = rt.jobs.job(job_id)
    except (ObjectNotFound, JobNotFound):
        return Outcome.ack("no such job")  # deleted meanwhile
    if state in ("delivered", "failed") or not record.callback_url:
        return Outcome.ack(f"webhook {state}")  # a redelivery
    body = JobDocuments(rt).view(job_id).model_dump_json().encode()  # exactly as GET /api/jobs/{id} answers
    try:
        delivered, result = deliver(
            record.callback_url, body, rt.webhook_secret, allow_private=rt.settings.webhook_allow_private
        )
    except WebhookRefused as exc:
        return _record(rt, job_id, "failed", attempt, str(exc))
    if delivered or attempt >= min(ATTEMPTS, rt.settings.max_attempts):
        return _record(rt, job_id, "delivered" if delivered else "failed", attempt, result)
    rt.converted.put_bytes(keys.webhook_key(job_id), _state("retrying", attempt, result), "application/json")
    log.warning("job %s webhook attempt %d failed (%s); the queue tries again", job_id, attempt, result)
    return Outcome.retry(attempt, f"webhook: {result}")


def notice_due(rt: Runtime, job_id: str, older_than: timedelta) -> bool:
    """Whether the job's notice is still to be delivered and its marker last changed more than
    ``older_than`` ago (then a queue that does not hold the notice lost it)."""
    try:
        state = json.loads(rt.converted.get_bytes(keys.webhook_key(job_id)))
        at = datetime.fromisoformat(state["at"])
    except (ObjectNotFound, ValueError, KeyError, TypeError):
        return False
    return state.get("state") in ("queued", "retrying") and utcnow() - at >= older_than


def _state(state: str, attempts: int = 0, result: str = "") -> bytes:
    extra = {"attempts": attempts, "result": result} if attempts or result else {}
    return json.dumps({"state": state, **extra, "at": utcnow().isoformat()}).encode()


def _record(rt: Runtime, job_id: str, state: str, attempts: int, result: str) -> Outcome:
    """The notice's end, written into the marker."""
    rt.converted.put_bytes(keys.webhook_key(job_id), _state(state, attempts, result), "application/json")
    (log.info if state == "delivered" else log.warning)(
        "job %s webhook %s after %d attempt(s): %s", job_id, state, attempts, result
    )
    return Outcome.ack(f"webhook {state}")
