"""A newline (or an escape sequence) in a user's file name cannot forge or garble a log line."""

from __future__ import annotations

import io
import logging
import threading
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn

from api.main import create_app
from api.server import uvicorn_config
from tests.conftest import wait_for
from video_converter import logsafe
from video_converter.config import Settings
from video_converter.runtime import build_runtime


@pytest.fixture
def logged() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.logsafe")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    logsafe.install(logger)
    logsafe.install(logger)  # twice: still one filter
    assert len(handler.filters) == 1
    return logger, stream


def test_a_newline_in_a_file_name_stays_on_one_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    forged = "clip.mp4\nINFO video_converter.worker: job 123: 720p done"
    logger.info("job %s created: %s -> %s", "abc", forged, "720p")
    lines = stream.getvalue().splitlines()
    assert lines == [
        "INFO test.logsafe: job abc created: clip.mp4\\nINFO video_converter.worker: job 123: 720p done -> 720p"
    ]


def test_terminal_escapes_and_unicode_line_breaks_are_escaped(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.warning("name %s", "a\x1b[31mred\r\u2028b\u202ec")
    assert stream.getvalue() == "WARNING test.logsafe: name a\\x1b[31mred\\r\\u2028b\\u202ec\n"


def test_exceptions_numbers_and_dict_args(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.error("failed: %s (%d bytes, %.1f s)", ValueError("bad\nname"), 12, 1.5)
    logger.info("%(name)s", {"name": "x\ny"})
    assert stream.getvalue().splitlines() == [
        "ERROR test.logsafe: failed: bad\\nname (12 bytes, 1.5 s)",
        "INFO test.logsafe: x\\ny",
    ]


def test_tracebacks_stay_readable(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("job %s crashed", "a\nb")
    text = stream.getvalue()
    assert text.startswith("ERROR test.logsafe: job a\\nb crashed\nTraceback (most recent call last):")


def test_plain_text_is_untouched() -> None:
    assert logsafe.escape("Café 我的视频 clip.mp4") == "Café 我的视频 clip.mp4"


def test_the_access_log_keeps_no_signed_link(settings: Settings) -> None:
    """A real uvicorn, configured as ``serve`` configures it: its access lines keep the paths (job ids
    included) but not the signatures that make a /files/... link a credential."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    access = logging.getLogger(logsafe.ACCESS_LOGGER)
    access.addHandler(handler)
    level, access.level = access.level, logging.INFO  # as LOG_LEVEL=INFO (the default) sets it
    rt = build_runtime(settings.model_copy(update={"port": 0}))
    server = uvicorn.Server(uvicorn_config(create_app(rt), rt.settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn started", timeout=30)
        port = server.servers[0].sockets[0].getsockname()[1]
        job = "0123456789abcdef0123456789abcdef"
        signed = rt.converted.download_url(f"{job}/a_720p.mp4", "a.mp4", "video/mp4", 3600)
        assert "signature=" in signed
        for target in (signed, f"/api/jobs/{job}?X-Amz-Signature=s3cret&X-Amz-Credential=AKIA&keep=1"):
            httpx.get(f"http://127.0.0.1:{port}{target}", timeout=10)
        wait_for(lambda: stream.getvalue().count("\n") >= 2, "two access lines", timeout=10)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        access.removeHandler(handler)
        access.setLevel(level)
        rt.close()
    text = stream.getvalue()
    assert f"/files/converted/{job}/a_720p.mp4?[redacted]" in text
    assert f"/api/jobs/{job}?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]&keep=1" in text
    query = signed.partition("?")[2]
    assert query not in text and "s3cret" not in text and "AKIA" not in text
    assert all(value not in text for value in parse_qs(query)["signature"])


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/files/uploads/x/source?expires=1&signature=abc&max_bytes=9", "/files/uploads/x/source?[redacted]"),
        ("/api/jobs/x", "/api/jobs/x"),
        ("/?Expires=1&a=b&flag", "/?Expires=[redacted]&a=b&flag"),
    ],
)
def test_redact_target(target: str, logged: str) -> None:
    assert logsafe.redact_target(target) == logged
