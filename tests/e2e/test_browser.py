"""The web UI in headless Chromium against the real served process: upload, live progress, previews,
downloads, failure messages and the recent-jobs list.

Screenshots of the pages go to $UI_SCREENSHOT_DIR (default: the system temp dir) as ui-*.png.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright import sync_api

from tests.e2e.server import Server, free_port

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium")  # any Chromium or Chrome
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_UPLOAD_BYTES = 3_000_000  # small, so the "too large" check needs only a small file
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
JOB_URL = re.compile(r"/jobs/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    # Skipped only on a developer machine without Chromium; CI sets REQUIRE_BROWSER so they fail instead.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("REQUIRE_BROWSER"),
        reason=f"no Chromium at {CHROMIUM} (`make browser` installs it; CI requires it)",
    ),
]


def screenshot_dir() -> Path:
    path = Path(os.environ.get("UI_SCREENSHOT_DIR") or tempfile.gettempdir())
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("browser") / "data"
    served = Server(
        data, workers=2, SECRET_KEY="x", BACKEND="local", MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES), LOG_LEVEL="WARNING"
    ).start()
    yield served
    assert served.proc is not None
    if served.proc.poll() is None:
        assert served.stop(timeout=15) == 0, served.log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (own localStorage) per test; uncaught page errors fail the test."""
    with checked_page(browser, DESKTOP) as tab:
        yield tab


@contextmanager
def checked_page(browser: Any, viewport: dict[str, int], timeout: float = 15_000) -> Iterator[Any]:
    """A tab in a fresh profile at ``viewport``; JavaScript errors or policy reports on it fail the test."""
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(timeout)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    violations = csp_violations(tab)
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not violations, f"Content-Security-Policy violations: {violations}"


def csp_violations(tab: Any) -> list[str]:
    """Chromium reports each thing the Content-Security-Policy blocked on the console ("Refused to load
    ...", "Applying inline style violates ..."): every message that names the policy."""
    seen: list[str] = []
    tab.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    return seen


def choose_formats(page: Any, wanted: set[str]) -> None:
    for box in page.locator("input[name=formats]").all():
        box.set_checked(box.get_attribute("value") in wanted)


def wait_until_finished(page: Any, timeout: float = 90_000) -> dict[str, str]:
    """Wait for the job page to show every output card finished; returns {format: status}."""
    page.wait_for_function(
        """() => {
            const cards = [...document.querySelectorAll("article[data-format]")];
            return cards.length > 0 && cards.every((c) => ["completed", "failed"].includes(c.dataset.status))
                && ["completed", "failed", "partial"].includes(document.querySelector("#job-status").dataset.status);
        }""",
        timeout=timeout,
    )
    return page.eval_on_selector_all(
        "article[data-format]", "cards => Object.fromEntries(cards.map(c => [c.dataset.format, c.dataset.status]))"
    )


def shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"ui-{name}.png"), full_page=True)


