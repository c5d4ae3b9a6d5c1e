"""Objects in one S3 bucket (boto3): streamed multipart uploads, downloads to a workdir, presigned URLs.

boto3 is imported lazily, when the first client is made, so the core never needs it in local mode.
The client honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_REGION and the usual credential chain
by itself (boto3 does that natively).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..awserrors import error_code
from ..keys import content_disposition
from .base import (
    ByteRange,
    Composed,
    Listed,
    ObjectNotFound,
    Part,
    PartList,
    Readable,
    check_part_number,
    folder_prefix,
    iter_chunks,
    validate_key,
    validate_prefix,
)

# Parts of 8 MiB, at most 4 in flight: a non-seekable stream (an HTTP upload) is buffered one part per
# thread, so one put_stream holds about 32 MiB at most, whatever the file size (4 GiB = 512 parts).
PART_SIZE = 8 * 1024 * 1024
MAX_CONCURRENCY = 4
COMPOSE_CONCURRENCY = 10  # parts of a composed object copied (or uploaded) at once

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
# Conditional writes: 412 means the key exists; 409 means a delete or another write of the key finished
# while this one was in flight, so the answer is unknown and AWS says to retry.
_EXISTS = "PreconditionFailed"
_CONFLICT = "ConditionalRequestConflict"
CONFLICT_ATTEMPTS = 3
_NO_UPLOAD = "NoSuchUpload"  # a multipart upload completed, aborted or never started


def _endpoint_overridden() -> bool:
    """AWS_ENDPOINT_URL(_S3) points boto3 at another server (moto, MinIO): keep its own addressing."""
    return any(os.environ.get(name) for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"))


def _client_config(region: str | None) -> Any:
    from botocore.config import Config

    # Presigned POST and GET URLs go to the browser as they are. By default botocore signs them for the
    # global endpoint (https://BUCKET.s3.amazonaws.com/), which a new bucket answers with a 307 for up
    # to a day (a 400 in regions launched after March 2019): the browser's CORS preflight fails on the
    # redirect and GETs fail with SignatureDoesNotMatch. Virtual-hosted style on the bucket's regional
    # endpoint (https://BUCKET.s3.REGION.amazonaws.com/) works at once, us-east-1 included (it needs
    # us_east_1_regional_endpoint, or botocore keeps the global host there).
    s3 = {} if _endpoint_overridden() else {"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
    return Config(
        region_name=region,
        signature_version="s3v4",
        s3=s3,
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
    )


def make_s3_client() -> Any:
    import boto3

    # A session per client: boto3's default session is not thread-safe to create clients from.
    session = boto3.session.Session()
    # The region is the buckets' (AWS_REGION, set in Lambda and ECS); without one, S3's home region.
    return session.client("s3", config=_client_config(session.region_name or "us-east-1"))


def _is_not_found(exc: Exception) -> bool:
    """A missing key (not a missing bucket: GET says NoSuchBucket; a HEAD answer has no body to tell)."""
    return error_code(exc) in _NOT_FOUND


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

    def create_bytes(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        # S3's conditional write: If-None-Match: * makes the PUT fail if the key exists, atomically.
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key), "Body": bytes(data)}
        if content_type:
            params["ContentType"] = content_type
        attempt = 1
        while True:
            try:
                self.client.put_object(IfNoneMatch="*", **params)
                return True
            except Exception as exc:
                code = error_code(exc)
                if code == _EXISTS:
                    return False
                if code != _CONFLICT or attempt >= CONFLICT_ATTEMPTS:
                    raise
                attempt += 1

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as body:
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

    def folders(self, start_after: str = "", limit: int = 1000) -> list[str]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Delimiter": "/", "MaxKeys": max(1, min(limit, 1000))}
        if start_after:  # past every key of that folder: "/" sorts just before "0"
            params["StartAfter"] = f"{validate_key(start_after)}0"
        page = self.client.list_objects_v2(**params)
        return [str(p["Prefix"]).rstrip("/") for p in page.get("CommonPrefixes", [])]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        response = self._get_object(key)
        with contextlib.closing(response["Body"]) as body:
            data: bytes = body.read()
        return data, str(response["ETag"])

    def replace_bytes(self, key: str, data: bytes, tag: str, content_type: str | None = None) -> bool:
        # S3's conditional write: If-Match makes the PUT fail (412) unless the object still has this ETag,
        # and 404 when it was deleted; 409 (a concurrent write finished meanwhile) is a lost race too.
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key), "Body": bytes(data), "IfMatch": tag}
        if content_type:
            params["ContentType"] = content_type
        try:
            self.client.put_object(**params)
        except Exception as exc:
            if error_code(exc) in (_EXISTS, _CONFLICT) or _is_not_found(exc):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[Listed]:
        found: list[Listed] = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": validate_prefix(prefix)}
        while True:  # pages of 1,000 (plain calls rather than a paginator: tests see each one)
            page = self.client.list_objects_v2(**params)
            found += [Listed(o["Key"], int(o["Size"]), o["LastModified"].timestamp()) for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return found
            params["ContinuationToken"] = page["NextContinuationToken"]

    def delete_prefix(self, prefix: str) -> int:
        keys = [{"Key": item.key} for item in self.list(folder_prefix(prefix))]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if errors := response.get("Errors"):
                raise RuntimeError(f"S3 refused to delete {len(errors)} object(s): {errors[0].get('Message')}")
        return len(keys)

    def _get_object(self, key: str) -> Any:
        """GetObject's response (its Body not read yet); ObjectNotFound when there is no such key."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=validate_key(key))
        except Exception as exc:
            if _is_not_found(exc):
                raise ObjectNotFound(key) from None
            raise

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[Any]:
        response = self._get_object(key)
        with contextlib.closing(response["Body"]) as body:  # botocore's StreamingBody: read(size) in chunks
            yield body

    def download_url(self, key: str, filename: str, media_type: str, expires_in: int) -> str:
        return self._presigned_get(
            key,
            expires_in,
            ResponseContentDisposition=content_disposition(filename),
            ResponseContentType=media_type,
        )

    def _presigned_get(self, key: str, expires_in: int, **params: str) -> str:
        """A presigned GetObject URL: the only request this store signs for others to make."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": validate_key(key), **params}, ExpiresIn=expires_in
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

    # --- ranges and objects composed by copy ------------------------------------------------------------

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=validate_key(key), Range=f"bytes={start}-{start + length - 1}"
            )
        except Exception as exc:
            if _is_not_found(exc):
                raise ObjectNotFound(key) from None
            if error_code(exc) == "InvalidRange":  # starts at or past the end
                return b""
            raise
        with contextlib.closing(response["Body"]) as body:
            data: bytes = body.read()
        return data

    def compose(self, key: str, parts: Composed, content_type: str | None = None) -> int:
        """A multipart upload: a part that is one range is UploadPartCopy (S3 copies it; nothing passes
        through here), any other is assembled in a temporary file and uploaded. Aborted on failure."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key)}
        if content_type:
            params["ContentType"] = content_type
        upload = self.client.create_multipart_upload(**params)["UploadId"]
        try:
            # The parts side by side: S3 copies each in about a second whatever its size, so the join of
            # an hour of video (60 parts) takes seconds, not a minute.
            with ThreadPoolExecutor(max_workers=COMPOSE_CONCURRENCY) as pool:
                made = list(pool.map(lambda item: self._compose_part(key, upload, *item), enumerate(parts, start=1)))
            done = [{"PartNumber": number, "ETag": etag} for number, (etag, _) in enumerate(made, start=1)]
            size = sum(written for _, written in made)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            raise
        return size

    def _compose_part(self, key: str, upload: str, number: int, part: Any) -> tuple[str, int]:
        where = {"Bucket": self.bucket, "Key": key, "UploadId": upload, "PartNumber": number}
        if len(part) == 1 and isinstance(part[0], ByteRange):
            copied: ByteRange = part[0]
            response = self.client.upload_part_copy(
                **where,
                CopySource={"Bucket": self.bucket, "Key": validate_key(copied.key)},
                CopySourceRange=f"bytes={copied.start}-{copied.end - 1}",
            )
            return str(response["CopyPartResult"]["ETag"]), copied.size
        with tempfile.TemporaryFile() as spool:  # a part is never held in memory whole
            for piece in part:
                if isinstance(piece, ByteRange):
                    self._spool_range(piece, spool)
                else:
                    spool.write(piece)
            written = spool.tell()
            spool.seek(0)
            response = self.client.upload_part(**where, Body=spool, ContentLength=written)
        return str(response["ETag"]), written

    def _spool_range(self, piece: ByteRange, spool: Any) -> None:
        response = self.client.get_object(
            Bucket=self.bucket, Key=validate_key(piece.key), Range=f"bytes={piece.start}-{piece.end - 1}"
        )
        with contextlib.closing(response["Body"]) as body:
            for chunk in iter_chunks(body):
                spool.write(chunk)

    # --- multipart uploads: the browser PUTs each part to a presigned UploadPart URL ---

    def start_multipart(self, key: str, part_size: int, content_type: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key)}
        if content_type:
            params["ContentType"] = content_type
        return str(self.client.create_multipart_upload(**params)["UploadId"])

    def part_url(self, key: str, upload_id: str, number: int, size: int, expires_in: int) -> str:
        # ContentLength is signed: S3 refuses a PUT of any other size (SignatureDoesNotMatch), so a part
        # cannot be larger than the upload said; a browser sends a Blob's Content-Length itself.
        url: str = self.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": validate_key(key),
                "UploadId": upload_id,
                "PartNumber": check_part_number(number),
                "ContentLength": size,
            },
            ExpiresIn=expires_in,
        )
        return url

    def put_part(self, key: str, upload_id: str, number: int, stream: Readable) -> Part:
        # UploadPart needs a body of known length: spooled to disk past 8 MiB, never held whole.
        with tempfile.SpooledTemporaryFile(max_size=PART_SIZE) as body:
            size = sum(body.write(chunk) for chunk in iter_chunks(stream))
            body.seek(0)
            try:
                response = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=validate_key(key),
                    UploadId=upload_id,
                    PartNumber=check_part_number(number),
                    Body=body,
                    ContentLength=size,
                )
            except Exception as exc:
                raise ObjectNotFound(key) if error_code(exc) == _NO_UPLOAD else exc from None
        return Part(number, size, str(response["ETag"]))

    def list_parts(self, key: str, upload_id: str) -> PartList:
        parts: PartList = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key), "UploadId": upload_id}
        while True:  # pages of 1,000 parts
            try:
                page = self.client.list_parts(**params)
            except Exception as exc:
                if error_code(exc) == _NO_UPLOAD:
                    raise ObjectNotFound(key) from None
                raise
            parts += [Part(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"])) for p in page.get("Parts", [])]
            if not page.get("IsTruncated"):
                return parts
            params["PartNumberMarker"] = page["NextPartNumberMarker"]

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=validate_key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
            )
        except Exception as exc:
            if error_code(exc) == _NO_UPLOAD:
                raise ObjectNotFound(key) from None
            if error_code(exc) in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise ValueError(f"S3 refused the parts: {error_code(exc)}") from None
            raise

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=validate_key(key), UploadId=upload_id)
        except Exception as exc:
            if error_code(exc) != _NO_UPLOAD:
                raise
