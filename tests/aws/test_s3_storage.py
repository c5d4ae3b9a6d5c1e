"""S3Storage against moto (in-process): what is S3's own (multipart uploads, content types, conditional
puts, presigned URLs); the Storage contract runs over it in tests/unit/test_storage.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from video_converter.errors import InvalidRequest
from video_converter.jobs import JobService
from video_converter.runtime import build_runtime
from video_converter.storage.s3 import PART_SIZE, S3Storage

pytestmark = pytest.mark.aws


class NonSeekable:
    """An HTTP-upload-like stream: read() only, and it remembers the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        self.largest_read = max(self.largest_read, size if size >= 0 else 1 << 62)
        return self._buf.read(size)


@pytest.fixture
def store(aws) -> S3Storage:
    return S3Storage(aws.upload_bucket)


def test_client_is_lazy_and_configured(aws):
    store = S3Storage(aws.converted_bucket)
    assert store._client is None
    config = store.client.meta.config
    assert config.signature_version == "s3v4"
    assert config.retries["mode"] == "standard"
    assert store.client is store.client  # made once


def test_put_stream_is_multipart_streamed_and_counted(store: S3Storage, aws):
    data = os.urandom(2 * PART_SIZE + 123_457)  # three parts
    stream = NonSeekable(data)
    size = store.put_stream("job/source", stream, "video/mp4")
    assert size == len(data)
    assert stream.largest_read <= PART_SIZE  # read part by part, never whole
    head = aws.s3.head_object(Bucket=aws.upload_bucket, Key="job/source")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    assert head["ContentType"] == "video/mp4"
    assert hashlib.sha256(store.get_bytes("job/source")).digest() == hashlib.sha256(data).digest()


def test_put_file_with_content_type(store: S3Storage, aws, tmp_path: Path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"\x00video" * 1000)
    store.put_file("job/out_480p.mp4", path, "video/mp4")
    head = aws.s3.head_object(Bucket=aws.upload_bucket, Key="job/out_480p.mp4")
    assert head["ContentType"] == "video/mp4"
    assert store.get_bytes("job/out_480p.mp4") == path.read_bytes()


def test_put_bytes_and_create_bytes_store_the_content_type(store: S3Storage, aws):
    """Round trips, sizes, missing objects and create-only writes are the Storage contract's, run over S3
    too in tests/unit/test_storage.py; here, what S3 keeps beside the bytes."""
    store.put_bytes("job/status/720p.json", b'{"a": 1}', "application/json")
    assert aws.s3.head_object(Bucket=aws.upload_bucket, Key="job/status/720p.json")["ContentType"] == (
        "application/json"
    )
    assert store.create_bytes("job/job.json", b"first", "application/json") is True  # a conditional put
    assert store.create_bytes("job/job.json", b"second") is False  # moto answers 412 PreconditionFailed
    assert aws.s3.head_object(Bucket=aws.upload_bucket, Key="job/job.json")["ContentType"] == "application/json"


class _AtomicS3:
    """put_object as S3 documents conditional writes: If-None-Match: * is checked and the object stored
    in one step, and the losers get 412 PreconditionFailed."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_object(self, *, Key: str, Body: bytes, IfNoneMatch: str, **params: object) -> dict[str, object]:
        from botocore.exceptions import ClientError

        with self._lock:
            if IfNoneMatch == "*" and Key in self.objects:
                error = {"Error": {"Code": "PreconditionFailed", "Condition": "If-None-Match"}}
                raise ClientError(error, "PutObject")
            self.objects[Key] = Body
        return {}


def test_create_bytes_concurrently_has_exactly_one_winner():
    """Not against moto: moto 5.2.5 answers 412 (above) but checks If-None-Match and stores the key in
    separate steps without a lock, so concurrent PUTs there can both win (and one can fail reading a
    body the other closed). Atomicity is S3's; this checks S3Storage turns S3's answers into one True."""
    client = _AtomicS3()
    store = S3Storage("bucket", client)
    start = threading.Barrier(20)

    def create(n: int) -> bool:
        start.wait()
        return store.create_bytes("race/job.json", str(n).encode())

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create, range(20)))
    assert results.count(True) == 1
    assert client.objects == {"race/job.json": str(results.index(True)).encode()}


class _Conflicted:
    """A client whose conditional PUT meets ConditionalRequestConflict ``conflicts`` times, then succeeds."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts, self.calls = conflicts, 0

    def put_object(self, **params: object) -> dict[str, object]:
        from botocore.exceptions import ClientError

        self.calls += 1
        assert params["IfNoneMatch"] == "*"
        if self.calls <= self.conflicts:
            error = {"Error": {"Code": "ConditionalRequestConflict", "Message": "conflict"}}
            raise ClientError(error, "PutObject")
        return {}