def test_upload_convert_preview_and_download(
    server: Server, page: Any, make_clip: Callable[..., Path], probe: Callable[[Path], dict[str, Any]], tmp_path: Path
) -> None:
    clip = make_clip("beach day.mp4", seconds=3, size="320x240")
    assert clip.stat().st_size < MAX_UPLOAD_BYTES
    page.goto(server.url + "/")
    shoot(page, "upload-desktop")

    submit = page.locator("#submit")
    sync_api.expect(submit).to_be_disabled()  # no file yet
    sync_api.expect(page.locator("input[name=formats][value='720p']")).to_be_checked()  # a default
    page.set_input_files("#file", clip)
    sync_api.expect(page.locator("#file-summary")).to_contain_text("beach day.mp4")
    # The page reads the picked video's size locally: a 320x240 video gives no 360p or larger.
    for format_id in ("1080p", "720p", "480p", "360p", "webm"):
        note = page.locator(f"label.format:has(input[value='{format_id}']) .format__size-note")
        sync_api.expect(note).to_have_text("Kept at 240p: your video is 240p (never upscaled).")
    sync_api.expect(page.locator("label.format:has(input[value='mp3']) .format__size-note")).to_be_hidden()
    shoot(page, "upload-sizes-desktop")
    choose_formats(page, set())
    sync_api.expect(submit).to_be_disabled()
    sync_api.expect(page.locator("#submit-hint")).to_have_text("Pick at least one format.")
    choose_formats(page, {"480p", "mp3", "thumbnail"})
    sync_api.expect(submit).to_be_enabled()

    # Hold the job creation back, to see the upload's progress bar at 100 % before the page moves on.
    held: list[Any] = []
    page.route("**/api/jobs", lambda route: held.append(route) if route.request.method == "POST" else route.fallback())
    submit.click()
    progress = page.locator("#upload-progress")
    sync_api.expect(progress).to_be_visible()
    sync_api.expect(progress).to_have_accessible_name(re.compile("Uploading beach day.mp4"))
    sync_api.expect(progress).to_have_js_property("value", 100)
    sync_api.expect(page.locator("#upload-progress-text")).to_contain_text("Upload complete")
    for _ in range(100):  # the job request follows the upload; give the route handler a moment to see it
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_url(JOB_URL, timeout=30_000)
    job_id = page.url.rsplit("/", 1)[-1]

    sync_api.expect(page.locator("#job-filename")).to_have_text("beach day.mp4")
    cards = page.locator("article[data-format]")
    sync_api.expect(cards).to_have_count(3)
    # Each card's progress bar is labelled for screen readers. The page hides the bar once a conversion
    # finishes (which can be before this line runs), so check the label itself, not the accessible name
    # of what may already be hidden.
    for format_id, label in (("480p", "MP4 480p"), ("mp3", "MP3"), ("thumbnail", "Thumbnail")):
        bar = page.locator(f"article[data-format='{format_id}'] progress")
        sync_api.expect(bar).to_have_attribute("aria-label", f"{label} conversion progress")

    statuses = wait_until_finished(page)
    assert statuses == {"480p": "completed", "mp3": "completed", "thumbnail": "completed"}, page.content()
    sync_api.expect(page.locator("#job-status")).to_have_attribute("data-status", "completed")
    sync_api.expect(page.locator("#source")).to_contain_text("320 \u00d7 240")
    sync_api.expect(page.locator("#source")).to_contain_text("H.264")

    video_card = page.locator("article[data-format='480p']")
    video = video_card.locator("video")
    sync_api.expect(video).to_have_count(1)
    assert video.get_attribute("src"), "the video preview has no src"
    assert video.get_attribute("controls") is not None
    sync_api.expect(video_card).to_contain_text("320 \u00d7 240")
    sync_api.expect(page.locator("article[data-format='mp3'] audio")).to_have_count(1)
    image = page.locator("article[data-format='thumbnail'] img")
    sync_api.expect(image).to_have_count(1)
    assert image.get_attribute("loading") == "lazy"
    # Before Play the video shows the job's thumbnail (its own first frame until that is ready).
    sync_api.expect(video).to_have_attribute("poster", f"/api/jobs/{job_id}/outputs/thumbnail")
    image.scroll_into_view_if_needed()  # previews load lazily: only once they are near the view
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=15_000)
    assert image.evaluate("img => img.naturalWidth") == 320

    shoot(page, "job-desktop")
    page.set_viewport_size(PHONE)
    shoot(page, "job-phone")
    page.set_viewport_size(DESKTOP)

    link = video_card.locator("a.download")
    sync_api.expect(link).to_contain_text("Download")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "beach_day_480p.mp4"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    streams = {s["codec_type"]: s for s in probe(saved)["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert streams["video"]["height"] == 240  # the source is 240 high and is never upscaled
    assert streams["audio"]["codec_name"] == "aac"

    # The API agrees with what the page showed.
    assert httpx.get(f"{server.url}/api/jobs/{job_id}").json()["status"] == "completed"


def test_client_checks_failed_outputs_and_recent_jobs(
    server: Server, page: Any, tmp_path: Path, make_clip: Callable[..., Path]
) -> None:
    page.goto(server.url + "/")
    sync_api.expect(page.locator("#recent")).to_be_hidden()  # a fresh browser has no history

    # Drag and drop: a dropped file is taken like a picked one.
    transfer = page.evaluate_handle(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["not really a video"], "dropped.mov", { type: "video/quicktime" }));
            return data;
        }"""
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event("#dropzone", event, {"dataTransfer": transfer})
    sync_api.expect(page.locator("#file-summary")).to_contain_text("dropped.mov")
    assert page.evaluate("document.querySelector('#file').files[0].name") == "dropped.mov"
    sync_api.expect(page.locator("#submit")).to_be_enabled()

    too_big = tmp_path / "huge.mp4"
    too_big.write_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1))
    page.set_input_files("#file", too_big)
    sync_api.expect(page.locator("#file-error")).to_contain_text("larger than the")  # next to the file
    sync_api.expect(page.locator("#file-error")).to_be_in_viewport()
    sync_api.expect(page.locator("#submit")).to_be_disabled()

    notes = tmp_path / "notes.txt"
    notes.write_text("These are meeting notes, not a video.\n" * 50)
    page.set_input_files("#file", notes)
    sync_api.expect(page.locator("#form-error")).to_be_hidden()
    sync_api.expect(page.locator("#form-warning")).to_contain_text("does not look like a video or audio file")
    page.set_viewport_size(PHONE)
    shoot(page, "upload-phone")
    page.set_viewport_size(DESKTOP)

    # Renamed to .mp4 the browser cannot tell; the server's probe will.
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(notes.read_bytes())
    page.set_input_files("#file", fake)
    choose_formats(page, {"360p", "mp3"})

    # The server probes what it received (local mode probes the upload itself) and refuses it with a sentence.
    page.locator("#submit").click()
    sync_api.expect(page.locator("#file-error")).to_contain_text("not a video or audio file")
    sync_api.expect(page.locator("#file-error")).to_be_in_viewport()
    # The form agrees with the refusal: one box, no "Ready", Convert off until another file is chosen.
    sync_api.expect(page.locator("#form-warning")).to_be_hidden()
    sync_api.expect(page.locator("#submit")).to_be_disabled()
    sync_api.expect(page.locator("#submit-hint")).to_have_text("Choose another file.")
    page.set_input_files("#file", make_clip("fine.mp4", seconds=1, size="160x120"))
    choose_formats(page, {"360p", "mp3"})
    sync_api.expect(page.locator("#submit")).to_be_enabled()

    # A refused job creation is reported in the server's words, and the form stays usable (the upload
    # is let through here: the server would refuse these bytes before any job is asked for).
    refusal = "The conversion queue is unavailable right now; please try again in a minute."
    page.route("**/files/uploads/**", lambda route: route.fulfill(status=204))
    page.route("**/api/jobs", lambda route: route.fulfill(status=503, json={"detail": refusal}))
    page.locator("#submit").click()
    sync_api.expect(page.locator("#form-error")).to_have_text(refusal)
    sync_api.expect(page.locator("#submit")).to_be_enabled()
    sync_api.expect(page.locator("#upload-status")).to_be_hidden()
    page.unroute("**/api/jobs")
    page.unroute("**/files/uploads/**")
    assert page.url.rstrip("/") == server.url

    # Real media that cannot give some formats: an audio file. The browser reads its header, so the
    # formats that need a picture are off before anything is sent (the server would refuse them: 422).
    song = make_clip("song.m4a", seconds=1, video=False)
    page.set_input_files("#file", song)
    for fmt in ("360p", "thumbnail"):
        sync_api.expect(page.locator(f"input[name=formats][value='{fmt}']")).to_be_disabled()
    sync_api.expect(page.locator("input[name=formats][value='mp3']")).to_be_checked()
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL, timeout=30_000)
    job_id = page.url.rsplit("/", 1)[-1]
    assert wait_until_finished(page, timeout=60_000) == {"mp3": "completed"}
    shoot(page, "job-sound-only-desktop")

    page.goto(server.url + "/")
    row = page.locator(f"#recent-list li[data-job-id='{job_id}']")
    sync_api.expect(row).to_have_count(1)
    sync_api.expect(row.locator("a")).to_have_text("song.m4a")
    sync_api.expect(row.locator("a")).to_have_attribute("href", f"/jobs/{job_id}")
    row.scroll_into_view_if_needed()
    sync_api.expect(row.locator(".badge")).to_have_attribute("data-status", "completed")
    shoot(page, "upload-recent-desktop")

    page.locator("#recent-clear").click()
    sync_api.expect(page.locator("#recent")).to_be_hidden()
    page.reload()
    sync_api.expect(page.locator("#recent-list li")).to_have_count(0)


def test_unknown_job_pages_say_so_and_network_errors_are_retried(server: Server, page: Any) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    page.route("**/api/jobs/*", lambda route: route.abort())
    page.goto(f"{server.url}/jobs/{unknown}")
    network = page.locator("#job-network")
    sync_api.expect(network).to_contain_text("Could not reach the server")
    sync_api.expect(page.locator("#job-status")).to_have_attribute("data-status", "unknown")
    page.unroute("**/api/jobs/*")
    network.get_by_role("button", name="Retry now").click()
    sync_api.expect(page.locator("#job-status")).to_have_attribute("data-status", "missing")
    sync_api.expect(network).to_be_hidden()

    for job_id, status in (("not-a-job", 404), (unknown, 200)):
        response = page.goto(f"{server.url}/jobs/{job_id}")
        assert response is not None and response.status == status
        sync_api.expect(page.locator("#job-status")).to_have_attribute("data-status", "missing")
        sync_api.expect(page.locator("#job-error")).to_contain_text("no conversion job at this address")


# --- AWS mode: the same page against S3 and SQS (a moto server), workers polling SQS ---------------


@pytest.fixture(scope="module")
def aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``make run`` with BACKEND=aws and WORKERS=1: presigned POST to S3, conversions from SQS."""
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    aws_env: dict[str, str] = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    s3 = session.client("s3", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    sqs = session.client("sqs", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    for bucket in ("vc-browser-upload", "vc-browser-converted"):
        s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName="vc-browser-convert")["QueueUrl"]
    served = Server(
        tmp_path_factory.mktemp("browser-aws") / "data",
        workers=1,
        BACKEND="aws",
        AUTH="none",  # about S3 uploads and downloads; the page under AUTH=keys: test_browser_auth.py
        UPLOAD_BUCKET="vc-browser-upload",
        CONVERTED_BUCKET="vc-browser-converted",
        QUEUE_URL=queue_url,
        LOG_LEVEL="WARNING",
        AWS_ENDPOINT_URL=aws_env["AWS_ENDPOINT_URL"],
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    ).start()
    try:
        yield served
    finally:
        served.stop(timeout=30)
        moto.stop()


def test_aws_mode_page_uploads_to_s3_and_downloads_from_it(
    aws_server: Server,
    page: Any,
    make_clip: Callable[..., Path],
    probe: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    clip = make_clip("harbour.mp4", seconds=2, size="320x240")
    page.goto(aws_server.url + "/")
    page.set_input_files("#file", str(clip))
    choose_formats(page, {"360p", "thumbnail"})
    with page.expect_request(lambda request: request.method == "POST" and "vc-browser-upload" in request.url):
        page.click("#submit")  # the bytes go to the bucket's presigned POST, not to the API
    page.wait_for_url(JOB_URL)
    assert wait_until_finished(page) == {"360p": "completed", "thumbnail": "completed"}

    card = page.locator("article[data-format=thumbnail]")
    # Previews and downloads go through the API's redirect, which presigns a fresh bucket URL when used.
    sync_api.expect(card.locator("img")).to_have_attribute(
        "src", re.compile(r"^/api/jobs/[0-9a-f-]+/outputs/thumbnail$")
    )
    redirect = page.request.get(aws_server.url + card.locator("img").get_attribute("src"), max_redirects=0)
    assert redirect.status == 307 and "vc-browser-converted" in redirect.headers["location"]
    card.locator("img").scroll_into_view_if_needed()  # previews load lazily
    page.wait_for_function("() => document.querySelector('article[data-format=thumbnail] img').naturalWidth > 0")
    with page.expect_download() as info:
        page.locator("article[data-format='360p'] a.download").click()
    download = info.value
    assert download.suggested_filename == "harbour_360p.mp4"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    video = next(s for s in probe(target)["streams"] if s["codec_type"] == "video")
    assert (video["codec_name"], video["height"]) == ("h264", 240)


def test_pages_satisfy_their_content_security_policy(
    server: Server, browser: Any, make_clip: Callable[..., Path]
) -> None:
    """Upload, follow the job to its previews (video, audio, image) and a missing job: nothing blocked.
    The control at the end shows that a blocked load would have been seen."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    violations = csp_violations(tab)
    clip = make_clip("policy.mp4", seconds=1, size="160x120")

    response = tab.goto(server.url + "/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy and "base-uri 'none'" in policy
    tab.set_input_files("#file", clip)
    choose_formats(tab, {"360p", "mp3", "thumbnail"})
    tab.locator("#submit").click()
    tab.wait_for_url(JOB_URL, timeout=30_000)
    assert set(wait_until_finished(tab).values()) == {"completed"}
    image = tab.locator("article[data-format='thumbnail'] img")
    image.scroll_into_view_if_needed()
    tab.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    tab.locator("article[data-format='360p'] video").evaluate("v => v.play().catch(() => {})")
    tab.goto(server.url + "/jobs/not-a-job")
    tab.goto(server.url + "/")

    # The control: an inline style, which the policy blocks. Chromium reports on the console in order, so
    # once its report is in, any report the pages above caused is in before it.
    def blocked_style(text: str) -> bool:
        return "inline style" in text and "Content Security Policy" in text

    with tab.expect_console_message(lambda message: blocked_style(message.text)):
        tab.evaluate(
            '() => { const s = document.createElement("style"); s.textContent = "body{}"; document.head.append(s); }'
        )
    control = next((at for at, v in enumerate(violations) if blocked_style(v)), None)
    assert control is not None, violations
    assert violations[:control] == [], violations
    context.close()


# ReDoc's sidebar footer always tries this logo; the policy blocks it (its onError hides the image), so
# the page stays offline. It is the one outside request and the one policy report these pages may cause.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def test_api_docs_work_offline_with_the_response_schemas(server: Server, browser: Any) -> None:
    """Swagger UI and ReDoc come from the app: any request to another host would fail the test."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    violations = csp_violations(page)
    foreign: list[str] = []
    local = (server.url, "blob:" + server.url, "data:")
    page.on("request", lambda req: None if req.url.startswith(local) else foreign.append(req.url))
    page.goto(server.url + "/docs")
    sync_api.expect(page.locator(".opblock-summary-path", has_text="/api/jobs/{job_id}/archive")).to_be_visible()
    models = page.locator("section.models")
    for schema in ("JobView", "OutputView", "FormatView", "UploadTicket"):  # the response schemas
        sync_api.expect(models).to_contain_text(schema)
    shoot(page, "docs-swagger")
    assert not violations, violations  # Swagger UI: nothing blocked at all
    page.goto(server.url + "/redoc")
    sync_api.expect(page.locator("h1", has_text="video-converter")).to_be_visible(timeout=30_000)
    sync_api.expect(page.get_by_text("Delete Job").first).to_be_attached()
    shoot(page, "docs-redoc")
    context.close()
    assert not errors, errors
    assert set(foreign) <= {REDOC_LOGO}, foreign
    assert all(REDOC_LOGO in v for v in violations), violations


def shoot_view(page: Any, name: str) -> None:
    """What the person sees without scrolling (not the full page)."""
    page.screenshot(path=str(screenshot_dir() / f"ui-{name}.png"))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366x768", "390x844"])
def test_upload_progress_and_errors_stay_in_view(
    server: Server, browser: Any, tmp_path: Path, viewport: dict[str, int]
) -> None:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    violations = csp_violations(page)
    size = "desktop" if viewport == DESKTOP else "phone"
    page.goto(server.url + "/")
    sync_api.expect(page.locator(".format__desc").first).to_be_visible()  # descriptions on phones too

    too_big = tmp_path / "huge.mp4"
    too_big.write_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1))
    page.set_input_files("#file", too_big)
    sync_api.expect(page.locator("#file-error")).to_contain_text("larger than the")
    sync_api.expect(page.locator("#file-error")).to_be_in_viewport()
    shoot_view(page, f"upload-error-{size}")

    choose_formats(page, set())
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(MAX_UPLOAD_BYTES - 200_000))
    page.set_input_files("#file", big)
    sync_api.expect(page.locator("#file-error")).to_be_hidden()
    page.locator("#submit").click(force=True)  # disabled: nothing happens, the hint says why
    sync_api.expect(page.locator("#submit-hint")).to_have_text("Pick at least one format.")
    choose_formats(page, {"720p", "mp3", "thumbnail", "gif"})

    # A slow connection (about 300 KB/s up): the upload takes seconds, and its bar and Cancel stay in view.
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    conditions = {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 300_000}
    cdp.send("Network.emulateNetworkConditions", conditions)
    page.locator("#submit").click()
    progress, cancel = page.locator("#upload-progress"), page.locator("#cancel")
    sync_api.expect(progress).to_be_in_viewport()
    sync_api.expect(cancel).to_be_in_viewport()
    sync_api.expect(page.locator("#upload-progress-text")).to_contain_text(re.compile(r"/s · about \d+ (s|min) left"))
    shoot_view(page, f"upload-progress-{size}")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    cancel.click()
    sync_api.expect(page.locator("#form-warning")).to_contain_text("Upload cancelled")
    sync_api.expect(page.locator("#form-warning")).to_be_in_viewport()
    sync_api.expect(page.locator("#submit")).to_be_enabled()
    cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": -1, "latency": 0})
    context.close()
    assert not errors, errors
    assert not violations, violations


