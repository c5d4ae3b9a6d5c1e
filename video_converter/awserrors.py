"""Reading AWS errors without importing the SDK: boto3 is only imported when a client is first made."""

from __future__ import annotations


def error_code(exc: Exception) -> str:
    """The error code of a botocore ClientError (``NoSuchKey``, ``PreconditionFailed``,
    ``AWS.SimpleQueueService.NonExistentQueue``, ...); ``""`` for any other exception."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