def test_create_bytes_retries_a_conditional_conflict():
    """409 means a concurrent delete or write raced this one, not that the key exists: AWS says retry."""
    client = _Conflicted(conflicts=2)
    assert S3Storage("bucket", client).create_bytes("job/job.json", b"x") is True
    assert client.calls == 3
    with pytest.raises(Exception, match="ConditionalRequestConflict"):
        S3Storage("bucket", _Conflicted(conflicts=3)).create_bytes("job/job.json", b"x")


def test_other_errors_are_not_taken_for_missing(aws):
    store = S3Storage("no-such-bucket-here")
    with pytest.raises(Exception, match="NoSuchBucket"):
        store.get_bytes("job/x")


def test_local_path_downloads_into_workdir_and_cleans_up(store: S3Storage, tmp_path: Path):
    store.put_bytes("job/source", b"original bytes")
    with store.local_path("job/source", tmp_path) as path:
        assert path == tmp_path / "source"
        assert path.read_bytes() == b"original bytes"
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_download_url_serves_an_attachment(store: S3Storage):
    store.put_bytes("job/my_clip_480p.mp4", b"mp4 bytes", "application/octet-stream")
    url = store.download_url("job/my_clip_480p.mp4", "my_clip_480p.mp4", "video/mp4", 300)
    query = parse_qs(urlsplit(url).query)
    disposition = query["response-content-disposition"][0]
    assert disposition.startswith('attachment; filename="my_clip_480p.mp4"')
    assert "filename*=UTF-8''my_clip_480p.mp4" in disposition
    assert query["response-content-type"] == ["video/mp4"]
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]

    response = requests.get(url, timeout=10)  # moto answers in-process
    assert response.status_code == 200
    assert response.content == b"mp4 bytes"
    assert response.headers["Content-Type"] == "video/mp4"
    assert 'filename="my_clip_480p.mp4"' in response.headers["Content-Disposition"]


def test_upload_form_is_a_presigned_post_for_the_exact_key(store: S3Storage, aws):
    url, fields = store.upload_form("job/source", 1000, 600)
    assert fields["key"] == "job/source"
    assert {"policy", "x-amz-signature", "x-amz-credential", "x-amz-algorithm", "x-amz-date"} <= set(fields)
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 1, 1000] in conditions
    assert {"key": "job/source"} in conditions  # exact key, no starts-with
    assert {"bucket": aws.upload_bucket} in conditions

    # Like the browser: the fields first, then the file.
    response = requests.post(url, data=fields, files={"file": ("clip.mp4", b"x" * 500, "video/mp4")}, timeout=10)
    assert response.status_code in (201, 204)
    assert store.size("job/source") == 500


def test_too_large_upload_is_refused(store: S3Storage):
    url, fields = store.upload_form("job/source", 100, 600)
    response = requests.post(url, data=fields, files={"file": ("clip.mp4", b"x" * 101)}, timeout=10)
    if response.status_code in (201, 204):
        # moto does not enforce content-length-range (S3 answers 400 EntityTooLarge): the policy carries it.
        policy = json.loads(base64.b64decode(fields["policy"]))
        assert ["content-length-range", 1, 100] in policy["conditions"]
    else:
        assert response.status_code == 400
        assert store.size("job/source") is None


def test_an_oversized_stream_is_refused_and_deleted(aws, aws_settings):
    rt = build_runtime(aws_settings.model_copy(update={"max_upload_bytes": PART_SIZE + 10}))
    stream = NonSeekable(os.urandom(2 * PART_SIZE))
    with pytest.raises(InvalidRequest, match="larger than"):
        JobService(rt).uploads.store("3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17", stream)
    rt.close()
    assert rt.uploads.size("3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17/source") is None
    assert aws.s3.list_multipart_uploads(Bucket=aws.upload_bucket).get("Uploads", []) == []  # aborted


def test_store_needs_a_bucket():
    with pytest.raises(ValueError, match="bucket"):
        S3Storage("")


def test_delete_prefix_deletes_every_page_of_a_folder(store: S3Storage, aws, monkeypatch):
    import video_converter.storage.s3 as s3

    monkeypatch.setattr(s3, "DELETE_BATCH", 2)  # several DeleteObjects calls
    for n in range(5):
        store.put_bytes(f"job1/status/{n}.json", b"{}")
    store.put_bytes("job10/job.json", b"{}")
    assert store.delete_prefix("job1") == 5
    listed = aws.s3.list_objects_v2(Bucket=aws.upload_bucket).get("Contents", [])
    assert [obj["Key"] for obj in listed] == ["job10/job.json"]
    assert store.delete_prefix("job1") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("")