def test_drop_anywhere_in_the_window(server: Server, page: Any) -> None:
    page.goto(server.url + "/")
    transfer = page.evaluate_handle(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["x"], "far away.mp4", { type: "video/mp4" }));
            return data;
        }"""
    )
    page.dispatch_event(".site-footer", "dragenter", {"dataTransfer": transfer})
    sync_api.expect(page.locator("#drop-overlay")).to_be_visible()
    shoot_view(page, "drop-overlay-desktop")
    page.dispatch_event(".site-footer", "dragover", {"dataTransfer": transfer})
    page.dispatch_event(".site-footer", "drop", {"dataTransfer": transfer})
    sync_api.expect(page.locator("#drop-overlay")).to_be_hidden()
    sync_api.expect(page.locator("#file-summary")).to_contain_text("far away.mp4")


def test_job_page_summary_note_archive_back_and_delete(
    server: Server, page: Any, make_clip: Callable[..., Path]
) -> None:
    clip = make_clip("small clip.mp4", seconds=1, size="320x240")
    page.goto(server.url + "/")
    page.set_input_files("#file", clip)
    choose_formats(page, {"480p", "mp3", "thumbnail"})
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL, timeout=30_000)
    job_id = page.url.rsplit("/", 1)[-1]
    assert set(wait_until_finished(page).values()) == {"completed"}
    sync_api.expect(page.locator("#job-summary")).to_have_text("3 of 3 ready")
    note = page.locator("article[data-format='480p'] [data-testid=size-note]")
    sync_api.expect(note).to_contain_text("never upscaled")  # 240 high is smaller than 480p
    sync_api.expect(page.locator("article[data-format='thumbnail'] [data-testid=size-note]")).to_be_hidden()
    archive = page.locator("#job-archive")
    sync_api.expect(archive).to_be_visible()
    zipped = httpx.get(server.url + archive.get_attribute("href"), timeout=30)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archived:
        assert sorted(archived.namelist()) == ["small_clip_480p.mp4", "small_clip_mp3.mp3", "small_clip_thumbnail.jpg"]
    shoot_view(page, "job-done-desktop")
    page.set_viewport_size(PHONE)
    shoot_view(page, "job-done-phone")
    page.set_viewport_size(DESKTOP)

    # Back: a clean form, not the same file ready for a duplicate.
    page.go_back()
    sync_api.expect(page.locator("#file-summary")).to_be_hidden()
    sync_api.expect(page.locator("#submit")).to_be_disabled()
    assert page.evaluate("document.querySelector('#file').files.length") == 0
    page.go_forward()
    sync_api.expect(page.locator("#job-summary")).to_have_text("3 of 3 ready")

    # Delete, confirmed: the job and its files are gone.
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.locator("#job-delete").click()
    sync_api.expect(page.locator("#job-error")).to_contain_text("was deleted")
    assert asked and "cannot be undone" in asked[0]
    assert httpx.get(f"{server.url}/api/jobs/{job_id}").status_code == 404
    page.goto(server.url + "/")
    sync_api.expect(page.locator(f"#recent-list li[data-job-id='{job_id}']")).to_have_count(0)


def test_recent_jobs_refresh_while_one_is_running(server: Server, page: Any, make_clip: Callable[..., Path]) -> None:
    clip = make_clip("recent.mp4", seconds=1, size="160x120")
    with clip.open("rb") as fh:
        job = httpx.post(
            f"{server.url}/api/jobs", data={"formats": ["mp3"]}, files={"file": ("recent.mp4", fh)}, timeout=30
        ).json()
    job_id = job["job_id"]
    # The first answer says "processing" (as if the page opened mid-conversion); the list must look again
    # by itself and show the real, finished status without a reload.
    served: list[int] = []

    def first_running(route: Any) -> None:
        if served:
            route.fallback()
            return
        served.append(1)
        route.fulfill(json={**job, "status": "processing"})

    page.route(f"**/api/jobs/{job_id}", first_running)
    recent = json.dumps([{"id": job_id, "filename": "recent.mp4", "created": job["created_at"]}])
    page.add_init_script(f"localStorage.setItem('video-converter.recent-jobs', {json.dumps(recent)})")
    page.goto(server.url + "/")
    badge = page.locator(f"#recent-list li[data-job-id='{job_id}'] .badge")
    sync_api.expect(badge).to_have_attribute("data-status", "processing")
    sync_api.expect(badge).to_have_attribute("data-status", "completed", timeout=30_000)


@pytest.fixture(scope="module")
def segmenting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("browser-segments") / "data"
    served = Server(data, workers=2, SECRET_KEY="x", SEGMENT_SECONDS="2", LOG_LEVEL="WARNING").start()
    yield served
    if served.proc is not None and served.proc.poll() is None:
        assert served.stop(timeout=15) == 0, served.log.read_text()


def test_a_long_video_is_converted_in_parts_and_the_page_says_so(
    segmenting_server: Server, page: Any, make_clip: Callable[..., Path], tmp_path: Path
) -> None:
    clip = make_clip("long walk.mp4", seconds=7, size="320x240", extra=("-g", "25"))
    page.goto(segmenting_server.url + "/")
    page.set_input_files("#file", clip)
    choose_formats(page, {"360p", "thumbnail"})
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL, timeout=30_000)
    assert wait_until_finished(page) == {"360p": "completed", "thumbnail": "completed"}
    job = httpx.get(f"{segmenting_server.url}/api/jobs/{page.url.rsplit('/', 1)[-1]}").json()
    parts = {o["format"]: o["segments"] for o in job["outputs"]}
    assert parts["360p"] >= 3 and parts["thumbnail"] == 0
    card = page.locator("article[data-format='360p']")
    sync_api.expect(card).to_contain_text(f"converted in {parts['360p']} parts")
    sync_api.expect(card.locator("video")).to_have_count(1)
    sync_api.expect(page.locator("article[data-format='thumbnail']")).not_to_contain_text("parts")
    shoot(page, "job-segmented-desktop")


# --- the first screen, details and accessibility (issue 18) ------------------------------------------

AXE = Axe()  # axe-core 4.12.1, as axe-playwright-python 0.1.8 ships it
# Every rule axe runs by default, and the experimental one that checks a link's name starts with its text.
AXE_OPTIONS = {"resultTypes": ["violations"], "rules": {"label-content-name-mismatch": {"enabled": True}}}


def serious_violations(page: Any) -> list[str]:
    """What axe-core finds serious or critical on the page as it is now."""
    found = AXE.run(page, options=AXE_OPTIONS).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def serious_violations_light_and_dark(page: Any) -> list[str]:
    """``serious_violations`` in the light scheme, then in the dark one (the page follows the system's)."""
    found = serious_violations(page)
    page.emulate_media(color_scheme="dark")
    # Colours change with a transition: look once they have settled (the indicator of a running card
    # pulses forever: only transitions count).
    page.wait_for_function("() => !document.getAnimations().some((a) => a instanceof CSSTransition)")
    found += [f"dark: {v}" for v in serious_violations(page)]
    page.emulate_media(color_scheme="light")
    return found


def box(page: Any, selector: str) -> dict[str, float]:
    found: dict[str, float] = page.locator(selector).first.evaluate(
        "e => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; }"
    )
    return found


def bottom_of(locator: Any) -> float:
    bottom: float = locator.evaluate("e => e.getBoundingClientRect().bottom")
    return bottom


def assert_nothing_under_the_bar(page: Any, *, whole_cards: bool) -> None:
    """Each format reached by keyboard shows above the sticky Convert bar, not behind it (with
    ``whole_cards``, its whole card: where the form fits the window); scrolled to the end, so does the
    last one."""
    for checkbox in page.locator("input[name=formats]").all():
        checkbox.focus()
        shown = checkbox.locator("xpath=ancestor::label[1]") if whole_cards else checkbox
        bar_top = box(page, "#submit-bar")["top"]
        assert bottom_of(shown) <= bar_top + 0.5, (checkbox.get_attribute("value"), bottom_of(shown), bar_top)
    page.locator("#submit").scroll_into_view_if_needed()
    assert bottom_of(page.locator("label.format").last) <= box(page, "#submit-bar")["top"] + 0.5


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366x768", "390x844"])
def test_first_screen_details_and_accessibility(
    server: Server, browser: Any, make_clip: Callable[..., Path], viewport: dict[str, int]
) -> None:
    """What a new user sees at both sizes: the recent jobs and the whole form (desktop), nothing behind the
    sticky bar, the first output card in the first screen, posters and each file's codec, bit rate and
    duration; axe-core finds nothing serious on any of these pages, nor during the upload, nor on the page
    left after Delete, nor on the 404 page."""
    size = "desktop" if viewport == DESKTOP else "phone"
    clip = make_clip(f"first screen {size}.mp4", seconds=2, size="320x240")
    earlier = httpx.post(f"{server.url}/api/jobs", data={"formats": ["mp3"]}, files={"file": clip.open("rb")}).json()
    recent = json.dumps([{"id": earlier["job_id"], "filename": "earlier.mp4", "created": earlier["created_at"]}])
    with checked_page(browser, viewport, timeout=20_000) as page:
        page.add_init_script(f"localStorage.setItem('video-converter.recent-jobs', {json.dumps(recent)})")

        page.goto(server.url + "/")
        sync_api.expect(page.locator("#recent-list li")).to_have_count(1)
        assert serious_violations(page) == []
        page.set_input_files("#file", clip)
        choose_formats(page, {"480p", "mp3", "gif", "thumbnail"})
        sync_api.expect(page.locator("#submit")).to_be_enabled()
        if viewport == DESKTOP:  # on a laptop all of it is in the first screen, without scrolling
            sync_api.expect(page.locator("#recent")).to_be_in_viewport(ratio=1)
            sync_api.expect(page.locator("#upload-form")).to_be_in_viewport(ratio=1)
        assert_nothing_under_the_bar(page, whole_cards=viewport == DESKTOP)
        assert serious_violations_light_and_dark(page) == []
        shoot_view(page, f"first-screen-{size}")

        # During the upload (held back, so the page stays in that state while axe looks at it).
        held: list[Any] = []
        page.route("**/files/uploads/**", lambda route: held.append(route))
        page.locator("#submit").click()
        sync_api.expect(page.locator("#upload-status")).to_be_visible()
        sync_api.expect(page.locator("#cancel")).to_be_visible()
        assert serious_violations(page) == []
        shoot_view(page, f"uploading-{size}")
        for _ in range(100):  # the route handler runs while Playwright waits; give it a moment to see the upload
            if held:
                break
            page.wait_for_timeout(50)
        assert len(held) == 1, "the upload was not sent"
        held[0].continue_()
        page.wait_for_url(JOB_URL, timeout=30_000)
        job_id = page.url.rsplit("/", 1)[-1]
        assert set(wait_until_finished(page).values()) == {"completed"}

        first = page.locator("article[data-format]").first
        sync_api.expect(first).to_be_in_viewport(ratio=1)  # the whole first card, without scrolling
        video = page.locator("article[data-format='480p'] video")
        thumbnail = f"/api/jobs/{job_id}/outputs/thumbnail"
        sync_api.expect(video).to_have_attribute("poster", thumbnail)
        poster = httpx.get(server.url + thumbnail, follow_redirects=True)
        assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
        gif = page.locator("article[data-format='gif'] img")
        assert gif.get_attribute("loading") == "eager"  # the finished page shows it, not an empty box
        sync_api.expect(gif).to_have_class(re.compile(r"\bpreview--poster\b"))  # over the thumbnail while loading
        assert thumbnail in gif.evaluate("img => img.style.backgroundImage")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=gif.element_handle())
        assert_details(page, httpx.get(f"{server.url}/api/jobs/{job_id}").json())
        assert serious_violations_light_and_dark(page) == []
        shoot_view(page, f"finished-{size}")
        assert_running_page_accessible(
            page, server.url + f"/jobs/{job_id}", httpx.get(f"{server.url}/api/jobs/{job_id}").json()
        )
        page.goto(server.url + f"/jobs/{job_id}")
        assert set(wait_until_finished(page).values()) == {"completed"}

        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#job-delete").click()
        sync_api.expect(page.locator("#job-filename")).to_have_text("Job deleted")
        sync_api.expect(page.locator("#job-created")).to_have_text("")  # no "Started ..." left of a deleted job
        sync_api.expect(page.locator("#job-bar")).to_be_hidden()
        sync_api.expect(page.locator("#outputs-section")).to_be_hidden()
        sync_api.expect(page.locator("main a[href='/']:visible")).to_have_count(1)  # one way on, not two
        assert serious_violations(page) == []
        shoot_view(page, f"deleted-{size}")

        response = page.goto(server.url + "/no/such/page")
        assert response is not None and response.status == 404
        sync_api.expect(page.get_by_role("heading", name="Nothing here")).to_be_visible()
        sync_api.expect(page.locator("main a[href='/']")).to_be_visible()
        assert serious_violations(page) == []


