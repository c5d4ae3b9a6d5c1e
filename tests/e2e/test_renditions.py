"""Several MP4 renditions of one job from one decode, with real FFmpeg: one message and one FFmpeg run
make them all; each keeps its own record; one unsuitable fails alone; renditions that fail together are
tried again one by one, so only the failing one fails; a redelivery redoes only what is not done."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, MakeEnv, RecordingStorage, make_clip_file, probe_file
from video_converter.ffmpeg import FFmpeg, ffmpeg_path, ffprobe_path
from video_converter.model import OutputStatus
from video_converter.outcome import Action
from video_converter.presets import PRESETS
from video_converter.work import Convert

pytestmark = pytest.mark.e2e

RENDITIONS = ["720p", "480p", "360p"]


class Runs(FFmpeg):
    """The real FFmpeg, counting its conversion runs and the outputs of each."""

    def __init__(self, ffmpeg: str | None = None) -> None:
        super().__init__(ffmpeg, ffprobe_path())
        self.runs: list[int] = []

    def convert(self, source: Path, output: Path, output_args: Any, **options: Any) -> None:
        self.runs.append(1 + len(options.get("more_outputs", ())))
        super().convert(source, output, output_args, **options)


def runs(env: Env) -> list[int]:
    """The outputs of each conversion run so far."""
    assert isinstance(env.ffmpeg, Runs)
    return env.ffmpeg.runs


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env(ffmpeg=Runs(), segment_seconds=0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip_file(tmp_path_factory.mktemp("renditions") / "hd.mp4", seconds=1.0, size="1280x720")


def pcm(path: Path) -> bytes:
    """The sound as a player hears it (the MP4 edit list applied: no priming)."""
    argv = [ffmpeg_path(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-"]
    return subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout


def test_all_renditions_come_from_one_run_and_each_has_its_own_record(env: Env, clip: Path, tmp_path: Path) -> None:
    job_id = env.create(clip, RENDITIONS)
    (task,) = env.created
    assert task.formats == tuple(RENDITIONS)
    assert env.deliver(task) is Action.ACK
    # One FFmpeg decodes once for three pictures and the sound (encoded once), then each rendition's
    # picture and that sound are copied into its MP4.
    assert runs(env) == [4, 1, 1, 1]
    alone = tmp_path / "alone.mp4"
    FFmpeg().convert(clip, alone, PRESETS["720p"].output_args(FFmpeg().probe(clip)))
    for format_id, height in zip(RENDITIONS, (720, 480, 360), strict=True):
        record = env.rt.jobs.output(job_id, format_id)
        assert record.status is OutputStatus.COMPLETED and record.progress == 100.0 and record.attempts == 1
        assert record.key is not None and record.height == height
        path = tmp_path / f"{format_id}.mp4"
        path.write_bytes(env.rt.converted.get_bytes(record.key))
        info = probe_file(path)
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
        assert (video["codec_name"], video["height"]) == ("h264", height)
        # The sound is exactly a rendition converted alone's, and as in sync with the picture.
        assert pcm(path) == pcm(alone)
        reference = {s["codec_type"]: s for s in probe_file(alone)["streams"]}
        for stream, same in ((video, reference["video"]), (audio, reference["audio"])):
            assert abs(float(stream["start_time"]) - float(same["start_time"])) < 0.001
            assert abs(float(stream["duration"]) - float(same["duration"])) < 0.001
    assert env.take() == []


def test_an_unsuitable_rendition_fails_alone(env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    silent = make_clip_file(tmp_path / "silent.mp4", seconds=1.0, size="1280x720", audio=False)
    monkeypatch.setitem(PRESETS, "480p", dataclasses.replace(PRESETS["480p"], needs_audio=True))
    job_id = env.create(silent, RENDITIONS)
    (task,) = env.created
    assert env.deliver(task) is Action.ACK
    assert runs(env) == [2, 1, 1]  # the two it can give, still from one decode (then each copied)
    assert env.status(job_id, "720p") is env.status(job_id, "360p") is OutputStatus.COMPLETED
    failed = env.rt.jobs.output(job_id, "480p")
    assert failed.status is OutputStatus.FAILED
    assert failed.error == "The source has no audio track, so there is nothing to put in an MP4 480p."


def test_renditions_that_fail_together_go_one_by_one_and_only_the_failing_one_fails(
    env: Env, clip: Path, fake_binary: Any
) -> None:
    # The real FFmpeg, which fails at the end of any run that makes the 480p rendition (its -maxrate):
    # mid-way for the renditions converted together, whose files are all written by then.
    breaking = fake_binary(
        f'"{ffmpeg_path()}" "$@" || exit $?\n'
        'for a in "$@"; do [ "$a" = "2500k" ] && { echo "480p encoder exploded" >&2; exit 1; }; done\nexit 0'
    )
    env.rt.ffmpeg = env.ffmpeg = Runs(breaking)
    job_id = env.create(clip, RENDITIONS)
    (task,) = env.created
    assert env.deliver(task) is Action.ACK
    alone = env.take()
    assert alone == [Convert(job_id, (f,)) for f in RENDITIONS]
    # Nothing of the failed run is published; each waits again, none failed.
    assert all(env.status(job_id, f) is OutputStatus.QUEUED for f in RENDITIONS)
    assert all(env.rt.jobs.output(job_id, f).key is None for f in RENDITIONS)
    for single in alone:
        env.deliver(single, attempt=env.rt.settings.max_attempts)
    assert env.status(job_id, "720p") is env.status(job_id, "360p") is OutputStatus.COMPLETED
    failed = env.rt.jobs.output(job_id, "480p")
    assert failed.status is OutputStatus.FAILED and "480p encoder exploded" in (failed.error or "")


class FlakyStorage(RecordingStorage):
    """Loses its connection at the ``fail_at``-th stored output (an output file, not a record)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.stored = fail_at, 0

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        self.stored += 1
        if self.stored == self.fail_at:
            raise ConnectionError("storage went away")
        super().put_file(key, path, content_type)


