"""convert_output with real FFmpeg on tiny clips, its failure paths with fake FFmpeg, and the Worker loop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from video_converter import keys, worker
from video_converter.config import Settings
from video_converter.ffmpeg import ConversionCancelled, FFmpeg, ffmpeg_path, ffprobe_path
from video_converter.jobs import Converter, JobStore
from video_converter.model import OutputRecord, OutputStatus
from video_converter.queues import MemoryQueue, Message
from video_converter.storage import MemoryStorage
from video_converter.worker import RetryLater, Stores, Worker, convert_output, retry_delay

DATA = Path(__file__).parent / "data"


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
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uploads = MemoryStorage()
        self.converted = RecordingStorage()
        self.queue = MemoryQueue()
        self.converter = Converter(self.uploads, self.converted, self.queue, settings)
        self.stores = Stores(self.uploads, self.converted)

    def job(self, source: Path | bytes, formats: list[str], filename: str = "My Clip.mp4") -> str:
        import io

        data = source if isinstance(source, bytes) else source.read_bytes()
        return self.converter.upload_and_create(io.BytesIO(data), filename, formats)["job_id"]

    def convert(self, job_id: str, format_id: str, attempt: int = 1, **kwargs: Any) -> OutputRecord | None:
        kwargs.setdefault("ffmpeg", REAL)
        return convert_output(job_id, format_id, attempt, stores=self.stores, settings=self.settings, **kwargs)

    def record(self, job_id: str, format_id: str) -> OutputRecord:
        return JobStore(self.converted).output(job_id, format_id)


REAL = FFmpeg(ffmpeg=ffmpeg_path(), ffprobe=ffprobe_path())


@pytest.fixture
def env(settings: Settings) -> Env:
    return Env(settings)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_clip_file

    return make_clip_file(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1, size="160x120")


@pytest.fixture
def failing(fake_binary: Callable[[str], str], tmp_path: Path) -> FFmpeg:
    marker = tmp_path / "ffmpeg-was-called"
    script = fake_binary(f'touch {marker}; echo "some banner" >&2; echo "boom: encoder exploded" >&2; exit 1')
    return FFmpeg(ffmpeg=script, ffprobe=ffprobe_path())


def was_called(tmp_path: Path) -> bool:
    return (tmp_path / "ffmpeg-was-called").exists()


# --- real conversions -------------------------------------------------------------------------------


EXPECTED = {
    "1080p": ("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", (160, 120)),  # never upscaled
    "360p": ("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", (160, 120)),
    "webm": ("matroska,webm", "vp9", "opus", (160, 120)),
    "mp3": ("mp3", None, "mp3", None),
    "gif": ("gif", "gif", None, (160, 120)),
    "thumbnail": ("image2", "mjpeg", None, (160, 120)),
}


@pytest.mark.parametrize("format_id", EXPECTED)
def test_real_conversion(env: Env, clip: Path, format_id: str, probe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job_id = env.job(clip, [format_id])
    record = env.convert(job_id, format_id, workdir=tmp_path)
    assert record is not None
    assert record.status is OutputStatus.COMPLETED, record.error
    assert record.progress == 100.0 and record.error is None and record.attempts == 1
    ext = {"webm": "webm", "mp3": "mp3", "gif": "gif", "thumbnail": "jpg"}.get(format_id, "mp4")
    assert record.key == f"{job_id}/My_Clip_{format_id}.{ext}"
    data = env.converted.get_bytes(record.key)
    assert record.size_bytes == len(data) > 0
    assert record.source is not None and record.source.audio_codec == "aac"
    assert env.record(job_id, format_id) == record  # what the API will read
    assert list(tmp_path.iterdir()) == []  # the work dir is cleaned up

    out = tmp_path / f"out.{ext}"
    out.write_bytes(data)
    info = probe(out)
    fmt, vcodec, acodec, dims = EXPECTED[format_id]
    assert info["format"]["format_name"] == fmt
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert (streams["video"]["codec_name"] if "video" in streams else None) == vcodec
    assert (streams["audio"]["codec_name"] if "audio" in streams else None) == acodec
    if dims:
        assert (streams["video"]["width"], streams["video"]["height"]) == dims == (record.width, record.height)
    if format_id in ("1080p", "360p"):
        assert streams["video"]["pix_fmt"] == "yuv420p"
        # +faststart: the moov atom comes before the media data
        assert data.index(b"moov") < data.index(b"mdat")


def test_odd_sized_source_gives_even_mp4(env: Env, make_clip, probe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    odd = make_clip("odd.mkv", seconds=0.5, size="161x121", audio=False, extra=("-c:v", "ffv1", "-pix_fmt", "yuv444p"))
    job_id = env.job(odd, ["360p"], filename="odd.mkv")
    record = env.convert(job_id, "360p")
    assert record is not None and record.status is OutputStatus.COMPLETED, record and record.error
    assert record.height == 120 and record.width is not None and record.width % 2 == 0
    assert record.width in (160, 162)
    out = tmp_path / "o.mp4"
    out.write_bytes(env.converted.get_bytes(record.key))  # type: ignore[arg-type]
    assert not any(s["codec_type"] == "audio" for s in probe(out)["streams"])  # -an for a silent source


def test_progress_records_are_written(env: Env, make_clip, fake_binary, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(worker, "PROGRESS_INTERVAL", 0)
    source = make_clip(seconds=4, size="64x64")
    # a fake FFmpeg that prints real captured -progress output, then "produces" a real mp4
    script = fake_binary(f'cat {DATA / "progress.txt"}; for a; do last="$a"; done; cp {source} "$last"')
    job_id = env.job(source, ["720p"])
    record = env.convert(job_id, "720p", ffmpeg=FFmpeg(ffmpeg=script, ffprobe=ffprobe_path()))
    assert record is not None and record.status is OutputStatus.COMPLETED
    writes = [w for w in env.converted.status_writes if w["format"] == "720p"]
    statuses = [w["status"] for w in writes]
    assert statuses[0] == "queued" and statuses[-1] == "completed"
    progress = [w["progress"] for w in writes if w["status"] == "processing"]
    intermediate = [p for p in progress if 0 < p < 100]
    assert intermediate, progress
    assert max(progress) <= 99.0
    assert progress == sorted(progress)
    assert writes[-1]["progress"] == 100.0


def test_progress_writes_are_throttled(env: Env, make_clip, fake_binary) -> None:  # type: ignore[no-untyped-def]
    source = make_clip(seconds=4, size="64x64")
    script = fake_binary(f'cat {DATA / "progress.txt"}; for a; do last="$a"; done; cp {source} "$last"')
    job_id = env.job(source, ["720p"])
    env.convert(job_id, "720p", ffmpeg=FFmpeg(ffmpeg=script, ffprobe=ffprobe_path()))
    processing = [w for w in env.converted.status_writes if w["status"] == "processing"]
    # start + probe result + at most one throttled progress write (+ the 100 % one, capped at 99)
    assert len(processing) <= 4


# --- failure paths ------------------------------------------------------------------------------------


def test_first_failure_retries_later(env: Env, clip: Path, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(clip, ["360p"])
    with pytest.raises(RetryLater):
        env.convert(job_id, "360p", 1, ffmpeg=failing)
    assert was_called(tmp_path)
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.QUEUED
    assert record.attempts == 1 and record.progress == 0.0
    assert record.error is not None
    assert record.error.startswith("Attempt 1 failed: FFmpeg failed (exit code 1): ")
    assert "boom: encoder exploded" in record.error


def test_last_attempt_failure_is_recorded(env: Env, clip: Path, failing: FFmpeg) -> None:
    job_id = env.job(clip, ["360p"])
    record = env.convert(job_id, "360p", env.settings.max_attempts, ffmpeg=failing)
    assert record is not None and record.status is OutputStatus.FAILED
    assert record.error == "FFmpeg failed (exit code 1): some banner | boom: encoder exploded (after 3 attempts)"
    assert env.record(job_id, "360p").status is OutputStatus.FAILED
    assert env.converter.job_view(job_id)["status"] == "failed"


def test_attempt_past_max_gives_up_without_running(env: Env, clip: Path, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(clip, ["360p"])
    record = env.convert(job_id, "360p", env.settings.max_attempts + 1, ffmpeg=failing)
    assert record is not None and record.status is OutputStatus.FAILED
    assert record.error == "Gave up after 3 interrupted attempts."
    assert not was_called(tmp_path)


def test_garbage_source_fails_at_once(env: Env, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(b"this is not a video at all\n" * 100, ["720p", "mp3"], filename="notes.txt")
    record = env.convert(job_id, "720p", 1, ffmpeg=failing)  # no RetryLater on attempt 1
    assert record is not None and record.status is OutputStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("This file is not a video or audio file that FFmpeg can read")
    assert not was_called(tmp_path)


def test_mp3_from_silent_video_fails_with_a_sentence(env: Env, make_clip, failing: FFmpeg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    silent = make_clip(seconds=0.5, size="64x64", audio=False)
    job_id = env.job(silent, ["mp3"])
    record = env.convert(job_id, "mp3", 1, ffmpeg=failing)
    assert record is not None and record.status is OutputStatus.FAILED
    assert record.error == "The source has no audio track, so there is nothing to put in an MP3."
    assert record.source is not None and record.source.has_video
    assert not was_called(tmp_path)


def test_video_from_audio_only_fails(env: Env, make_clip, failing: FFmpeg) -> None:  # type: ignore[no-untyped-def]
    mp3 = make_clip("a.mp3", seconds=0.5, video=False)
    job_id = env.job(mp3, ["720p"], filename="a.mp3")
    record = env.convert(job_id, "720p", 1, ffmpeg=failing)
    assert record is not None and record.status is OutputStatus.FAILED
    assert record.error == "The source has no video stream, so it cannot be converted to MP4 720p."


def test_missing_original_fails(env: Env, clip: Path, failing: FFmpeg) -> None:
    job_id = env.job(clip, ["360p"])
    env.uploads.delete(keys.source_key(job_id))
    record = env.convert(job_id, "360p", 1, ffmpeg=failing)
    assert record is not None and record.status is OutputStatus.FAILED
    assert record.error == "The uploaded original is missing (it may have expired)."


def test_completed_output_is_not_converted_again(env: Env, clip: Path, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(clip, ["thumbnail"])
    first = env.convert(job_id, "thumbnail")
    assert first is not None and first.status is OutputStatus.COMPLETED
    writes = len(env.converted.status_writes)
    again = env.convert(job_id, "thumbnail", 2, ffmpeg=failing)  # a redelivered message
    assert again == first
    assert not was_called(tmp_path)
    assert len(env.converted.status_writes) == writes  # nothing rewritten


def test_completed_record_whose_file_vanished_is_redone(env: Env, clip: Path) -> None:
    job_id = env.job(clip, ["thumbnail"])
    first = env.convert(job_id, "thumbnail")
    assert first is not None and first.key is not None
    env.converted.delete(first.key)
    again = env.convert(job_id, "thumbnail", 2)
    assert again is not None and again.status is OutputStatus.COMPLETED and again.attempts == 2
    assert env.converted.size(first.key)


def test_failed_output_is_not_retried_by_an_older_delivery(env: Env, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(b"garbage" * 100, ["720p"])
    failed = env.convert(job_id, "720p", 2, ffmpeg=failing)
    assert failed is not None and failed.status is OutputStatus.FAILED
    assert env.convert(job_id, "720p", 1, ffmpeg=failing) == failed


def test_unknown_job_or_format_is_dropped(env: Env, clip: Path, failing: FFmpeg) -> None:
    assert env.convert("0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11", "720p", ffmpeg=failing) is None
    assert env.convert("not-a-job-id", "720p", ffmpeg=failing) is None
    job_id = env.job(clip, ["360p"])
    assert env.convert(job_id, "720p", ffmpeg=failing) is None  # not a format of this job
    assert env.convert(job_id, "avi", ffmpeg=failing) is None  # not a format at all
    assert env.record(job_id, "360p").status is OutputStatus.QUEUED


def test_cancel_puts_the_output_back(env: Env, clip: Path, fake_binary) -> None:  # type: ignore[no-untyped-def]
    slow = FFmpeg(ffmpeg=fake_binary("exec sleep 30"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["360p"])
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ConversionCancelled):
        env.convert(job_id, "360p", 1, ffmpeg=slow, cancel=cancel)
    assert time.monotonic() - started < 5
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.QUEUED and record.progress == 0.0
    assert env.converter.job_view(job_id)["status"] == "queued"


@pytest.mark.parametrize(("attempt", "delay"), [(1, 5), (2, 20), (3, 45), (7, 245), (8, 300), (100, 300)])
def test_retry_delay(attempt: int, delay: int) -> None:
    assert retry_delay(attempt) == delay


# --- the Worker loop -------------------------------------------------------------------------------


class RecordingQueue(MemoryQueue):
    def __init__(self) -> None:
        super().__init__(visibility_timeout=60)
        self.acked: list[Message] = []
        self.visibility: list[tuple[Message, int]] = []

    def receive(self, wait_seconds: float = 0.0) -> Message | None:
        return super().receive(min(wait_seconds, 0.1))  # so the worker notices `stop` quickly

    def ack(self, message: Message) -> None:
        self.acked.append(message)
        super().ack(message)

    def set_visibility(self, message: Message, seconds: int) -> None:
        self.visibility.append((message, seconds))
        super().set_visibility(message, seconds)


def run_worker(env: Env, queue: RecordingQueue, until: Callable[[], bool], ffmpeg: FFmpeg = REAL) -> None:
    stop = threading.Event()
    w = Worker(queue, env.stores, env.settings, stop, ffmpeg=ffmpeg)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not until():
            assert time.monotonic() < deadline, "worker did not get there in time"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_worker_processes_and_acks_all_messages(settings: Settings, clip: Path) -> None:
    env = Env(settings)
    env.queue = RecordingQueue()
    env.converter.queue = env.queue
    job_id = env.job(clip, ["360p", "mp3", "thumbnail"])
    assert len(env.queue.entries) == 3
    run_worker(env, env.queue, lambda: not env.queue.entries)
    assert len(env.queue.acked) == 3
    assert env.queue.visibility == []
    view = env.converter.job_view(job_id)
    assert view["status"] == "completed"
    assert all(o["download_url"] for o in view["outputs"])


def test_worker_retry_sets_visibility_backoff(settings: Settings, clip: Path, failing: FFmpeg) -> None:
    env = Env(settings)
    env.queue = RecordingQueue()
    env.converter.queue = env.queue
    job_id = env.job(clip, ["360p"])
    run_worker(env, env.queue, lambda: bool(env.queue.visibility), ffmpeg=failing)
    message, seconds = env.queue.visibility[0]
    assert message.body == {"job_id": job_id, "format": "360p"}
    assert seconds == retry_delay(1) == 5
    assert env.queue.acked == []
    assert len(env.queue.entries) == 1  # still there, for the next attempt


def test_worker_drops_malformed_messages(settings: Settings) -> None:
    env = Env(settings)
    queue = RecordingQueue()
    queue.send({"something": "else"})
    queue.send({"job_id": "", "format": "720p"})
    run_worker(env, queue, lambda: not queue.entries)
    assert len(queue.acked) == 2
    assert queue.visibility == []


def test_worker_survives_a_crash_and_backs_off(settings: Settings, clip: Path) -> None:
    class Exploding(FFmpeg):
        def probe(self, *args: Any, **kwargs: Any) -> Any:
            raise ZeroDivisionError("unexpected")

    env = Env(settings)
    queue = RecordingQueue()
    env.converter.queue = queue
    env.job(clip, ["360p"])
    run_worker(env, queue, lambda: bool(queue.visibility), ffmpeg=Exploding())
    assert queue.visibility[0][1] == 5
    assert queue.acked == []


def test_worker_stopping_mid_conversion_hands_the_message_back(settings: Settings, clip: Path, fake_binary) -> None:  # type: ignore[no-untyped-def]
    env = Env(settings)
    queue = RecordingQueue()
    env.converter.queue = queue
    job_id = env.job(clip, ["360p"])
    stop = threading.Event()
    w = Worker(queue, env.stores, settings, stop, ffmpeg=FFmpeg(fake_binary("exec sleep 30"), ffprobe_path()))
    message = queue.receive()
    assert message is not None
    threading.Timer(0.3, stop.set).start()
    w.handle(message)
    assert [(m.id, s) for m, s in queue.visibility] == [(message.id, 0)]
    assert queue.acked == []
    assert env.record(job_id, "360p").status is OutputStatus.QUEUED
    again = queue.receive()
    assert again is not None and again.receive_count == 2


def test_a_late_redelivery_keeps_the_recorded_failure_reason(env: Env, clip: Path, failing: FFmpeg) -> None:
    job_id = env.job(clip, ["360p"])
    failed = env.convert(job_id, "360p", env.settings.max_attempts, ffmpeg=failing)
    assert failed is not None and failed.status is OutputStatus.FAILED and "exit code 1" in (failed.error or "")
    again = env.convert(job_id, "360p", env.settings.max_attempts + 1, ffmpeg=failing)
    assert again is not None and again.error == failed.error


def test_ffmpeg_time_is_bounded_by_the_deadline_and_the_setting(settings: Settings) -> None:
    from video_converter.worker import _time_left

    capped = settings.model_copy(update={"ffmpeg_timeout": 120})
    assert _time_left(capped, None) == 120
    assert _time_left(capped, time.monotonic() + 900) == 120  # plenty of time: the setting wins
    assert _time_left(capped, time.monotonic() + 60) == pytest.approx(60, abs=1)  # download ate the rest
    assert _time_left(capped, time.monotonic() - 5) == 1.0  # never zero or negative


def test_a_conversion_over_the_time_limit_fails_at_once_without_retry(
    env: Env, clip: Path, fake_binary: Callable[[str], str]
) -> None:
    slow = FFmpeg(ffmpeg=fake_binary("sleep 30"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["360p"])
    record = env.convert(job_id, "360p", 1, ffmpeg=slow, deadline=time.monotonic() + 1)
    assert record is not None and record.status is OutputStatus.FAILED
    assert "longer than the 1 s limit" in (record.error or "")


def test_ffmpeg_writing_nothing_is_a_clear_failure_not_a_stored_empty_file(
    env: Env, clip: Path, fake_binary: Callable[[str], str]
) -> None:
    silent_success = FFmpeg(ffmpeg=fake_binary("exit 0"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["thumbnail"])
    record = env.convert(job_id, "thumbnail", 1, ffmpeg=silent_success)
    assert record is not None and record.status is OutputStatus.FAILED
    assert record.error.startswith("The conversion produced no output")
    assert record.key is None


class FlakyStore(MemoryStorage):
    """The converted store refuses the first result upload (a throttled S3, a full disk...)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("SlowDown: please reduce your request rate")
        super().put_file(key, path, content_type)


def test_a_storage_error_is_retried_and_then_succeeds(settings: Settings, clip: Path) -> None:
    env = Env(settings)
    env.converted = FlakyStore()  # type: ignore[assignment]
    env.converter = Converter(env.uploads, env.converted, env.queue, settings)
    env.stores = Stores(env.uploads, env.converted)
    job_id = env.job(clip, ["thumbnail"])
    with pytest.raises(RetryLater):
        env.convert(job_id, "thumbnail", 1)
    assert env.record(job_id, "thumbnail").status is OutputStatus.QUEUED
    assert "SlowDown" in (env.record(job_id, "thumbnail").error or "")
    done = env.convert(job_id, "thumbnail", 2)
    assert done is not None and done.status is OutputStatus.COMPLETED