def assert_running_page_accessible(page: Any, url: str, job: dict[str, Any]) -> None:
    """The job page while it runs, in each state an output card can show (converting, waiting, retrying,
    failed), from the job's real document with its outputs' states set: nothing serious for axe either."""
    states = [
        {"status": "processing", "progress": 42.0},
        {"status": "queued", "progress": 0.0},
        {"status": "queued", "progress": 0.0, "error": "FFmpeg stopped (killed); trying again."},
        {"status": "failed", "progress": 0.0, "error": "The source has no audio track, so there is no MP3."},
    ]
    running = {
        **job,
        "status": "processing",
        "outputs": [{**out, **state, "download_url": None} for out, state in zip(job["outputs"], states, strict=False)],
    }
    page.route("**/api/jobs/*", lambda route: route.fulfill(json=running))
    page.goto(url)
    sync_api.expect(page.locator("article[data-status='failed']")).to_have_count(1)
    sync_api.expect(page.locator("article[data-status='processing'] progress")).to_be_visible()
    assert serious_violations(page) == []
    page.unroute("**/api/jobs/*")


def assert_details(page: Any, job: dict[str, Any]) -> None:
    """Each output's codec, bit rate and duration, in the job's JSON and on its card."""
    outputs = {o["format"]: o for o in job["outputs"]}
    video, audio, gif, still = outputs["480p"], outputs["mp3"], outputs["gif"], outputs["thumbnail"]
    assert (video["video_codec"], video["audio_codec"]) == ("h264", "aac")
    assert (audio["video_codec"], audio["audio_codec"]) == (None, "mp3")
    assert gif["video_codec"] == "gif" and still["video_codec"] == "mjpeg"
    for output in (video, audio, gif):
        assert output["duration"] == pytest.approx(2.0, abs=0.2), output
        assert output["bit_rate"] == round(output["size_bytes"] * 8 / output["duration"]), output
    assert still["duration"] is None and still["bit_rate"] is None  # a still has neither
    kbits = f"{round(video['bit_rate'] / 1000)} kbit/s"
    meta = page.locator("article[data-format='480p'] [data-testid=output-meta]")
    sync_api.expect(meta).to_have_text(re.compile(rf"320 \u00d7 240 · H\.264 \+ AAC · {kbits} · 2(\.\d)? s"))
    sync_api.expect(page.locator("article[data-format='mp3'] [data-testid=output-meta]")).to_contain_text("MP3 · ")
    sync_api.expect(page.locator("article[data-format='thumbnail'] [data-testid=output-meta]")).to_have_text(
        "320 \u00d7 240 · JPEG"
    )


