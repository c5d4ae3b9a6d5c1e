"""AWS mode's reconciliation against moto: the dead-letter consumer and the scheduled sweep, through
their handlers in functions/convert/app.py with events shaped like events/*.json."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.aws.conftest import MAX_RECEIVE_COUNT
from video_converter import keys, sweep
from video_converter.model import OutputRecord, OutputStatus, utcnow
from video_converter.records import JobStore
from video_converter.storage.s3 import S3Storage

pytestmark = pytest.mark.aws

JOB_ID = "3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"
VISIBILITY = 5  # VISIBILITY_TIMEOUT of the sweep: lost after 5 s x MAX_ATTEMPTS (3) = 15 s


@pytest.fixture
def job(aws, function_env, seed_script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    """The events' job, seeded (every output queued); its original is a few bytes (nothing converts)."""
    monkeypatch.setenv("VISIBILITY_TIMEOUT", str(VISIBILITY))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not converted in these tests")
    stores = S3Storage(aws.upload_bucket), S3Storage(aws.converted_bucket)
    seed_script.seed(*stores, clip)
    return JobStore(stores[1])


def dead_letter(aws, body: dict[str, str]) -> list[dict[str, Any]]:
    """Send ``body`` and let every receive of it go unanswered (throttled, or a worker killed) until
    SQS moves it to the dead-letter queue; the DLQ's messages as its event source receives them."""
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(body))
    for _ in range(MAX_RECEIVE_COUNT):
        (message,) = aws.sqs.receive_message(QueueUrl=aws.queue_url)["Messages"]
        aws.sqs.change_message_visibility(
            QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    assert "Messages" not in aws.sqs.receive_message(QueueUrl=aws.queue_url)  # moved on this receive
    messages: list[dict[str, Any]] = aws.sqs.receive_message(QueueUrl=aws.dlq_url, AttributeNames=["All"])["Messages"]
    return messages


def dlq_arn(aws) -> str:
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.dlq_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def test_a_dead_lettered_message_fails_its_outputs_with_a_sentence(
    aws, job, convert_app, make_sqs_event, lambda_context
):
    """A message throttled until it was dead-lettered: never run, its outputs are failed with the reason."""
    messages = dead_letter(aws, {"job_id": JOB_ID, "format": "720p", "with": "360p"})
    event = make_sqs_event(messages, dlq_arn(aws))

    assert convert_app.deadletter_handler(event, lambda_context()) == {"batchItemFailures": []}

    expected = sweep.DEAD_LETTERED.format(attempts=MAX_RECEIVE_COUNT)
    for format_id in ("720p", "360p"):
        record = job.output(JOB_ID, format_id)
        assert (record.status, record.error) == (OutputStatus.FAILED, expected)
        assert expected.startswith("It could not be converted: the conversion was attempted 3 times")
    assert job.output(JOB_ID, "mp3").status is OutputStatus.QUEUED  # not named: untouched


def test_a_dead_lettered_message_of_finished_work_changes_nothing(
    aws, job, convert_app, make_sqs_event, lambda_context
):
    done = job.save_output(JOB_ID, OutputRecord(format="mp3").failed("Already failed for its own reason."))
    messages = dead_letter(aws, {"job_id": JOB_ID, "format": "mp3"})
    assert convert_app.deadletter_handler(make_sqs_event(messages, dlq_arn(aws)), lambda_context()) == {
        "batchItemFailures": []
    }
    assert job.output(JOB_ID, "mp3") == done


def test_a_dead_lettered_job_that_finishes_sends_its_webhook(aws, job, monkeypatch: pytest.MonkeyPatch):
    sent: list[str] = []
    monkeypatch.setattr("video_converter.webhooks.notify_if_finished", lambda rt, job_id: sent.append(job_id))
    rt = _runtime(aws, monkeypatch)
    assert sweep.dead_lettered(rt, {"job_id": JOB_ID, "format": "thumbnail"}) == 1
    assert sent == [JOB_ID]


def _runtime(aws, monkeypatch: pytest.MonkeyPatch) -> Any:
    from video_converter.config import Settings
    from video_converter.runtime import build_runtime

    return build_runtime(Settings(_env_file=None, backend="aws"))


def age(job: JobStore, record: OutputRecord, seconds: float) -> None:
    """Store ``record`` as last written ``seconds`` ago (save_output would stamp it now)."""
    old = record.model_copy(update={"updated_at": utcnow() - timedelta(seconds=seconds)})
    job.store.put_bytes(keys.status_key(JOB_ID, record.format), old.model_dump_json().encode(), "application/json")


def queued_bodies(aws) -> list[dict[str, str]]:
    found = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in found]


def test_the_sweep_sends_lost_work_again_and_fails_what_was_lost_too_often(aws, job, convert_app, lambda_context):
    lost = VISIBILITY * MAX_RECEIVE_COUNT + 60
    age(job, job.output(JOB_ID, "720p").started(2), lost)  # processing, silent: its worker died
    age(job, job.output(JOB_ID, "thumbnail"), lost)  # queued, never received: its message went
    age(job, job.output(JOB_ID, "mp3").model_copy(update={"resent": MAX_RECEIVE_COUNT}), lost)  # too often
    age(job, job.output(JOB_ID, "360p"), 5)  # queued just now: may be waiting for a worker

    report = convert_app.sweep_handler({"source": "aws.scheduler"}, lambda_context())

    assert report == {"jobs": 1, "resent": 2, "failed": 1}
    assert sorted(b["format"] for b in queued_bodies(aws)) == ["720p", "thumbnail"]
    for format_id in ("720p", "thumbnail"):
        record = job.output(JOB_ID, format_id)
        assert (record.status, record.resent) == (OutputStatus.QUEUED, 1)
    mp3 = job.output(JOB_ID, "mp3")
    assert mp3.status is OutputStatus.FAILED and mp3.error is not None
    assert mp3.error.startswith(f"It could not be converted: it was sent again {MAX_RECEIVE_COUNT} times")
    assert job.output(JOB_ID, "360p").resent == 0

    again = convert_app.sweep_handler({}, lambda_context())  # the re-sent ones are fresh again
    assert again == {"jobs": 1, "resent": 0, "failed": 0}


def test_the_sweep_reads_only_the_summary_of_a_finished_job(aws, job, monkeypatch: pytest.MonkeyPatch):
    for format_id in ("720p", "360p", "thumbnail", "mp3"):
        job.save_output(JOB_ID, job.output(JOB_ID, format_id).failed("Done with."))
    rt = _runtime(aws, monkeypatch)
    monkeypatch.setattr(type(rt.jobs), "job", lambda self, job_id: pytest.fail("the job record was read"))
    assert sweep.sweep_job(rt, JOB_ID, now=utcnow() + timedelta(days=1)) == (0, 0)


def test_the_sweep_is_bounded_and_goes_on_where_it_stopped(aws, job, monkeypatch: pytest.MonkeyPatch):
    rt = _runtime(aws, monkeypatch)
    other = "6a0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
    rt.converted.put_bytes(f"{other}/job.json", b"{}")  # a folder that is no job the sweep can read
    assert sweep.sweep(rt, limit=1).jobs == 1
    assert json.loads(rt.converted.get_bytes(sweep.CURSOR_KEY)) == {"after": JOB_ID}
    assert sweep.sweep(rt, limit=1).jobs == 1  # the other folder
    assert sweep.sweep(rt, limit=1).jobs == 0  # "sweep/": not a job
    assert sweep.sweep(rt, limit=1).jobs == 0  # nothing after it: from the first again next time
    assert json.loads(rt.converted.get_bytes(sweep.CURSOR_KEY)) == {"after": ""}
