"""An in-memory queue with the same visibility semantics, for unit tests."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from .base import Message


@dataclass
class _Entry:
    body: dict[str, str]
    group: str = ""
    owner: str = ""  # the group's, when sent without one
    priority: int = 0
    visible_at: float = 0.0
    receive_count: int = 0
    receipt: str | None = None
    dead: bool = False
    sent_at: float = field(default_factory=time.time)


class MemoryQueue:
    def __init__(self, *, visibility_timeout: int = 120, max_receives: int = 4) -> None:
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.entries: dict[str, _Entry] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send(self, body: dict[str, str], group: str = "", owner: str = "", priority: int = 0) -> None:
        with self._lock:
            entry = _Entry(body=dict(body), group=group, owner=owner or group, priority=priority)
            self.entries[str(next(self._ids))] = entry

    def receive(self, wait_seconds: float = 0.0) -> Message | None:
        deadline = time.monotonic() + wait_seconds
        while True:
            with self._lock:
                now = time.time()
                flying = [e for e in self.entries.values() if not e.dead and e.receipt and e.visible_at > now]
                owners, groups = Counter(e.owner for e in flying), Counter(e.group for e in flying)
                ready = [(k, e) for k, e in self.entries.items() if not e.dead and e.visible_at <= now]
                # As SqliteQueue: the owner with the fewest in flight first, then the group, then the highest
                # priority, then the oldest.
                for msg_id, entry in sorted(
                    ready,
                    key=lambda item: (
                        owners[item[1].owner],
                        groups[item[1].group],
                        -item[1].priority,
                        item[1].visible_at,
                    ),
                ):
                    if entry.receive_count >= self.max_receives:
                        entry.dead = True
                        continue
                    entry.receive_count += 1
                    entry.receipt = uuid.uuid4().hex
                    entry.visible_at = now + self.visibility_timeout
                    return Message(msg_id, dict(entry.body), entry.receive_count, entry.receipt)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def ack(self, message: Message) -> None:
        with self._lock:
            entry = self.entries.get(message.id)
            if entry is not None and entry.receipt == message.handle:
                del self.entries[message.id]

    def set_visibility(self, message: Message, seconds: int) -> None:
        with self._lock:
            entry = self.entries.get(message.id)
            if entry is not None and entry.receipt == message.handle and not entry.dead:
                entry.visible_at = time.time() + seconds

    def release(self, message: Message, delay: int = 0) -> None:
        with self._lock:
            entry = self.entries.get(message.id)
            if entry is not None and entry.receipt == message.handle and not entry.dead:
                entry.visible_at, entry.receipt = time.time() + delay, None
                entry.receive_count = max(entry.receive_count - 1, 0)

    def pending(self) -> list[dict[str, str]]:
        return [e.body for e in self.entries.values() if not e.dead]
