"""Right errors and a second chance in headless Chromium against the real served process with real
FFmpeg (issue 18, items 2 and 7), at 1366x768 and 390x844: a sound-only file turns the video formats
off as soon as it is picked; a file that is not media gets one plain sentence in one box and a form that
agrees; a failed output is retried and formats are added from the job page.

Screenshots go to $UI_SCREENSHOT_DIR (default: the system temp dir) as ui-*.png.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.e2e import test_browser as ui
from tests.e2e.server import Server
from tests.e2e.test_browser import DESKTOP, JOB_URL, PHONE, shoot, wait_until_finished
from video_converter.conversion import NOT_MEDIA
from video_converter.records import JobStore
from video_converter.storage import LocalStorage

pytestmark = ui.pytestmark
# The browser tests' fixtures: the served app, Chromium, and a fresh page per test.
server, browser, page = ui.server, ui.browser, ui.page

VIDEO_FORMATS = ("1080p", "720p", "480p", "360p", "webm", "gif", "thumbnail")
SIZES = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366x768", "390x844"])


def visible_boxes(tab: Any) -> list[str]:
    """The texts of the message boxes a person sees on the form (errors and warnings)."""
    shown = "boxes => boxes.filter((b) => !b.hidden && b.offsetParent !== null).map((b) => b.textContent)"
    texts: list[str] = tab.eval_on_selector_all("#upload-form .msg", shown)
    return texts


def ticked(tab: Any) -> set[str]:
    return set(tab.eval_on_selector_all("input[name=formats]:checked", "boxes => boxes.map((b) => b.value)"))


@SIZES
def test_a_sound_only_file_turns_the_video_formats_off_when_picked(
    server: Server, page: Any, make_clip: Callable[..., Path], viewport: dict[str, int]
) -> None:
    page.set_viewport_size(viewport)
    song = make_clip("song.mp3", seconds=2, video=False)
    page.goto(server.url + "/")
    page.set_input_files("#file", song)
    for format_id in VIDEO_FORMATS:
        box = page.locator(f"input[name=formats][value='{format_id}']")
        sync_api.expect(box).to_be_disabled()
        sync_api.expect(box).not_to_be_checked()
        note = page.locator(f"label.format:has(input[value='{format_id}']) .format__size-note")
        sync_api.expect(note).to_have_text("This file has sound only: there is no picture to convert.")
    sync_api.expect(page.locator("input[name=formats][value='mp3']")).to_be_checked()
    warning = page.locator("#form-warning")
    sync_api.expect(warning).to_contain_text("has sound only, so the video formats are turned off")
    sync_api.expect(page.locator("#submit-hint")).to_have_text("Ready: 1 format.")
    shoot(page, f"sound-only-{viewport['width']}")
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL)
    assert wait_until_finished(page) == {"mp3": "completed"}


def test_another_file_after_a_sound_only_one_gives_the_formats_back(
    server: Server, page: Any, make_clip: Callable[..., Path]
) -> None:
    page.goto(server.url + "/")
    before = ticked(page)
    page.set_input_files("#file", make_clip("song.mp3", seconds=1, video=False))
    sync_api.expect(page.locator("input[name=formats][value='720p']")).to_be_disabled()
    page.set_input_files("#file", make_clip("clip.mp4", seconds=1, size="320x240"))
    sync_api.expect(page.locator("input[name=formats][value='720p']")).to_be_enabled()
    assert ticked(page) == before | {"mp3"}
    sync_api.expect(page.locator("#form-warning")).to_be_hidden()


@SIZES
@pytest.mark.parametrize("name", ["notes.txt", "notes.mp4"])
def test_a_file_that_is_not_media_gets_one_plain_sentence_and_a_form_that_agrees(
    server: Server, page: Any, tmp_path: Path, make_clip: Callable[..., Path], name: str, viewport: dict[str, int]
) -> None:
    page.set_viewport_size(viewport)
    notes = tmp_path / name
    notes.write_text("meeting notes, not a video\n" * 200)
    page.goto(server.url + "/")
    page.set_input_files("#file", notes)
    page.locator("#submit").click()
    sync_api.expect(page.locator("#file-error")).to_have_text(NOT_MEDIA)
    assert visible_boxes(page) == [NOT_MEDIA]  # one box: not a second, yellow one
    sync_api.expect(page.locator("#submit")).to_be_disabled()
    sync_api.expect(page.locator("#submit-hint")).to_have_text("Choose another file.")
    shoot(page, f"not-media-{name.replace('.', '-')}-{viewport['width']}")
    page.set_input_files("#file", make_clip("good.mp4", seconds=1, size="160x120"))
    sync_api.expect(page.locator("#submit")).to_be_enabled()
    sync_api.expect(page.locator("#file-error")).to_be_hidden()


@SIZES
def test_a_failed_output_is_retried_and_formats_are_added_on_the_job_page(
    server: Server, page: Any, make_clip: Callable[..., Path], viewport: dict[str, int]
) -> None:
    page.set_viewport_size(viewport)
    page.goto(server.url + "/")
    page.set_input_files("#file", make_clip("beach.mp4", seconds=2, size="320x240"))
    for box in page.locator("input[name=formats]").all():
        box.set_checked(box.get_attribute("value") in {"360p", "thumbnail"})
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL)
    assert wait_until_finished(page) == {"360p": "completed", "thumbnail": "completed"}
    job_id = page.url.rsplit("/", 1)[-1]
    # A failure to retry: the thumbnail's record as a worker leaves it after a fault that did not pass.
    jobs = JobStore(LocalStorage(Path(server.env["DATA_DIR"]) / "converted"))
    jobs.save_output(job_id, jobs.output(job_id, "thumbnail").failed("FFmpeg failed (exit code 1): a fault."))
    page.reload()
    card = page.locator("article[data-format='thumbnail']")
    sync_api.expect(card).to_have_attribute("data-status", "failed")
    sync_api.expect(page.locator("article[data-format='360p'] button.card__retry")).to_have_count(0)
    retry = card.get_by_role("button", name="Retry Thumbnail")
    retry.scroll_into_view_if_needed()
    shoot(page, f"retry-{viewport['width']}")
    retry.click()
    sync_api.expect(card).to_have_attribute("data-status", "completed", timeout=60_000)
    sync_api.expect(card.locator("img.preview")).to_be_visible()
    sync_api.expect(retry).to_be_hidden()

    add = page.get_by_test_id("add-formats")
    add.locator("summary").click()
    add.get_by_label("GIF").check()
    add.get_by_label("MP3").check()
    add.get_by_role("button", name="Add").click()
    sync_api.expect(page.locator("article[data-format='gif']")).to_be_visible()
    assert wait_until_finished(page) == dict.fromkeys(["360p", "thumbnail", "gif", "mp3"], "completed")
    sync_api.expect(add.get_by_label("GIF")).to_have_count(0)  # the form offers only what the job lacks
    shoot(page, f"added-{viewport['width']}")


def test_a_sound_only_file_the_browser_cannot_tell_is_refused_by_the_server_next_to_the_formats(
    server: Server, page: Any, make_clip: Callable[..., Path]
) -> None:
    """Sound in an .mp4 looks like a video to the browser: the server's probe at creation decides, and
    its sentence, naming the formats, goes next to the formats."""
    song = make_clip("voice.mp4", seconds=1, video=False)
    page.goto(server.url + "/")
    page.set_input_files("#file", song)
    for box in page.locator("input[name=formats]").all():
        box.set_checked(box.get_attribute("value") in {"480p", "mp3"})
    page.locator("#submit").click()
    error = page.locator("#formats-error")
    sync_api.expect(error).to_have_text(
        "This file has no video stream, so it cannot be converted to MP4 480p; choose MP3 instead."
    )
    sync_api.expect(page.locator("#file-error")).to_be_hidden()
    page.locator("input[name=formats][value='480p']").uncheck()
    sync_api.expect(error).to_be_hidden()
    page.locator("#submit").click()
    page.wait_for_url(JOB_URL)
    assert wait_until_finished(page) == {"mp3": "completed"}
