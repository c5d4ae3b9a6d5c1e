"""A long video on S3 (moto, in-process) measured by bytes, not seconds: every S3 call of every task is
recorded with the bytes it moved through the process (a GET's body, a PUT's or an uploaded part's
body) and the bytes S3 copied by itself (UploadPartCopy). The pieces read their range of the original
and no more, the sound parts the runs of their own sound; the split reads the original's index (and
each track's first sample) and downloads nothing; the join moves at most 1 % of the output through
itself.

S3's part minimum (5 MiB, which moto enforces too) is lowered for pieces this small; real pieces of a
minute are tens of MB (see README, Long videos)."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from moto.s3 import models as moto_s3_models

from api.main import create_app
from tests.aws.conftest import settings_for
from video_converter import indeximage, mp4join, segmenting
from video_converter.ffmpeg import ffmpeg_path
from video_converter.ffmpeg.runner import child_env
from video_converter.messages import process_message
from video_converter.model import OutputStatus
from video_converter.owners import AuthMode
from video_converter.runtime import build_runtime
from video_converter.storage import s3 as s3_module
from video_converter.work import Convert, Join, Piece, SoundPart, from_body

pytestmark = pytest.mark.aws

MIB = 1024 * 1024


@dataclass
class Traffic:
    task: str = "api"
    read: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # bytes into this process
    written: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # and out of it
    copied: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # bytes S3 copied itself
    downloads: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # whole objects fetched
    originals: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # bytes read of an original


class CountingClient:
    """A boto3 S3 client whose calls add what they move to the task running."""

    def __init__(self, client: Any, traffic: Traffic) -> None:
        self._client, self._traffic = client, traffic

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            read, written = moved(name, args, kwargs, result)
            self._traffic.read[self._traffic.task] += read
            self._traffic.written[self._traffic.task] += written
            self._traffic.downloads[self._traffic.task] += name == "download_file"
            if name == "get_object" and kwargs["Key"].endswith("/source"):
                self._traffic.originals[self._traffic.task] += read
            if name == "upload_part_copy":
                first, last = kwargs["CopySourceRange"].removeprefix("bytes=").split("-")
                self._traffic.copied[self._traffic.task] += int(last) - int(first) + 1
            return result

        return call


def moved(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> tuple[int, int]:
    """(bytes read, bytes written) through the process by one call."""
    if name == "get_object":
        return int(result["ContentLength"]), 0
    if name == "download_file":
        return Path(args[2]).stat().st_size, 0
    if name == "upload_file":
        return 0, Path(args[0]).stat().st_size
    if name == "put_object":
        return 0, len(kwargs["Body"])
    if name == "upload_part":
        return 0, int(kwargs["ContentLength"])
    return 0, 0


def moov_size(path: Path) -> int:
    """The size of the file's moov box (its index)."""
    data = path.read_bytes()
    return next(end - start for kind, start, end in mp4join.top_level(lambda at, n: data[at : at + n], len(data))
                if kind == b"moov")  # fmt: skip


def label(work: Any) -> str:
    if isinstance(work, Piece):
        return f"piece {work.index}"
    if isinstance(work, SoundPart):
        return f"sound {work.index}"
    return "join" if isinstance(work, Join) else "split" if isinstance(work, Convert) else "other"


@pytest.fixture
def noisy_720p(tmp_path: Path) -> Path:
    """6 s of 720p with grain (frames of tens of KB, as a camera's are, so an index is a small share of a
    piece) and a tone; a keyframe every second."""
    path = tmp_path / "long.mp4"
    subprocess.run(
        [ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=6",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
         "-vf", "noise=alls=20:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-g", "30",
         "-c:a", "aac", str(path)],
        check=True, timeout=120, env=child_env(),
    )  # fmt: skip
    return path


def test_a_long_video_moves_only_its_index_and_its_ranges(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noisy_720p: Path
) -> None:
    monkeypatch.setattr(mp4join, "MIN_PART", 8 * 1024)
    monkeypatch.setattr(moto_s3_models, "S3_UPLOAD_PART_MIN_SIZE", 8 * 1024)
    traffic = Traffic()
    make = s3_module.make_s3_client
    monkeypatch.setattr(s3_module, "make_s3_client", lambda: CountingClient(make(), traffic))
    rt = build_runtime(settings_for(aws, tmp_path, segment_seconds=2, auth=AuthMode.NONE))  # about bytes, not keys
    with noisy_720p.open("rb") as fh:
        created = TestClient(create_app(rt)).post(
            "/api/jobs", files={"file": ("long.mp4", fh)}, data={"formats": "720p"}
        )
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    plan = None
    while (message := rt.queue.receive()) is not None:
        traffic.task = label(from_body(message.body))
        process_message(rt, message)
        rt.queue.ack(message)
        plan = plan or segmenting.load_plan(rt.uploads, job_id)  # tidied away after the join
    record = rt.jobs.output(job_id, "720p")
    assert record.status is OutputStatus.COMPLETED and record.size_bytes, record
    assert plan is not None and plan.count == 3 and len(plan.ranges) == 3
    original, output = noisy_720p.stat().st_size, record.size_bytes

    # The split reads the original's index and the start of each track's first sample (to probe it), and
    # writes the cuts' heads and the plan: nothing of the media either way, and nothing is downloaded.
    movie = mp4join.read_movie(lambda at, n: noisy_720p.read_bytes()[at : at + n], original)
    index = len(movie.ftyp) + moov_size(noisy_720p)
    firsts = sum(min(track.sizes[0], indeximage.FIRST_BYTES) for track in movie.tracks)
    assert traffic.originals["split"] <= index + firsts + 16 * 8, (dict(traffic.originals), index, firsts)
    assert traffic.downloads["split"] == 0
    assert traffic.written["split"] < 64 * 1024 + len(plan.model_dump_json()), dict(traffic.written)
    assert plan.sound_cuts and plan.sound_track is not None
    # Each piece reads its head and its range of the original (about a third of it), nothing else.
    for index, (start, stop) in enumerate(plan.ranges):
        assert stop - start < 0.5 * original
        assert traffic.read[f"piece {index}"] <= (stop - start) + 1 * MIB, dict(traffic.read)
    # Each sound part reads its head and the runs of its own sound in the original (this original
    # interleaves frame by frame: its runs are read as one range), no more than its span's share + 1 MB.
    for index, cut in enumerate(plan.sound_cuts):
        read = traffic.originals[f"sound {index}"]
        assert read == sum(stop - start for start, stop in cut.ranges), (index, read)
        starts = [*plan.sound_starts, round(plan.duration * plan.sound_rate)]
        share = original * (starts[index + 1] - starts[index]) / (plan.duration * plan.sound_rate)
        assert read <= share + 1 * MIB, (index, read, share)
    # The join: the pieces' indexes read and one index (plus padding) written; the media copied by S3.
    moved = traffic.read["join"] + traffic.written["join"]
    assert moved <= 0.01 * output, (moved, output)
    assert traffic.copied["join"] >= 0.95 * output
    rt.close()
