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

The body is an event (``WebhookEvent``): its id (the same on every attempt, a new one each time the job
finishes again after a retry or an addition), its type (``job.completed``, ``job.partial``,
``job.failed``), the time of this attempt, and the job document with absolute links (PUBLIC_URL, else the
origin of the request that created the job). Receivers check ``X-Webhook-Signature: sha256=<hex>``, the
HMAC-SHA256 under the webhook key (``Runtime.webhook_secret``) of ``<X-Webhook-Timestamp>.<raw body>``,
as Stripe signs, and refuse a timestamp far from their clock (a replayed request), see ``verify``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from datetime import timedelta
from enum import StrEnum
from urllib.parse import urlsplit

import httpcore
from pydantic import BaseModel, Field

from . import keys, outbound
from .documents import JobDocuments
from .errors import JobNotFound
from .model import JobRecord, JobStatus, utcnow
from .outbound import FAILED, AddressRefused, Deadline, Pinned, Resolver, resolve, resolve_within
from .outcome import Outcome
from .runtime import Runtime
from .storage import ObjectNotFound
from .views import IsoDatetime, JobView, WebhookDelivery, WebhookState
from .work import Notify, send

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds one delivery attempt may take in all, whatever the receiver does
ATTEMPTS = 4  # deliveries of a notice, the queue's back-off between them (5, 20, 45 s); fewer if MAX_ATTEMPTS is
READ_CHUNK = 4096  # bytes asked of the socket at a time
MAX_ANSWER = 32 * 1024  # bytes of the answer read at most: enough for its status line and headers
MAX_URL = 2048
SIGNATURE_HEADER = "X-Webhook-Signature"  # sha256=<hex>, over "<timestamp>.<body>"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"  # seconds since the epoch, when this attempt was sent
EVENT_HEADER = "X-Webhook-Event"  # the event's type: job.completed, job.partial, job.failed
ID_HEADER = "X-Webhook-Id"  # the event's id, the same on every attempt
TOLERANCE = 300.0  # seconds a receiver accepts between the timestamp and its clock (Stripe's default)


class WebhookRefused(AddressRefused):
    """The callback URL is not one this service will call (422 at job creation)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature of a request sent at ``timestamp`` (seconds since the epoch) with this raw body."""
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, timestamp: str, signature: str, *, tolerance: float = TOLERANCE) -> bool:
    """What a receiver does (the README has it): the timestamp header is recent (within ``tolerance``
    seconds of its clock: a replayed request is older) and the signature matches, compared in constant
    time."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class EventType(StrEnum):
    """What happened, as the body's ``type`` and X-Webhook-Event say: how the job finished."""

    COMPLETED = "job.completed"  # every output completed
    PARTIAL = "job.partial"  # some completed, some failed
    FAILED = "job.failed"  # every output failed

    @classmethod
    def of(cls, status: JobStatus) -> EventType:
        return {JobStatus.COMPLETED: cls.COMPLETED, JobStatus.PARTIAL: cls.PARTIAL}.get(status, cls.FAILED)


class WebhookEvent(BaseModel):
    """The webhook's body: POSTed to the job's callback_url when the job is finished."""

    id: str = Field(description="The event's id: the same on every attempt, so a receiver can drop repeats.")
    type: EventType
    created_at: IsoDatetime = Field(description="When the event was made: the job had just finished.")
    timestamp: int = Field(description="When this attempt was sent (seconds since the epoch), as signed.")
    job_url: str | None = Field(default=None, description="The job document's absolute URL, for fresh links.")
    job: JobView = Field(description="The job document, as GET /api/jobs/{id} answers, its links absolute.")


def event_body(event: WebhookEvent) -> bytes:
    """The raw body sent: the job document without its own delivery state."""
    return event.model_dump_json(exclude={"job": {"webhook"}}).encode()


