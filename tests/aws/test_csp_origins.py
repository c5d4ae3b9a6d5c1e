"""AWS mode: the page's Content-Security-Policy admits exactly the buckets the browser talks to."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from video_converter.config import Settings
from video_converter.jobs import JobService
from video_converter.runtime import build_runtime


def test_policy_names_the_upload_and_converted_bucket_origins(aws_settings: Settings) -> None:
    rt = build_runtime(aws_settings)
    policy = TestClient(create_app(rt)).get("/").headers["content-security-policy"]
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    upload_url = JobService(rt).uploads.ticket().url
    upload_origin = "/".join(upload_url.split("/", 3)[:3])
    assert aws_settings.upload_bucket in upload_origin
    media = directives["media-src"].split()
    assert media[:2] == ["'self'", "blob:"] and len(media) == 3 and aws_settings.converted_bucket in media[2]
    # the stream player fetches the renditions' byte ranges from the converted bucket itself
    assert directives["connect-src"] == f"'self' {upload_origin} {media[2]}"
    assert directives["img-src"].split() == [media[0], media[2]]
    assert directives["script-src"] == "'self'"
