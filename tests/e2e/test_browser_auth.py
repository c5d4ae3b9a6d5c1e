"""The page under AUTH=keys in headless Chromium against the real served process: the sign-in, recent jobs
from the server, "Copy share link", and the shared page (read-only, no Delete) in a browser without the
key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.e2e.server import Server
from tests.e2e.test_browser import (  # the same browser, page and helpers as the main browser tests
    DESKTOP,
    JOB_URL,
    browser,
    choose_formats,
    csp_violations,
    page,
    pytestmark,
    shoot,
    wait_until_finished,
)

__all__ = ["browser", "page", "pytestmark"]  # fixtures used by name; the same marks (and Chromium skip)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("browser-keys") / "data"
    with Server(data, workers=2, AUTH="keys", LOG_LEVEL="WARNING") as served:
        yield served


def new_key(server: Server) -> str:
    env = {**os.environ, "DATA_DIR": server.env["DATA_DIR"], "SECRET_KEY": server.env["SECRET_KEY"]}
    command = [sys.executable, "-m", "video_converter.cli", "keys", "create", "--name", "browser"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()[-1]


def sign_in(page: Any, key: str) -> None:
    panel = page.locator("#sign-in")
    sync_api.expect(panel).to_be_visible()
    sync_api.expect(page.locator("#upload-form")).to_be_hidden()  # the form waits behind the sign-in
    page.fill("#sign-in-key", "vck_not_a_key")
    page.locator("#sign-in button[type=submit]").click()
    sync_api.expect(page.locator("#sign-in-error")).to_contain_text("That key was not accepted")
    shoot(page, "sign-in-desktop")
    page.fill("#sign-in-key", key)
    page.locator("#sign-in button[type=submit]").click()
    sync_api.expect(panel).to_have_count(0)
    sync_api.expect(page.locator("#upload-form")).to_be_visible()
    sync_api.expect(page.locator("#sign-out")).to_be_visible()


def test_sign_in_convert_and_share(
    keyed_server: Server, page: Any, browser: Any, make_clip: Callable[..., Path]
) -> None:
    key = new_key(keyed_server)
    page.goto(keyed_server.url + "/")
    sign_in(page, key)
    assert page.evaluate("sessionStorage.getItem('video-converter.api-key')") == key
    assert key not in page.url and page.evaluate("JSON.stringify(localStorage)").find(key) == -1

    page.set_input_files("#file", make_clip("signed in.mp4", seconds=1, size="160x120"))
    choose_formats(page, {"360p", "thumbnail"})
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL, timeout=30_000)
    assert key not in page.url
    assert wait_until_finished(page) == {"360p": "completed", "thumbnail": "completed"}
    # Previews go through a share link of the page's own (a <video> sends no Bearer header) and load.
    poster = page.locator("article[data-format='thumbnail'] img")
    assert "/api/share/" in (poster.get_attribute("src") or "")
    page.wait_for_function("() => document.querySelector(\"article[data-format='thumbnail'] img\").naturalWidth > 0")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("#job-share").click()
    share_url = page.locator("#share-url")
    sync_api.expect(share_url).to_have_value(re.compile(rf"^{re.escape(keyed_server.url)}/share/[A-Za-z0-9_-]+$"))
    url = share_url.input_value()
    assert url.startswith(f"{keyed_server.url}/share/")
    sync_api.expect(page.locator("#share-status")).to_contain_text("cannot delete")
    shoot(page, "job-share-desktop")

    # The recent jobs come from the server (GET /api/jobs), for this key.
    page.goto(keyed_server.url + "/")
    row = page.locator("#recent-list li").first
    sync_api.expect(row.locator("a")).to_have_text("signed in.mp4")
    sync_api.expect(row.locator(".badge")).to_have_attribute("data-status", "completed")
    sync_api.expect(page.locator("#recent-clear")).to_have_count(0)

    # Someone else, without the key: the shared page shows the job and its files, and offers no Delete.
    stranger = browser.new_context(viewport=DESKTOP)
    try:
        tab = stranger.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        violations = csp_violations(tab)
        tab.goto(url)
        sync_api.expect(tab.locator("#job-filename")).to_have_text("signed in.mp4")
        sync_api.expect(tab.locator("#job-status")).to_have_attribute("data-status", "completed")
        sync_api.expect(tab.locator("#job-delete")).to_have_count(0)
        sync_api.expect(tab.locator("#job-share")).to_have_count(0)
        sync_api.expect(tab.locator("#sign-in")).to_have_count(0)
        download = tab.locator("article[data-format='thumbnail'] a.download")
        assert (download.get_attribute("href") or "").startswith("/api/share/")
        tab.wait_for_function("() => document.querySelector(\"article[data-format='thumbnail'] img\").naturalWidth > 0")
        shoot(tab, "job-shared-desktop")
        tab.goto(keyed_server.url + "/")  # the converter itself still asks this browser for a key
        sync_api.expect(tab.locator("#sign-in")).to_be_visible()
        assert not errors and not violations, (errors, violations)
    finally:
        stranger.close()
