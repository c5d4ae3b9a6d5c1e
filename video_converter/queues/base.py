"""The queue interface, shaped after SQS: receive hides a message, ack deletes it, and a message that
is not acked comes back after its visibility timeout with a higher receive count."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    id: str
    body: dict[str, str]
    receive_count: int
    handle: str  # receipt handle: valid for this delivery only


def encode_body(body: dict[str, str]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def decode_body(text: str) -> dict[str, str]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("A message body must be a JSON object")
    return {str(k): str(v) for k, v in data.items()}


class Queue(Protocol):
    def send(self, body: dict[str, str], group: str = "", owner: str = "", priority: int = 0) -> None:
        """Queue a message. Owners share the workers fairly first (``owner``: whose job it is; none: the
        group is its own owner), then the groups (jobs) of one owner among themselves; between messages
        served alike, a higher ``priority`` goes first (quick work, so a thumbnail never waits behind a
        long encode), then the oldest. SQS keeps no order: there every message is handed to a Lambda at
        once, up to the function's concurrency."""

    def receive(self, wait_seconds: float = 0.0) -> Message | None:
        """The next visible message, hidden for the visibility timeout; None if none came in time."""

    def ack(self, message: Message) -> None:
        """Done with it: delete the message."""

    def set_visibility(self, message: Message, seconds: int) -> None:
        """Keep a message hidden longer (heartbeat), or make it visible again sooner (0 = now)."""

    def release(self, message: Message, delay: int = 0) -> None:
        """Hand a message back without counting this delivery, visible again after ``delay`` seconds (0:
        at once, the worker is stopping; later: the disk is full), where the queue can (SQLite, memory);
        SQS cannot un-count a receive, so there it is only made visible again after the delay."""
