"""Queue semantics (SQS-like): the contract over SqliteQueue and MemoryQueue, the part of it SQS keeps over
SqsQueue too (moto), and SqliteQueue's own."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import boto3
import pytest
from moto import mock_aws

from tests.aws.conftest import use_fake_credentials
from video_converter.queues import MemoryQueue, Message, Queue, SqliteQueue
from video_converter.queues.sqs import SqsQueue

QueueFactory = Callable[..., Queue]


def local_queues(kind: str, tmp_path: Path) -> QueueFactory:
    def factory(visibility_timeout: int = 60, max_receives: int = 4) -> Queue:
        if kind == "sqlite":
            return SqliteQueue(tmp_path / "q.sqlite3", visibility_timeout=visibility_timeout, max_receives=max_receives)
        return MemoryQueue(visibility_timeout=visibility_timeout, max_receives=max_receives)

    return factory


@pytest.fixture(params=["sqlite", "memory"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> QueueFactory:
    """SqliteQueue and MemoryQueue: the whole contract, a settable clock included."""
    return local_queues(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "memory", pytest.param("sqs", marks=pytest.mark.aws)])
def make_any_queue(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[QueueFactory]:
    """The three, SqsQueue (moto, in-process) too, for the part of the contract SQS keeps: SQS has its own
    clock, cannot take a delivery back (release), and neither orders nor groups a standard queue."""
    if request.param != "sqs":
        yield local_queues(request.param, tmp_path)
        return
    use_fake_credentials(monkeypatch, tmp_path)
    with mock_aws():
        sqs = boto3.client("sqs")
        names = iter(range(100))

        def factory(visibility_timeout: int = 60, max_receives: int = 4) -> Queue:
            name = f"contract-{next(names)}"
            dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            redrive = json.dumps({"deadLetterTargetArn": dlq, "maxReceiveCount": max_receives})
            attributes = {"VisibilityTimeout": str(visibility_timeout), "RedrivePolicy": redrive}
            return SqsQueue(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])

        yield factory


def must_receive(queue: Queue) -> Message:
    message = queue.receive()
    assert message is not None
    return message


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable wall clock for the queues' visibility timeouts: ``clock[0] += 11`` moves time on."""
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def test_fifo(make_queue) -> None:
    q = make_queue()
    for i in range(5):
        q.send({"n": str(i)})
    assert [must_receive(q).body["n"] for _ in range(5)] == ["0", "1", "2", "3", "4"]
    assert q.receive() is None


def test_body_round_trip_and_first_delivery(make_any_queue) -> None:
    q = make_any_queue()
    q.send({"job_id": "abc", "format": "720p"})
    m = must_receive(q)
    assert m.body == {"job_id": "abc", "format": "720p"}
    assert m.receive_count == 1
    assert m.handle


def test_receive_hides_until_visibility_timeout(make_queue, clock) -> None:
    q = make_queue(visibility_timeout=30)
    q.send({"n": "1"})
    first = must_receive(q)
    assert q.receive() is None
    clock[0] += 29
    assert q.receive() is None
    clock[0] += 2
    again = must_receive(q)
    assert again.id == first.id
    assert again.receive_count == 2
    assert again.handle != first.handle


def test_ack_deletes(make_any_queue) -> None:
    q = make_any_queue()
    q.send({"n": "1"})
    m = must_receive(q)
    q.ack(m)
    q.set_visibility(m, 0)  # no resurrection through a later call
    assert q.receive() is None


def test_stale_receipt_does_not_ack_redelivery(make_queue, clock) -> None:
    q = make_queue(visibility_timeout=10)
    q.send({"n": "1"})
    old = must_receive(q)
    clock[0] += 11
    new = must_receive(q)
    q.ack(old)  # the first worker wakes up late and acks
    q.set_visibility(old, 0)  # ... or tries to release it
    assert q.receive() is None  # still hidden for the second worker
    clock[0] += 11
    third = must_receive(q)
    assert third.id == new.id and third.receive_count == 3
    q.ack(third)
    clock[0] += 11
    assert q.receive() is None


def test_set_visibility_zero_makes_it_visible_now(make_any_queue) -> None:
    q = make_any_queue(visibility_timeout=60)
    q.send({"n": "1"})
    m = must_receive(q)
    assert m.receive_count == 1
    assert q.receive() is None
    q.set_visibility(m, 0)
    again = must_receive(q)
    assert again.receive_count == 2
    assert again.id == m.id and again.handle != m.handle
    q.set_visibility(again, 300)  # heartbeat: stays hidden
    assert q.receive() is None
    q.ack(again)


