"""functions/convert/app.handler, in-process against moto, with every sample event in events/."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from tests.aws.conftest import CRASHING_FFMPEG
from video_converter import keys
from video_converter.aws import AwsConfigError
from video_converter.conversion import NOT_MEDIA
from video_converter.ffmpeg.locate import ffmpeg_path
from video_converter.ffmpeg.runner import FFmpeg
from video_converter.model import OutputStatus
from video_converter.outcome import Outcome
from video_converter.presets import PRESETS
from video_converter.records import JobStore
from video_converter.storage.s3 import S3Storage

pytestmark = pytest.mark.aws

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))
JOB_ID = "3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"

# What each format's output must be, probed: (stream type, codec, height or None)
EXPECTED = {
    "720p": ("video", "h264", 240),  # a 240-line source is never upscaled
    "360p": ("video", "h264", 240),
    "thumbnail": ("video", "mjpeg", None),
    "mp3": ("audio", "mp3", None),
}


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def bodies(event: dict[str, Any]) -> list[dict[str, str] | None]:
    out: list[dict[str, str] | None] = []
    for record in event["Records"]:
        try:
            out.append(json.loads(record["body"]))
        except ValueError:
            out.append(None)
    return out


@pytest.fixture
def lambda_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The function's /tmp: tempfile (and so the handler) puts its work directories here."""
    path = tmp_path / "lambda-tmp"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr("tempfile.tempdir", str(path))
    return path


@pytest.fixture
def stores(aws) -> tuple[S3Storage, S3Storage]:
    return S3Storage(aws.upload_bucket), S3Storage(aws.converted_bucket)


@pytest.fixture
def seeded(stores, seed_script: ModuleType, make_clip, function_env: None, lambda_tmp: Path):
    """The fixed job of events/*.json, with a real 2 s 320x240 clip as its original."""
    clip = make_clip(seconds=2.0, size="320x240")
    return seed_script.seed(*stores, clip)


class Invoker:
    """Calls the handler as Lambda would, with a fresh context; ``app`` is the handler's module."""

    def __init__(self, app: ModuleType, context: Any) -> None:
        self.app, self.context = app, context

    def __call__(self, event: dict[str, Any], remaining_ms: int = 900_000) -> dict[str, Any]:
        result: dict[str, Any] = self.app.handler(event, self.context(remaining_ms))
        return result


@pytest.fixture
def invoke(convert_app: ModuleType, lambda_context) -> Invoker:
    return Invoker(convert_app, lambda_context)


@pytest.fixture
def broken_ffmpeg(seeded, install_ffmpeg) -> Path:
    """An ffmpeg that fails the way a crashed encoder does (ffprobe stays the real one)."""
    script: Path = install_ffmpeg(CRASHING_FFMPEG)
    return script


def convert_app_runtime(invoke: Invoker) -> Any:
    runtime = invoke.app._runtime
    assert runtime is not None
    return runtime


def scratch_is_empty(invoke: Invoker) -> bool:
    """The container's scratch folder in /tmp holds nothing after an invocation."""
    return list(convert_app_runtime(invoke).scratch.path.iterdir()) == []


def output_objects(aws) -> list[dict[str, Any]]:
    listing = aws.s3.list_objects_v2(Bucket=aws.converted_bucket, Prefix=f"{JOB_ID}/")
    records = ("job.json", "failure.json", "webhook.json", "summary.json")
    return [o for o in listing.get("Contents", []) if "/status/" not in o["Key"] and not o["Key"].endswith(records)]


def formats(body: dict[str, str]) -> list[str]:
    """The formats a message body names: its format, and those converted with it."""
    return [body["format"], *filter(None, body.get("with", "").split(","))]


def test_sample_events_name_the_seeded_job(seed_script: ModuleType):
    assert seed_script.EVENT_JOB_ID == JOB_ID
    for path in EVENT_FILES:
        for body in bodies(json.loads(path.read_text())):
            if body is not None:
                assert body["job_id"] == JOB_ID
                assert set(formats(body)) <= set(seed_script.EVENT_FORMATS)


