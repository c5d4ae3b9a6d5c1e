"""Unit-test helpers: fake FFmpeg executables (small shell scripts) for the failure paths."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

FakeBinary = Callable[[str], str]


@pytest.fixture
def fake_binary(tmp_path: Path) -> FakeBinary:
    """Write an executable ``#!/bin/sh`` script with the given body; return its path."""
    counter = iter(range(1000))

    def make(body: str) -> str:
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        path = bin_dir / f"ffmpeg-fake-{next(counter)}"
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)

    return make
