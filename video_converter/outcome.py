"""What to do with a message once its work was tried, and the shape of one attempt's work.

The local worker loop and the Lambda handler only translate an ``Outcome``: ack/visibility calls on
the queue, or a batch item failure. ``final`` says the attempt left its outputs final (completed or
failed for good), which is when the job may be finished and its webhook due.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Action(StrEnum):
    ACK = "ack"  # delete the message: done, failed for good, or malformed
    RETRY = "retry"  # hand it back after ``delay`` seconds; the delivery counts as an attempt
    # Hand it back without spending an attempt, after ``delay`` seconds: at once when the worker is stopping,
    # later when the server's disk is full (nothing about the message is wrong; it waits for room).
    RELEASE = "release"


@dataclass(frozen=True)
class Outcome:
    action: Action
    delay: int = 0
    reason: str = ""
    final: bool = False  # the outputs it names are completed or failed for good

    @classmethod
    def ack(cls, reason: str = "") -> Outcome:
        return cls(Action.ACK, reason=reason)

    @classmethod
    def finished(cls, reason: str) -> Outcome:
        """Acked, with its outputs final: completed, or failed for good."""
        return cls(Action.ACK, reason=reason, final=True)

    @classmethod
    def retry(cls, attempt: int, reason: str) -> Outcome:
        return cls(Action.RETRY, delay=retry_delay(attempt), reason=reason)

    @classmethod
    def release(cls) -> Outcome:
        return cls(Action.RELEASE, reason="the worker is stopping")

    @classmethod
    def wait_for_disk(cls, delay: int) -> Outcome:
        """The disk filled up: back after ``delay`` seconds (not hot-looped), and not as an attempt."""
        return cls(Action.RELEASE, delay=delay, reason="the disk is full")


def retry_delay(attempt: int) -> int:
    """Back off between attempts: 5 s, 20 s, 45 s, ... capped at 5 minutes."""
    return min(300, 5 * attempt * attempt)


# One attempt's work, given its work folder, FFmpeg's time limit and the cancel event.
Run = Callable[[Path, float, "threading.Event | None"], Outcome]


@dataclass(frozen=True)
class Step:
    """The work a message names, ready to run: ``label`` names a part of a segmented output in its
    failures ("Part 3 of 12"), empty for whole outputs."""

    run: Run
    label: str = ""
