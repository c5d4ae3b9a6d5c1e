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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from ..config import Settings
from ..model import SourceInfo
from .errors import (
    ConversionCancelled,
    ConversionTimeout,
    FFmpegError,
    FrameTooLarge,
    InvalidMedia,
    MemoryLimitExceeded,
    OutputTooLarge,
)
from .locate import ffmpeg_path, ffprobe_path
from .parse import (
    PROBE_ENTRIES,
    ProbeFacts,
    ProgressTracker,
    frame_over_max_pixels,
    parse_packet_times,
    parse_probe_facts,
    says_out_of_memory,
    tail,
)

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
# ffprobe reads headers and decodes a frame or so, single-threaded: ~100 MB resident for an 8K H.264 MP4.
# Its own, tighter address-space cap refuses what a crafted header makes it allocate: a 1.3 KB MP4 whose
# one stts/stsz entry declares 89 million samples gets a 2.1 GB index under the 3072 MB FFmpeg limit;
# under this one the allocation fails, the demuxer leaves the index empty and the probe costs ~15 MB.
DEFAULT_PROBE_MEMORY_MB = 512
DEFAULT_CONCURRENT_PROBES = 2
# What ffprobe prints, read at most: its -show_entries answer for a real file is a few KB.
PROBE_OUTPUT_LIMIT = 1024 * 1024
PROBE_STDERR_KEPT = 64 * 1024
# Each thread reserves a stack and, with glibc, a malloc arena: address space grows with the thread
# count, which FFmpeg takes from the number of cores. A fixed cap keeps the memory limit meaningful on
# a 64-core host (8 threads: ~1.6 GB for x264 1080p from an 8K source; 32 threads: ~3.1 GB).
MAX_THREADS = min(os.cpu_count() or 1, 8)

ProgressCallback = Callable[[float], None]
Files = Sequence[tuple[Sequence[str], Path]]  # (options, path) inputs or (arguments, path) outputs


# The bundled static FFmpeg carries its own glibc, whose iconv (the MPEG-TS demuxer decodes DVB service
# names with it) loads the host's gconv modules, built for another glibc: on Debian 12 ffmpeg and ffprobe
# die of SIGSEGV on every .ts/.m2ts/.mts. With GCONV_PATH naming a folder that does not exist they do not
# (checked on FFmpeg 7.0.2: exit -11 without it, 0 with it); a distribution's FFmpeg is unaffected.
NO_GCONV_MODULES = "/nonexistent/gconv"


def child_env() -> dict[str, str]:
    """The environment of every ffmpeg and ffprobe, in local mode and on Lambda alike (and in the tests)."""
    # glibc reserves 64 MB of address space per malloc arena (RLIMIT_AS counts reservations, not use).
    return {**os.environ, "MALLOC_ARENA_MAX": "2", "GCONV_PATH": NO_GCONV_MODULES}


def _spawn(argv: list[str], memory_mb: int | None, **pipes: Any) -> subprocess.Popen[Any]:
    """An ffmpeg or ffprobe with no stdin, its output piped, bounded in address space, in its own
    process group (a kill reaches a wrapper script's children too), without the host's gconv modules."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=child_env(),
        preexec_fn=_address_space_limit(memory_mb),
        **pipes,
    )


def _address_space_limit(memory_mb: int | None) -> Callable[[], None] | None:
    """A preexec_fn that caps the child's address space. It runs between fork and exec, where only
    async-signal-safe work is safe: setrlimit is one system call and takes no lock."""
    if not memory_mb:
        return None
    limit = memory_mb * 1024 * 1024

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _kill_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class _Probed:
    """One ffprobe run: its exit code, what it printed (stdout up to the limit, the end of stderr), and
    whether it was stopped for taking too long or printing too much."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    too_long: bool = False


def _keep_tail(stream: IO[bytes], kept: bytearray) -> None:
    """Read ``stream`` to its end, keeping its last PROBE_STDERR_KEPT bytes."""
    while chunk := stream.read(65536):
        kept += chunk
        del kept[:-PROBE_STDERR_KEPT]


