"""How a job is divided into messages (job_tasks) and how a message body is read as a task (Task.from_body,
Task.body): pure logic, no FFmpeg."""

from __future__ import annotations

import pytest

from video_converter.messages import Task, job_tasks
from video_converter.presets import PRESETS


def test_a_job_is_divided_into_one_message_for_the_mp4_sizes_and_one_per_other_format() -> None:
    tasks = job_tasks("j", ["gif", "1080p", "webm", "480p", "mp3", "720p"])
    assert tasks == [
        Task("j", "gif"),
        Task("j", "1080p", also=("480p", "720p")),  # where the first MP4 was asked for
        Task("j", "webm"),  # VP9 is ~5x slower than x264: together, every MP4 would wait for it
        Task("j", "mp3"),
    ]
    assert job_tasks("j", ["720p"]) == [Task("j", "720p")]
    assert Task.from_body(tasks[1].body()) == tasks[1]


@pytest.mark.parametrize(
    "extra", [{"with": "720p,720p"}, {"with": "480p", "step": "assemble"}, {"with": ",".join(PRESETS)}]
)
def test_odd_groups_are_malformed(extra: dict[str, str]) -> None:
    assert Task.from_body({"job_id": "j", "format": "1080p", **extra}) is None


@pytest.mark.parametrize(
    ("body", "task"),
    [
        ({"job_id": "j", "format": "720p"}, Task("j", "720p")),
        ({"job_id": "j", "format": "720p", "segment": "3"}, Task("j", "720p", segment=3)),
        ({"job_id": "j", "format": "720p", "step": "assemble"}, Task("j", "720p", assemble=True)),
        ({"job_id": "j", "format": "720p", "segment": "-1"}, None),
        ({"job_id": "j", "format": "720p", "segment": "x"}, None),
        ({"job_id": "j", "format": "720p", "step": "audio", "part": "2"}, Task("j", "720p", sound=2)),
        ({"job_id": "j", "format": "720p", "step": "audio"}, Task("j", "720p", sound=0)),  # from before parts
        ({"job_id": "j", "format": "720p", "step": "explode"}, None),
        ({"job_id": "j", "format": "720p", "step": "audio", "segment": "1"}, None),
        ({"job_id": "j", "format": "720p", "step": "audio", "part": "-1"}, None),
        ({"job_id": "j", "format": "720p", "part": "1"}, None),
    ],
)
def test_task_bodies_round_trip_and_odd_ones_are_malformed(body: dict[str, str], task: Task | None) -> None:
    assert Task.from_body(body) == task
    if task is not None:
        assert Task.from_body(task.body()) == task