def test_release_hands_back_without_counting_the_delivery(make_queue) -> None:
    q = make_queue(max_receives=2)
    q.send({"n": "1"})
    for _ in range(5):  # stopping workers hand it back again and again: never dead-lettered
        message = must_receive(q)
        assert message.receive_count == 1
        q.release(message)
    q.release(message)  # a stale handle changes nothing
    assert must_receive(q).receive_count == 1


def test_release_after_a_delay_hides_the_message_and_counts_no_delivery(make_queue, clock) -> None:
    """A full disk hands the message back for later: not hot-looped, and not an attempt spent."""
    q = make_queue(max_receives=2)
    q.send({"n": "1"})
    for _ in range(3):
        message = must_receive(q)
        assert message.receive_count == 1
        q.release(message, 60)
        clock[0] += 59
        assert q.receive() is None  # still waiting
        clock[0] += 2
    assert must_receive(q).receive_count == 1


def test_release_after_a_delay_hides_the_message(make_any_queue) -> None:
    """SQS too (there the receive stays counted)."""
    q = make_any_queue()
    q.send({"n": "1"})
    q.release(must_receive(q), 600)
    assert q.receive() is None


def test_set_visibility_extends(make_queue, clock) -> None:
    q = make_queue(visibility_timeout=10)
    q.send({"n": "1"})
    m = must_receive(q)
    clock[0] += 8
    q.set_visibility(m, 10)  # heartbeat
    clock[0] += 8
    assert q.receive() is None  # 16 s after receive, still hidden
    clock[0] += 3
    assert must_receive(q).receive_count == 2


def test_dead_letter_after_max_receives(make_queue) -> None:
    q = make_queue(max_receives=3)
    q.send({"n": "poison"})
    counts = []
    for _ in range(3):
        m = must_receive(q)
        assert m.body["n"] == "poison"
        counts.append(m.receive_count)
        q.set_visibility(m, 0)
    assert counts == [1, 2, 3]
    assert q.receive() is None  # the poison message is never delivered again
    q.send({"n": "ok"})
    nxt = must_receive(q)
    assert nxt.body["n"] == "ok"
    q.ack(nxt)
    assert q.receive() is None
    if isinstance(q, SqliteQueue):
        assert q.counts() == {"visible": 0, "in_flight": 0, "dead": 1}
    else:
        assert q.pending() == []


def receive_in_background(
    q: Queue, wait_seconds: float
) -> tuple[threading.Thread, list[Message | None], threading.Event]:
    """``q.receive(wait_seconds)`` on a thread of its own (started), what it got, and an event set when
    that thread has found the queue empty and begun to wait: when it first calls time.sleep or a
    Condition's or Event's wait (a profile hook on that thread alone sees the call)."""
    got: list[Message | None] = []
    waiting = threading.Event()

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if (event == "c_call" and arg is time.sleep) or (
            event == "call" and frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__
        ):
            waiting.set()

    def receive() -> None:
        sys.setprofile(hook)
        try:
            got.append(q.receive(wait_seconds=wait_seconds))
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return thread, got, waiting


def test_wait_wakes_up_when_a_message_arrives(make_any_queue) -> None:
    q = make_any_queue()
    if isinstance(q, SqliteQueue):
        q.poll_interval = 30.0  # only the notification can wake it in time
    t, got, waiting = receive_in_background(q, wait_seconds=10)
    assert waiting.wait(30), "the receiver never began to wait"
    assert got == []  # still waiting: the message arrives during the wait
    sent = time.monotonic()
    q.send({"n": "1"})
    t.join(timeout=10)
    elapsed = time.monotonic() - sent
    assert got and got[0] is not None and got[0].body == {"n": "1"}
    assert elapsed < 2.0


def test_wait_times_out(make_any_queue) -> None:
    q = make_any_queue()
    assert q.receive(wait_seconds=0) is None
    started = time.monotonic()
    assert q.receive(wait_seconds=0.3) is None
    assert 0.25 <= time.monotonic() - started < 2.0