def _probe_bounded(argv: list[str], timeout: float, memory_mb: int | None) -> _Probed:
    """Run ffprobe with at most PROBE_OUTPUT_LIMIT bytes of its stdout read (killed past them) and its
    stderr's tail kept, killed after ``timeout`` s. The process is gone when this returns."""
    proc = _spawn(argv, memory_mb)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_group(proc)

    timer = threading.Timer(timeout, expire)
    stderr = bytearray()
    assert proc.stdout is not None and proc.stderr is not None
    reader = threading.Thread(target=_keep_tail, args=(proc.stderr, stderr), daemon=True)
    timer.start()
    reader.start()
    try:
        stdout = proc.stdout.read(PROBE_OUTPUT_LIMIT + 1)
        if len(stdout) > PROBE_OUTPUT_LIMIT:
            _kill_group(proc)
        returncode = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    return _Probed(
        returncode=returncode,
        stdout=stdout[:PROBE_OUTPUT_LIMIT].decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
        timed_out=expired.is_set(),
        too_long=len(stdout) > PROBE_OUTPUT_LIMIT,
    )


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
        probe_memory_mb: int | None = DEFAULT_PROBE_MEMORY_MB,
        max_concurrent_probes: int = DEFAULT_CONCURRENT_PROBES,
        max_pixels: int | None = None,
    ) -> None:
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe
        self.memory_mb = memory_mb
        self.max_output_bytes = max_output_bytes
        # Decoders refuse frames over this (-max_pixels): the probe checks the declared size, but a stream
        # can switch to a larger one partway through (a 160x120 file whose SPS turns 16000x16000).
        self.max_pixels = max_pixels
        self._probe_memory_mb = probe_memory_mb
        # The API's request threads and the workers of a process share the runtime's one FFmpeg: at most
        # this many ffprobes run at once, the others wait for a turn.
        self._probes = threading.BoundedSemaphore(max_concurrent_probes)

    @classmethod
    def from_settings(cls, settings: Settings) -> FFmpeg:
        return cls(
            memory_mb=settings.ffmpeg_memory_mb,
            max_output_bytes=settings.max_output_bytes,
            probe_memory_mb=settings.probe_memory_mb,
            max_concurrent_probes=settings.max_concurrent_probes,
            max_pixels=settings.max_pixels,
        )

    @property
    def probe_memory_mb(self) -> int | None:
        """The address-space limit of each ffprobe: the FFmpeg limit, or the probe's own when lower."""
        limits = [mb for mb in (self.memory_mb, self._probe_memory_mb) if mb]
        return min(limits) if limits else None

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
            "-print_format", "json=compact=1", "-show_entries", PROBE_ENTRIES, str(path),
        ]  # fmt: skip
        done = self._run_probe(argv, timeout)
        if done.timed_out:
            raise InvalidMedia(f"Reading the file took longer than {timeout:.0f} s")
        if done.too_long:
            raise InvalidMedia(
                f"Describing this file takes more than {PROBE_OUTPUT_LIMIT // 2**20} MiB of text (thousands "
                "of streams, or a crafted header); files like this are refused"
            )
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

    def _run_probe(self, argv: list[str], timeout: float) -> _Probed:
        """ffprobe, when its turn comes, bounded in time, memory and what it prints."""
        with self._probes:
            return _probe_bounded(argv, timeout, self.probe_memory_mb)

    def first_video_time(self, path: Path, timeout: float = PROBE_TIMEOUT) -> float:
        """When the first frame of one of our own files is shown: the smallest timestamp among its first
        video packets (decode order differs from display order with B-frames)."""
        argv = [
            self.ffprobe, "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#16",
            "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path),
        ]  # fmt: skip
        done = self._run_probe(argv, timeout)
        times = parse_packet_times(done.stdout)
        if done.timed_out or done.returncode != 0 or not times:
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
        outputs = [*more_outputs, (output_args, output)]
        argv = ffmpeg_argv(
            self.ffmpeg, source, outputs,
            input_args=input_args, max_seconds=max_seconds, extra_inputs=extra_inputs, trusted=trusted,
            max_output_bytes=self.max_output_bytes, max_pixels=self.max_pixels,
        )  # fmt: skip
        run = _Run.start(argv, self.memory_mb)
        returncode = run.supervise(timeout, cancel, ProgressTracker(duration), on_progress)
        self._raise_if_failed(run, returncode, timeout, source, outputs)
        self._check_sizes(outputs)

    def _raise_if_failed(self, run: _Run, returncode: int, timeout: float, source: Path, outputs: Files) -> None:
        """The finished run as an error, most telling first: cancelled, timed out, over the memory limit,
        failed (its stderr tail naming files by role). Nothing when FFmpeg exited 0."""
        if run.stop_reason == "cancelled":
            raise ConversionCancelled("The worker stopped before the conversion finished")
        if run.frame_too_large:
            raise FrameTooLarge(run.frame_too_large)
        stderr_tail = _redact(tail(run.stderr_lines), source, *(str(path) for _, path in outputs))
        if run.stop_reason == "timeout":
            message = f"The conversion took longer than the {timeout:.0f} s limit"
            raise ConversionTimeout(message, stderr_tail=stderr_tail)
        if returncode == 0:
            return
        if self.memory_mb and (run.out_of_memory or returncode in (-signal.SIGABRT, -signal.SIGSEGV)):
            raise MemoryLimitExceeded(
                f"The conversion needed more than the {self.memory_mb} MB memory limit",
                returncode=returncode,
                stderr_tail=stderr_tail,
            )
        raise FFmpegError("FFmpeg failed", returncode=returncode, stderr_tail=stderr_tail)

    def _check_sizes(self, outputs: Files) -> None:
        """-fs stops writing at the limit and still exits 0: a file that reached it is cut short."""
        for _, path in outputs:
            if self.max_output_bytes and path.is_file() and path.stat().st_size >= self.max_output_bytes:
                raise OutputTooLarge(f"The converted file reached the {self.max_output_bytes} byte size limit")


