"""Shared fixtures: settings in a temp dir, tiny clips made by FFmpeg's lavfi, and a prober."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from video_converter.config import Settings
from video_converter.ffmpeg import FFmpeg, ffmpeg_path, ffprobe_path
from video_converter.ffmpeg.runner import child_env
from video_converter.jobs import JobService
from video_converter.messages import process_message
from video_converter.model import OutputRecord, OutputStatus
from video_converter.outcome import Action, Outcome
from video_converter.queues import MemoryQueue, Message, Queue
from video_converter.runtime import Runtime, Scratch
from video_converter.storage import MemoryStorage
from video_converter.work import Convert, Notify, Task, Work, from_body, to_body

ClipFactory = Callable[..., Path]
H264_ULTRAFAST = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workers=0, secret_key="test-secret", _env_file=None)


def memory_runtime(
    settings: Settings, scratch: Path, *, queue: Queue | None = None, ffmpeg: FFmpeg | None = None
) -> Runtime:
    """A runtime over in-memory stores and queue (the fakes shipped beside the real adapters)."""
    return Runtime(
        settings,
        uploads=MemoryStorage(),
        converted=MemoryStorage(),
        queue=queue or MemoryQueue(),
        scratch=Scratch(scratch),
        ffmpeg=ffmpeg or FFmpeg.from_settings(settings),
    )


class MemoryParts:
    """A memory runtime's stores and queue, typed as the fakes they are (for asserting on their contents)."""

    def __init__(self, rt: Runtime) -> None:
        assert isinstance(rt.uploads, MemoryStorage) and isinstance(rt.converted, MemoryStorage)
        assert isinstance(rt.queue, MemoryQueue)
        self.uploads, self.converted, self.queue = rt.uploads, rt.converted, rt.queue


@pytest.fixture
def mem_runtime(settings: Settings, tmp_path: Path) -> Iterator[Runtime]:
    rt = memory_runtime(settings, tmp_path / "scratch")
    yield rt
    rt.close()


