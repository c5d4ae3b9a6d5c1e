"""A durable queue in one SQLite file (standard library): survives restarts and killed workers.

Semantics follow SQS: a received message is hidden for ``visibility_timeout`` seconds; if the worker
dies, it becomes visible again with a higher receive count; after ``max_receives`` deliveries it moves
to the dead-letter state instead of being delivered again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .base import Message, decode_body, encode_body

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    body          TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'dead')),
    visible_at    REAL    NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    created_at    REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (state, visible_at, id);
"""


class SqliteQueue:
    def __init__(
        self, path: Path, *, visibility_timeout: int = 120, max_receives: int = 4, poll_interval: float = 0.2
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.poll_interval = poll_interval
        self._local = threading.local()
        self._sent = threading.Condition()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def send(self, body: dict[str, str]) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO messages (body, visible_at, created_at) VALUES (?, ?, ?)",
                (encode_body(body), now, now),
            )
        with self._sent:
            self._sent.notify_all()

    def _receive_once(self) -> Message | None:
        now = time.time()
        with self._tx() as db:
            while True:
                row = db.execute(
                    "SELECT id, body, receive_count FROM messages WHERE state = 'ready' AND visible_at <= ? "
                    "ORDER BY visible_at, id LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                msg_id, body, count = row
                if count >= self.max_receives:
                    db.execute("UPDATE messages SET state = 'dead', receipt = NULL WHERE id = ?", (msg_id,))
                    continue
                receipt = uuid.uuid4().hex
                db.execute(
                    "UPDATE messages SET receive_count = ?, visible_at = ?, receipt = ? WHERE id = ?",
                    (count + 1, now + self.visibility_timeout, receipt, msg_id),
                )
                return Message(id=str(msg_id), body=decode_body(body), receive_count=count + 1, handle=receipt)

    def receive(self, wait_seconds: float = 0.0) -> Message | None:
        deadline = time.monotonic() + wait_seconds
        while True:
            message = self._receive_once()
            remaining = deadline - time.monotonic()
            if message is not None or remaining <= 0:
                return message
            with self._sent:
                self._sent.wait(min(self.poll_interval, remaining))

    def ack(self, message: Message) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE id = ? AND receipt = ?", (int(message.id), message.handle))

    def set_visibility(self, message: Message, seconds: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET visible_at = ? WHERE id = ? AND receipt = ? AND state = 'ready'",
                (time.time() + seconds, int(message.id), message.handle),
            )
        if seconds <= 0:
            with self._sent:
                self._sent.notify_all()

    def release(self, message: Message) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET visible_at = ?, receive_count = MAX(receive_count - 1, 0), receipt = NULL "
                "WHERE id = ? AND receipt = ? AND state = 'ready'",
                (time.time(), int(message.id), message.handle),
            )
        with self._sent:
            self._sent.notify_all()

    def counts(self) -> dict[str, int]:
        """Ready, in flight and dead-lettered messages (for the health page and tests)."""
        now = time.time()
        row = (
            self._conn()
            .execute(
                "SELECT "
                "  COALESCE(SUM(state = 'ready' AND visible_at <= ?), 0),"
                "  COALESCE(SUM(state = 'ready' AND visible_at > ?), 0),"
                "  COALESCE(SUM(state = 'dead'), 0) "
                "FROM messages",
                (now, now),
            )
            .fetchone()
        )
        return {"visible": row[0], "in_flight": row[1], "dead": row[2]}