def test_concurrent_receivers_never_share_a_message(make_queue) -> None:
    q = make_queue(visibility_timeout=600)
    for i in range(200):
        q.send({"n": str(i)})
    seen: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while (m := q.receive()) is not None:
                with lock:
                    seen.append(m.body["n"])
                q.ack(m)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    counts = Counter(seen)
    assert len(seen) == 200 and set(counts.values()) == {1}


# --- SqliteQueue only -----------------------------------------------------------------------------


def test_sqlite_survives_restart(tmp_path: Path, clock: list[float]) -> None:
    path = tmp_path / "q.sqlite3"
    q1 = SqliteQueue(path, visibility_timeout=30)
    q1.send({"n": "in-flight"})
    q1.send({"n": "pending"})
    taken = must_receive(q1)
    assert taken.body["n"] == "in-flight"
    del q1  # the process dies without acking

    q2 = SqliteQueue(path, visibility_timeout=30)
    assert q2.counts() == {"visible": 1, "in_flight": 1, "dead": 0}
    assert must_receive(q2).body["n"] == "pending"
    clock[0] += 31
    back = must_receive(q2)
    assert back.body["n"] == "in-flight" and back.receive_count == 2
    q2.ack(must_receive(q2))  # "pending" (its visibility ran out too)
    assert q2.counts()["in_flight"] == 1
    q2.ack(taken)  # the dead worker's receipt is void after the restart too
    assert q2.counts()["in_flight"] == 1