def test_api_docs_try_it_out_with_its_defaults_and_link_back(
    server: Server, browser: Any, make_clip: Callable[..., Path]
) -> None:
    """Swagger UI's "Try it out" on POST /api/jobs, with only a file chosen: its default formats make a job."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(20_000)
    page = context.new_page()
    clip = make_clip("try it.mp4", seconds=1, size="160x120")
    page.goto(server.url + "/docs#/jobs/create_job_api_jobs_post")
    operation = page.locator("#operations-jobs-create_job_api_jobs_post")
    sync_api.expect(operation.locator(".opblock-body")).to_be_visible()
    operation.get_by_role("button", name="Try it out").click()
    selected = operation.locator("select[multiple] option:checked")
    sync_api.expect(selected).to_have_text(["720p", "mp3", "thumbnail"])  # the form's defaults, not "string"
    operation.locator("input[type=file]").set_input_files(clip)
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.status == 201, answer.value.text()
    job = answer.value.json()
    assert [o["format"] for o in job["outputs"]] == ["720p", "mp3", "thumbnail"]
    sync_api.expect(operation.locator(".live-responses-table tbody .response-col_status")).to_have_text("201")
    sync_api.expect(page.locator(".information-container a[href='/']")).to_be_attached()  # in the description
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Video converter").click()  # back
    page.wait_for_url(server.url + "/")
    page.get_by_role("navigation", name="Site").get_by_role("link", name="API").click()  # and to the docs again
    page.wait_for_url(server.url + "/docs")
    context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_quick_outputs_first_an_estimate_from_the_start_and_one_file_for_identical_sizes(
    server: Server, page: Any, make_clip: Callable[..., Path], viewport: dict[str, int]
) -> None:
    """The summary gives the time left from the first poll; the thumbnail is ready while the long encodes
    still run; 720p of a 360-line clip is the 360p file, said on its card and zipped once."""
    page.set_viewport_size(viewport)
    clip = make_clip("harbour.mp4", seconds=10, size="640x360")
    assert clip.stat().st_size < MAX_UPLOAD_BYTES
    page.goto(server.url + "/")
    page.set_input_files("#file", clip)
    choose_formats(page, {"720p", "360p", "webm", "thumbnail"})
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL, timeout=30_000)
    summary = page.locator("#job-summary")
    sync_api.expect(summary).to_contain_text(re.compile(r"[01] of 4 ready · about \d+ (s|min) left"))
    # The thumbnail comes first, while the WebM is still converting.
    page.wait_for_function(
        """() => {
            const status = (f) => document.querySelector(`article[data-format='${f}']`).dataset.status;
            return status("thumbnail") === "completed" && status("webm") !== "completed";
        }""",
        timeout=60_000,
    )
    shoot(page, f"quick-first-{'phone' if viewport is PHONE else 'desktop'}")
    statuses = wait_until_finished(page)
    assert set(statuses.values()) == {"completed"}, page.content()
    same = page.locator("article[data-format='720p'] [data-testid=size-note]")
    sync_api.expect(same).to_contain_text("It is the same file as MP4 360p, stored once.")
    sync_api.expect(page.locator("article[data-format='360p'] [data-testid=size-note]")).not_to_contain_text("same")
    sync_api.expect(summary).not_to_contain_text("left")
    job_id = page.url.rsplit("/", 1)[-1]
    outputs = {o["format"]: o for o in httpx.get(f"{server.url}/api/jobs/{job_id}").json()["outputs"]}
    assert outputs["720p"]["same_as"] == "360p"
    zipped = httpx.get(server.url + page.locator("#job-archive").get_attribute("href"), timeout=30)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archived:
        assert sorted(archived.namelist()) == ["harbour_360p.mp4", "harbour_thumbnail.jpg", "harbour_webm.webm"]


def play_for(page: Any, seconds: float) -> None:
    """Play the stream until it has advanced ``seconds`` from where it is (muted: autoplay allows it)."""
    start = page.evaluate(
        "() => { const v = document.querySelector('.player video'); v.muted = true; v.play(); return v.currentTime; }"
    )
    page.wait_for_function(
        f"() => document.querySelector('.player video').currentTime > {start + seconds}", timeout=30_000
    )


@pytest.fixture(scope="module")
def stream_job(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A finished job with a stream (two renditions, three segments), its poster and its storyboard."""
    from tests.conftest import make_clip_file

    small = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "32", "-pix_fmt", "yuv420p")
    clip = make_clip_file(tmp_path_factory.mktemp("stream") / "stream.mp4", seconds=13, size="854x480", encoder=small)
    assert clip.stat().st_size < MAX_UPLOAD_BYTES
    with clip.open("rb") as handle:
        created = httpx.post(
            f"{server.url}/api/jobs",
            files={"file": (clip.name, handle, "video/mp4")},
            data={"formats": "hls,thumbnail,storyboard"},
            timeout=30,
        )
    job_id: str = created.json()["job_id"]
    deadline = time.monotonic() + 180
    while (job := httpx.get(f"{server.url}/api/jobs/{job_id}").json())["status"] not in (
        "completed",
        "failed",
        "partial",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.25)
    assert job["status"] == "completed", job
    return job_id


