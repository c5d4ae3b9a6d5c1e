"""Job creations and upload tickets per client address per minute (RATE_LIMIT_PER_MINUTE): a sliding
window of the last minute's requests, answered 429 with Retry-After and a sentence past it.

The window is kept in each API process: with N tasks behind a load balancer an address gets at most
N times the limit (requests spread over the tasks). The fleet-wide bound is the load balancer's WAF
rate-based rule (deploy/api-express.yaml, ``RateLimitPer5Minutes``); this one keeps a single task,
and a laptop's server, from being flooded, and answers with a sentence instead of a bare 403.

The client's address: behind a load balancer the one it saw, which it appends last to X-Forwarded-For
(anything before it the client can write itself). uvicorn trusts that header from the addresses in
FORWARDED_ALLOW_IPS; where it trusts every peer (``*``, what the deployments set, since only the
load balancer reaches a task), it would take the first entry, which a client can forge, so the last
one is taken here instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

from fastapi import Request

from video_converter.config import Settings
from video_converter.errors import OverLimit
from video_converter.owners import AuthMode

WINDOW = 60.0
DEFAULT_PER_MINUTE = 30  # with AUTH=keys; AUTH=none has no limit unless RATE_LIMIT_PER_MINUTE is set
MAX_ADDRESSES = 100_000  # windows kept at most; past it the idle ones are dropped first


def per_minute(settings: Settings) -> int | None:
    """RATE_LIMIT_PER_MINUTE, or the mode's default; None: no limit (0)."""
    value = settings.rate_limit_per_minute
    if value is None:
        return DEFAULT_PER_MINUTE if settings.auth_mode is AuthMode.KEYS else None
    return value or None


def client_address(request: Request) -> str:
    """The address the request came from, as the load balancer saw it (see the module's docstring)."""
    if os.environ.get("FORWARDED_ALLOW_IPS", "").strip() == "*":
        forwarded = request.headers.get("x-forwarded-for", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.client.host if request.client else "unknown"


class RateLimiter:
    """Requests per address in the last minute; thread-safe (routes run in a thread pool)."""

    def __init__(self, limit: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, address: str) -> None:
        """Count a request from ``address``; raise OverLimit (not counted) when it is over the limit."""
        if self.limit is None:
            return
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(address, deque())
            while hits and hits[0] <= now - WINDOW:
                hits.popleft()
            if len(hits) >= self.limit:
                wait = hits[0] + WINDOW - now
                raise OverLimit(
                    f"Too many new jobs and upload tickets from your address: at most {self.limit} a minute. "
                    f"The next one is accepted in {max(1, round(wait))} s.",
                    wait,
                )
            hits.append(now)
            if len(self._hits) > MAX_ADDRESSES:
                self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop the windows with nothing in the last minute (and, if still too many, the oldest)."""
        for address in [a for a, hits in self._hits.items() if not hits or hits[-1] <= now - WINDOW]:
            del self._hits[address]
        while len(self._hits) > MAX_ADDRESSES:
            del self._hits[next(iter(self._hits))]