def absolute(view: JobView, base: str) -> JobView:
    """The job document with its relative download links (local mode's signed ones) made absolute."""
    if not base:
        return view
    outputs = [
        o.model_copy(update={"download_url": base + o.download_url})
        if o.download_url and o.download_url.startswith("/")
        else o
        for o in view.outputs
    ]
    return view.model_copy(update={"outputs": outputs})


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
    url: str,
    body: bytes,
    secret: str,
    *,
    allow_private: bool,
    resolver: Resolver = resolve,
    timeout: float = TIMEOUT,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[bool, str]:
    """One POST of ``body``, signed as sent at ``timestamp`` (now, by default), over within ``timeout``
    seconds whatever the receiver does; return (delivered: a 2xx answer, what happened). The host is
    resolved and checked again and the request goes to that checked address, so a DNS answer that
    changes after the check is never used. Redirects are not followed and the answer's body is never
    read. Raises ``WebhookRefused`` (final: no retry)."""
    deadline = Deadline(timeout)
    sent_at = int(time.time()) if timestamp is None else timestamp
    try:
        _, _, address = check_url(url, allow_private=allow_private, resolver=resolve_within(resolver, deadline))
        sent: list[tuple[bytes | str, bytes | str]] = [
            ("Host", urlsplit(url).netloc),
            ("Content-Type", "application/json"),
            (TIMESTAMP_HEADER, str(sent_at)),
            (SIGNATURE_HEADER, sign(secret, sent_at, body)),
            ("User-Agent", "video-converter"),
            *(headers or {}).items(),
        ]
        backend = Pinned(address, deadline, max_bytes=MAX_ANSWER, chunk=READ_CHUNK)
        with (
            httpcore.ConnectionPool(network_backend=backend, max_connections=1) as pool,
            pool.stream("POST", url, headers=sent, content=body) as response,
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
    queued = WebhookDelivery(state=WebhookState.QUEUED, at=utcnow(), event_id=f"evt_{uuid.uuid4().hex}")
    if not rt.converted.create_bytes(
        keys.webhook_key(job_id), _json(queued.model_copy(update={"created_at": queued.at}))
    ):
        return False  # another worker finished the last output at the same time and queued it
    try:
        send(rt.queue, Notify(job_id), record.owner)  # with the priority of quick work
    except Exception:
        _record(rt, job_id, queued, WebhookState.FAILED, 0, "the notice could not be queued")
        raise
    return True


def handle(rt: Runtime, notice: Notify, attempt: int) -> Outcome:
    """One delivery of a job's notice: a 2xx answer or a refused URL ends it, any other failure comes back
    with the queue's back-off until the attempts run out."""
    job_id = notice.job_id
    try:
        delivery = WebhookDelivery.model_validate_json(rt.converted.get_bytes(keys.webhook_key(job_id)))
        record = rt.jobs.job(job_id)
    except (ObjectNotFound, JobNotFound):
        return Outcome.ack("no such job")  # deleted meanwhile
    if delivery.state in (WebhookState.DELIVERED, WebhookState.FAILED) or not record.callback_url:
        return Outcome.ack(f"webhook {delivery.state}")  # a redelivery
    event = make_event(rt, record, delivery)
    headers = {EVENT_HEADER: event.type.value, ID_HEADER: event.id}
    try:
        delivered, result = deliver(
            record.callback_url,
            event_body(event),
            rt.webhook_secret,
            allow_private=rt.settings.webhook_allow_private,
            timestamp=event.timestamp,
            headers=headers,
        )
    except WebhookRefused as exc:
        return _record(rt, job_id, delivery, WebhookState.FAILED, attempt, str(exc))
    if delivered or attempt >= min(ATTEMPTS, rt.settings.max_attempts):
        state = WebhookState.DELIVERED if delivered else WebhookState.FAILED
        return _record(rt, job_id, delivery, state, attempt, result)
    retrying = delivery.model_copy(update={"state": WebhookState.RETRYING, "attempts": attempt, "result": result})
    rt.converted.put_bytes(
        keys.webhook_key(job_id), _json(retrying.model_copy(update={"at": utcnow()})), "application/json"
    )
    log.warning("job %s webhook attempt %d failed (%s); the queue tries again", job_id, attempt, result)
    return Outcome.retry(attempt, f"webhook: {result}")


def make_event(rt: Runtime, record: JobRecord, delivery: WebhookDelivery) -> WebhookEvent:
    """The event of this attempt: the job as it stands, its links absolute, sent now."""
    base = (rt.settings.public_url or record.origin or "").rstrip("/")
    view = JobDocuments(rt).view(record.job_id)  # exactly as GET /api/jobs/{id} answers, links made absolute
    return WebhookEvent(
        id=delivery.event_id or f"evt_{record.job_id.replace('-', '')}",
        type=EventType.of(view.status),
        created_at=delivery.created_at or delivery.at,
        timestamp=int(time.time()),
        job_url=f"{base}/api/jobs/{record.job_id}" if base else None,
        job=absolute(view, base),
    )


def notice_due(rt: Runtime, job_id: str, older_than: timedelta) -> bool:
    """Whether the job's notice is still to be delivered and its marker last changed more than
    ``older_than`` ago (then a queue that does not hold the notice lost it)."""
    try:
        delivery = WebhookDelivery.model_validate_json(rt.converted.get_bytes(keys.webhook_key(job_id)))
    except (ObjectNotFound, ValueError):
        return False
    return delivery.state in (WebhookState.QUEUED, WebhookState.RETRYING) and utcnow() - delivery.at >= older_than


def _json(delivery: WebhookDelivery) -> bytes:
    return delivery.model_dump_json(exclude_none=True).encode()


def _record(
    rt: Runtime, job_id: str, delivery: WebhookDelivery, state: WebhookState, attempts: int, result: str
) -> Outcome:
    """The notice's end, written into the marker."""
    done = delivery.model_copy(update={"state": state, "attempts": attempts, "result": result, "at": utcnow()})
    rt.converted.put_bytes(keys.webhook_key(job_id), _json(done), "application/json")
    (log.info if state is WebhookState.DELIVERED else log.warning)(
        "job %s webhook %s after %d attempt(s): %s", job_id, state.value, attempts, result
    )
    return Outcome.ack(f"webhook {state.value}")