def test_sqlite_counts(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.sqlite3", max_receives=1)
    assert q.counts() == {"visible": 0, "in_flight": 0, "dead": 0}
    q.send({"n": "1"})
    q.send({"n": "2"})
    assert q.counts() == {"visible": 2, "in_flight": 0, "dead": 0}
    m = must_receive(q)
    assert q.counts() == {"visible": 1, "in_flight": 1, "dead": 0}
    q.set_visibility(m, 0)
    assert q.counts() == {"visible": 2, "in_flight": 0, "dead": 0}
    assert must_receive(q).body["n"] == "2"  # ordered by visibility time: 1 became visible later
    assert q.receive() is None  # message 1 had its one delivery: dead-lettered now
    assert q.counts() == {"visible": 0, "in_flight": 1, "dead": 1}


def test_sqlite_set_visibility_on_dead_message_does_not_revive_it(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.sqlite3", max_receives=1)
    q.send({"n": "1"})
    m = must_receive(q)
    q.set_visibility(m, 0)
    assert q.receive() is None  # now dead
    q.set_visibility(m, 0)
    assert q.receive() is None
    assert q.counts()["dead"] == 1


def test_sqlite_two_instances_on_one_file_share_messages(tmp_path: Path) -> None:
    a = SqliteQueue(tmp_path / "q.sqlite3")
    b = SqliteQueue(tmp_path / "q.sqlite3")
    a.send({"n": "1"})
    m = must_receive(b)
    assert a.receive() is None
    a.ack(m)
    assert b.counts() == {"visible": 0, "in_flight": 0, "dead": 0}


def test_receive_shares_the_workers_between_groups(make_queue) -> None:
    """A job of many outputs does not hold every worker while a later job waits (README: scheduling)."""
    q = make_queue()
    for n in range(4):
        q.send({"job": "big", "n": str(n)}, group="big")
    q.send({"job": "small", "n": "0"}, group="small")
    first = must_receive(q)  # both groups idle: the oldest
    second = must_receive(q)  # "big" has one in flight, "small" none
    assert (first.body["job"], second.body["job"]) == ("big", "small")
    assert [must_receive(q).body["n"] for _ in range(3)] == ["1", "2", "3"]  # in order within a group


def test_priority_goes_first_within_a_group_and_after_fairness(make_queue) -> None:
    """A job's quick work before its long encodes; between jobs, fairness first (no priority lets one job
    take every worker), then priority, then the oldest."""
    q = make_queue()
    q.send({"n": "long"}, group="a")
    q.send({"n": "quick"}, group="a", priority=1)
    q.send({"n": "b-long"}, group="b")
    q.send({"n": "b-quick"}, group="b", priority=1)
    order = [must_receive(q).body["n"] for _ in range(4)]
    assert order == ["quick", "b-quick", "long", "b-long"]


def test_priority_is_accepted_by_every_queue(make_any_queue) -> None:
    q = make_any_queue()
    q.send({"n": "1"}, group="a", priority=1)
    assert must_receive(q).body == {"n": "1"}


def test_sqlite_queue_file_deleted_while_running_is_reopened(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.sqlite3")
    q.send({"n": "1"})
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"q.sqlite3{suffix}").unlink(missing_ok=True)
    assert q.receive() is None  # what it held is gone (the service sends it again from the records) ...
    q.send({"n": "2"})  # ... and new messages go to a file that is really there
    assert SqliteQueue(tmp_path / "q.sqlite3").bodies() == [{"n": "2"}]


def test_sqlite_corrupt_file_is_moved_aside_and_started_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "q.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    q = SqliteQueue(path)
    q.send({"n": "1"})
    assert q.bodies() == [{"n": "1"}]
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes().startswith(b"this is not a database")
    assert "moved it to" in caplog.text


def test_sqlite_files_from_before_groups_gain_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "q.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, state TEXT NOT NULL "
        "DEFAULT 'ready', visible_at REAL NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT, "
        "created_at REAL NOT NULL);"
        'INSERT INTO messages (body, visible_at, created_at) VALUES (\'{"n": "old"}\', 0, 0);'
    )
    old.commit()
    old.close()
    q = SqliteQueue(path)
    assert must_receive(q).body == {"n": "old"}
    q.send({"n": "quick"}, priority=1)  # and the priority column
    assert must_receive(q).body == {"n": "quick"}


def test_receive_shares_the_workers_between_owners_then_their_jobs(make_queue) -> None:
    """One client submitting many jobs does not take every worker (README: scheduling): the owner with
    the fewest in flight first, then its job with the fewest, then the oldest."""
    q = make_queue()
    for job in ("a1", "a2", "a3"):  # alice: three jobs of two messages, all sent first
        for n in range(2):
            q.send({"owner": "alice", "job": job, "n": str(n)}, group=job, owner="key:alice")
    q.send({"owner": "bob", "job": "b1", "n": "0"}, group="b1", owner="key:bob")
    q.send({"owner": "bob", "job": "b1", "n": "1"}, group="b1", owner="key:bob")
    got = [must_receive(q).body for _ in range(4)]
    # alice's oldest; then bob (alice has one in flight); then alice's next job, not her first job's second
    # message (her a1 has one in flight, a2 none); then bob again (1 in flight against alice's 2).
    assert [(b["owner"], b["job"], b["n"]) for b in got] == [
        ("alice", "a1", "0"),
        ("bob", "b1", "0"),
        ("alice", "a2", "0"),
        ("bob", "b1", "1"),
    ]
    assert [(b["job"], b["n"]) for b in (must_receive(q).body for _ in range(4))] == [
        ("a3", "0"),
        ("a1", "1"),
        ("a2", "1"),
        ("a3", "1"),
    ]


def test_acked_messages_no_longer_count_against_their_owner(make_queue) -> None:
    q = make_queue()
    for n in range(3):
        q.send({"owner": "alice", "n": str(n)}, group=f"a{n}", owner="key:alice")
    q.send({"owner": "bob", "n": "0"}, group="b0", owner="key:bob")
    first = must_receive(q)
    q.ack(first)  # done: alice has nothing in flight again, and her next is older than bob's
    assert must_receive(q).body == {"owner": "alice", "n": "1"}
    assert must_receive(q).body == {"owner": "bob", "n": "0"}


def test_without_an_owner_each_job_is_its_own_owner(make_queue) -> None:
    q = make_queue()
    for n in range(3):
        q.send({"job": "big", "n": str(n)}, group="big")
    q.send({"job": "small", "n": "0"}, group="small")
    assert [must_receive(q).body["job"] for _ in range(3)] == ["big", "small", "big"]


# The table as files made before owners had it (groups, no owner_key).
_BEFORE_OWNERS = (
    "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, state TEXT NOT NULL "
    "DEFAULT 'ready', visible_at REAL NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT, "
    "created_at REAL NOT NULL, group_key TEXT NOT NULL DEFAULT '')"
)


def test_sqlite_files_from_before_owners_count_each_job_as_its_owner(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "q.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as old, old:
        old.execute(_BEFORE_OWNERS)
        rows = [('{"n": "1"}', "big"), ('{"n": "2"}', "big"), ('{"n": "3"}', "small")]
        old.executemany("INSERT INTO messages (body, visible_at, created_at, group_key) VALUES (?, 0, 0, ?)", rows)
    q = SqliteQueue(path)
    assert [must_receive(q).body["n"] for _ in range(3)] == ["1", "3", "2"]
