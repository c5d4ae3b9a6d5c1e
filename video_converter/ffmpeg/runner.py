"""Run ffprobe/ffmpeg as argument lists (never a shell), bounded in time, cancellable, with progress."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..model import SourceInfo
from .errors import ConversionCancelled, ConversionTimeout, FFmpegError, InvalidMedia
from .locate import ffmpeg_path, ffprobe_path
from .parse import ProgressTracker, parse_probe, tail

# Inputs are opened with the file protocol only and a fixed list of container demuxers, so a crafted
# upload (an HLS playlist, a concat script, a tee/subfile URL) cannot make FFmpeg read anything but the
# file it was given.
ALLOWED_DEMUXERS = ",".join(
    [
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "avi",
        "flv",
        "mpegts",
        "mpeg",
        "mpegvideo",
        "ogg",
        "asf",
        "wav",
        "mp3",
        "aac",
        "flac",
        "gif",
        "mxf",
        "dv",
        "h264",
        "hevc",
        "m4v",
        "ivf",
        "nut",
        "rm",
        "yuv4mpegpipe",
        "w64",
        "aiff",
        "amr",
        "caf",
    ]
)
SAFE_INPUT_OPTIONS = ["-protocol_whitelist", "file", "-format_whitelist", ALLOWED_DEMUXERS]
PROBE_TIMEOUT = 60.0

ProgressCallback = Callable[[float], None]


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _redact(text: str, source: Path, output: str | None = None) -> str:
    """Error messages reach users: name files by role, never by their path on the server."""
    text = text.replace(str(source), "input")
    return text.replace(output, "output") if output else text


class FFmpeg:
    def __init__(self, ffmpeg: str | None = None, ffprobe: str | None = None) -> None:
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe

    @property
    def ffmpeg(self) -> str:
        return self._ffmpeg or ffmpeg_path()

    @property
    def ffprobe(self) -> str:
        return self._ffprobe or ffprobe_path()

    def probe(self, path: Path, timeout: float = PROBE_TIMEOUT, *, trusted: bool = False) -> SourceInfo:
        """Describe a media file. Uploads are read with the safe-input whitelist; ``trusted`` is for our
        own outputs (a JPEG poster frame is not a container the whitelist admits)."""
        safety = [] if trusted else SAFE_INPUT_OPTIONS
        argv = [
            self.ffprobe, "-v", "error", *safety,
            "-print_format", "json", "-show_format", "-show_streams", str(path),
        ]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InvalidMedia(f"Reading the file took longer than {timeout:.0f} s") from exc
        if done.returncode != 0:
            raise InvalidMedia(
                "This file is not a video or audio file that FFmpeg can read",
                returncode=done.returncode,
                stderr_tail=_redact(tail(done.stderr.splitlines(), count=3), path),
            )
        info = parse_probe(done.stdout)
        if not info.has_video and not info.has_audio:
            raise InvalidMedia("This file has no video or audio stream")
        return info

    def convert(
        self,
        source: Path,
        output_args: Sequence[str],
        *,
        input_args: Sequence[str] = (),
        duration: float | None = None,
        timeout: float = 3600.0,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Run one conversion; raise FFmpegError (with exit code and stderr tail) if it fails."""
        argv = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
            "-progress", "pipe:1", *SAFE_INPUT_OPTIONS, *input_args, "-i", str(source), *output_args,
        ]  # fmt: skip
        stderr_lines: collections.deque[str] = collections.deque(maxlen=40)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: a kill reaches wrapper scripts' children too
        )
        stop_reason: list[str] = []
        finished = threading.Event()

        def watchdog() -> None:
            deadline = time.monotonic() + timeout
            while not finished.wait(0.2):
                if cancel is not None and cancel.is_set():
                    stop_reason.append("cancelled")
                elif time.monotonic() > deadline:
                    stop_reason.append("timeout")
                if stop_reason:
                    _kill_group(proc)
                    return

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr_lines.append(line)

        threads = [threading.Thread(target=f, daemon=True) for f in (watchdog, read_stderr)]
        for thread in threads:
            thread.start()
        tracker = ProgressTracker(duration)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                percent = tracker.feed(line)
                if percent is not None and on_progress is not None:
                    on_progress(percent)
            returncode = proc.wait()
        finally:
            finished.set()
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
            for thread in threads:
                thread.join(timeout=5)
        if "cancelled" in stop_reason:
            raise ConversionCancelled("The worker stopped before the conversion finished")
        output = output_args[-1] if output_args else None
        if "timeout" in stop_reason:
            raise ConversionTimeout(
                f"The conversion took longer than the {timeout:.0f} s limit",
                stderr_tail=_redact(tail(stderr_lines), source, output),
            )
        if returncode != 0:
            raise FFmpegError(
                "FFmpeg failed", returncode=returncode, stderr_tail=_redact(tail(stderr_lines), source, output)
            )
