"""AWS mode's parts: S3 for both stores, SQS for the queue. boto3 is only imported by the S3/SQS classes."""

from __future__ import annotations

from typing import Any

from .config import Settings
from .queues.sqs import SqsQueue
from .storage.s3 import S3Storage

_ENV_NAMES = {"upload_bucket": "UPLOAD_BUCKET", "converted_bucket": "CONVERTED_BUCKET", "queue_url": "QUEUE_URL"}


class AwsConfigError(ValueError):
    """AWS mode is missing a setting; the message says which, as a sentence."""


def make_ssm_client() -> Any:
    import boto3

    return boto3.session.Session().client("ssm")


def secure_parameter(name: str) -> str:
    """The decrypted value of an SSM SecureString parameter."""
    response = make_ssm_client().get_parameter(Name=name, WithDecryption=True)
    return str(response["Parameter"]["Value"])


def build_aws_parts(settings: Settings) -> tuple[S3Storage, S3Storage, SqsQueue]:
    """The upload store, the converted store and the queue, or a sentence naming what is not set."""
    missing = [env for name, env in _ENV_NAMES.items() if not str(getattr(settings, name) or "").strip()]
    if missing:
        raise AwsConfigError(
            f"BACKEND=aws needs {', '.join(_ENV_NAMES.values())}; "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
            "Set them in the environment (the SAM stack's outputs or SSM parameters name them)."
        )
    return (
        S3Storage(settings.upload_bucket.strip()),
        S3Storage(settings.converted_bucket.strip()),
        SqsQueue(settings.queue_url.strip()),
    )