@pytest.mark.parametrize("event_file", EVENT_FILES, ids=[p.stem for p in EVENT_FILES])
def test_every_sample_event(event_file: Path, seeded, invoke, stores, aws, probe, tmp_path, lambda_tmp):
    event = json.loads(event_file.read_text())
    jobs = JobStore(stores[1])
    before = {f: jobs.output(JOB_ID, f) for f in seeded.formats}

    result = invoke(event)

    assert result == {"batchItemFailures": []}
    records = event["Records"]
    attempt_of = {
        f: int(r["attributes"]["ApproximateReceiveCount"])
        for r, b in zip(records, bodies(event), strict=True)
        if b
        for f in formats(b)
    }
    asked = list(attempt_of)
    for format_id in seeded.formats:
        record = jobs.output(JOB_ID, format_id)
        if format_id not in asked:
            assert record == before[format_id]  # untouched (all of them for the malformed event)
            continue
        assert record.status is OutputStatus.COMPLETED, record.error
        stored_as = record.same_as or format_id  # a size the clip is too small for is that size's file
        assert record.key == keys.output_key(JOB_ID, seeded.stem, stored_as, PRESETS[format_id].extension)
        assert record.attempts == attempt_of[format_id]
        local = tmp_path / f"downloaded-{format_id}"
        aws.s3.download_file(aws.converted_bucket, record.key, str(local))
        kind, codec, height = EXPECTED[format_id]
        streams = [s for s in probe(local)["streams"] if s["codec_type"] == kind]
        assert streams and streams[0]["codec_name"] == codec
        if height is not None:
            assert streams[0]["height"] == height == record.height
    assert len(output_objects(aws)) == len({jobs.output(JOB_ID, f).key for f in asked})  # each file once
    assert scratch_is_empty(invoke)  # the work directories are gone


def test_malformed_body_is_dropped_without_failure(seeded, invoke, aws, stores):
    assert invoke(load("malformed_body.json")) == {"batchItemFailures": []}
    assert output_objects(aws) == []
    assert JobStore(stores[1]).output(JOB_ID, "720p").status is OutputStatus.QUEUED  # nothing touched


