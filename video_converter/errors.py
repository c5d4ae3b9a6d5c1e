"""Errors the API answers with: each carries a sentence for the person who sent the request.

The core raises them; ``api/errors.py`` maps each class to its HTTP status, so routes never build
HTTP errors themselves.
"""

from __future__ import annotations


class RequestError(Exception):
    """Something about the request cannot be served; ``str(exc)`` is the sentence to show."""


class InvalidRequest(RequestError, ValueError):
    """Bad input (422)."""


class UploadTooLarge(InvalidRequest):
    """The upload is over MAX_UPLOAD_BYTES (413)."""


class NotFound(RequestError, LookupError):
    """No such thing here (404)."""

    def __init__(self, message: str = "No such job (or format) here; check the link.") -> None:
        super().__init__(message)


class JobNotFound(NotFound):
    """The job id is not a job (404)."""

    def __init__(self, job_id: str = "") -> None:
        super().__init__()
        self.job_id = job_id


class LinkExpired(RequestError):
    """A signed link is expired or was tampered with (403)."""

    def __init__(self) -> None:
        super().__init__("This link has expired or is not valid. Open the job page again to get a fresh one.")


class OutputNotReady(RequestError):
    """The output is not completed (409)."""


class Conflict(RequestError):
    """Another request got there first: the upload already has its job, or the ticket was used (409)."""


class QueueUnavailable(RequestError):
    """The queue refused a message (503)."""


class OverLimit(RequestError):
    """A quota or rate limit is reached (429); the sentence says which and when it frees, ``retry_after``
    the seconds until then (the Retry-After header)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, round(retry_after))


class Unauthorized(RequestError):
    """No valid credentials: a missing, unknown or revoked API key (401)."""


class Forbidden(RequestError):
    """Credentials are fine but the request is refused: a cross-site request riding a cookie (403)."""
