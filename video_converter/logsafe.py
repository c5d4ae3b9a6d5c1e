"""User strings in log lines are escaped: a newline in a file name must not forge a second log line.

The filter escapes the %-arguments of every record (message templates are ours, arguments may come
from users: file names, paths, exception messages quoting them); tracebacks stay multi-line.

The access log keeps no signed link: a signed URL is a credential for as long as it is valid (local
mode's /files/... links, S3-style X-Amz-* parameters), so the query string of a /files/... request is
dropped whole, a share link's token in the path is replaced by ``[redacted]``, and so are the signing
parameters of any other request. Job ids
in paths stay: they say what a request was about, and reading a job takes its id, not a log line.
"""

from __future__ import annotations

import logging
import re
from typing import Any

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"
SIGNED_PATHS = ("/files/",)  # local mode's signed downloads and uploads: every parameter is part of the link
# A share link's token is in its path (/share/<token>, /api/share/<token>/...): a credential too.
SHARE_TOKEN = re.compile(r"^(/(?:api/)?share/)[^/?]+")
SIGNING_PARAMETERS = frozenset(
    {"signature", "expires", "policy", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-amz-date"}
)


def escape(text: str) -> str:
    """Control, separator and invisible characters as ``\\n``, ``\\x1b``, ``\\u2028``...; the rest as is."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _safe(value: Any) -> Any:
    # Exceptions often quote what the user sent; numbers and other objects print as themselves.
    if isinstance(value, str | BaseException):
        return escape(str(value))
    return value


class EscapeControlCharacters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):
            record.args = {key: _safe(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_safe(value) for value in record.args)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to the handlers of ``logger`` (the root logger by default), which every
    propagating logger (ours, uvicorn's) goes through. Safe to call twice."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
            handler.addFilter(EscapeControlCharacters())


def redact_target(target: str) -> str:
    """A request target (path and query string) as the access log may keep it."""
    target = SHARE_TOKEN.sub(rf"\1{REDACTED}", target)
    path, sep, query = target.partition("?")
    if not sep:
        return target
    if path.startswith(SIGNED_PATHS):
        return f"{path}?{REDACTED}"
    pairs = (pair.partition("=") for pair in query.split("&"))
    kept = (
        f"{name}={REDACTED}" if name.lower() in SIGNING_PARAMETERS else name + eq + value for name, eq, value in pairs
    )
    return f"{path}?{'&'.join(kept)}"


class RedactSignedUrls(logging.Filter):
    """uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with (client, method, target, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


def redact_access_log(logger: logging.Logger | None = None) -> None:
    """Redact signed query strings in uvicorn's access log (a filter on its logger, so every handler
    the lines reach sees them redacted). Safe to call twice."""
    logger = logger or logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactSignedUrls) for f in logger.filters):
        logger.addFilter(RedactSignedUrls())