def test_a_long_videos_stream_plays_across_its_pieces(
    segmenting_server: Server, page: Any, make_clip: Callable[..., Path], tmp_path: Path
) -> None:
    """A stream converted in 2 s pieces, its playlists naming each piece's file: hls.js plays on across
    the pieces' seams, from the start and after a seek, at each quality."""
    clip = make_clip("long stream.mp4", seconds=9, size="640x360", extra=("-g", "25"))
    page.goto(segmenting_server.url + "/")
    page.set_input_files("#file", clip)
    choose_formats(page, {"hls"})
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL, timeout=30_000)
    assert wait_until_finished(page, timeout=180_000) == {"hls": "completed"}
    job_id = page.url.rsplit("/", 1)[-1]
    playlist = httpx.get(f"{segmenting_server.url}/api/jobs/{job_id}/stream/video_360p.m3u8").text
    assert "video_360p-00001.mp4" in playlist and playlist.count("#EXT-X-MAP") == 1  # the pieces' files
    player = page.locator("[data-testid=stream-player]")
    page.wait_for_selector("[data-testid=stream-player][data-engine='hls.js']")
    play_for(page, 3.0)  # over the seams at 2 s
    page.evaluate("() => { document.querySelector('.player video').currentTime = 5.5; }")
    play_for(page, 1.5)  # and at 6 s, after a seek
    assert player.locator("video").evaluate("(v) => v.error === null")
    # Its bundle holds the pieces' files, named relatively: it plays from a plain static server too.
    archive = httpx.get(f"{segmenting_server.url}/api/jobs/{job_id}/archive", timeout=60)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as archived:
        archived.extractall(tmp_path)
    folder = tmp_path / "long_stream_stream"
    assert (folder / "video_360p-00003.mp4").is_file() and "?" not in (folder / "video_360p.m3u8").read_text()
    with static_server(folder) as url:
        page.goto(f"{url}/index.html")
        page.wait_for_selector("[data-testid=stream-player][data-engine='hls.js']")
        play_for(page, 3.0)


