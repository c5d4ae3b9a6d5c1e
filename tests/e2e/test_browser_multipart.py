"""The page's multipart uploads in headless Chromium against the real served process (local mode): a
throttled upload reloaded at about 40 % resumes when the same file is picked again and sends only the
parts the server does not have; a part whose connection is cut is sent again; Cancel drops the upload."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright import sync_api

from tests.e2e import test_browser
from tests.e2e.server import Server
from tests.e2e.test_browser import DESKTOP, JOB_URL, choose_formats
from tests.e2e.test_browser import pytestmark as browser_marks
from video_converter.ffmpeg import ffmpeg_path
from video_converter.ffmpeg.runner import child_env

pytestmark = browser_marks
PART = 8 * 1024 * 1024  # the server's part size for files under 8 GB
UPLOADS_KEY = "video-converter.uploads"

browser = test_browser.browser  # the fixture: one headless Chromium for the module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("browser-multipart") / "data"
    served = Server(data, workers=0, SECRET_KEY="x", BACKEND="local", LOG_LEVEL="WARNING").start()
    yield served
    served.stop(timeout=15)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" while uploading: yes
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def media_file(path: Path, parts: float) -> Path:
    """A transport stream of about ``parts`` parts: one short MPEG-TS clip repeated (still media, so the
    upload's probe accepts it, and quick to make)."""
    chunk = path.with_suffix(".chunk.ts")
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-f", "mpegts", str(chunk)],
        check=True, timeout=120, env=child_env(),
    )  # fmt: skip
    data = chunk.read_bytes()
    with path.open("wb") as fh:
        for _ in range(int(parts * PART) // len(data)):
            fh.write(data)
    return path


def part_number(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["part"][0])


def throttle(page: Any, bytes_per_second: float) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second},
    )


def saved_upload_id(page: Any) -> str:
    saved = json.loads(page.evaluate(f"localStorage.getItem('{UPLOADS_KEY}')") or "{}")
    (entry,) = saved.values()
    return str(entry["upload_id"])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_a_reload_at_40_percent_resumes_with_only_the_missing_parts(server: Server, page: Any, tmp_path: Path) -> None:
    video = media_file(tmp_path / "long trip.ts", parts=12.5)  # 13 parts: 4 in flight, about 30 % each round
    parts = -(-video.stat().st_size // PART)
    sent: dict[str, list[int]] = {"before": [], "after": []}
    phase = "before"
    page.on("requestfinished", lambda r: sent[phase].append(part_number(r.url)) if r.method == "PUT" else None)
    page.goto(server.url + "/")
    throttle(page, 12 * 1024 * 1024)
    page.set_input_files("#file", str(video))
    choose_formats(page, {"thumbnail"})
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('#upload-progress').value >= 40", timeout=120_000)
    upload_id = saved_upload_id(page)
    page.reload()
    phase = "after"
    received = page.request.get(f"{server.url}/api/uploads/{upload_id}").json()["received"]
    have = {p["number"] for p in received}
    assert have and set(sent["before"]) >= have, (have, sent)  # some parts arrived, and only those sent
    assert len(have) < parts

    page.set_input_files("#file", str(video))  # the same file, picked again
    sync_api.expect(page.locator("#form-warning")).to_contain_text("Convert resumes it")
    choose_formats(page, {"thumbnail"})
    page.click("#submit")
    page.wait_for_url(JOB_URL, timeout=120_000)
    assert sorted(sent["after"]) == sorted(set(range(1, parts + 1)) - have)  # only the missing, once each
    job_id = page.url.rsplit("/", 1)[1]
    assert job_id == upload_id
    stored = Path(server.env["DATA_DIR"]) / "uploads" / upload_id / "source"
    assert sha256(stored) == sha256(video)
    assert page.evaluate(f"localStorage.getItem('{UPLOADS_KEY}')") == "{}"  # nothing left to resume


def test_a_part_whose_connection_is_cut_is_sent_again(server: Server, page: Any, tmp_path: Path) -> None:
    video = media_file(tmp_path / "cut.ts", parts=2.5)
    cuts: list[int] = []

    def cut_once(route: Any) -> None:
        if not cuts:
            cuts.append(part_number(route.request.url))
            route.abort("connectionreset")
        else:
            route.continue_()

    puts: list[int] = []
    page.on("request", lambda r: puts.append(part_number(r.url)) if r.method == "PUT" else None)
    page.goto(server.url + "/")
    page.route(lambda url: "part=2" in url, cut_once)
    page.set_input_files("#file", str(video))
    choose_formats(page, {"thumbnail"})
    page.click("#submit")
    page.wait_for_url(JOB_URL, timeout=120_000)
    assert cuts == [2] and sorted(puts) == [1, 2, 2, 3]  # part 2 twice: cut, then sent again
    stored = Path(server.env["DATA_DIR"]) / "uploads" / page.url.rsplit("/", 1)[1] / "source"
    assert sha256(stored) == sha256(video)


def test_cancel_drops_the_upload(server: Server, page: Any, tmp_path: Path) -> None:
    video = media_file(tmp_path / "cancel.ts", parts=4)
    page.goto(server.url + "/")
    throttle(page, 4 * 1024 * 1024)
    page.set_input_files("#file", str(video))
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('#upload-progress').value >= 5")
    upload_id = saved_upload_id(page)
    with page.expect_request(lambda r: r.method == "DELETE" and upload_id in r.url):
        page.click("#cancel")
    sync_api.expect(page.locator("#form-warning")).to_contain_text("Upload cancelled")
    page.wait_for_function(f"() => localStorage.getItem('{UPLOADS_KEY}') === '{{}}'")
    assert page.request.get(f"{server.url}/api/uploads/{upload_id}").status == 404


def test_a_link_can_be_imported_from_the_page(server: Server, page: Any) -> None:
    """Without IMPORT_ALLOW_PRIVATE a link to this machine is refused, with the server's sentence."""
    page.goto(server.url + "/")
    page.click("#import-submit")
    sync_api.expect(page.locator("#import-error")).to_have_text("Paste a link to a video.")
    page.fill("#import-url", "http://127.0.0.1:9/video.mp4")
    page.click("#import-submit")
    sync_api.expect(page.locator("#import-error")).to_contain_text("private, loopback")
