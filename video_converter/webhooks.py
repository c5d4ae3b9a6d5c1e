"""The job-finished webhook: when every output of a job is final, POST the job's JSON to its
``callback_url``, signed, retried with back-off, and never to an address inside the operator's network.

Runs where the last output finishes (a local worker thread or the Lambda), right after that output's
final record is written. "Once" is a create-if-absent marker in the converted store: of several workers
finishing a job's last outputs together, exactly one wins it and sends. The marker is taken before
sending, so delivery is at most once per job if that worker dies mid-send; the outcome is written back
into the marker.

Receivers check ``X-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body under WEBHOOK_SECRET.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from . import keys
from .documents import JobDocuments
from .errors import InvalidRequest, JobNotFound
from .model import utcnow
from .runtime import Runtime

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds per delivery attempt
DELAYS = (1.0, 4.0, 15.0)  # back-off between attempts: four attempts in about 20 s
MAX_URL = 2048
SIGNATURE_HEADER = "X-Signature"
# The instance metadata services of AWS and others; also caught by the link-local / private checks.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use): the IPv4 address is the last 32 bits.
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))

Resolver = Callable[[str, int], list[str]]


class WebhookRefused(InvalidRequest):
    """The callback URL is not one this service will call (422 at job creation)."""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (documented in the README): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which is where a packet to it ends up: IPv4-mapped
    (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
    (64:ff9b::/96, and the local-use 64:ff9b:1::/48 with the IPv4 last), 6to4 (2002:ab:cd::) and Teredo
    (its server and client). Python's ``is_global`` judges only the IPv6 prefix, and says True for most."""
    value, low = int(ip), ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip.teredo:
        return list(ip.teredo)
    if ip.sixtofour:
        return [ip.sixtofour]
    if value >> 32 in (0, 0xFFFF0000) and value > 1:  # IPv4-compatible or -translated; not :: or ::1
        return [low]
    if any(ip in net for net in NAT64):
        return [low]
    return []


def _allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else []
    if embedded:  # judged by where it leads
        return all(_allowed(str(inner), allow_private) for inner in embedded)
    if ip in METADATA or ip.is_multicast or ip.is_unspecified:
        return False  # never, whatever the operator allows
    return allow_private or ip.is_global


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> tuple[str, int, str]:
    """Refuse a URL that is not http(s) or resolves to a loopback, private, link-local, metadata or other
    non-public address; return (host, port, the checked address to connect to)."""
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("callback_url must be an http:// or https:// URL of at most 2048 characters.")
    if parts.username or parts.password:
        raise WebhookRefused("callback_url must not contain a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolver(parts.hostname, port)
    except (OSError, ValueError):
        raise WebhookRefused(f"The callback host {parts.hostname!r} could not be resolved.") from None
    if not addresses or not all(_allowed(a, allow_private) for a in addresses):
        raise WebhookRefused(
            "callback_url points to a private, loopback, link-local or metadata address; "
            "use a public address (or ask the operator to set WEBHOOK_ALLOW_PRIVATE)."
        )
    return parts.hostname, port, addresses[0]


def deliver(
    url: str,
    body: bytes,
    secret: str,
    *,
    allow_private: bool,
    resolver: Resolver = resolve,
    delays: tuple[float, ...] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, int, str]:
    """POST ``body`` until a 2xx answer or the attempts run out; return (delivered, attempts, last result).
    Each attempt resolves and checks the host again and connects to that checked address (the Host
    header and TLS name stay the URL's), so a DNS answer that changes after the check is never used."""
    delays = DELAYS if delays is None else delays
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        "User-Agent": "video-converter",
    }
    result = ""
    for attempt in range(1, len(delays) + 2):
        try:
            host, port, address = check_url(url, allow_private=allow_private, resolver=resolver)
        except WebhookRefused as exc:
            return False, attempt, str(exc)  # refused is final: no retry
        parts = urlsplit(url)
        netloc = f"[{address}]" if ":" in address else address
        pinned = parts._replace(netloc=f"{netloc}:{port}").geturl()
        host_header = parts.netloc.rsplit("@", 1)[-1]
        try:
            with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as http:
                response = http.post(
                    pinned,
                    content=body,
                    headers={**headers, "Host": host_header},
                    extensions={"sni_hostname": host},
                )
            result = f"HTTP {response.status_code}"
            if 200 <= response.status_code < 300:
                return True, attempt, result
        except httpx.HTTPError as exc:
            result = f"{type(exc).__name__}: {exc}"
        if attempt <= len(delays):
            log.warning("webhook %s attempt %d failed (%s); retrying", parts.hostname, attempt, result)
            sleep(delays[attempt - 1])
    return False, len(delays) + 1, result


def notify_if_finished(rt: Runtime, job_id: str) -> bool:
    """Send the job's webhook if it has one and every output is final; return whether this call sent it."""
    try:
        record = rt.jobs.job(job_id)
    except JobNotFound:
        return False
    if not record.callback_url:
        return False
    outputs = [rt.jobs.find_output(job_id, f) for f in record.formats]
    if not all(out is not None and out.status.finished for out in outputs):
        return False
    marker = keys.webhook_key(job_id)
    if not rt.converted.create_bytes(marker, json.dumps({"state": "sending", "at": utcnow().isoformat()}).encode()):
        return False  # another worker finished the last output at the same time and sends it
    body = JobDocuments(rt).view(job_id).model_dump_json().encode()  # exactly as GET /api/jobs/{id} answers
    delivered, attempts, result = deliver(
        record.callback_url, body, rt.webhook_secret, allow_private=rt.settings.webhook_allow_private
    )
    state = {"state": "delivered" if delivered else "failed", "attempts": attempts, "result": result}
    rt.converted.put_bytes(marker, json.dumps({**state, "at": utcnow().isoformat()}).encode(), "application/json")
    (log.info if delivered else log.warning)(
        "job %s webhook %s after %d attempt(s): %s", job_id, state["state"], attempts, result
    )
    return delivered
