"""User strings in log lines are escaped: a newline in a file name must not forge a second log line.

The filter escapes the %-arguments of every record (message templates are ours, arguments may come
from users: file names, paths, exception messages quoting them); tracebacks stay multi-line.
"""

from __future__ import annotations

import logging
from typing import Any


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
