"""process_message with real FFmpeg on tiny clips, its failure paths with fake FFmpeg, its named steps,
and the local Worker loop that translates its outcomes into queue calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, MakeEnv, RecordingStorage, set_once_exists
from video_converter import conversion, keys
from video_converter.config import Settings
from video_converter.ffmpeg import FFmpeg, ffprobe_path
from video_converter.messages import process_message, time_left
from video_converter.model import OutputStatus, utcnow
from video_converter.outcome import Action, Outcome, retry_delay
from video_converter.queues import MemoryQueue, Message, SqliteQueue
from video_converter.worker import Worker, start_workers, stop_workers

DATA = Path(__file__).parent / "data"


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

ACK = Action.ACK


@pytest.mark.parametrize("format_id", EXPECTED)
def test_real_conversion(env: Env, clip: Path, format_id: str, probe, tmp_path: Path) -> None:
    job_id = env.job(clip, [format_id])
    assert env.convert(job_id, format_id) == Outcome.finished("completed")
    record = env.record(job_id, format_id)
    assert record.status is OutputStatus.COMPLETED, record.error
    assert record.progress == 100.0 and record.error is None and record.attempts == 1
    ext = {"webm": "webm", "mp3": "mp3", "gif": "gif", "thumbnail": "jpg"}.get(format_id, "mp4")
    assert record.key == f"{job_id}/My_Clip_{format_id}.{ext}"
    data = env.converted.get_bytes(record.key)
    assert record.size_bytes == len(data) > 0
    assert record.source is not None and record.source.audio_codec == "aac"
    assert env.scratch_is_empty()  # the work dir is cleaned up

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


def test_odd_sized_source_gives_even_mp4(env: Env, make_clip, probe, tmp_path: Path) -> None:
    odd = make_clip("odd.mkv", seconds=0.5, size="161x121", audio=False, extra=("-c:v", "ffv1", "-pix_fmt", "yuv444p"))
    job_id = env.job(odd, ["360p"], filename="odd.mkv")
    env.convert(job_id, "360p")
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.COMPLETED, record.error
    assert record.height == 120 and record.width is not None and record.width % 2 == 0
    assert record.width in (160, 162)
    assert record.key is not None
    out = tmp_path / "o.mp4"
    out.write_bytes(env.converted.get_bytes(record.key))
    assert not any(s["codec_type"] == "audio" for s in probe(out)["streams"])  # -an for a silent source


def progress_ffmpeg(fake_binary: Callable[[str], str], source: Path) -> FFmpeg:
    """A fake FFmpeg that prints real captured -progress output, then "produces" a real mp4."""
    script = fake_binary(f'cat {DATA / "progress.txt"}; for a; do last="$a"; done; cp {source} "$last"')
    return FFmpeg(ffmpeg=script, ffprobe=ffprobe_path())


def test_progress_records_are_written(env: Env, make_clip, fake_binary, monkeypatch) -> None:
    monkeypatch.setattr(conversion, "PROGRESS_INTERVAL", 0)
    source = make_clip(seconds=4, size="64x64")
    job_id = env.job(source, ["720p"])
    assert env.convert(job_id, "720p", ffmpeg=progress_ffmpeg(fake_binary, source)).action is ACK
    writes = [w for w in env.converted.status_writes if w["format"] == "720p"]
    statuses = [w["status"] for w in writes]
    assert statuses[0] == "queued" and statuses[-1] == "completed"
    progress = [w["progress"] for w in writes if w["status"] == "processing"]
    intermediate = [p for p in progress if 0 < p < 100]
    assert intermediate, progress
    assert max(progress) <= 99.0
    assert progress == sorted(progress)
    assert writes[-1]["progress"] == 100.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_writes_are_throttled_to_one_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr("video_converter.conversion.time.monotonic", clock)
    written: list[float] = []
    on_progress = conversion.progress_writer(written.append, interval=1.0)
    for percent in (1.0, 2.0, 3.0, 4.0):  # a burst: only the first is written
        on_progress(percent)
    assert written == [1.0]
    clock.now += 0.5
    on_progress(5.0)
    assert written == [1.0]  # still inside the interval
    clock.now += 0.5
    on_progress(6.0)
    assert written == [1.0, 6.0]  # a full interval later
    on_progress(100.0)
    assert written == [1.0, 6.0, 100.0]  # the end is always written


def test_a_real_conversion_writes_few_progress_records(env: Env, make_clip, fake_binary) -> None:
    source = make_clip(seconds=4, size="64x64")
    job_id = env.job(source, ["720p"])
    env.convert(job_id, "720p", ffmpeg=progress_ffmpeg(fake_binary, source))
    processing = [w for w in env.converted.status_writes if w["status"] == "processing"]
    # the captured output has 6 progress blocks in well under a second: start + probe + the first block
    # + the final 100 % one (capped at 99), never one per block
    assert [w["progress"] for w in processing][:2] == [0.0, 0.0]
    assert 3 <= len(processing) <= 4, processing


# --- failure paths ------------------------------------------------------------------------------------


def test_first_failure_retries_later(env: Env, clip: Path, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(clip, ["360p"])
    outcome = env.convert(job_id, "360p", 1, ffmpeg=failing)
    assert (outcome.action, outcome.delay) == (Action.RETRY, retry_delay(1))
    assert was_called(tmp_path)
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.QUEUED
    assert record.attempts == 1 and record.progress == 0.0
    assert record.error is not None
    assert record.error.startswith("Attempt 1 failed: FFmpeg failed (exit code 1): ")
    assert "boom: encoder exploded" in record.error
    assert env.scratch_is_empty()


def test_last_attempt_failure_is_recorded(env: Env, clip: Path, failing: FFmpeg) -> None:
    job_id = env.job(clip, ["360p"])
    assert env.convert(job_id, "360p", env.settings.max_attempts, ffmpeg=failing).action is ACK
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.FAILED
    n = env.settings.max_attempts
    assert record.error == f"FFmpeg failed (exit code 1): some banner | boom: encoder exploded (after {n} attempts)"
    assert env.view(job_id)["status"] == "failed"


def test_attempt_past_max_gives_up_without_running(env: Env, clip: Path, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(clip, ["360p"])
    assert env.convert(job_id, "360p", env.settings.max_attempts + 1, ffmpeg=failing).action is ACK
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.FAILED
    assert record.error == f"Gave up after {env.settings.max_attempts} interrupted attempts."
    assert not was_called(tmp_path)


class CountingFFmpeg(FFmpeg):
    probes = 0

    def inspect(self, *args: Any, **kwargs: Any) -> Any:
        self.probes += 1
        return super().inspect(*args, **kwargs)


def test_garbage_source_fails_at_once(env: Env, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(b"this is not a video at all\n" * 100, ["720p", "mp3"], filename="notes.txt")
    assert env.convert(job_id, "720p", 1, ffmpeg=failing).action is ACK  # no retry on attempt 1
    record = env.record(job_id, "720p")
    assert record.status is OutputStatus.FAILED
    assert record.error == conversion.NOT_CONVERTED  # the cards do not repeat the jargon
    assert not was_called(tmp_path)
    # One job-level sentence that says what to do; the other output fails fast without probing again.
    counting = CountingFFmpeg(ffmpeg=failing.ffmpeg, ffprobe=ffprobe_path())
    assert env.convert(job_id, "mp3", 1, ffmpeg=counting).action is ACK
    assert counting.probes == 0 and env.record(job_id, "mp3").error == conversion.NOT_CONVERTED
    view = env.view(job_id)
    assert view["status"] == "failed"
    assert view["error"] == conversion.NOT_MEDIA  # plain words: FFmpeg's exit code and lines are in the log
    assert [out["error"] for out in view["outputs"]] == [conversion.NOT_CONVERTED] * 2


def test_mp3_from_silent_video_fails_with_a_sentence(env: Env, make_clip, failing: FFmpeg, tmp_path: Path) -> None:
    silent = make_clip(seconds=0.5, size="64x64", audio=False)
    job_id = env.job(silent, ["mp3"])
    assert env.convert(job_id, "mp3", 1, ffmpeg=failing).action is ACK
    record = env.record(job_id, "mp3")
    assert record.status is OutputStatus.FAILED
    assert record.error == "The source has no audio track, so there is nothing to put in an MP3."
    assert record.source is not None and record.source.has_video
    assert not was_called(tmp_path)


def test_video_from_audio_only_fails(env: Env, make_clip, failing: FFmpeg) -> None:
    mp3 = make_clip("a.mp3", seconds=0.5, video=False)
    job_id = env.job(mp3, ["720p"], filename="a.mp3")
    assert env.convert(job_id, "720p", 1, ffmpeg=failing).action is ACK
    record = env.record(job_id, "720p")
    assert record.status is OutputStatus.FAILED
    assert record.error == "The source has no video stream, so it cannot be converted to MP4 720p."


def test_missing_original_fails(env: Env, clip: Path, failing: FFmpeg) -> None:
    job_id = env.job(clip, ["360p"])
    env.uploads.delete(keys.source_key(job_id))
    assert env.convert(job_id, "360p", 1, ffmpeg=failing).action is ACK
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.FAILED
    assert record.error == "The uploaded original is missing (it may have expired)."


def test_an_original_replaced_after_the_job_was_created_fails_at_once(
    env: Env, clip: Path, failing: FFmpeg, tmp_path: Path
) -> None:
    """On AWS a second POST with the ticket can overwrite the original in S3: the size tells."""
    job_id = env.job(clip, ["360p"])
    env.uploads.put_bytes(keys.source_key(job_id), clip.read_bytes() + b"\0" * 1_000_000)
    assert env.convert(job_id, "360p", 1, ffmpeg=failing) == Outcome.finished("failed for good")
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.FAILED and record.attempts == 1
    assert record.error == "The original was replaced after the job was created; upload it again as a new job."
    assert not was_called(tmp_path)
    assert env.scratch_is_empty()


def test_an_original_replaced_between_the_check_and_the_fetch_fails(
    env: Env, clip: Path, failing: FFmpeg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = env.job(clip, ["360p"])
    size = env.uploads.size
    replaced = clip.read_bytes()[:1000]

    def size_then_replace(key: str) -> int | None:
        answer = size(key)
        env.uploads.put_bytes(key, replaced)  # lands after the size check, before the download
        return answer

    monkeypatch.setattr(env.uploads, "size", size_then_replace)
    assert env.convert(job_id, "360p", 1, ffmpeg=failing) == Outcome.finished("failed for good")
    assert env.record(job_id, "360p").error == (
        "The original was replaced after the job was created; upload it again as a new job."
    )
    assert not was_called(tmp_path)


def test_completed_output_is_not_converted_again(env: Env, clip: Path, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(clip, ["thumbnail"])
    env.convert(job_id, "thumbnail")
    first = env.record(job_id, "thumbnail")
    assert first.status is OutputStatus.COMPLETED
    writes = len(env.converted.status_writes)
    assert env.convert(job_id, "thumbnail", 2, ffmpeg=failing) == Outcome.ack("already done")  # a redelivery
    assert env.record(job_id, "thumbnail") == first
    assert not was_called(tmp_path)
    assert len(env.converted.status_writes) == writes  # nothing rewritten


def test_completed_record_whose_file_vanished_is_redone(env: Env, clip: Path) -> None:
    job_id = env.job(clip, ["thumbnail"])
    env.convert(job_id, "thumbnail")
    first = env.record(job_id, "thumbnail")
    assert first.key is not None
    env.converted.delete(first.key)
    assert env.convert(job_id, "thumbnail", 2) == Outcome.finished("completed")
    again = env.record(job_id, "thumbnail")
    assert again.status is OutputStatus.COMPLETED and again.attempts == 2
    assert env.converted.size(first.key)


def test_failed_output_is_not_retried_by_an_older_delivery(env: Env, failing: FFmpeg, tmp_path: Path) -> None:
    job_id = env.job(b"garbage" * 100, ["720p"])
    env.convert(job_id, "720p", 2, ffmpeg=failing)
    failed = env.record(job_id, "720p")
    assert failed.status is OutputStatus.FAILED
    assert env.convert(job_id, "720p", 1, ffmpeg=failing) == Outcome.ack("already done")
    assert env.record(job_id, "720p") == failed


def test_unknown_job_or_format_is_dropped(env: Env, clip: Path, failing: FFmpeg, tmp_path: Path) -> None:
    dropped = Outcome.ack("no such job or format")
    assert env.convert("0b7e0e36-2a52-4f3e-9e39-4d1f4a0a8c11", "720p", ffmpeg=failing) == dropped
    assert env.convert("not-a-job-id", "720p", ffmpeg=failing) == dropped
    job_id = env.job(clip, ["360p"])
    writes = len(env.converted.status_writes)
    assert env.convert(job_id, "720p", ffmpeg=failing) == dropped  # not a format of this job
    assert env.convert(job_id, "avi", ffmpeg=failing) == dropped  # not a format at all
    assert len(env.converted.status_writes) == writes
    assert env.record(job_id, "360p").status is OutputStatus.QUEUED
    assert not was_called(tmp_path)


@pytest.mark.parametrize("body", [{}, {"something": "else"}, {"job_id": "", "format": "720p"}, {"job_id": "x"}])
def test_malformed_messages_are_acked_without_touching_anything(env: Env, body: dict[str, str]) -> None:
    message = Message(id="m", body=body, receive_count=1, handle="h")
    assert process_message(env.rt, message) == Outcome.ack("malformed")
    assert env.converted.objects == {}


def test_cancel_puts_the_output_back(env: Env, clip: Path, fake_binary, tmp_path: Path) -> None:
    running = tmp_path / "ffmpeg-running"
    slow = FFmpeg(ffmpeg=fake_binary(f"touch {running}; exec sleep 30"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["360p"])
    cancel = threading.Event()
    cancelled = set_once_exists(running, cancel)  # a cancel while FFmpeg runs
    assert env.convert(job_id, "360p", 1, ffmpeg=slow, cancel=cancel) == Outcome.release()
    assert cancelled and time.monotonic() - cancelled[0] < 5
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.QUEUED and record.progress == 0.0
    assert env.view(job_id)["status"] == "queued"
    assert env.scratch_is_empty()


def test_records_that_cannot_be_written_mean_retry_not_a_crash(
    env: Env, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = env.job(clip, ["360p"])

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("S3 is unreachable")

    monkeypatch.setattr(env.converted, "put_bytes", broken)
    outcome = env.convert(job_id, "360p", 2)
    assert (outcome.action, outcome.delay) == (Action.RETRY, retry_delay(2))
    assert "S3 is unreachable" in outcome.reason


@pytest.mark.parametrize(("attempt", "delay"), [(1, 5), (2, 20), (3, 45), (7, 245), (8, 300), (100, 300)])
def test_retry_delay(attempt: int, delay: int) -> None:
    assert retry_delay(attempt) == delay


def test_a_late_redelivery_keeps_the_recorded_failure_reason(env: Env, clip: Path, failing: FFmpeg) -> None:
    job_id = env.job(clip, ["360p"])
    env.convert(job_id, "360p", env.settings.max_attempts, ffmpeg=failing)
    failed = env.record(job_id, "360p")
    assert failed.status is OutputStatus.FAILED and "exit code 1" in (failed.error or "")
    env.convert(job_id, "360p", env.settings.max_attempts + 1, ffmpeg=failing)
    assert env.record(job_id, "360p").error == failed.error


def test_ffmpeg_time_is_bounded_by_the_deadline_and_the_setting() -> None:
    assert time_left(120, None) == 120
    assert time_left(120, time.monotonic() + 900) == 120  # plenty of time: the setting wins
    assert time_left(120, time.monotonic() + 60) == pytest.approx(60, abs=1)  # download ate the rest
    assert time_left(120, time.monotonic() - 5) == 1.0  # never zero or negative


def test_a_conversion_over_the_time_limit_fails_at_once_without_retry(
    env: Env, clip: Path, fake_binary: Callable[[str], str]
) -> None:
    slow = FFmpeg(ffmpeg=fake_binary("sleep 30"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["360p"])
    assert env.convert(job_id, "360p", 1, ffmpeg=slow, deadline=time.monotonic() + 1).action is ACK
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.FAILED
    assert "longer than the 1 s limit" in (record.error or "")


def test_a_conversion_running_into_the_jobs_deadline_is_stopped_there_with_its_sentence(
    make_env: MakeEnv, clip: Path, fake_binary: Callable[[str], str]
) -> None:
    """FFMPEG_TIMEOUT bounds one run; the job's deadline (MAX_JOB_SECONDS from its creation) bounds them
    all: a run started 2 s before it is stopped at it, and the output says the job ran out of time."""
    env = make_env(max_job_seconds=3600)
    slow = FFmpeg(ffmpeg=fake_binary("exec sleep 30"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["360p"])
    record = env.rt.jobs.job(job_id)
    env.rt.jobs.save_job(record.model_copy(update={"created_at": utcnow() - timedelta(seconds=3598)}))
    started = time.monotonic()
    assert env.convert(job_id, "360p", 1, ffmpeg=slow).action is ACK
    assert time.monotonic() - started < 20  # not FFMPEG_TIMEOUT (an hour), nor the 30 s of the fake
    output = env.record(job_id, "360p")
    assert output.status is OutputStatus.FAILED
    assert (output.error or "").startswith("Out of time: a job's conversions must be done within 1 h of its creation")


def test_ffmpeg_writing_nothing_is_a_clear_failure_not_a_stored_empty_file(
    env: Env, clip: Path, fake_binary: Callable[[str], str]
) -> None:
    silent_success = FFmpeg(ffmpeg=fake_binary("exit 0"), ffprobe=ffprobe_path())
    job_id = env.job(clip, ["thumbnail"])
    assert env.convert(job_id, "thumbnail", 1, ffmpeg=silent_success).action is ACK
    record = env.record(job_id, "thumbnail")
    assert record.status is OutputStatus.FAILED
    assert (record.error or "").startswith("The conversion produced no output")
    assert record.key is None


class FlakyStore(RecordingStorage):
    """The converted store refuses the first result upload (a throttled S3, a full disk...)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("SlowDown: please reduce your request rate")
        super().put_file(key, path, content_type)


