"""A durable queue in one SQLite file (standard library): survives restarts and killed workers.

Semantics follow SQS: a received message is hidden for ``visibility_timeout`` seconds; if the worker
dies, it becomes visible again with a higher receive count; after ``max_receives`` deliveries it moves
to the dead-letter state instead of being delivered again.

Fair between owners, then between groups (jobs): of the messages ready now, ``receive`` hands out one
whose owner has the fewest messages in flight, then whose group has, so one client submitting many jobs
never holds every worker while another's job waits, and a job of eight outputs never holds all of its
owner's share while the owner's later job waits; of those, the highest ``priority`` first (a job's quick
work, the thumbnail, MP3 and GIF, before its long encodes), then the oldest. Within a group and a
priority the order stays first in, first out. A message sent without an owner counts its group as its
owner (as before owners).

The file is state that can be lost, never the truth (the status records are): a file that is corrupt
is moved aside and started afresh, and a file deleted or replaced while running is noticed on the next
call and reopened, so the service's reconciliation can send again what was lost.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .base import Message, decode_body, encode_body

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    body          TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'dead')),
    visible_at    REAL    NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    created_at    REAL    NOT NULL,
    group_key     TEXT    NOT NULL DEFAULT '',
    owner_key     TEXT    NOT NULL DEFAULT '',
    priority      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (state, visible_at, id);
"""
# Files made before groups (or owners, or priorities) existed gain the columns (and their indexes) on open.
_GROUP_INDEX = "CREATE INDEX IF NOT EXISTS messages_group ON messages (group_key, state, visible_at)"
_OWNER_INDEX = "CREATE INDEX IF NOT EXISTS messages_owner ON messages (owner_key, state, visible_at)"

# Messages in flight (received, still hidden) of the candidate's owner, or of its group.
_OWNER_IN_FLIGHT = """(
    SELECT COUNT(*) FROM messages AS f
    WHERE f.owner_key = m.owner_key AND f.state = 'ready' AND f.visible_at > :now AND f.receipt IS NOT NULL
)"""
_GROUP_IN_FLIGHT = """(
    SELECT COUNT(*) FROM messages AS f
    WHERE f.group_key = m.group_key AND f.state = 'ready' AND f.visible_at > :now AND f.receipt IS NOT NULL
)"""
# Of the ready messages: the one whose owner has the fewest in flight, then whose group (job) has, then the
# highest priority, then the oldest. Each is its own ORDER BY term: fairness first, so no priority lets
# one job take every worker. The sub-selects use messages_owner and messages_group.
_NEXT = f"""
SELECT m.id, m.body, m.receive_count FROM messages AS m
WHERE m.state = 'ready' AND m.visible_at <= :now
ORDER BY {_OWNER_IN_FLIGHT}, {_GROUP_IN_FLIGHT}, m.priority DESC, m.visible_at, m.id
LIMIT 1
"""  # noqa: S608 (constant SQL, no input in it)


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
        try:
            self._open_schema(self._conn())
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)
            self._open_schema(self._conn())

    @staticmethod
    def _open_schema(conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        if "group_key" not in columns:
            conn.execute("ALTER TABLE messages ADD COLUMN group_key TEXT NOT NULL DEFAULT ''")
        if "owner_key" not in columns:
            conn.execute("ALTER TABLE messages ADD COLUMN owner_key TEXT NOT NULL DEFAULT ''")
            conn.execute("UPDATE messages SET owner_key = group_key")  # each job its own owner, as before
        if "priority" not in columns:
            conn.execute("ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
        conn.execute(_GROUP_INDEX)
        conn.execute(_OWNER_INDEX)
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")

    def _move_aside(self, exc: Exception) -> None:
        """Keep a corrupt file for inspection and start an empty one (what it held is sent again by the
        reconciliation, from the status records)."""
        self._drop_connection()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").rename(f"{aside}{suffix}")
        log.error(
            "the queue file %s could not be read (%s); moved it to %s and started a new one", self.path, exc, aside
        )

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._local.conn = None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            inode = None
        if conn is not None and inode != getattr(self._local, "inode", None):
            # The file was deleted or replaced under us: writing on into the old inode would lose it all.
            log.warning("the queue file %s was removed or replaced; reopening it", self.path)
            self._drop_connection()
            conn = None
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if inode is None:
                self._open_schema(conn)
            self._local.conn, self._local.inode = conn, self.path.stat().st_ino
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

    def send(self, body: dict[str, str], group: str = "", owner: str = "", priority: int = 0) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO messages (body, visible_at, created_at, group_key, owner_key, priority)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (encode_body(body), now, now, group, owner or group, priority),
            )
        with self._sent:
            self._sent.notify_all()

    def _receive_once(self) -> Message | None:
        now = time.time()
        with self._tx() as db:
            while True:
                row = db.execute(_NEXT, {"now": now}).fetchone()
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

    def release(self, message: Message, delay: int = 0) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET visible_at = ?, receive_count = MAX(receive_count - 1, 0), receipt = NULL "
                "WHERE id = ? AND receipt = ? AND state = 'ready'",
                (time.time() + delay, int(message.id), message.handle),
            )
        with self._sent:
            self._sent.notify_all()

    def bodies(self) -> list[dict[str, str]]:
        """The bodies of every message the file holds: ready, in flight or dead-lettered (a dead one is not
        lost: sending it again would only loop a poison message)."""
        rows = self._conn().execute("SELECT body FROM messages").fetchall()
        return [decode_body(row[0]) for row in rows]

    def counts(self) -> dict[str, int]:
        """Ready, in flight and dead-lettered messages (for the health check and tests)."""
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
