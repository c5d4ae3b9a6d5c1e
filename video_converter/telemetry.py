"""Everything visible: JSON log lines that carry the job, the format and the attempt being worked on, and
metrics in CloudWatch Embedded Metric Format (EMF), printed as log lines (no API calls).

- ``fields(job_id=..., format=..., attempt=...)`` sets the fields for the code it wraps (a context
  variable, so each worker thread has its own); ``JsonFormatter`` adds them to every line.
- ``metric(...)`` prints one EMF line to stdout: on Lambda, CloudWatch Logs turns it into metrics of
  the namespace ``VideoConverter`` by itself; elsewhere (ECS) the line is a log line that the
  CloudWatch agent or FireLens can extract the same way.

Metrics (dimension ``Format``): ``OutputsCompleted`` and ``OutputsFailed`` (counts), ``SecondsConverted``
(seconds of video), ``ConversionSeconds`` (from the start of the attempt that finished the output; a
long video's, from its split to its join) and ``QueueWaitSeconds`` (queued until a worker started it).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

NAMESPACE = "VideoConverter"
FIELDS = ("job_id", "format", "attempt")

_fields: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_fields", default={})  # noqa: B039


@contextlib.contextmanager
def fields(**values: Any) -> Iterator[None]:
    """Log lines written inside carry these fields (those given as None are left out)."""
    token = _fields.set({**_fields.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def current() -> dict[str, Any]:
    return dict(_fields.get())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context's fields, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "json") -> None:
    """The root logger at ``level``, its lines JSON (``log_format`` "text": the classic one-line text,
    for a person at a terminal). A handler already there (the Lambda runtime's) keeps its place and
    writes JSON too."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else logging.INFO)
    if log_format.lower() != "text":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())


def metric(format_id: str, values: dict[str, tuple[float, str]], **properties: Any) -> None:
    """One EMF line: ``values`` are name -> (value, unit) with the dimension Format; ``properties`` (and
    the context's fields) ride along for searching the logs, as EMF allows."""
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Format"]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
                }
            ],
        },
        **current(),
        **properties,
        "Format": format_id,
        **{name: value for name, (value, _) in values.items()},
    }
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()