def test_a_storage_error_is_retried_and_then_succeeds(env: Env, clip: Path) -> None:
    env.converted = env.rt.converted = FlakyStore()
    job_id = env.job(clip, ["thumbnail"])
    assert env.convert(job_id, "thumbnail", 1).action is Action.RETRY
    assert env.record(job_id, "thumbnail").status is OutputStatus.QUEUED
    assert "SlowDown" in (env.record(job_id, "thumbnail").error or "")
    assert env.convert(job_id, "thumbnail", 2) == Outcome.finished("completed")
    assert env.record(job_id, "thumbnail").status is OutputStatus.COMPLETED


# --- the Worker loop -------------------------------------------------------------------------------


class RecordingQueue(MemoryQueue):
    def __init__(self) -> None:
        super().__init__(visibility_timeout=60)
        self.acked: list[Message] = []
        self.visibility: list[tuple[Message, int]] = []
        self.released: list[Message] = []

    def receive(self, wait_seconds: float = 0.0) -> Message | None:
        return super().receive(min(wait_seconds, 0.1))  # so the worker notices `stop` quickly

    def ack(self, message: Message) -> None:
        self.acked.append(message)
        super().ack(message)

    def set_visibility(self, message: Message, seconds: int) -> None:
        self.visibility.append((message, seconds))
        super().set_visibility(message, seconds)

    def release(self, message: Message, delay: int = 0) -> None:
        self.released.append(message)
        super().release(message, delay)


