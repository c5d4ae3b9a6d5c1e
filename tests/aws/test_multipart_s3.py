"""Multipart uploads on AWS, over real HTTP to a moto server: the API begins one (CreateMultipartUpload),
presigns UploadPart URLs that the "browser" PUTs each part to, lists what arrived (ListParts), completes
it (CompleteMultipartUpload) and makes the job; another upload is aborted (AbortMultipartUpload). And
the part URLs as S3 needs them: regional virtual-hosted, with the part's size signed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from fastapi.testclient import TestClient

from api.main import create_app
from tests.aws import test_aws_flow
from tests.aws.conftest import settings_for
from tests.aws.test_aws_flow import receive_all
from video_converter.apikeys import KeyStore
from video_converter.runtime import build_runtime
from video_converter.storage.s3 import S3Storage

pytestmark = pytest.mark.aws
MIB = 1024 * 1024

moto_server, resources = test_aws_flow.moto_server, test_aws_flow.resources  # the fixtures


@pytest.fixture
def client(resources, tmp_path: Path) -> Iterator[TestClient]:
    rt = build_runtime(settings_for(resources, tmp_path))
    assert isinstance(rt.uploads, S3Storage)
    _, key = KeyStore(rt.converted).create("multipart")  # AUTH=keys, the default on AWS
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client
    rt.close()


def put_parts(client: TestClient, upload_id: str, data: bytes, part_size: int, numbers: list[int]) -> dict[int, str]:
    """The browser: PUT each part to its presigned URL (application/octet-stream, as a Blob is sent)."""
    urls = client.post(f"/api/uploads/{upload_id}/parts", json={"numbers": numbers})
    assert urls.status_code == 200, urls.text
    etags = {}
    for part in urls.json()["parts"]:
        start = (part["number"] - 1) * part_size
        body = data[start : start + part["size"]]
        assert len(body) == part["size"]
        put = requests.put(part["url"], data=body, headers={"Content-Type": "application/octet-stream"}, timeout=30)
        assert put.status_code == 200, put.text
        etags[part["number"]] = put.headers["ETag"]
    return etags


def test_a_multipart_upload_through_presigned_part_urls(client: TestClient, resources, moto_server: str) -> None:
    data = os.urandom(17 * MIB)  # three parts of 8 MiB (the last 1 MiB)
    begun = client.post(
        "/api/uploads", json={"filename": "trip.mov", "size": len(data), "content_type": "video/quicktime"}
    )
    assert begun.status_code == 201, begun.text
    ticket = begun.json()
    upload_id = ticket["upload_id"]
    assert (ticket["part_size"], ticket["parts"]) == (8 * MIB, 3)

    etags = put_parts(client, upload_id, data, ticket["part_size"], [1, 3])
    view = client.get(f"/api/uploads/{upload_id}").json()  # ListParts: what a resuming client sends
    assert view["state"] == "uploading"
    assert [(p["number"], p["size"], p["etag"]) for p in view["received"]] == [
        (1, 8 * MIB, etags[1]),
        (3, MIB, etags[3]),
    ]
    early = client.post(
        f"/api/uploads/{upload_id}/complete", json={"parts": [{"number": n, "etag": e} for n, e in etags.items()]}
    )
    assert early.status_code == 422  # part 2 is missing
    etags |= put_parts(client, upload_id, data, ticket["part_size"], [2])

    parts = [{"number": n, "etag": e} for n, e in sorted(etags.items())]
    done = client.post(f"/api/uploads/{upload_id}/complete", json={"parts": parts})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "complete"
    stored = resources.s3.get_object(Bucket=resources.upload_bucket, Key=f"{upload_id}/source")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "video/quicktime"

    job = client.post("/api/jobs", json={"upload_id": upload_id, "formats": ["mp3"]})
    assert job.status_code == 201, job.text
    assert job.json()["filename"] == "trip.mov"
    assert len(receive_all(resources, expected=1)) == 1


def test_an_aborted_multipart_upload_leaves_nothing(client: TestClient, resources) -> None:
    data = os.urandom(9 * MIB)
    ticket = client.post("/api/uploads", json={"filename": "a.mp4", "size": len(data)}).json()
    put_parts(client, ticket["upload_id"], data, ticket["part_size"], [1])
    assert resources.s3.list_multipart_uploads(Bucket=resources.upload_bucket).get("Uploads")
    assert client.delete(f"/api/uploads/{ticket['upload_id']}").status_code == 204
    assert not resources.s3.list_multipart_uploads(Bucket=resources.upload_bucket).get("Uploads")
    assert client.get(f"/api/uploads/{ticket['upload_id']}").status_code == 404
    left = resources.s3.list_objects_v2(Bucket=resources.upload_bucket, Prefix=f"{ticket['upload_id']}/")
    # Only the spent ticket's markers: used, and whose it was (so the id never comes back as a new upload)
    upload_id = ticket["upload_id"]
    assert [o["Key"] for o in left.get("Contents", [])] == [f"{upload_id}/owner", f"{upload_id}/ticket-used"]


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
def test_part_urls_are_regional_and_signed_for_their_size(
    aws_env, monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    """Signing is offline: no moto. The browser's Blob sends exactly that Content-Length; S3 refuses any other."""
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    url = urlsplit(S3Storage("my-videos").part_url("job/source", "UPLOAD-ID", 7, 8 * MIB, 600))
    assert (url.scheme, url.hostname, url.path) == ("https", f"my-videos.s3.{region}.amazonaws.com", "/job/source")
    query = parse_qs(url.query)
    assert query["partNumber"] == ["7"] and query["uploadId"] == ["UPLOAD-ID"]
    assert "content-length" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Expires"] == ["600"]


def test_the_bucket_lets_browsers_put_parts_and_read_their_etag() -> None:
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((Path(__file__).resolve().parents[2] / "template.yaml").read_text())
    bucket = template["Resources"]["UploadBucket"]["Properties"]
    (rule,) = bucket["CorsConfiguration"]["CorsRules"]
    assert "PUT" in rule["AllowedMethods"] and "ETag" in rule["ExposedHeaders"]
    aborts = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "AbortIncompleteMultipartUpload" in r]
    assert aborts and aborts[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