def ffmpeg_argv(
    ffmpeg: str,
    source: Path,
    outputs: Files,
    *,
    input_args: Sequence[str] = (),
    max_seconds: float | None = None,
    extra_inputs: Files = (),
    trusted: bool = False,
    max_output_bytes: int | None = None,
    max_pixels: int | None = None,
) -> list[str]:
    """The command line of one ffmpeg run (pure): progress as key=value lines on stdout, the input
    whitelist (and, with ``max_pixels``, the decoders' frame size limit) before every input, ``source``
    read for ``max_seconds`` at most, then each (arguments, path) output bounded in threads and, with
    ``max_output_bytes``, in size."""
    safety = TRUSTED_INPUT_OPTIONS if trusted else SAFE_INPUT_OPTIONS
    if max_pixels:
        safety = [*safety, "-max_pixels", str(max_pixels)]
    reading = ["-t", f"{max_seconds:.3f}"] if max_seconds else []
    more = [arg for options, path in extra_inputs for arg in (*safety, *options, "-i", str(path))]
    size_cap = ["-fs", str(max_output_bytes)] if max_output_bytes else []
    thread_cap = ["-threads", str(MAX_THREADS)]
    written = [arg for args, path in outputs for arg in (*args, *thread_cap, *size_cap, str(path))]
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
        "-progress", "pipe:1", "-filter_threads", str(MAX_THREADS),
        *safety, *thread_cap, *input_args, *reading, "-i", str(source), *more, *written,
    ]  # fmt: skip


@dataclass
class _Run:
    """One running ffmpeg and what its watchers saw. The watchdog thread sets ``stop_reason`` before it
    kills the process; the stderr thread keeps the last lines, notes a refused allocation, and
    stops the process at a frame refused over the pixel limit; the caller's thread reads the progress.
    ``finished`` tells the watchdog the process is gone."""

    proc: subprocess.Popen[str]
    stop_reason: Literal["cancelled", "timeout"] | None = None
    stderr_lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    out_of_memory: bool = False
    frame_too_large: str | None = None  # the sentence, once a decoder refused a frame over -max_pixels
    finished: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, argv: list[str], memory_mb: int | None) -> _Run:
        return cls(_spawn(argv, memory_mb, text=True, errors="replace", bufsize=1))

    def supervise(
        self,
        timeout: float,
        cancel: threading.Event | None,
        tracker: ProgressTracker,
        on_progress: ProgressCallback | None,
    ) -> int:
        """Read the progress until ffmpeg exits, watched and with its stderr read alongside; its exit code.
        However this ends (an ``on_progress`` that raises too), the process is gone when it returns."""
        threads = [
            threading.Thread(target=self._watch, args=(timeout, cancel), daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            self._read_progress(tracker, on_progress)
            return self.proc.wait()
        finally:
            self.finished.set()
            if self.proc.poll() is None:
                _kill_group(self.proc)
                self.proc.wait()
            for thread in threads:
                thread.join(timeout=5)

    def _watch(self, timeout: float, cancel: threading.Event | None) -> None:
        """Kill the process group when ``cancel`` is set or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while not self.finished.wait(0.2):
            if cancel is not None and cancel.is_set():
                self.stop_reason = "cancelled"
            elif time.monotonic() > deadline:
                self.stop_reason = "timeout"
            if self.stop_reason:
                _kill_group(self.proc)
                return

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if not self.out_of_memory and says_out_of_memory(line):
                self.out_of_memory = True  # noted as it passes: the 40 lines kept may end with its consequences
            if self.frame_too_large is None and (sentence := frame_over_max_pixels(line)):
                self.frame_too_large = sentence
                _kill_group(self.proc)  # the rest would be dropped frame by frame: the output is lost anyway

    def _read_progress(self, tracker: ProgressTracker, on_progress: ProgressCallback | None) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            percent = tracker.feed(line)
            if percent is not None and on_progress is not None:
                on_progress(percent)
