"""Run ffprobe/ffmpeg as argument lists (never a shell), bounded in time, cancellable, with progress."""

from __future__ import annotations

import collections
import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import Settings
from ..model import SourceInfo
from .errors import (
    ConversionCancelled,
    ConversionTimeout,
    FFmpegError,
    InvalidMedia,
    MemoryLimitExceeded,
    OutputTooLarge,
)
from .locate import ffmpeg_path, ffprobe_path
from .parse import ProbeFacts, ProgressTracker, parse_packet_times, parse_probe_facts, says_out_of_memory, tail

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
# Our own intermediate files (segments and the list that joins them): the concat demuxer is admitted
# there, and only there, since it reads the files a list names.
TRUSTED_INPUT_OPTIONS = ["-protocol_whitelist", "file", "-format_whitelist", f"{ALLOWED_DEMUXERS},concat"]
PROBE_TIMEOUT = 60.0
DEFAULT_MEMORY_MB = 3072
# Each thread reserves a stack and, with glibc, a malloc arena: address space grows with the thread
# count, which FFmpeg takes from the number of cores. A fixed cap keeps the memory limit meaningful on
# a 64-core host (8 threads: ~1.6 GB for x264 1080p from an 8K source; 32 threads: ~3.1 GB).
MAX_THREADS = min(os.cpu_count() or 1, 8)

ProgressCallback = Callable[[float], None]


def _child_env() -> dict[str, str]:
    # glibc reserves 64 MB of address space per malloc arena (RLIMIT_AS counts reservations, not use).
    return {**os.environ, "MALLOC_ARENA_MAX": "2"}


def _address_space_limit(memory_mb: int | None) -> Callable[[], None] | None:
    """A preexec_fn that caps the child's address space. It runs between fork and exec, where only
    async-signal-safe work is safe: setrlimit is one system call and takes no lock."""
    if not memory_mb:
        return None
    limit = memory_mb * 1024 * 1024

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _redact(text: str, source: Path, *outputs: str) -> str:
    """Error messages reach users: name files by role, never by their path on the server."""
    text = text.replace(str(source), "input")
    for output in outputs:
        text = text.replace(output, "output")
    return text


