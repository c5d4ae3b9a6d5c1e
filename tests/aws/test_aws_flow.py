"""The whole AWS-mode flow over real HTTP to a moto server: API -> presigned POST to S3 -> job -> SQS ->
the Lambda handler (in-process, fed the messages SQS delivered) -> job view -> presigned download."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import requests
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from api.main import create_app
from tests.aws.conftest import settings_for
from video_converter.apikeys import KeyStore
from video_converter.aws import AwsConfigError
from video_converter.config import Settings
from video_converter.jobs import JobService
from video_converter.runtime import build_runtime
from video_converter.storage.s3 import S3Storage
from video_converter.worker import start_workers, stop_workers

pytestmark = pytest.mark.aws


@pytest.fixture
def moto_server(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # boto3 (the app's, the handler's, ours) goes here
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def resources(moto_server: str, create_aws_resources):
    return create_aws_resources(boto3.client("s3"), boto3.client("sqs"))


@pytest.fixture
def client(resources, tmp_path: Path) -> Iterator[TestClient]:
    rt = build_runtime(settings_for(resources, tmp_path, max_upload_bytes=50 * 1024 * 1024))
    assert isinstance(rt.uploads, S3Storage)
    _, key = KeyStore(rt.converted).create("the flow")  # AUTH=keys, the default on AWS
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client
    rt.close()


@pytest.fixture
def handler_env(resources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKEND", "aws")
    monkeypatch.setenv("UPLOAD_BUCKET", resources.upload_bucket)
    monkeypatch.setenv("CONVERTED_BUCKET", resources.converted_bucket)
    monkeypatch.setenv("QUEUE_URL", resources.queue_url)
    monkeypatch.setenv("MAX_ATTEMPTS", "3")
    lambda_tmp = tmp_path / "lambda-tmp"
    lambda_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(lambda_tmp))


def receive_all(resources, expected: int | None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """``expected`` messages, or (None) whatever the queue holds now."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while (expected is None or len(messages) < expected) and time.monotonic() < deadline:
        response = resources.sqs.receive_message(
            QueueUrl=resources.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        batch = response.get("Messages", [])
        messages += batch
        if expected is None and not batch:
            break
    if expected is not None:
        assert len(messages) == expected, messages
    return messages


def test_browser_upload_flow(
    client: TestClient,
    resources,
    handler_env,
    convert_app,
    make_sqs_event,
    lambda_context,
    make_clip,
    probe,
    moto_server,
    tmp_path,
):
    clip = make_clip("holiday clip.mp4", seconds=2.0, size="320x240")

    # 1. A ticket: a presigned POST straight to the upload bucket.
    response = client.post("/api/uploads")
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert ticket["url"].startswith(moto_server)
    assert ticket["fields"]["key"] == f"{ticket['upload_id']}/source"

    # 2. The browser POSTs the file to S3 (real HTTP to moto): the fields first, then the file.
    with clip.open("rb") as fh:
        upload = requests.post(
            ticket["url"], data=ticket["fields"], files={"file": (clip.name, fh, "video/mp4")}, timeout=30
        )
    assert upload.status_code in (201, 204), upload.text
    head = resources.s3.head_object(Bucket=resources.upload_bucket, Key=f"{ticket['upload_id']}/source")
    assert head["ContentLength"] == clip.stat().st_size

    # 3. The job: one SQS message per format (480p alone, the thumbnail alone).
    response = client.post(
        "/api/jobs", json={"upload_id": ticket["upload_id"], "filename": clip.name, "formats": ["480p", "thumbnail"]}
    )
    assert response.status_code == 201, response.text
    job = response.json()
    job_id = job["job_id"]
    assert job_id == ticket["upload_id"]
    assert job["status"] == "queued"

    messages = receive_all(resources, expected=2)
    assert sorted(m["Body"] for m in messages) == sorted(
        f'{{"format":"{f}","job_id":"{job_id}"}}' for f in ("480p", "thumbnail")
    )
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in messages)

    # 4. The function gets them as an SQS event.
    result = convert_app.handler(make_sqs_event(messages, resources.queue_arn), lambda_context())
    assert result == {"batchItemFailures": []}
    for message in messages:  # the event source mapping deletes the successes
        resources.sqs.delete_message(QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"])

    # 5. The API reports it done, with presigned download URLs that work.
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "completed", job
    assert job["source"]["width"] == 320 and job["source"]["height"] == 240
    outputs = {o["format"]: o for o in job["outputs"]}
    expected = {
        "480p": ("holiday_clip_480p.mp4", "video/mp4", "h264"),
        "thumbnail": ("holiday_clip_thumbnail.jpg", "image/jpeg", "mjpeg"),
    }
    for format_id, (filename, media_type, codec) in expected.items():
        out = outputs[format_id]
        assert out["status"] == "completed" and out["filename"] == filename
        url = out["download_url"]
        assert url.startswith(f"{moto_server}/{resources.converted_bucket}/{job_id}/")
        download = httpx.get(url, timeout=30)
        assert download.status_code == 200
        assert download.headers["content-type"] == media_type
        disposition = download.headers["content-disposition"]
        assert f'filename="{filename}"' in disposition and f"filename*=UTF-8''{filename}" in disposition
        assert len(download.content) == out["size_bytes"]
        local = tmp_path / filename
        local.write_bytes(download.content)
        stream = next(s for s in probe(local)["streams"] if s["codec_type"] == "video")
        assert stream["codec_name"] == codec
    assert outputs["480p"]["height"] == 240  # never upscaled

    # 6. The stable link redirects to a fresh presigned URL.
    redirect = client.get(f"/api/jobs/{job_id}/outputs/480p", follow_redirects=False)
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location.startswith(f"{moto_server}/{resources.converted_bucket}/{job_id}/holiday_clip_480p.mp4?")
    query = parse_qs(urlsplit(location).query)
    assert "X-Amz-Signature" in query and "response-content-disposition" in query
    assert httpx.get(location, timeout=30).status_code == 200

    # 7. Download all: a ZIP streamed from S3.
    archive = client.get(f"/api/jobs/{job_id}/archive")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as archived:
        assert sorted(archived.namelist()) == sorted(expected[f][0] for f in expected)
        assert archived.testzip() is None

    # 8. Delete: 204, then the job is 404, its presigned links find nothing, both buckets hold nothing of it,
    # and a message that still names it is acked by the function.
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert httpx.get(location, timeout=30).status_code in (403, 404)  # moto says 403; S3 with ListBucket 404
    assert resources.s3.list_objects_v2(Bucket=resources.converted_bucket, Prefix=f"{job_id}/").get("KeyCount") == 0
    left = resources.s3.list_objects_v2(Bucket=resources.upload_bucket, Prefix=f"{job_id}/").get("Contents", [])
    assert [o["Key"] for o in left] == [f"{job_id}/ticket-used"]  # only the mark that the ticket is spent
    late = [{**messages[0], "Attributes": {**messages[0]["Attributes"], "ApproximateReceiveCount": "2"}}]
    assert convert_app.handler(make_sqs_event(late, resources.queue_arn), lambda_context()) == {"batchItemFailures": []}
    assert resources.s3.list_objects_v2(Bucket=resources.converted_bucket, Prefix=f"{job_id}/").get("KeyCount") == 0

    # Nothing left in the queue or its dead-letter queue.
    for url in (resources.queue_url, resources.dlq_url):
        attrs = resources.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0"
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_multipart_job_streams_into_s3(
    client: TestClient, resources, handler_env, convert_app, make_sqs_event, lambda_context, make_clip
):
    """The curl path: `curl -F file=@clip.mp4 -F formats=thumbnail .../api/jobs` in AWS mode."""
    clip = make_clip("curl.mp4", seconds=2.0, size="320x240")
    with clip.open("rb") as fh:
        response = client.post("/api/jobs", files={"file": (clip.name, fh, "video/mp4")}, data={"formats": "thumbnail"})
    assert response.status_code == 201, response.text
    job_id = response.json()["job_id"]
    head = resources.s3.head_object(Bucket=resources.upload_bucket, Key=f"{job_id}/source")
    assert head["ContentLength"] == clip.stat().st_size

    messages = receive_all(resources, expected=1)
    assert convert_app.handler(make_sqs_event(messages, resources.queue_arn), lambda_context()) == {
        "batchItemFailures": []
    }
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "completed", job
    redirect = client.get(f"/api/jobs/{job_id}/outputs/thumbnail", follow_redirects=False)
    assert redirect.status_code == 307
    download = httpx.get(redirect.headers["location"], timeout=30)
    assert download.status_code == 200 and download.content[:3] == b"\xff\xd8\xff"  # a JPEG


def test_missing_settings_are_a_clear_error(aws_env: None, tmp_path: Path):
    settings = Settings(backend="aws", upload_bucket="uploads", data_dir=tmp_path, _env_file=None)
    with pytest.raises(AwsConfigError, match=r"CONVERTED_BUCKET and QUEUE_URL are not set"):
        build_runtime(settings)


def test_polling_worker_converts_from_sqs(aws, aws_settings: Settings, make_clip):
    """`video-converter worker` with BACKEND=aws: worker threads long-poll SQS instead of Lambda."""
    settings = aws_settings.model_copy(update={"workers": 1})
    rt = build_runtime(settings)
    assert rt.poll_wait == 10.0  # SQS bills each receive: long polls
    service = JobService(rt)
    clip = make_clip(seconds=1.0, size="320x240")
    with clip.open("rb") as fh:
        job_id = service.upload_and_create(fh, "worker.mp4", ["thumbnail"]).job_id
    stop = threading.Event()
    threads = start_workers(rt, stop)
    try:
        deadline = time.monotonic() + 60
        while (job := service.documents.view(job_id)).status not in ("completed", "failed", "partial"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
    finally:
        stop_workers(threads, stop)
        rt.close()
    assert job.status == "completed", job
    attrs = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def invocations(resources, convert_app, make_sqs_event, lambda_context) -> Iterator[list[dict[str, Any]]]:
    """Whole -> parts -> join: each round's messages (yielded first), handed to the handler in one batch
    as SQS would, then deleted; until the queue is empty (at most four rounds)."""
    for _ in range(4):
        messages = receive_all(resources, expected=None)
        if not messages:
            return
        yield messages
        result = convert_app.handler(make_sqs_event(messages, resources.queue_arn), lambda_context())
        assert result == {"batchItemFailures": []}
        for message in messages:
            resources.sqs.delete_message(QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_a_long_video_is_converted_in_parts_by_many_invocations(
    client: TestClient, resources, handler_env, convert_app, make_sqs_event, lambda_context, make_clip, monkeypatch
):
    """SEGMENT_SECONDS=2 on a 7 s clip: the first invocation splits it and queues the parts and the parts of
    the sound, each its own invocation (in one batch here, as SQS hands them over); the last of them queues the join."""
    monkeypatch.setenv("SEGMENT_SECONDS", "2")
    clip = make_clip("long.mp4", seconds=7.0, size="320x240", extra=("-g", "25"))
    with clip.open("rb") as fh:
        response = client.post("/api/jobs", files={"file": (clip.name, fh, "video/mp4")}, data={"formats": "360p"})
    assert response.status_code == 201, response.text
    job_id = response.json()["job_id"]

    rounds = []
    for messages in invocations(resources, convert_app, make_sqs_event, lambda_context):
        # fair queue: per owner (the key's), so one client's jobs share its part
        assert all(m["Attributes"].get("MessageGroupId", "").startswith("key:") for m in messages)
        bodies = [json.loads(m["Body"]) for m in messages]
        rounds.append(sorted(b.get("segment", f"{b.get('step', '')}{b.get('part', '')}") for b in bodies))
    sound = [r for r in rounds[1] if r.startswith("audio")]
    parts = len(rounds[1]) - len(sound)  # the parts, and the parts of the sound beside them
    assert rounds[0] == [""] and sound == ["audio0", "audio1", "audio2"] and parts >= 3, rounds
    assert rounds[2] == ["assemble"], rounds
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "completed", job
    assert job["outputs"][0]["segments"] == parts
    listing = resources.s3.list_objects_v2(Bucket=resources.upload_bucket, Prefix=f"{job_id}/segments/")
    assert listing.get("KeyCount", 0) == 0  # the split is gone
    listing = resources.s3.list_objects_v2(Bucket=resources.converted_bucket, Prefix=f"{job_id}/segments/")
    assert listing.get("KeyCount", 0) == 0  # and the encoded parts


def presigned_fetcher(client: TestClient) -> Callable[[str, tuple[int, int] | None], bytes]:
    """A player's requests: the API's playlists through the app, the media by their presigned S3 URLs."""

    def fetch(url: str, byte_range: tuple[int, int] | None) -> bytes:
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        answer = client.get(url, headers=headers) if url.startswith("/") else httpx.get(url, headers=headers)
        assert answer.status_code == (206 if byte_range else 200), (url, answer.status_code)
        return answer.content

    return fetch


def test_the_stream_is_served_with_presigned_urls(
    client: TestClient, resources, handler_env, convert_app, make_sqs_event, lambda_context, make_clip, tmp_path: Path
):
    """A job with hls on AWS: the API writes the playlists and the manifest with presigned S3 URLs of the
    media files, fresh on each request, and the byte ranges come from S3 (moto) as a player asks."""
    from tests.streamcheck import check_manifest, check_stream

    clip = make_clip("stream.mp4", seconds=7.0, size="480x270", rate=25)
    with clip.open("rb") as fh:
        response = client.post("/api/jobs", files={"file": (clip.name, fh, "video/mp4")}, data={"formats": "hls"})
    job_id = response.json()["job_id"]
    messages = receive_all(resources, expected=1)
    assert convert_app.handler(make_sqs_event(messages, resources.queue_arn), lambda_context()) == {
        "batchItemFailures": []
    }
    stream = next(o for o in client.get(f"/api/jobs/{job_id}").json()["outputs"] if o["format"] == "hls")
    assert stream["status"] == "completed", stream

    fetch = presigned_fetcher(client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    check_manifest(fetch, stream["dash_url"], checked)
    media = client.get(f"/api/jobs/{job_id}/stream/video_360p.m3u8").text
    signed = [line for line in media.splitlines() if line.startswith("http")]
    assert signed and all(f"/{resources.converted_bucket}/{job_id}/hls/video_360p.mp4?" in u or
                          f"{resources.converted_bucket}." in u for u in signed)  # fmt: skip
    assert all("X-Amz-Signature=" in u for u in signed)
    again = client.get(f"/api/jobs/{job_id}/stream/video_360p.m3u8").text
    assert again.count("X-Amz-Signature=") == media.count("X-Amz-Signature=")  # signed on each request
    assert client.get(f"/api/jobs/{job_id}/stream/master.m3u8").headers["cache-control"] == "no-store"


def test_a_long_stream_is_converted_in_parts_and_served_presigned(
    client: TestClient, resources, handler_env, convert_app, make_sqs_event, lambda_context, make_clip, monkeypatch,
    tmp_path: Path,
):  # fmt: skip
    """hls on a long video on AWS: split, parts and join each their own invocations, the stream packaged
    by the parts (the playlists name each piece's file in S3) passes the packager's checks through
    presigned S3 URLs, and the encoded parts are gone."""
    from tests.streamcheck import check_manifest, check_stream

    monkeypatch.setenv("SEGMENT_SECONDS", "4")
    clip = make_clip("long-stream.mp4", seconds=9.0, size="480x270", rate=25, extra=("-g", "25"))
    with clip.open("rb") as fh:
        response = client.post("/api/jobs", files={"file": (clip.name, fh, "video/mp4")}, data={"formats": "hls"})
    job_id = response.json()["job_id"]
    steps = [
        sorted(json.loads(m["Body"]).get("step", "") for m in messages)
        for messages in invocations(resources, convert_app, make_sqs_event, lambda_context)
    ]
    assert steps[-1] == ["assemble"] and len(steps) == 3, steps
    stream = next(o for o in client.get(f"/api/jobs/{job_id}").json()["outputs"] if o["format"] == "hls")
    assert stream["status"] == "completed" and stream["segments"] == 3, stream

    fetch = presigned_fetcher(client)
    checked = check_stream(fetch, stream["playlist_url"], tmp_path)
    check_manifest(fetch, stream["dash_url"], checked)
    # cut on the 6 s grid and where each 4 s piece starts, each in its piece's file
    playlist = next(iter(checked.media.values()))
    assert [s.duration for s in playlist.segments] == pytest.approx([4.0, 2.0, 2.0, 1.0], abs=0.05)
    assert [s.uri.split("?")[0].rsplit("/", 1)[-1][-9:-4] for s in playlist.segments] == [
        "00000",
        "00001",
        "00001",
        "00002",
    ]
    listing = resources.s3.list_objects_v2(Bucket=resources.converted_bucket, Prefix=f"{job_id}/segments/")
    assert listing.get("KeyCount", 0) == 0  # the encoded parts are gone
