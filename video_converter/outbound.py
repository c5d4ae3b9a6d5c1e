"""Requests this service makes to addresses users give it (webhooks, imports from a URL), held to the
same checks: the host is resolved and every address must be public (no loopback, private, link-local,
carrier-grade NAT or reserved address unless the operator allows private ones; cloud metadata never,
nor an IPv6 address carrying one of those IPv4 addresses), and the connection goes to the address that
was checked (the Host header and TLS name stay the URL's), so a DNS answer that changes after the check
is never used. Every blocking step gets only what is left of one wall-clock deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore

from .errors import InvalidRequest

MAX_URL = 2048
READ_CHUNK = 4096  # bytes asked of the socket at a time by default
# The instance metadata services of AWS and others; also caught by the link-local / private checks.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use): the IPv4 address is the last 32 bits.
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))

Resolver = Callable[[str, int], list[str]]


class AddressRefused(InvalidRequest):
    """The URL is not one this service will connect to (422 where a request gave it)."""


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


def allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else []
    if embedded:  # judged by where it leads
        return all(allowed(str(inner), allow_private) for inner in embedded)
    if ip in METADATA or ip.is_multicast or ip.is_unspecified:
        return False  # never, whatever the operator allows
    return allow_private or ip.is_global


def check_url(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver = resolve,
    field: str = "The URL",
    setting: str = "",
    refused: type[AddressRefused] = AddressRefused,
) -> tuple[str, int, str]:
    """Refuse a URL that is not http(s) or resolves to a loopback, private, link-local, metadata or other
    non-public address; return (host, port, the checked address to connect to). ``field`` names the URL
    in the sentences, ``setting`` the operator's allowance of private addresses."""
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise refused(f"{field} must be an http:// or https:// URL of at most {MAX_URL} characters.")
    if parts.username or parts.password:
        raise refused(f"{field} must not contain a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolver(parts.hostname, port)
    except (OSError, ValueError):
        raise refused(f"The host {parts.hostname!r} of {field} could not be resolved.") from None
    if not addresses or not all(allowed(a, allow_private) for a in addresses):
        allowance = f" (or ask the operator to set {setting})" if setting else ""
        raise refused(
            f"{field} points to a private, loopback, link-local or metadata address; use a public address{allowance}."
        )
    return parts.hostname, port, addresses[0]


class Deadline:
    """The wall-clock end of one attempt: every blocking step gets only the time that is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout(self.missed)
        return left

    @property
    def missed(self) -> str:
        return f"no whole answer within {self.seconds:g} s"


def resolve_within(resolver: Resolver, deadline: Deadline) -> Resolver:
    """``resolver``, given up on when the deadline passes (a slow name server cannot hold the worker;
    the lookup thread ends by itself when the system resolver does)."""

    def within(host: str, port: int) -> list[str]:
        answer: list[list[str] | BaseException] = []

        def run() -> None:
            try:
                answer.append(resolver(host, port))
            except BaseException as exc:  # handed to the caller
                answer.append(exc)

        thread = threading.Thread(target=run, name="outbound-resolve", daemon=True)
        thread.start()
        thread.join(deadline.left())
        if not answer:
            raise httpcore.ConnectTimeout(f"resolving {host!r} took longer than the attempt may")
        if isinstance(answer[0], BaseException):
            raise answer[0]
        return answer[0]

    return within


class _Stream(httpcore.NetworkStream):
    """A connection whose every read and write is bounded by the deadline, read in chunks of at most
    ``chunk`` bytes and, with ``max_bytes``, at most that many in all."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline, max_bytes: int | None, chunk: int) -> None:
        self.inner, self.deadline, self.received = inner, deadline, 0
        self.max_bytes, self.chunk = max_bytes, chunk

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self.inner.read(min(max_bytes, self.chunk), self.deadline.left())
        self.received += len(data)
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise httpcore.ReadError(f"the answer's head is longer than {self.max_bytes} bytes")
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self.deadline.left())

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self.inner.start_tls(ssl_context, server_hostname, self.deadline.left())
        return _Stream(inner, self.deadline, self.max_bytes, self.chunk)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class Pinned(httpcore.NetworkBackend):
    """Connects to the checked address, whatever host the URL names (which stays the Host header and the
    TLS server name), within the deadline; reads bounded as ``_Stream`` says."""

    def __init__(
        self, address: str, deadline: Deadline, *, max_bytes: int | None = None, chunk: int = READ_CHUNK
    ) -> None:
        self.address, self.deadline, self.max_bytes, self.chunk = address, deadline, max_bytes, chunk

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        inner = httpcore.SyncBackend().connect_tcp(
            self.address, port, self.deadline.left(), local_address, socket_options
        )
        return _Stream(inner, self.deadline, self.max_bytes, self.chunk)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("outbound requests go over TCP only")


# What a failed request raises (the network, a timeout, a broken answer).
FAILED = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol)
