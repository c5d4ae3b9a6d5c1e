"""The split of a long MP4 or MOV is probed and cut from the original's index, never fetched: what it
reads is the index and each track's first sample (``indeximage``), by range; its limits are checked on
that; and the output is the same as ever. Originals that cannot be split so are fetched as before."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, MakeEnv, frames_of, make_clip_file
from video_converter import indeximage, segmenting
from video_converter.model import OutputStatus
from video_converter.outcome import Action
from video_converter.storage import MemoryStorage
from video_converter.work import Convert, Piece

pytestmark = pytest.mark.e2e

SECONDS, RATE = 7, 30


class Watched:
    """What a task did with the original: the bytes it read by range and whether it fetched it whole."""

    def __init__(self, uploads: MemoryStorage, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ranged, self.fetched = 0, False
        read_range, local_path = uploads.read_range, uploads.local_path

        def counted(name: str, start: int, length: int) -> bytes:
            data = read_range(name, start, length)
            self.ranged += len(data) if name == key else 0
            return data

        @contextlib.contextmanager
        def fetched(name: str, workdir: Path) -> Iterator[Path]:
            self.fetched = self.fetched or name == key
            with local_path(name, workdir) as path:
                yield path

        monkeypatch.setattr(uploads, "read_range", counted)
        monkeypatch.setattr(uploads, "local_path", fetched)


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env(segment_seconds=2)


@pytest.fixture(scope="module")
def silent_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 s of 320x240 with B-frames and a keyframe every second, no sound."""
    return make_clip_file(
        tmp_path_factory.mktemp("silent") / "silent.mov",
        seconds=SECONDS, size="320x240", rate=RATE, audio=False, extra=("-g", str(RATE), "-bf", "2"),
    )  # fmt: skip


def run_all(env: Env) -> None:
    while pending := env.pending():
        env.queue.entries.clear()
        for task in pending:
            assert env.deliver(task) is Action.ACK


def test_a_long_original_is_split_from_its_index_without_being_fetched(
    env: Env, silent_clip: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job_id = env.create(silent_clip, ["360p"])
    source_key, size = env.rt.jobs.job(job_id).source_key, silent_clip.stat().st_size
    watched = Watched(env.uploads, source_key, monkeypatch)
    assert env.deliver(Convert(job_id, ("360p",))) is Action.ACK
    plan = segmenting.load_plan(env.rt.uploads, job_id)
    assert plan is not None and plan.count >= 3 and len(plan.ranges) == plan.count
    assert not watched.fetched
    image = indeximage.make(lambda at, n: silent_clip.read_bytes()[at : at + n], size, tmp_path / "image")
    assert image is not None and watched.ranged == image.fetched  # the index and the first frame, once
    assert watched.ranged < 0.05 * size, (watched.ranged, size)
    assert env.record(job_id, "360p").source is not None  # probed: the job shows what the original is
    assert env.record(job_id, "360p").source == env.ffmpeg.probe(silent_clip)

    run_all(env)  # each piece reads its range, and only that
    record = env.record(job_id, "360p")
    assert record.status is OutputStatus.COMPLETED, record
    assert not watched.fetched
    joined = env.output_file(record, tmp_path)
    assert abs(frames_of(joined) - SECONDS * RATE) <= 2


def test_limits_are_checked_on_the_index_before_anything_is_fetched(
    make_env: MakeEnv, silent_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(segment_seconds=2, max_duration_seconds=5)
    job_id = env.create(silent_clip, ["360p"])
    watched = Watched(env.uploads, env.rt.jobs.job(job_id).source_key, monkeypatch)
    env.deliver(Convert(job_id, ("360p",)))
    assert env.status(job_id, "360p") is OutputStatus.FAILED
    assert env.job_error().startswith("This file lasts 7 s; the limit is 5 s."), env.job_error()
    assert not watched.fetched and env.pending() == []


def test_a_short_original_is_fetched_and_converted_whole(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = make_clip_file(tmp_path / "short.mp4", seconds=1.5, audio=False)
    job_id = env.create(clip, ["360p"])
    watched = Watched(env.uploads, env.rt.jobs.job(job_id).source_key, monkeypatch)
    assert env.deliver(Convert(job_id, ("360p",))) is Action.ACK
    assert watched.fetched and env.status(job_id, "360p") is OutputStatus.COMPLETED
    assert env.scratch_is_empty()  # the image (made to learn the length) went with the attempt


def test_a_container_without_an_index_is_fetched_and_split_by_ffmpeg(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = make_clip_file(tmp_path / "long.ts", seconds=SECONDS, rate=RATE, audio=False, extra=("-g", str(RATE)))
    job_id = env.create(clip, ["360p"])
    watched = Watched(env.uploads, env.rt.jobs.job(job_id).source_key, monkeypatch)
    assert env.deliver(Convert(job_id, ("360p",))) is Action.ACK
    plan = segmenting.load_plan(env.rt.uploads, job_id)
    assert watched.fetched and plan is not None and plan.ranges == []
    assert [t for t in env.pending() if isinstance(t, Piece)]