@pytest.fixture
def qenv(make_env: MakeEnv) -> Env:
    return make_env(queue=RecordingQueue())


def recorded(env: Env) -> RecordingQueue:
    assert isinstance(env.rt.queue, RecordingQueue)
    return env.rt.queue


def run_worker(env: Env, until: Callable[[], bool], ffmpeg: FFmpeg | None = None) -> None:
    env.rt.ffmpeg = ffmpeg or env.ffmpeg
    stop = threading.Event()
    thread = threading.Thread(target=Worker(env.rt, stop).run, daemon=True)
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


def test_worker_processes_and_acks_all_messages(qenv: Env, clip: Path) -> None:
    queue = recorded(qenv)
    job_id = qenv.job(clip, ["360p", "mp3", "thumbnail"])
    assert len(queue.entries) == 3
    run_worker(qenv, lambda: not queue.entries)
    assert len(queue.acked) == 3
    assert queue.visibility == []
    view = qenv.view(job_id)
    assert view["status"] == "completed"
    assert all(o["download_url"] for o in view["outputs"])


def test_worker_retry_sets_visibility_backoff(qenv: Env, clip: Path, failing: FFmpeg) -> None:
    queue = recorded(qenv)
    job_id = qenv.job(clip, ["360p"])
    run_worker(qenv, lambda: bool(queue.visibility), ffmpeg=failing)
    message, seconds = queue.visibility[0]
    assert message.body == {"job_id": job_id, "format": "360p"}
    assert seconds == retry_delay(1) == 5
    assert queue.acked == []
    assert len(queue.entries) == 1  # still there, for the next attempt


