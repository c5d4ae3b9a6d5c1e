"""The API behind an HTTPS load balancer (ECS Express Mode, Copilot): the scheme the browser used comes
in X-Forwarded-Proto, and nothing the app sends back may downgrade to http."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from samtranslator.yaml_helper import yaml_parse

from api.main import create_app
from api.server import uvicorn_config
from video_converter.config import Settings
from video_converter.runtime import build_runtime

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[2]
LOAD_BALANCER = ("10.0.1.23", 43210)  # a private address: the ALB, not this host


def deployed_forwarded_allow_ips() -> set[str]:
    """FORWARDED_ALLOW_IPS as the Express stack and the Copilot manifest set it."""
    express = yaml_parse((ROOT / "deploy" / "api-express.yaml").read_text())
    env = express["Resources"]["Service"]["Properties"]["PrimaryContainer"]["Environment"]
    copilot = yaml.safe_load((ROOT / "copilot" / "api" / "manifest.yml").read_text())["variables"]
    return {next(e["Value"] for e in env if e["Name"] == "FORWARDED_ALLOW_IPS"), copilot["FORWARDED_ALLOW_IPS"]}


@pytest.fixture
def app_for(tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """``app_for()``: the app as `video-converter serve` runs it (uvicorn's proxy-header handling
    included), over a local runtime, called from the load balancer's address."""
    runtimes = []

    def make() -> TestClient:
        settings = Settings(data_dir=tmp_path / "data", workers=0, secret_key="k", _env_file=None)
        rt = build_runtime(settings)
        runtimes.append(rt)
        config = uvicorn_config(create_app(rt), settings)
        config.load()
        return TestClient(config.loaded_app, base_url="http://api.internal", client=LOAD_BALANCER)

    yield make
    for rt in runtimes:
        rt.close()


@pytest.fixture
def served(app_for: Callable[[], TestClient], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """With the FORWARDED_ALLOW_IPS the deployments set."""
    (value,) = deployed_forwarded_allow_ips()
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", value)
    return app_for()


def test_redirects_keep_https(served: TestClient):
    response = served.get("/health/", headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"].startswith("https://"), response.headers["location"]


def test_hsts_only_over_https(served: TestClient):
    secure = served.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["strict-transport-security"].startswith("max-age=")
    max_age = re.search(r"max-age=(\d+)", secure.headers["strict-transport-security"])
    assert max_age and int(max_age[1]) >= 180 * 86400
    plain = served.get("/health")
    assert "strict-transport-security" not in plain.headers  # local `make run` stays plain http


def test_pages_link_relatively_and_set_no_cookies(served: TestClient):
    for path in ("/", "/jobs/3f1c2b9e-7d4a-4e8b-9c61-5a2f0d8e4b17"):
        response = served.get(path, headers={"X-Forwarded-Proto": "https"})
        assert response.status_code == 200
        assert "set-cookie" not in response.headers  # nothing to mark Secure: the app sets no cookies
        links = re.findall(r'(?:href|src|action)="([^"]+)"', response.text)
        assert links and not [link for link in links if link.startswith("http:")], links


def test_without_the_setting_uvicorn_would_ignore_the_load_balancer(app_for, monkeypatch: pytest.MonkeyPatch):
    """Why the deployments set FORWARDED_ALLOW_IPS: uvicorn's default trusts only this host."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    client = app_for()
    response = client.get("/health/", headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)
    assert response.headers["location"].startswith("http://")


def test_the_page_links_outputs_through_the_api_redirect():
    """A signed S3 link dies with the task role's session: the page always asks the API for a fresh one."""
    script = (ROOT / "api" / "static" / "job.js").read_text()
    assert not re.search(r"(src|href)\s*[:=]\s*out\.download_url", script)
    assert "src," in script and "href: downloadHref(out)" in script
    # Through the API: the job's own routes, or (signed in with a key) a share link's, both redirecting.
    assert "${linkBase}/outputs/${encodeURIComponent(out.format)}" in script
    assert "let linkBase = apiBase;" in script and "new URL(link.api_url, window.location.href).pathname" in script