# --- presigned URLs point at the bucket's regional endpoint ---------------------------------------


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1", "ap-southeast-4"])  # ap-southeast-4: after 2019
def test_presigned_urls_use_the_regional_virtual_hosted_endpoint(aws_env, monkeypatch, region: str):
    """The global endpoint (BUCKET.s3.amazonaws.com) answers new buckets with a redirect (a 400 in newer
    regions), which breaks the browser's CORS preflight and the signature. Signing is offline: no moto."""
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    store = S3Storage("my-videos")
    expected = f"my-videos.s3.{region}.amazonaws.com"

    get = urlsplit(store.download_url("job/clip_720p.mp4", "clip_720p.mp4", "video/mp4", 300))
    post_url, fields = store.upload_form("job/source", 1024, 300)
    post = urlsplit(post_url)

    for url in (get, post):
        assert url.scheme == "https"
        assert url.hostname == expected  # never my-videos.s3.amazonaws.com
    assert get.path == "/job/clip_720p.mp4" and post.path == "/"
    assert fields["key"] == "job/source"
    assert parse_qs(get.query)["X-Amz-Credential"][0].split("/")[2] == region  # signed for that region
    assert base64.b64decode(fields["policy"])  # a SigV4 POST policy
    assert fields["x-amz-credential"].split("/")[2] == region


def test_an_endpoint_override_keeps_path_style(aws_env, monkeypatch):
    """AWS_ENDPOINT_URL (moto, MinIO on localhost) has no per-bucket host names."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:5000")
    url = urlsplit(S3Storage("my-videos").download_url("job/a.mp4", "a.mp4", "video/mp4", 300))
    assert (url.scheme, url.netloc, url.path) == ("http", "localhost:5000", "/my-videos/job/a.mp4")


def test_a_poll_of_the_job_document_costs_one_get(aws, aws_settings, make_clip, tmp_path):
    """Every output's record comes from the job's summary: one GET per poll, whatever the formats, and no
    listing for an output in pieces (after the first poll, which reads the job record once)."""
    from tests.aws.test_iam_calls import Recorder, RecordingClient
    from video_converter.documents import JobDocuments
    from video_converter.model import JobRecord, OutputRecord
    from video_converter.records import JobStore
    from video_converter.runtime import build_runtime
    from video_converter.storage.s3 import S3Storage, make_s3_client

    writer = JobStore(S3Storage(aws.converted_bucket))  # the workers
    job_id = "3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"
    formats = ["720p", "480p", "360p", "webm", "mp3", "gif", "thumbnail"]
    writer.save_job(
        JobRecord(job_id=job_id, filename="a.mp4", stem="a", formats=formats, source_key="k", source_size=1)
    )
    for format_id in formats:
        writer.save_output(job_id, OutputRecord(format=format_id))
    writer.save_output(job_id, OutputRecord(format="720p").started(1).segmented(3))  # in pieces
    recorder = Recorder(role="api")
    rt = build_runtime(aws_settings)  # the API's
    rt.converted = S3Storage(aws.converted_bucket, client=RecordingClient(make_s3_client(), recorder))
    documents = JobDocuments(rt)
    documents.view(job_id)  # the first poll reads the job record too (kept: it never changes)
    recorder.calls.clear()

    view = documents.view(job_id)

    assert [c.method for c in recorder.calls] == ["get_object"]
    assert recorder.calls[0].kwargs["Key"] == f"{job_id}/summary.json"
    assert [o.status.value for o in view.outputs] == ["processing"] + ["queued"] * 6
    rt.close()


def test_replace_bytes_writes_only_over_the_version_read(store: S3Storage):
    store.put_bytes("job/summary.json", b"1")
    data, tag = store.get_tagged("job/summary.json")
    assert data == b"1"
    assert store.replace_bytes("job/summary.json", b"2", tag) is True
    assert store.replace_bytes("job/summary.json", b"3", tag) is False  # another writer came in between
    assert store.get_bytes("job/summary.json") == b"2"
    assert store.replace_bytes("gone/summary.json", b"3", tag) is False  # deleted meanwhile
    assert store.size("gone/summary.json") is None


def test_folders_lists_top_level_folders_after_a_cursor_in_one_call(store: S3Storage):
    for key in ("a/job.json", "a/status/x.json", "b/job.json", "b.c/x", "c/job.json"):
        store.put_bytes(key, b"{}")
    assert store.folders() == ["a", "b.c", "b", "c"]  # in key order: "b.c/" before "b/"
    assert store.folders(limit=2) == ["a", "b.c"]
    assert store.folders("b.c", limit=2) == ["b", "c"]
