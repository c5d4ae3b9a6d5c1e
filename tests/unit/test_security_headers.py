"""Security headers: a strict Content-Security-Policy on every page, HSTS over HTTPS, and templates
that need nothing inline (the browser test checks Chromium agrees: tests/e2e/test_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.headers import DOCS_POLICY, REDOC_POLICY, content_security_policy, signed_origins
from api.main import create_app
from video_converter.config import Settings
from video_converter.runtime import build_runtime
from video_converter.storage import MemoryStorage

TEMPLATES = Path(__file__).resolve().parents[2] / "api" / "templates"
STRICT = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
JOB = "0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    rt = build_runtime(settings)
    yield TestClient(create_app(rt), raise_server_exceptions=False)
    rt.close()


@pytest.mark.parametrize(
    "path", ["/", f"/jobs/{JOB}", "/jobs/nope", "/api/formats", "/health", "/static/app.css", "/missing"]
)
def test_strict_policy_on_every_response(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["content-security-policy"] == STRICT
    assert response.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in response.headers  # plain HTTP: HSTS would be ignored anyway


def test_hsts_when_the_request_came_over_https(client: TestClient) -> None:
    forwarded = client.get("/", headers={"x-forwarded-proto": "https"})
    assert forwarded.headers["strict-transport-security"] == "max-age=31536000"
    direct = TestClient(client.app, base_url="https://testserver").get("/health")
    assert direct.headers["strict-transport-security"] == "max-age=31536000"
    assert "strict-transport-security" not in client.get("/", headers={"x-forwarded-proto": "http"}).headers


def test_api_docs_are_served_offline_under_a_strict_policy(client: TestClient) -> None:
    docs, redoc = client.get("/docs"), client.get("/redoc")
    assert docs.headers["content-security-policy"] == DOCS_POLICY
    assert redoc.headers["content-security-policy"] == REDOC_POLICY
    for policy in (DOCS_POLICY, REDOC_POLICY):
        assert "script-src 'self';" in policy and "unsafe-inline'; " not in policy.split("style-src")[0]
        assert "http" not in policy and "frame-ancestors 'none'" in policy  # no CDN, no other origin
    assert "'unsafe-inline'" not in DOCS_POLICY
    for page in (docs, redoc):
        assert "<script>" not in page.text and "cdn." not in page.text  # no inline script, nothing remote
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200, asset
    assert "swagger-ui-bundle.js" in docs.text and "redoc.standalone.js" in redoc.text
    assert client.get("/docs/oauth2-redirect").status_code == 404  # no OAuth here
    assert client.get("/openapi.json").headers["content-security-policy"] == STRICT


def test_storage_origins_join_only_the_directives_that_need_them() -> None:
    policy = content_security_policy(
        upload_origins=["https://up.s3.eu-west-1.amazonaws.com"],
        media_origins=["https://out.s3.eu-west-1.amazonaws.com"],
    )
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    # the converted bucket too: the stream player fetches the media files itself
    assert (
        directives["connect-src"]
        == "'self' https://up.s3.eu-west-1.amazonaws.com https://out.s3.eu-west-1.amazonaws.com"
    )
    assert directives["img-src"] == "'self' https://out.s3.eu-west-1.amazonaws.com"
    assert directives["media-src"] == "'self' blob: https://out.s3.eu-west-1.amazonaws.com"  # blob: the picked file
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert "https:" not in directives["default-src"]


class SignsElsewhere(MemoryStorage):
    def upload_form(self, key: str, max_bytes: int, expires_in: int) -> tuple[str, dict[str, str]]:
        return "https://uploads.s3.us-east-1.amazonaws.com/", {"key": key}

    def download_url(self, key: str, filename: str, media_type: str, expires_in: int) -> str:
        return f"https://converted.s3.us-east-1.amazonaws.com/{key}?X-Amz-Signature=abc"


class CannotSign(MemoryStorage):
    def download_url(self, key: str, filename: str, media_type: str, expires_in: int) -> str:
        raise RuntimeError("no credentials")


def test_signed_origins_come_from_the_urls_the_stores_sign(settings: Settings) -> None:
    store = SignsElsewhere()
    assert signed_origins(store, "upload") == ["https://uploads.s3.us-east-1.amazonaws.com"]
    assert signed_origins(store, "download") == ["https://converted.s3.us-east-1.amazonaws.com"]
    assert signed_origins(CannotSign(), "download") == []
    local = build_runtime(settings)
    assert signed_origins(local.uploads, "upload") == signed_origins(local.converted, "download") == []  # 'self'
    local.close()


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_need_nothing_inline(template: str) -> None:
    html = (TEMPLATES / template).read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html), "style attribute"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "javascript:" not in html and "data:" not in html