def test_redelivery_is_a_no_op(seeded, invoke, stores, aws, monkeypatch):
    event = load("convert_720p.json")
    assert invoke(event) == {"batchItemFailures": []}
    (first,) = output_objects(aws)
    status_key = keys.status_key(JOB_ID, "720p")
    status_before = stores[1].get_bytes(status_key)

    def must_not_encode(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished output was encoded again")

    monkeypatch.setattr(FFmpeg, "convert", must_not_encode)
    assert invoke(event) == {"batchItemFailures": []}
    (second,) = output_objects(aws)
    assert (second["Key"], second["ETag"], second["LastModified"]) == (
        first["Key"],
        first["ETag"],
        first["LastModified"],
    )
    assert stores[1].get_bytes(status_key) == status_before
    assert JobStore(stores[1]).output(JOB_ID, "720p").status is OutputStatus.COMPLETED


def test_transient_failure_is_reported_for_retry(broken_ffmpeg, invoke, stores, aws, lambda_tmp):
    event = load("convert_720p.json")
    result = invoke(event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    record = JobStore(stores[1]).output(JOB_ID, "720p")
    assert record.status is OutputStatus.QUEUED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.startswith("Attempt 1 failed: FFmpeg failed (exit code 1)")
    assert "simulated encoder crash" in record.error
    assert output_objects(aws) == []
    assert scratch_is_empty(invoke)


def test_last_attempt_failure_is_recorded_not_retried(broken_ffmpeg, invoke, stores, aws):
    assert invoke(load("convert_last_attempt.json")) == {"batchItemFailures": []}
    record = JobStore(stores[1]).output(JOB_ID, "720p")
    assert record.status is OutputStatus.FAILED
    assert record.attempts == 3
    assert record.error is not None and "after 3 attempts" in record.error
    assert "simulated encoder crash" in record.error
    assert output_objects(aws) == []


@pytest.fixture
def mp3_encoder_broken(seeded, install_ffmpeg) -> None:
    """An ffmpeg whose MP3 encoder crashes; everything else goes to the real one."""
    real = ffmpeg_path()
    install_ffmpeg(
        f'case "$*" in *libmp3lame*) echo "simulated mp3 encoder crash" >&2; exit 1;; esac\nexec {real} "$@"'
    )


def test_a_batch_reports_only_the_failed_record(mp3_encoder_broken, invoke, stores):
    event = load("convert_batch.json")  # thumbnail, then mp3
    _, mp3 = event["Records"]
    assert invoke(event) == {"batchItemFailures": [{"itemIdentifier": mp3["messageId"]}]}
    jobs = JobStore(stores[1])
    assert jobs.output(JOB_ID, "thumbnail").status is OutputStatus.COMPLETED
    failed = jobs.output(JOB_ID, "mp3")
    assert failed.status is OutputStatus.QUEUED and "simulated mp3 encoder crash" in (failed.error or "")


def test_unreadable_source_fails_for_good_on_the_first_attempt(
    stores, seed_script, function_env, lambda_tmp, invoke, tmp_path, aws
):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(64 * 1024))
    seed_script.seed(*stores, garbage)
    assert invoke(load("convert_720p.json")) == {"batchItemFailures": []}
    record = JobStore(stores[1]).output(JOB_ID, "720p")
    assert record.status is OutputStatus.FAILED
    assert record.attempts == 1
    assert record.error == "Not converted: the original could not be used (the job's error says why)."
    job_error = JobStore(stores[1]).failure(JOB_ID)  # one job-level sentence, in S3, for the API to show
    assert job_error == NOT_MEDIA  # plain words: FFmpeg's are in the log
    assert output_objects(aws) == []
    assert scratch_is_empty(invoke)


def test_missing_source_fails_for_good(seeded, stores, invoke):
    stores[0].delete(keys.source_key(JOB_ID))
    assert invoke(load("convert_720p.json")) == {"batchItemFailures": []}
    record = JobStore(stores[1]).output(JOB_ID, "720p")
    assert record.status is OutputStatus.FAILED
    assert "missing" in (record.error or "")


def test_an_original_replaced_through_the_ticket_fails_for_good(seeded, stores, invoke, aws, make_clip):
    """S3 lets a second POST with a valid ticket overwrite the original after the job exists: the
    worker sees the size differ from the job's and refuses it without retrying."""
    other = make_clip(seconds=3.0, size="320x240")
    url, fields = stores[0].upload_form(keys.source_key(JOB_ID), 10**9, 600)
    posted = requests.post(url, data=fields, files={"file": ("x.mp4", other.read_bytes())}, timeout=10)
    assert posted.status_code in (201, 204)
    assert stores[0].size(keys.source_key(JOB_ID)) != seeded.source_size
    assert invoke(load("convert_720p.json")) == {"batchItemFailures": []}
    record = JobStore(stores[1]).output(JOB_ID, "720p")
    assert record.status is OutputStatus.FAILED and record.attempts == 1
    assert record.error == "The original was replaced after the job was created; upload it again as a new job."
    assert output_objects(aws) == []
    assert scratch_is_empty(invoke)


def test_seeding_again_resets_the_job(seeded, seed_script, stores, invoke, make_clip):
    """The seed script overwrites its fixed job (job creation would refuse it): new original, new size,
    every output queued again, and the conversion works on the new original."""
    assert invoke(load("convert_720p.json")) == {"batchItemFailures": []}
    jobs = JobStore(stores[1])
    assert jobs.output(JOB_ID, "720p").height == 240
    other = make_clip(seconds=1.0, size="160x120")
    record = seed_script.seed(*stores, other)
    assert jobs.job(JOB_ID).source_size == other.stat().st_size != seeded.source_size
    assert all(jobs.output(JOB_ID, f).status is OutputStatus.QUEUED for f in record.formats)
    assert invoke(load("convert_720p.json")) == {"batchItemFailures": []}
    assert jobs.output(JOB_ID, "720p").height == 120  # never upscaled: the new original's height


def test_unknown_job_is_dropped(function_env, lambda_tmp, invoke, aws):
    assert invoke(load("convert_720p.json")) == {"batchItemFailures": []}  # nothing seeded
    assert output_objects(aws) == []


def test_unexpected_error_is_reported_for_retry(seeded, invoke, convert_app, monkeypatch, lambda_tmp):
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("S3 is having a bad day")

    monkeypatch.setattr(convert_app, "process_message", crash)
    event = load("convert_batch.json")
    result = invoke(event)
    assert result["batchItemFailures"] == [{"itemIdentifier": r["messageId"]} for r in event["Records"]]
    assert scratch_is_empty(invoke)


def test_retry_is_brought_forward_on_the_queue(broken_ffmpeg, invoke, aws, make_sqs_event, convert_app, monkeypatch):
    """Lambda leaves a failed message hidden for the whole visibility timeout; the handler shortens it."""
    monkeypatch.setattr("video_converter.outcome.retry_delay", lambda attempt: 0)
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps({"job_id": JOB_ID, "format": "720p"}))
    received = aws.sqs.receive_message(QueueUrl=aws.queue_url, AttributeNames=["All"])["Messages"]
    result = invoke(make_sqs_event(received, aws.queue_arn))
    assert result == {"batchItemFailures": [{"itemIdentifier": received[0]["MessageId"]}]}
    again = aws.sqs.receive_message(QueueUrl=aws.queue_url, AttributeNames=["All"])["Messages"]
    assert again[0]["MessageId"] == received[0]["MessageId"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_a_full_tmp_is_waited_out_on_the_queue(seeded, invoke, aws, make_sqs_event, convert_app, monkeypatch):
    """A full disk hands the message back for DISK_FULL_WAIT seconds (on SQS the receive stays counted)."""
    monkeypatch.setattr(convert_app, "process_message", lambda *args, **kwargs: Outcome.wait_for_disk(600))
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps({"job_id": JOB_ID, "format": "720p"}))
    received = aws.sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=0)["Messages"]
    result = invoke(make_sqs_event(received, aws.queue_arn))
    assert result == {"batchItemFailures": [{"itemIdentifier": received[0]["MessageId"]}]}
    assert "Messages" not in aws.sqs.receive_message(QueueUrl=aws.queue_url)  # hidden for the wait


