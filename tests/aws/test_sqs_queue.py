"""SqsQueue against moto (in-process): what is SQS's own (the queue contract it shares runs over it in
tests/unit/test_queues.py), and the reading of SQS Lambda events."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from video_converter.queues import Message
from video_converter.queues.sqs import SqsQueue, message_from_record

pytestmark = pytest.mark.aws

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
JOB_ID = "3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"


@pytest.fixture
def queue(aws) -> SqsQueue:
    return SqsQueue(aws.queue_url)


def test_the_client_is_created_on_first_use(queue: SqsQueue):
    assert queue._client is None


def test_send_receive_ack(queue: SqsQueue, aws):
    queue.send({"job_id": JOB_ID, "format": "720p"})
    raw = aws.sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=0)["Messages"][0]
    assert json.loads(raw["Body"]) == {"job_id": JOB_ID, "format": "720p"}

    message = queue.receive(wait_seconds=0)
    assert message is not None
    assert message.body == {"job_id": JOB_ID, "format": "720p"}
    assert message.receive_count == 2  # the peek above was the first receive
    assert message.handle and message.id == raw["MessageId"]
    assert queue.receive(wait_seconds=0) is None  # hidden while in flight
    queue.ack(message)
    attrs = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_stale_receipt_handles_are_ignored(queue: SqsQueue):
    queue.send({"job_id": JOB_ID, "format": "gif"})
    message = queue.receive(0)
    assert message is not None
    queue.ack(message)
    queue.set_visibility(message, 0)  # no longer in flight: not an error
    queue.ack(message)  # acking twice: not an error
    queue.set_visibility(Message("x", {}, 1, "not-a-receipt-handle"), 10)


def test_other_errors_are_raised(aws):
    missing = SqsQueue(aws.queue_url.rsplit("/", 1)[0] + "/no-such-queue")
    with pytest.raises(Exception, match=r"(?i)queue"):
        missing.send({"job_id": JOB_ID, "format": "720p"})


def test_wait_is_capped_and_returns_as_soon_as_a_message_is_there(aws):
    queue = SqsQueue(aws.queue_url, wait_cap=50)
    assert queue.wait_cap == 20
    queue.send({"job_id": JOB_ID, "format": "720p"})
    started = time.monotonic()
    assert queue.receive(wait_seconds=120) is not None
    assert time.monotonic() - started < 5


def test_malformed_body_becomes_an_empty_body(queue: SqsQueue, aws):
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="not json at all")
    message = queue.receive(0)
    assert message is not None
    assert message.body == {}  # the worker drops (acks) a message without job_id/format


def records(name: str) -> list[dict[str, Any]]:
    return json.loads((EVENTS_DIR / name).read_text())["Records"]


def test_message_from_record_batch():
    event = json.loads((EVENTS_DIR / "convert_batch.json").read_text())
    pairs = [(record["messageId"], message_from_record(record)) for record in event["Records"]]
    assert [message_id for message_id, _ in pairs] == [r["messageId"] for r in event["Records"]]
    assert [m.body for _, m in pairs] == [
        {"job_id": JOB_ID, "format": "thumbnail"},
        {"job_id": JOB_ID, "format": "mp3"},
    ]
    assert all(m.receive_count == 1 for _, m in pairs)
    assert [m.handle for _, m in pairs] == [r["receiptHandle"] for r in event["Records"]]
    assert all(message_id == m.id for message_id, m in pairs)


def test_message_from_record_last_attempt_and_malformed():
    last = message_from_record(records("convert_last_attempt.json")[0])
    assert last.receive_count == 3 and last.body["format"] == "720p"
    bad = message_from_record(records("malformed_body.json")[0])
    assert bad.body == {}


@pytest.mark.parametrize("body", ["[1, 2]", "null", "", '"text"', "{"])
def test_message_from_record_never_raises_on_a_body(body: str):
    message = message_from_record({"messageId": "m1", "body": body, "receiptHandle": "h", "attributes": {}})
    assert message == Message("m1", {}, 1, "h")


def test_every_sample_event_is_a_well_formed_sqs_event():
    files = sorted(EVENTS_DIR.glob("*.json"))
    assert {f.stem for f in files} >= {"convert_720p", "convert_batch", "convert_last_attempt", "malformed_body"}
    for path in files:
        for record in json.loads(path.read_text())["Records"]:
            assert record["eventSource"] == "aws:sqs"
            assert record["eventSourceARN"].endswith(":video-converter-ConvertQueue")
            assert record["attributes"]["ApproximateReceiveCount"].isdigit()
            assert {"messageId", "receiptHandle", "body", "md5OfBody", "awsRegion"} <= set(record)


def test_the_owner_is_the_message_group(queue: SqsQueue, aws):
    """SQS fair queues: the tenant is the owner, so one client's many jobs share one tenant's part."""
    queue.send({"job_id": JOB_ID, "format": "720p"}, group=JOB_ID, owner="key:alice")
    queue.send({"job_id": JOB_ID, "format": "gif"}, group=JOB_ID)  # no owner: the job is its own
    raw = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId"]
    )["Messages"]
    groups = {json.loads(m["Body"])["format"]: m["Attributes"]["MessageGroupId"] for m in raw}
    assert groups == {"720p": "key:alice", "gif": JOB_ID}