def test_a_redelivery_after_a_crash_redoes_only_the_renditions_not_done(make_env: MakeEnv, clip: Path) -> None:
    # 720p is published, then the store is lost.
    env = make_env(ffmpeg=Runs(), converted=FlakyStorage(fail_at=2), segment_seconds=0)
    job_id = env.create(clip, RENDITIONS)
    (task,) = env.created
    assert env.deliver(task) is Action.RETRY
    first = env.rt.jobs.output(job_id, "720p")
    assert first.status is OutputStatus.COMPLETED
    assert env.status(job_id, "480p") is env.status(job_id, "360p") is OutputStatus.QUEUED
    assert env.deliver(task, attempt=2) is Action.ACK  # the redelivery
    assert runs(env) == [4, 1, 1, 1, 3, 1, 1]  # again, only the two not done
    assert env.rt.jobs.output(job_id, "720p") == first  # untouched
    for format_id in ("480p", "360p"):
        record = env.rt.jobs.output(job_id, format_id)
        assert record.status is OutputStatus.COMPLETED and record.attempts == 2


def test_sizes_the_source_is_too_small_for_are_one_picture_stored_once(env: Env, tmp_path: Path) -> None:
    """From a 320x240 clip, 720p, 480p and 360p all keep its size (nothing is upscaled): the picture is
    encoded once, with the 360p settings (its bit rate cap is the one meant for that size), and stored once,
    as the 360p file; 720p and 480p are that file (``same_as``), each downloaded under its own name."""
    small = make_clip_file(tmp_path / "small.mp4", seconds=1.0, size="320x240")
    job_id = env.create(small, RENDITIONS)
    (task,) = env.created
    assert env.deliver(task) is Action.ACK
    assert runs(env) == [2, 1]  # one picture and the sound; one copy into the file
    records = {format_id: env.rt.jobs.output(job_id, format_id) for format_id in RENDITIONS}
    for record in records.values():
        assert record.status is OutputStatus.COMPLETED and (record.width, record.height) == (320, 240)
    assert records["360p"].same_as is None
    assert records["720p"].same_as == records["480p"].same_as == "360p"
    assert {r.key for r in records.values()} == {records["360p"].key}
    assert {r.size_bytes for r in records.values()} == {records["360p"].size_bytes}
    videos = [item.key for item in env.rt.converted.list(f"{job_id}/") if item.key.endswith(".mp4")]
    assert videos == [records["360p"].key]  # one file
    assert probe_file_from(env, str(records["360p"].key), tmp_path)["streams"]
    assert (records["720p"].note or "").startswith("The source is 320x240")


def probe_file_from(env: Env, key: str, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "stored.mp4"
    path.write_bytes(env.rt.converted.get_bytes(key))
    return probe_file(path)


def test_a_certain_failure_of_one_rendition_fails_it_at_once_and_only_the_others_go_again(
    env: Env, clip: Path, fake_binary: Any
) -> None:
    # The real FFmpeg, except that a run writing several files fails as x264 does on a size it refuses,
    # naming the second output of the run (the 480p picture).
    refusing = fake_binary(
        'n=0; for a in "$@"; do case "$a" in *.nut|*.mp4) n=$((n+1));; esac; done\n'
        'if [ "$n" -gt 2 ]; then\n'
        '  echo "[vost#1:0/libx264 @ 0x1] Error while opening encoder - maybe incorrect parameters" >&2\n'
        '  echo "[out#1/nut @ 0x2] Nothing was written into output file" >&2; exit 187\n'
        f'fi\nexec "{ffmpeg_path()}" "$@"'
    )
    env.rt.ffmpeg = env.ffmpeg = Runs(refusing)
    job_id = env.create(clip, RENDITIONS)
    (task,) = env.created
    assert env.deliver(task) is Action.ACK
    failed = env.record(job_id, "480p")
    assert failed.status is OutputStatus.FAILED and "Error while opening encoder" in (failed.error or "")
    assert failed.attempts == 1  # not retried: the same picture would be refused again
    again = env.take()
    assert again == [Convert(job_id, ("720p",)), Convert(job_id, ("360p",))]
    for single in again:
        assert env.deliver(single) is Action.ACK
    assert env.status(job_id, "720p") is env.status(job_id, "360p") is OutputStatus.COMPLETED


def test_a_source_too_small_to_encode_fails_after_one_run(env: Env, tmp_path: Path) -> None:
    tiny = tmp_path / "one.mkv"
    lavfi = ["-f", "lavfi", "-i", "color=c=red:size=2x2:rate=25:duration=1", "-vf", "scale=1:1", "-c:v", "ffv1"]
    subprocess.run([ffmpeg_path(), "-v", "error", *lavfi, str(tiny)], check=True, timeout=60)
    job_id = env.create(tiny, ["1080p", "360p"])
    (task,) = env.created
    assert env.deliver(task) is Action.ACK
    assert env.take() == []  # nothing goes again: x264 would refuse the same picture
    assert len(runs(env)) == 1
    for format_id in ("1080p", "360p"):
        record = env.record(job_id, format_id)
        assert record.status is OutputStatus.FAILED and record.attempts == 1
        assert (record.error or "").startswith("FFmpeg failed (exit code 187): ")
        assert "Could not open encoder" in (record.error or "") and (record.error or "").count("FFmpeg failed") == 1
