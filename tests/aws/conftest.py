"""AWS mode against moto: fake credentials, buckets, a queue with a dead-letter queue, settings, and the
Lambda handler module (functions/convert is not a package, so it is loaded from its file).

Nothing here reaches real AWS: every test runs inside ``mock_aws()`` (in-process) or against a
``ThreadedMotoServer`` on 127.0.0.1 (tests/aws/test_aws_flow.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from video_converter.config import Settings
from video_converter.ffmpeg import ffmpeg_path

ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = ROOT / "events"
HANDLER_FILE = ROOT / "functions" / "convert" / "app.py"
SEED_SCRIPT = ROOT / "scripts" / "seed_event_job.py"

REGION = "us-east-1"
UPLOAD_BUCKET = "video-converter-uploads-test"
CONVERTED_BUCKET = "video-converter-converted-test"
QUEUE_NAME = "video-converter-ConvertQueue"
DLQ_NAME = "video-converter-ConvertDeadLetterQueue"
MAX_RECEIVE_COUNT = 3

_module_ids = itertools.count()


@dataclass
class AwsResources:
    upload_bucket: str
    converted_bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    s3: Any
    sqs: Any


def create_resources(s3: Any, sqs: Any) -> AwsResources:
    """The SAM template's storage and queue, in miniature: two buckets, a queue redriving to a DLQ."""
    for bucket in (UPLOAD_BUCKET, CONVERTED_BUCKET):
        s3.create_bucket(Bucket=bucket)
    dlq_url = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return AwsResources(UPLOAD_BUCKET, CONVERTED_BUCKET, queue_url, queue_arn, dlq_url, s3, sqs)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event the SQS event source mapping would hand to the function for these received messages
    (``receive_message(..., AttributeNames=["All"])``), in the shape of events/*.json."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes") or {}),
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),  # what SQS sends
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


class FakeContext:
    """The parts of the Lambda context object the handler uses."""

    function_name = "video-converter-convert"
    memory_limit_in_mb = 3008

    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms
        self.aws_request_id = f"req-{next(_module_ids)}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_module(path: Path, name: str) -> ModuleType:
    """A fresh copy of a module that is not in a package (its module-level caches start empty)."""
    spec = importlib.util.spec_from_file_location(f"{name}_{next(_module_ids)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


CRASHING_FFMPEG = "echo 'simulated encoder crash' >&2\nexit 1"


@pytest.fixture
def install_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """``install_ffmpeg(body)``: FFMPEG_PATH points at a ``#!/bin/sh`` script with this body (the
    locator's cache cleared before and after, so the handler picks it up and later tests do not)."""

    def install(body: str) -> Path:
        script = tmp_path / "bin" / "ffmpeg"
        script.parent.mkdir(exist_ok=True)
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
        monkeypatch.setenv("FFMPEG_PATH", str(script))
        ffmpeg_path.cache_clear()
        return script

    yield install
    ffmpeg_path.cache_clear()


def use_fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and a region; no profile, config file or endpoint from the machine leaks in."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and a region (``use_fake_credentials``)."""
    use_fake_credentials(monkeypatch, tmp_path)


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def aws(moto_aws: None) -> AwsResources:
    return create_resources(boto3.client("s3"), boto3.client("sqs"))


def settings_for(resources: AwsResources, tmp_path: Path, **overrides: Any) -> Settings:
    """AWS-mode settings naming these buckets and this queue."""
    return Settings(
        backend="aws",
        upload_bucket=resources.upload_bucket,
        converted_bucket=resources.converted_bucket,
        queue_url=resources.queue_url,
        data_dir=tmp_path / "data",
        workers=0,
        _env_file=None,
        **overrides,
    )


@pytest.fixture
def aws_settings(aws: AwsResources, tmp_path: Path) -> Settings:
    return settings_for(aws, tmp_path)


@pytest.fixture
def function_env(aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> None:
    """The convert function's environment, as template.yaml sets it (FFmpeg from the project venv)."""
    monkeypatch.setenv("BACKEND", "aws")
    monkeypatch.setenv("UPLOAD_BUCKET", aws.upload_bucket)
    monkeypatch.setenv("CONVERTED_BUCKET", aws.converted_bucket)
    monkeypatch.setenv("QUEUE_URL", aws.queue_url)
    monkeypatch.setenv("MAX_ATTEMPTS", str(MAX_RECEIVE_COUNT))
    monkeypatch.setenv("FFMPEG_TIMEOUT", "120")
    monkeypatch.setenv("LOG_LEVEL", "INFO")


@pytest.fixture
def convert_app() -> ModuleType:
    """functions/convert/app.py, freshly loaded (so its per-container cache is empty)."""
    return load_module(HANDLER_FILE, "convert_app")


@pytest.fixture
def seed_script() -> ModuleType:
    return load_module(SEED_SCRIPT, "seed_event_job")


@pytest.fixture
def make_sqs_event() -> Any:
    """``make_sqs_event(received_messages, queue_arn)``: an SQS Lambda event from boto3 messages."""
    return sqs_event


@pytest.fixture
def lambda_context() -> type[FakeContext]:
    """``lambda_context(remaining_ms=...)``: a fake Lambda context object."""
    return FakeContext


@pytest.fixture
def create_aws_resources() -> Any:
    """``create_aws_resources(s3_client, sqs_client)``: the buckets and queues, wherever the clients point."""
    return create_resources