def test_worker_drops_malformed_messages(qenv: Env) -> None:
    queue = recorded(qenv)
    queue.send({"something": "else"})
    queue.send({"job_id": "", "format": "720p"})
    run_worker(qenv, lambda: not queue.entries)
    assert len(queue.acked) == 2
    assert queue.visibility == []


def test_worker_survives_a_crash_and_backs_off(qenv: Env, clip: Path) -> None:
    class Exploding(FFmpeg):
        def probe(self, *args: Any, **kwargs: Any) -> Any:
            raise ZeroDivisionError("unexpected")

    queue = recorded(qenv)
    qenv.job(clip, ["360p"])
    run_worker(qenv, lambda: bool(queue.visibility), ffmpeg=Exploding())
    assert queue.visibility[0][1] == 5
    assert queue.acked == []


def test_stopping_several_workers_again_and_again_spends_no_attempt(
    settings: Settings, make_env: MakeEnv, tmp_path: Path, clip: Path, fake_binary
) -> None:
    """A graceful stop with WORKERS >= 2 used to let one stopping worker take the message another had
    just handed back, counting a delivery each time: restarts then failed healthy outputs."""
    queue = SqliteQueue(tmp_path / "q.sqlite3", visibility_timeout=60, max_receives=settings.max_attempts + 1)
    env = make_env(queue=queue, workers=3)
    job_id = env.job(clip, ["360p", "mp3"])
    env.rt.ffmpeg = FFmpeg(fake_binary("exec sleep 30"), ffprobe_path())
    for _ in range(settings.max_attempts + 2):  # more restarts than there are attempts
        stop = threading.Event()
        threads = start_workers(env.rt, stop)
        deadline = time.monotonic() + 30
        while not all(env.record(job_id, f).status is OutputStatus.PROCESSING for f in ("360p", "mp3")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stop_workers(threads, stop)
    for format_id in ("360p", "mp3"):
        record = env.record(job_id, format_id)
        assert record.status is OutputStatus.QUEUED and record.error is None, record
    assert sorted(m.receive_count for m in (queue.receive(), queue.receive()) if m) == [1, 1]


def test_worker_stopping_mid_conversion_hands_the_message_back(
    qenv: Env, clip: Path, fake_binary, tmp_path: Path
) -> None:
    queue = recorded(qenv)
    job_id = qenv.job(clip, ["360p"])
    running = tmp_path / "ffmpeg-running"
    qenv.rt.ffmpeg = FFmpeg(fake_binary(f"touch {running}; exec sleep 30"), ffprobe_path())
    stop = threading.Event()
    message = queue.receive()
    assert message is not None
    set_once_exists(running, stop)  # the worker is stopped while FFmpeg runs
    assert Worker(qenv.rt, stop).handle(message) == Outcome.release()
    assert queue.visibility == [] and queue.released == [message]
    assert queue.acked == []
    assert qenv.record(job_id, "360p").status is OutputStatus.QUEUED
    again = queue.receive()
    assert again is not None and again.receive_count == 1  # the interrupted delivery was not counted
