"""A newline (or an escape sequence) in a user's file name cannot forge or garble a log line."""

from __future__ import annotations

import io
import logging

import pytest

from video_converter import logsafe


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