def test_the_stream_plays_on_the_job_page_at_each_quality(server: Server, page: Any, stream_job: str) -> None:
    job_id = stream_job
    page.goto(f"{server.url}/jobs/{job_id}")
    assert wait_until_finished(page, timeout=180_000) == {
        "hls": "completed",
        "thumbnail": "completed",
        "storyboard": "completed",
    }
    player = page.locator("[data-testid=stream-player]")
    page.wait_for_selector("[data-testid=stream-player][data-engine='hls.js']")
    assert "/outputs/thumbnail" in (player.locator("video").get_attribute("poster") or "")  # the thumbnail as poster
    quality = player.locator("[data-testid=quality]")
    quality.locator("option").nth(2).wait_for(state="attached")
    labels = quality.locator("option").all_inner_texts()
    assert labels[0] == "Auto" and sorted(label.split("p")[0] for label in labels[1:]) == ["360", "480"]
    play_for(page, 1.0)
    for height in ("360", "480"):  # forcing the lowest, then the highest level: each plays
        quality.select_option(label=next(label for label in labels if label.startswith(f"{height}p")))
        page.wait_for_function(
            f"() => document.querySelector('[data-testid=stream-player]').dataset.level === '{height}'"
        )
        play_for(page, 1.0)
    # The storyboard on the scrub bar: hovering its middle shows that part's frame
    scrub = player.locator("[data-testid=scrub]")
    page.wait_for_function("() => Number(document.querySelector('[data-testid=scrub]').dataset.cues) > 0")
    box = scrub.bounding_box()
    scrub.hover(position={"x": box["width"] * 0.55, "y": box["height"] / 2})  # scrolled into view first
    preview = player.locator("[data-testid=storyboard-preview]")
    assert preview.is_visible() and preview.get_attribute("data-tile") not in (None, "0,0")
    # "Copy link" holds the master playlist's absolute address; the embed code names it
    link = player.locator(".player__link").input_value()
    assert link == f"{server.url}/api/jobs/{job_id}/stream/master.m3u8"
    assert link in player.locator("[data-testid=embed-code]").text_content()
    shoot(page, "stream-player")


