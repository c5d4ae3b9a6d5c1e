"""An unknown address: a page for a browser, the JSON sentence for the API and for scripts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from video_converter.runtime import Runtime

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def client(mem_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(mem_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_browser_gets_a_page_with_a_way_back(client: TestClient) -> None:
    response = client.get("/no/such/page", headers=BROWSER)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Nothing here" in response.text and 'href="/"' in response.text and 'href="/docs"' in response.text
    assert "content-security-policy" in response.headers  # the page's headers, as on every page


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/no/such/page", {}), ("/no/such/page", {"accept": "application/json"}), ("/api/nothing", BROWSER)],
)
def test_the_api_and_scripts_keep_json(client: TestClient, path: str, headers: dict[str, str]) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "Nothing here: check the address."}