class RecordingStorage(MemoryStorage):
    """Remembers every status record written, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.status_writes: list[dict[str, Any]] = []

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        if "/status/" in key:
            self.status_writes.append(json.loads(data))
        super().put_bytes(key, data, content_type)


class Env:
    """A memory runtime (its converted store records status writes), the job service over it, and
    messages delivered to process_message by hand: the one harness of every test that drives the
    conversion path a message at a time. ``ffmpeg`` (the FFmpeg the settings give, unless one is passed)
    is what each ``convert`` runs, unless it is given another."""

    def __init__(
        self,
        settings: Settings,
        scratch: Path,
        *,
        queue: Queue | None = None,
        ffmpeg: FFmpeg | None = None,
        converted: RecordingStorage | None = None,
    ) -> None:
        self.settings = settings
        self.ffmpeg = ffmpeg or FFmpeg.from_settings(settings)
        self.rt: Runtime = memory_runtime(settings, scratch, queue=queue, ffmpeg=self.ffmpeg)
        self.converted = converted or RecordingStorage()
        self.rt.converted = self.converted
        assert isinstance(self.rt.uploads, MemoryStorage)
        self.uploads = self.rt.uploads
        self.service = JobService(self.rt)
        self.job_id = ""  # the last job made
        self.created: list[Work] = []  # the messages that ``create`` took off the queue

    @property
    def queue(self) -> MemoryQueue:
        assert isinstance(self.rt.queue, MemoryQueue)
        return self.rt.queue

    def job(self, source: Path | bytes, formats: list[str], filename: str = "My Clip.mp4") -> str:
        """Upload ``source`` and create a job for these formats; its messages stay on the queue."""
        data = source if isinstance(source, bytes) else source.read_bytes()
        self.job_id = self.service.upload_and_create(io.BytesIO(data), filename, formats).job_id
        return self.job_id

    def create(self, clip: Path, formats: list[str]) -> str:
        """A job for ``clip`` (under its own name), with the messages its creation sent taken off the queue
        into ``created``: the tests deliver them by hand."""
        job_id = self.job(clip, formats, clip.name)
        self.created = self.take()
        return job_id

    def pending(self) -> list[Work]:
        """The conversion messages on the queue, as tasks (left there)."""
        return [t for body in self.queue.pending() if isinstance(t := from_body(body), Work)]

    def notices(self) -> list[Notify]:
        """The webhook notices on the queue (left there)."""
        return [t for body in self.queue.pending() if isinstance(t := from_body(body), Notify)]

    def take(self) -> list[Work]:
        """The conversion messages on the queue, as tasks; every message (webhook notices too) is taken off."""
        tasks = self.pending()
        self.queue.entries.clear()
        return tasks

    def outcome(self, task: Task, attempt: int = 1, **kwargs: Any) -> Outcome:
        """Deliver ``task`` with this receive count to process_message (with the runtime's FFmpeg as it is)."""
        message = Message(id="m", body=to_body(task), receive_count=attempt, handle="h")
        return process_message(self.rt, message, **kwargs)

    def deliver(self, task: Task, attempt: int = 1) -> Action:
        return self.outcome(task, attempt).action

    def convert(
        self, job_id: str, format_id: str, attempt: int = 1, ffmpeg: FFmpeg | None = None, **kwargs: Any
    ) -> Outcome:
        """Deliver a (job, format) message with this receive count to process_message, run by ``ffmpeg``
        (by default ``self.ffmpeg``)."""
        self.rt.ffmpeg = ffmpeg or self.ffmpeg
        return self.outcome(Convert(job_id, (format_id,)), attempt, **kwargs)

    def record(self, job_id: str, format_id: str) -> OutputRecord:
        return self.rt.jobs.output(job_id, format_id)

    def status(self, job_id: str, format_id: str) -> OutputStatus:
        return self.record(job_id, format_id).status

    def view(self, job_id: str) -> dict[str, Any]:
        return self.service.documents.view(job_id).model_dump(mode="json")

    def job_error(self) -> str:
        """The job-level sentence the last job's refused original got (its outputs say "Not converted")."""
        error = self.rt.jobs.failure(self.job_id)
        assert error is not None
        return error

    def output_file(self, record: OutputRecord, folder: Path) -> Path:
        """A converted output, written into ``folder`` (for ffprobe)."""
        assert record.key
        path = folder / record.key.replace("/", "_")
        path.write_bytes(self.converted.get_bytes(record.key))
        return path

    def scratch_is_empty(self) -> bool:
        return list(self.rt.scratch.path.iterdir()) == []


MakeEnv = Callable[..., Env]


@pytest.fixture
def make_env(settings: Settings, tmp_path: Path) -> Iterator[MakeEnv]:
    """``make_env(queue=..., ffmpeg=..., converted=..., **settings)``: an Env over the test's settings with
    these changed; each is closed after the test."""
    made: list[Env] = []

    def make(
        *,
        queue: Queue | None = None,
        ffmpeg: FFmpeg | None = None,
        converted: RecordingStorage | None = None,
        **update: Any,
    ) -> Env:
        env = Env(
            settings.model_copy(update=update), tmp_path / "scratch", queue=queue, ffmpeg=ffmpeg, converted=converted
        )
        made.append(env)
        return env

    yield make
    for env in made:
        env.rt.close()


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env()


def make_clip_file(
    path: Path,
    *,
    seconds: float = 2.0,
    size: str = "320x240",
    rate: int = 25,
    video: bool = True,
    audio: bool = True,
    extra: tuple[str, ...] = (),
    encoder: tuple[str, ...] = H264_ULTRAFAST,
    timeout: float = 120,
) -> Path:
    """A real clip from FFmpeg's test sources: test pattern video (encoded with ``encoder``: the video codec
    and its options) and/or a sine tone."""
    argv = [ffmpeg_path(), "-hide_banner", "-v", "error", "-y"]
    if video:
        argv += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    if video:
        argv += encoder
    if audio:
        argv += ["-c:a", "aac" if path.suffix != ".mp3" else "libmp3lame"]
    argv += [*extra, str(path)]
    subprocess.run(argv, check=True, timeout=timeout, env=child_env())
    return path


@pytest.fixture
def make_clip(tmp_path: Path) -> ClipFactory:
    counter = iter(range(10_000))

    def factory(name: str | None = None, **kwargs: Any) -> Path:
        clips = tmp_path / "clips"
        clips.mkdir(exist_ok=True)
        return make_clip_file(clips / (name or f"clip{next(counter)}.mp4"), **kwargs)

    return factory


def probe_file(path: Path) -> dict[str, Any]:
    """ffprobe's view of a produced file (streams + format), for asserting on outputs."""
    done = subprocess.run(
        [ffprobe_path(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=child_env(),  # as the product runs it (the bundled FFmpeg crashes on MPEG-TS without)
    )
    return json.loads(done.stdout)


def frames_of(path: Path) -> int:
    """How many video frames a file really has (decoded and counted, not as declared)."""
    done = subprocess.run(
        [ffprobe_path(), "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=60, env=child_env(),
    )  # fmt: skip
    return int(done.stdout.strip())


@pytest.fixture
def probe() -> Callable[[Path], dict[str, Any]]:
    return probe_file


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


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail, saying ``what`` was awaited, after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: still not so after {timeout:.0f} s"
        time.sleep(0.02)


def set_once_exists(marker: Path, event: threading.Event, timeout: float = 60.0) -> list[float]:
    """Set ``event`` from a thread of its own as soon as ``marker`` exists: a fake FFmpeg that starts with
    ``touch marker`` is then known to be running, however slowly this machine got there (never after a
    guessed delay). Returns [the time.monotonic() it was set at], filled in then; gives up, leaving the
    event alone, after ``timeout`` s."""
    when: list[float] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        when.append(time.monotonic())
        event.set()

    threading.Thread(target=watch, daemon=True).start()
    return when