def test_ffmpeg_gets_the_remaining_time_minus_a_margin(seeded, invoke, convert_app, monkeypatch):
    seen: list[float] = []

    def spy(rt: Any, message: Any, *, deadline: float) -> Outcome:
        seen.append(deadline - time.monotonic())
        return Outcome.ack()

    monkeypatch.setattr(convert_app, "process_message", spy)
    invoke(load("convert_720p.json"), remaining_ms=100_000)  # 100 s left
    invoke(load("convert_720p.json"), remaining_ms=5_000)  # 5 s left: still the 10 s floor
    assert seen[0] == pytest.approx(100 - convert_app.SAFETY_MARGIN, abs=2)
    assert seen[1] == pytest.approx(convert_app.MIN_TIMEOUT, abs=2)


def test_settings_and_stores_are_built_once_per_container(seeded, invoke, convert_app, aws):
    assert convert_app._runtime is None
    invoke(load("malformed_body.json"))
    runtime = convert_app_runtime(invoke)
    assert (runtime.uploads.bucket, runtime.converted.bucket) == (
        aws.upload_bucket,
        aws.converted_bucket,
    )
    assert runtime.settings.backend == "aws" and runtime.settings.max_attempts == 3
    invoke(load("convert_720p.json"))
    assert convert_app_runtime(invoke) is runtime


def test_leftover_work_directories_are_swept_on_cold_start(seeded, invoke, lambda_tmp):
    for leftover in ("video-converter-123-0badc0de", "video-converter-456-0000beef"):  # killed by a timeout
        (lambda_tmp / leftover / "convert-720p-x").mkdir(parents=True)
        (lambda_tmp / leftover / "convert-720p-x" / "source").write_bytes(b"x" * 1024)
    (lambda_tmp / "video-converter-456-0000beef.lock").write_text("")  # its process is gone: nobody holds it
    other = lambda_tmp / "someone-elses-file"
    other.write_text("keep me")
    (lambda_tmp / "video-converter-of-someone-else").mkdir()  # not a name of ours, though it starts alike
    invoke(load("malformed_body.json"))
    scratch = convert_app_runtime(invoke).scratch
    assert sorted(p.name for p in lambda_tmp.iterdir()) == sorted(
        ["someone-elses-file", "video-converter-of-someone-else", scratch.path.name, scratch.lock.name]
    )


def test_missing_bucket_settings_fail_the_invocation(aws_env, monkeypatch, invoke):
    monkeypatch.setenv("UPLOAD_BUCKET", "uploads")
    monkeypatch.setenv("QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/q")
    monkeypatch.delenv("CONVERTED_BUCKET", raising=False)
    with pytest.raises(AwsConfigError, match="CONVERTED_BUCKET is not set"):
        invoke(load("convert_720p.json"))


def test_seed_script_command_line(aws, seed_script, stores, capsys):
    """`python scripts/seed_event_job.py` with no clip: it makes one, uploads it and writes the records."""
    argv = ["--upload-bucket", aws.upload_bucket, "--converted-bucket", aws.converted_bucket]
    assert seed_script.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["job_id"] == JOB_ID
    assert stores[0].size(keys.source_key(JOB_ID)) > 0
    job = JobStore(stores[1]).job(JOB_ID)
    assert job.formats == seed_script.EVENT_FORMATS
    assert all(JobStore(stores[1]).output(JOB_ID, f).status is OutputStatus.QUEUED for f in job.formats)


def test_an_event_without_records_converts_nothing(seeded, invoke):
    assert invoke({}) == {"batchItemFailures": []}
    assert invoke({"Records": []}) == {"batchItemFailures": []}
