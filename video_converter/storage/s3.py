"""Objects in one S3 bucket (boto3): streamed multipart uploads, downloads to a workdir, presigned URLs.

boto3 is imported lazily, when the first client is made, so the core never needs it in local mode.
The client honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_REGION and the usual credential chain
by itself (boto3 does that natively).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..keys import content_disposition
from .base import ObjectNotFound, Readable, validate_key, validate_prefix

# Parts of 8 MiB, at most 4 in flight: a non-seekable stream (an HTTP upload) is buffered one part per
# thread, so one put_stream holds about 32 MiB at most, whatever the file size (4 GiB = 512 parts).
PART_SIZE = 8 * 1024 * 1024
MAX_CONCURRENCY = 4

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes


def _client_config() -> Any:
    from botocore.config import Config

    return Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
    )


def make_s3_client() -> Any:
    import boto3

    # A session per client: boto3's default session is not thread-safe to create clients from.
    return boto3.session.Session().client("s3", config=_client_config())


def _is_not_found(exc: Exception) -> bool:
    """A missing key (not a missing bucket: GET says NoSuchBucket; a HEAD answer has no body to tell)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) in _NOT_FOUND


class _CountingReader:
    """Counts the bytes read through it. It has no ``seek``, so s3transfer reads it once, in order."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self.count += len(chunk)
        return chunk


class S3Storage:
    def __init__(self, bucket: str, client: Any = None) -> None:
        if not bucket:
            raise ValueError("S3Storage needs a bucket name.")
        self.bucket = bucket
        self._client = client

    def __repr__(self) -> str:
        return f"S3Storage({self.bucket!r})"

    @functools.cached_property
    def client(self) -> Any:
        """Created on first use, so tests can start moto first and importing needs no AWS setup."""
        return self._client or make_s3_client()

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_concurrency=MAX_CONCURRENCY,
        )

    @staticmethod
    def _extra(content_type: str | None) -> dict[str, str] | None:
        return {"ContentType": content_type} if content_type else None

    def put_stream(self, key: str, stream: Readable, content_type: str | None = None) -> int:
        reader = _CountingReader(stream)
        self.client.upload_fileobj(
            reader,
            self.bucket,
            validate_key(key),
            ExtraArgs=self._extra(content_type),
            Config=self._transfer_config(),
        )
        return reader.count

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        self.client.upload_file(
            str(path),
            self.bucket,
            validate_key(key),
            ExtraArgs=self._extra(content_type),
            Config=self._transfer_config(),
        )

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key), "Body": bytes(data)}
        if content_type:
            params["ContentType"] = content_type
        self.client.put_object(**params)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=validate_key(key))
        except Exception as exc:
            if _is_not_found(exc):
                raise ObjectNotFound(key) from None
            raise
        with contextlib.closing(response["Body"]) as body:
            data: bytes = body.read()
        return data

    @contextlib.contextmanager
    def local_path(self, key: str, workdir: Path) -> Iterator[Path]:
        path = Path(workdir) / "source"
        try:
            self.client.download_file(self.bucket, validate_key(key), str(path), Config=self._transfer_config())
        except Exception as exc:
            path.unlink(missing_ok=True)
            if _is_not_found(exc):
                raise ObjectNotFound(key) from None
            raise
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def size(self, key: str) -> int | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=validate_key(key))
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise
        return int(response["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=validate_key(key))

    def create(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key), "Body": bytes(data)}
        if content_type:
            params["ContentType"] = content_type
        try:
            self.client.put_object(**params, IfNoneMatch="*")  # S3 conditional write
        except Exception as exc:
            response = getattr(exc, "response", None) or {}
            if str(response.get("Error", {}).get("Code", "")) in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def delete_prefix(self, prefix: str) -> int:
        folder = validate_prefix(prefix)
        deleted = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder)
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if errors := response.get("Errors"):
                    raise RuntimeError(f"S3 refused to delete {len(errors)} object(s): {errors[0].get('Message')}")
                deleted += len(batch)
        return deleted

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[Any]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=validate_key(key))
        except Exception as exc:
            if _is_not_found(exc):
                raise ObjectNotFound(key) from None
            raise
        with contextlib.closing(response["Body"]) as body:  # botocore's StreamingBody: read(size) in chunks
            yield body

    def download_url(self, key: str, filename: str, media_type: str, expires_in: int) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": validate_key(key),
                "ResponseContentDisposition": content_disposition(filename),
                "ResponseContentType": media_type,
            },
            ExpiresIn=expires_in,
        )
        return url

    def upload_form(self, key: str, max_bytes: int, expires_in: int) -> tuple[str, dict[str, str]]:
        # boto3 adds the {"bucket": ...} and exact {"key": ...} conditions itself (the key has no ${filename}).
        post = self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=validate_key(key),
            Fields=None,
            Conditions=[["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_in,
        )
        return post["url"], {str(k): str(v) for k, v in post["fields"].items()}