class FFmpeg:
    """Runs ffprobe and ffmpeg, each bounded in memory (``memory_mb``, address space per process), time
    and, for ffmpeg, output size (``max_output_bytes``)."""

    def __init__(
        self,
        ffmpeg: str | None = None,
        ffprobe: str | None = None,
        *,
        memory_mb: int | None = DEFAULT_MEMORY_MB,
        max_output_bytes: int | None = None,
    ) -> None:
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe
        self.memory_mb = memory_mb
        self.max_output_bytes = max_output_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> FFmpeg:
        return cls(memory_mb=settings.ffmpeg_memory_mb, max_output_bytes=settings.max_output_bytes)

    @property
    def ffmpeg(self) -> str:
        return self._ffmpeg or ffmpeg_path()

    @property
    def ffprobe(self) -> str:
        return self._ffprobe or ffprobe_path()

    def probe(self, path: Path, timeout: float = PROBE_TIMEOUT, *, trusted: bool = False) -> SourceInfo:
        """Describe a media file. Uploads are read with the safe-input whitelist; ``trusted`` is for our
        own outputs (a JPEG poster frame is not a container the whitelist admits)."""
        return self.inspect(path, timeout, trusted=trusted).info

    def inspect(self, path: Path, timeout: float = PROBE_TIMEOUT, *, trusted: bool = False) -> ProbeFacts:
        """``probe`` with the per-stream facts the limits check (video_converter.limits)."""
        safety = [] if trusted else SAFE_INPUT_OPTIONS
        argv = [
            self.ffprobe, "-v", "error", *safety,
            "-print_format", "json", "-show_format", "-show_streams", str(path),
        ]  # fmt: skip
        try:
            done = self._run_probe(argv, timeout)
        except subprocess.TimeoutExpired as exc:
            raise InvalidMedia(f"Reading the file took longer than {timeout:.0f} s") from exc
        if done.returncode != 0:
            raise InvalidMedia(
                "This file is not a video or audio file that FFmpeg can read",
                returncode=done.returncode,
                stderr_tail=_redact(tail(done.stderr.splitlines(), count=3), path),
            )
        facts = parse_probe_facts(done.stdout)
        if not facts.info.has_video and not facts.info.has_audio:
            raise InvalidMedia("This file has no video or audio stream")
        return facts

    def _run_probe(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """ffprobe, bounded in time and memory like every FFmpeg process."""
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=_child_env(),
            preexec_fn=_address_space_limit(self.memory_mb),
        )

    def first_video_time(self, path: Path, timeout: float = PROBE_TIMEOUT) -> float:
        """When the first frame of one of our own files is shown: the smallest timestamp among its first
        video packets (decode order differs from display order with B-frames)."""
        argv = [
            self.ffprobe, "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#16",
            "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path),
        ]  # fmt: skip
        done = self._run_probe(argv, timeout)
        times = parse_packet_times(done.stdout)
        if done.returncode != 0 or not times:
            raise FFmpegError("Reading the timestamps of a part failed", returncode=done.returncode)
        return min(times)

    def convert(
        self,
        source: Path,
        output: Path,
        output_args: Sequence[str],
        *,
        input_args: Sequence[str] = (),
        duration: float | None = None,
        max_seconds: float | None = None,
        timeout: float = 3600.0,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        extra_inputs: Sequence[tuple[Sequence[str], Path]] = (),
        more_outputs: Sequence[tuple[Sequence[str], Path]] = (),
        trusted: bool = False,
    ) -> None:
        """Run one conversion into ``output``; raise FFmpegError (with exit code and stderr tail) if it
        fails. ``duration`` drives the progress percentage; ``max_seconds`` is how much of the input is
        read at most (input ``-t``: FFmpeg never decodes past it, whatever the file's timestamps say).
        ``extra_inputs`` are further (options, path) inputs and ``more_outputs`` further (arguments,
        path) outputs of the same run, each bounded like ``output``; ``trusted`` admits the concat
        demuxer, for the lists of our own segments only."""
        reading = ["-t", f"{max_seconds:.3f}"] if max_seconds else []
        safety = TRUSTED_INPUT_OPTIONS if trusted else SAFE_INPUT_OPTIONS
        more = [arg for options, path in extra_inputs for arg in (*safety, *options, "-i", str(path))]
        size_cap = ["-fs", str(self.max_output_bytes)] if self.max_output_bytes else []
        thread_cap = ["-threads", str(MAX_THREADS)]
        outputs = [*more_outputs, (output_args, output)]
        written = [arg for args, path in outputs for arg in (*args, *thread_cap, *size_cap, str(path))]
        argv = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
            "-progress", "pipe:1", "-filter_threads", str(MAX_THREADS),
            *safety, *thread_cap, *input_args, *reading, "-i", str(source), *more, *written,
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
            env=_child_env(),
            preexec_fn=_address_space_limit(self.memory_mb),
        )
        stop_reason: list[str] = []
        out_of_memory: list[str] = []
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
                if not out_of_memory and says_out_of_memory(line):
                    out_of_memory.append(line)  # early: later lines are the decoder's consequences

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
        stderr_tail = _redact(tail(stderr_lines), source, *(str(path) for _, path in outputs))
        if "timeout" in stop_reason:
            message = f"The conversion took longer than the {timeout:.0f} s limit"
            raise ConversionTimeout(message, stderr_tail=stderr_tail)
        if returncode != 0:
            if self.memory_mb and (out_of_memory or returncode in (-signal.SIGABRT, -signal.SIGSEGV)):
                raise MemoryLimitExceeded(
                    f"The conversion needed more than the {self.memory_mb} MB memory limit",
                    returncode=returncode,
                    stderr_tail=stderr_tail,
                )
            raise FFmpegError("FFmpeg failed", returncode=returncode, stderr_tail=stderr_tail)
        # -fs stops writing at the limit and still exits 0: a file that reached it is cut short.
        for _, path in outputs:
            if self.max_output_bytes and path.is_file() and path.stat().st_size >= self.max_output_bytes:
                raise OutputTooLarge(f"The converted file reached the {self.max_output_bytes} byte size limit")
