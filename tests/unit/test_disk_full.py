"""A full disk is waited out: the message comes back later without spending an attempt, the output says
why while it stays queued, and the job completes once there is room again."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import Env, MakeEnv, RecordingStorage, set_once_exists, wait_for
from video_converter import diskspace
from video_converter.diskspace import WAITING, is_disk_full
from video_converter.ffmpeg import FFmpeg, FFmpegError, ffmpeg_path, ffprobe_path
from video_converter.model import OutputStatus
from video_converter.outcome import Action, Outcome
from video_converter.queues import SqliteQueue
from video_converter.worker import Worker

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_clip_file

    return make_clip_file(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1, size="160x120")


class FillingDisk(RecordingStorage):
    """The converted store on a disk that is full while ``full`` is set: writing an output (or, with
    ``records``, a status record too) fails with ENOSPC; ``refused`` is set at the first refusal."""

    def __init__(self, *, records: bool = False) -> None:
        super().__init__()
        self.full, self.refused, self.records = threading.Event(), threading.Event(), records

    def _check(self) -> None:
        if self.full.is_set():
            self.refused.set()
            raise OSError(errno.ENOSPC, "No space left on device")

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        self._check()
        super().put_file(key, path, content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        if self.records:
            self._check()
        super().put_bytes(key, data, content_type)


def test_a_full_disk_is_recognised() -> None:
    assert is_disk_full(ENOSPC)
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    tail = "[out#0/mp3 @ 0x1] Error writing trailer: No space left on device"
    assert is_disk_full(FFmpegError("FFmpeg failed", returncode=1, stderr_tail=tail))
    try:
        try:
            raise ENOSPC
        except OSError as exc:
            raise RuntimeError("could not store the output") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EIO, "Input/output error"))
    assert not is_disk_full(FFmpegError("FFmpeg failed", returncode=1, stderr_tail="boom: encoder exploded"))


def test_a_full_disk_waits_without_spending_an_attempt_and_says_so(make_env: MakeEnv, clip: Path) -> None:
    disk = FillingDisk()
    env = make_env(converted=disk, disk_full_wait=45)
    job_id = env.job(clip, ["mp3"])
    disk.full.set()
    assert env.convert(job_id, "mp3", 1) == Outcome.wait_for_disk(45)
    assert Outcome.wait_for_disk(45).action is Action.RELEASE and Outcome.wait_for_disk(45).delay == 45
    record = env.record(job_id, "mp3")
    assert (record.status, record.error) == (OutputStatus.QUEUED, WAITING)
    assert env.view(job_id)["outputs"][0]["error"] == "Waiting for disk space on the server."
    disk.full.clear()
    assert env.convert(job_id, "mp3", 1) == Outcome.finished("completed")  # the same attempt, again
    record = env.record(job_id, "mp3")
    assert (record.status, record.error, record.attempts) == (OutputStatus.COMPLETED, None, 1)


def test_records_that_do_not_fit_either_still_wait(make_env: MakeEnv, clip: Path) -> None:
    disk = FillingDisk(records=True)
    env = make_env(converted=disk, disk_full_wait=30)
    job_id = env.job(clip, ["mp3"])
    disk.full.set()
    assert env.convert(job_id, "mp3", 1) == Outcome.wait_for_disk(30)  # even its "started" did not fit


def test_renditions_together_wait_together_not_one_by_one(make_env: MakeEnv, clip: Path, fake_binary) -> None:
    full = fake_binary('echo "av_interleaved_write_frame(): No space left on device" >&2; exit 1')
    env = make_env(disk_full_wait=10)
    job_id = env.job(clip, ["480p", "360p"])
    work = env.take()
    assert len(work) == 1 and len(work[0].formats) == 2  # one decode for both
    env.rt.ffmpeg = FFmpeg(ffmpeg=full, ffprobe=ffprobe_path())
    assert env.outcome(work[0]) == Outcome.wait_for_disk(10)
    assert env.pending() == []  # not split into one message per rendition
    assert {env.record(job_id, f).error for f in ("480p", "360p")} == {WAITING}


def test_a_disk_that_stays_full_for_a_day_fails_as_usual(
    make_env: MakeEnv, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output that never fits would otherwise wait for ever."""
    monkeypatch.setattr(diskspace, "GIVE_UP_AFTER", timedelta(0))
    disk = FillingDisk()
    env = make_env(converted=disk)
    job_id = env.job(clip, ["mp3"])
    disk.full.set()
    assert env.convert(job_id, "mp3", 1).action is Action.RETRY
    assert env.convert(job_id, "mp3", env.settings.max_attempts).action is Action.ACK
    assert "No space left on device" in (env.record(job_id, "mp3").error or "")


def _ffmpeg_on_a_filling_disk(fake_binary: Callable[[str], str], full: Path, refused: Path) -> FFmpeg:
    script = fake_binary(
        f"if [ -e {full} ]; then touch {refused}\n"
        'echo "Error writing trailer: No space left on device" >&2; exit 1; fi\n'
        f'exec {ffmpeg_path()} "$@"'
    )
    return FFmpeg(ffmpeg=script, ffprobe=ffprobe_path())


@pytest.mark.parametrize("where", ["storage", "ffmpeg"])
def test_a_disk_that_fills_mid_job_and_frees_again_completes_the_job(
    make_env: MakeEnv, clip: Path, tmp_path: Path, fake_binary, where: str
) -> None:
    """The issue's case, through the local worker loop over the SQLite queue: a job whose output hits a
    full disk once waits (queued, saying why), then completes on its first attempt when room is back."""
    disk, full, refused = FillingDisk(), tmp_path / "disk-is-full", threading.Event()
    queue = SqliteQueue(tmp_path / "queue.sqlite3", max_receives=2)  # a spent attempt would dead-letter it
    env: Env = make_env(queue=queue, converted=disk, disk_full_wait=1)
    if where == "ffmpeg":
        env.rt.ffmpeg = _ffmpeg_on_a_filling_disk(fake_binary, full, tmp_path / "refused")
        set_once_exists(tmp_path / "refused", refused)
        full.touch()
    else:
        refused = disk.refused
        disk.full.set()
    job_id = env.job(clip, ["mp3"])
    stop = threading.Event()
    worker = threading.Thread(target=Worker(env.rt, stop).run, daemon=True)
    worker.start()
    try:
        assert refused.wait(60), "the full disk was never hit"
        wait_for(lambda: env.record(job_id, "mp3").error == WAITING, "the output says it waits for disk space")
        assert env.record(job_id, "mp3").status is OutputStatus.QUEUED
        disk.full.clear()
        full.unlink(missing_ok=True)
        wait_for(lambda: env.status(job_id, "mp3") is OutputStatus.COMPLETED, "the job completed")
    finally:
        stop.set()
        worker.join(timeout=30)
    record = env.record(job_id, "mp3")
    assert (record.attempts, record.error) == (1, None)
    assert env.view(job_id)["status"] == "completed"
    assert queue.counts() == {"visible": 0, "in_flight": 0, "dead": 0}
