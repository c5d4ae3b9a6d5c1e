"""AWS mode wiring: S3 for both stores, SQS for the queue. boto3 is only imported by the S3/SQS classes."""

from __future__ import annotations

from .config import Settings
from .jobs import Converter
from .queues.sqs import SqsQueue
from .storage.s3 import S3Storage
from .worker import Stores

_ENV_NAMES = {"upload_bucket": "UPLOAD_BUCKET", "converted_bucket": "CONVERTED_BUCKET", "queue_url": "QUEUE_URL"}


class AwsConfigError(ValueError):
    """AWS mode is missing a setting; the message says which, as a sentence."""


def _require(settings: Settings, *fields: str) -> None:
    missing = [_ENV_NAMES[name] for name in fields if not str(getattr(settings, name) or "").strip()]
    if missing:
        raise AwsConfigError(
            f"BACKEND=aws needs {', '.join(_ENV_NAMES[f] for f in fields)}; "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
            "Set them in the environment (the SAM stack's outputs or SSM parameters name them)."
        )


def build_aws_stores(settings: Settings) -> Stores:
    """The two S3 stores: all a converting worker (the Lambda function) needs."""
    _require(settings, "upload_bucket", "converted_bucket")
    return Stores(
        uploads=S3Storage(settings.upload_bucket.strip()), converted=S3Storage(settings.converted_bucket.strip())
    )


def build_aws_converter(settings: Settings) -> Converter:
    """What the API needs in AWS mode: both buckets and the queue."""
    _require(settings, "upload_bucket", "converted_bucket", "queue_url")
    stores = build_aws_stores(settings)
    return Converter(
        uploads=stores.uploads,
        converted=stores.converted,
        queue=SqsQueue(settings.queue_url.strip()),
        settings=settings,
    )
