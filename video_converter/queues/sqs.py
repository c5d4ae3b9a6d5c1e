"""The Queue interface on Amazon SQS (boto3, imported lazily), plus the reading of SQS Lambda events.

SQS already has the semantics the core expects: a received message is hidden for the queue's
visibility timeout, comes back with a higher ApproximateReceiveCount when it is not deleted, and moves
to the dead-letter queue after the redrive policy's maxReceiveCount.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from ..awserrors import error_code
from .base import Message, decode_body, encode_body

log = logging.getLogger(__name__)

MAX_WAIT = 20  # SQS long polling waits 20 s at most
MAX_VISIBILITY = 12 * 60 * 60  # SQS refuses a visibility timeout over 12 hours

# What SQS answers when a receipt handle is stale: the message was deleted, or received again since.
_STALE_HANDLE = ("ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue")


def _client_config() -> Any:
    from botocore.config import Config

    # read_timeout above the longest long poll (20 s), so a poll never times out on the client side.
    return Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)


def make_sqs_client() -> Any:
    import boto3

    return boto3.session.Session().client("sqs", config=_client_config())


def _stale_handle(exc: Exception) -> bool:
    code = error_code(exc)
    return bool(code) and code.rsplit(".", 1)[-1] in _STALE_HANDLE


def decode_sqs_body(text: str | None) -> dict[str, str]:
    """A message body as a dict; a body that is not a JSON object becomes ``{}`` (dropped by the caller),
    so a malformed message is never retried until it reaches the dead-letter queue."""
    try:
        return decode_body(text or "")
    except (ValueError, TypeError):
        log.warning("message body is not a JSON object: %.200r", text)
        return {}


def message_from_record(record: dict[str, Any]) -> Message:
    """A Message from one record of an SQS Lambda event."""
    attributes = record.get("attributes") or {}
    return Message(
        id=str(record.get("messageId", "")),
        body=decode_sqs_body(record.get("body")),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1) or 1),
        handle=str(record.get("receiptHandle", "")),
    )


class SqsQueue:
    def __init__(self, queue_url: str, client: Any = None, wait_cap: int = MAX_WAIT) -> None:
        if not queue_url:
            raise ValueError("SqsQueue needs a queue URL.")
        self.queue_url = queue_url
        self.wait_cap = max(0, min(int(wait_cap), MAX_WAIT))
        self._client = client

    def __repr__(self) -> str:
        return f"SqsQueue({self.queue_url!r})"

    @functools.cached_property
    def client(self) -> Any:
        """Created on first use, so tests can start moto first and importing needs no AWS setup."""
        return self._client or make_sqs_client()

    def send(self, body: dict[str, str], group: str = "", owner: str = "", priority: int = 0) -> None:
        # ``priority`` is not kept: a standard queue has no order, and the event source hands a job's
        # messages to Lambdas side by side (a job's quick work is sent first, so it starts first).
        # On a standard queue a MessageGroupId makes SQS a fair queue: one tenant's burst of messages does
        # not hold back the messages of the others (it adds no FIFO ordering or throughput limit there).
        # The tenant is the owner (one client's many jobs are one), or the job when there is none. SQS has
        # one level of fairness only: jobs of one owner share its part first in, first out.
        params = {"QueueUrl": self.queue_url, "MessageBody": encode_body(body)}
        if owner or group:
            params["MessageGroupId"] = owner or group
        self.client.send_message(**params)

    def receive(self, wait_seconds: float = 0.0) -> Message | None:
        wait = max(0, min(math.ceil(wait_seconds), self.wait_cap))
        response = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait,
            AttributeNames=["ApproximateReceiveCount"],  # accepted by every boto3 (newer: MessageSystemAttributeNames)
        )
        messages = response.get("Messages") or []
        if not messages:
            return None
        raw = messages[0]
        attributes = raw.get("Attributes") or {}
        return Message(
            id=raw["MessageId"],
            body=decode_sqs_body(raw.get("Body")),
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            handle=raw["ReceiptHandle"],
        )

    def ack(self, message: Message) -> None:
        try:
            self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message.handle)
        except Exception as exc:
            if not _stale_handle(exc):
                raise
            log.warning("message %s was not deleted, its receipt handle is stale: %s", message.id, exc)

    def release(self, message: Message, delay: int = 0) -> None:
        """Visible again after ``delay`` seconds; SQS keeps counting the receive (ApproximateReceiveCount
        cannot go down)."""
        self.set_visibility(message, delay)

    def set_visibility(self, message: Message, seconds: int) -> None:
        try:
            self.client.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=message.handle,
                VisibilityTimeout=max(0, min(int(seconds), MAX_VISIBILITY)),
            )
        except Exception as exc:
            if not _stale_handle(exc):
                raise
            log.info("visibility of message %s not changed, its receipt handle is stale: %s", message.id, exc)