def test_the_bundle_plays_from_a_plain_static_server(
    server: Server, page: Any, stream_job: str, tmp_path: Path
) -> None:
    archive = httpx.get(f"{server.url}/api/jobs/{stream_job}/archive", timeout=60)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as archived:
        archived.extractall(tmp_path)
    folder = tmp_path / "stream_stream"
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"index.html", "master.m3u8", "manifest.mpd", "poster.jpg", "storyboard.jpg", "storyboard.vtt",
            "player.js", "player.css", "vendor/hls.js/hls.min.js", "vendor/hls.js/LICENSE"} <= names  # fmt: skip
    assert "?" not in (folder / "video_480p.m3u8").read_text()  # relative, unsigned: plays from anywhere
    with static_server(folder) as url:
        page.goto(f"{url}/index.html")
        page.wait_for_selector("[data-testid=stream-player][data-engine='hls.js']")
        assert page.locator(".player video").get_attribute("poster") == "poster.jpg"
        page.locator("[data-testid=quality] option").nth(2).wait_for(state="attached")
        play_for(page, 1.5)
        page.wait_for_function("() => Number(document.querySelector('[data-testid=scrub]').dataset.cues) > 0")


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """A plain static web server over ``folder`` (Python's), as anyone would host a bundle: its URL."""
    port = free_port()
    static = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the static server did not come up"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        static.terminate()
        static.wait(timeout=10)
