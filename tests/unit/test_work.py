"""How a job is divided into messages (``divide``) and how a message body is read as the work it names
(``from_body``, ``to_body``): pure logic, no FFmpeg."""

from __future__ import annotations

import pytest

from video_converter.presets import PRESETS
from video_converter.queues import MemoryQueue
from video_converter.work import (
    Convert,
    Join,
    Notify,
    Piece,
    Priority,
    SoundPart,
    Task,
    divide,
    from_body,
    priority,
    send,
    to_body,
)


def test_a_job_is_divided_into_one_message_for_the_mp4_sizes_and_one_per_other_format() -> None:
    tasks = divide("j", ["gif", "1080p", "webm", "480p", "mp3", "720p"])
    assert tasks == [  # the cheapest first
        Convert("j", ("mp3",)),
        Convert("j", ("gif",)),
        Convert("j", ("1080p", "480p", "720p")),  # in the order they were asked for
        Convert("j", ("webm",)),  # VP9 is ~5x slower than x264: together, every MP4 would wait for it
    ]
    assert divide("j", ["720p"]) == [Convert("j", ("720p",))]
    assert from_body(to_body(tasks[1])) == tasks[1]


@pytest.mark.parametrize(
    "extra", [{"with": "720p,720p"}, {"with": "480p", "step": "assemble"}, {"with": ",".join(PRESETS)}]
)
def test_odd_groups_are_malformed(extra: dict[str, str]) -> None:
    assert from_body({"job_id": "j", "format": "1080p", **extra}) is None


@pytest.mark.parametrize(
    ("body", "task"),
    [
        ({"job_id": "j", "format": "720p"}, Convert("j", ("720p",))),
        ({"job_id": "j", "format": "720p", "segment": "3"}, Piece("j", ("720p",), 3)),
        ({"job_id": "j", "format": "720p", "step": "assemble"}, Join("j", "720p")),
        ({"job_id": "j", "format": "720p", "segment": "-1"}, None),
        ({"job_id": "j", "format": "720p", "segment": "x"}, None),
        ({"job_id": "j", "format": "720p", "step": "audio", "part": "2"}, SoundPart("j", ("720p",), 2)),
        ({"job_id": "j", "format": "720p", "step": "audio"}, SoundPart("j", ("720p",), 0)),  # from before parts
        ({"job_id": "j", "format": "720p", "step": "explode"}, None),
        ({"job_id": "j", "format": "720p", "step": "audio", "segment": "1"}, None),
        ({"job_id": "j", "format": "720p", "step": "audio", "part": "-1"}, None),
        ({"job_id": "j", "format": "720p", "part": "1"}, None),
        ({"job_id": "j", "step": "webhook"}, Notify("j")),  # a finished job's webhook, delivered on its own
        ({"job_id": "j", "step": "webhook", "format": "720p"}, None),
        ({"job_id": "", "step": "webhook"}, None),
    ],
)
def test_work_bodies_round_trip_and_odd_ones_are_malformed(body: dict[str, str], task: Task | None) -> None:
    assert from_body(body) == task
    if task is not None:
        assert from_body(to_body(task)) == task


def test_quick_work_is_sent_first_and_with_priority() -> None:
    """The thumbnail, MP3 and GIF never queue behind a long encode of their job (README: scheduling)."""
    tasks = divide("j", list(PRESETS))
    assert [t.formats for t in tasks] == [
        ("thumbnail",),
        ("mp3",),
        ("gif",),
        ("storyboard",),
        ("1080p", "720p", "480p", "360p", "hls"),
        ("webm",),
    ]
    assert [priority(t) for t in tasks] == [Priority.QUICK] * 4 + [Priority.LONG] * 2
    assert priority(Convert("j", ("hls",))) is Priority.LONG  # a stream is video encodes
    assert priority(Join("j", "720p")) is priority(Notify("j")) is Priority.QUICK
    assert priority(Piece("j", ("720p",), 0)) is priority(SoundPart("j", ("720p",), 0)) is Priority.LONG
    queue = MemoryQueue()
    for task in reversed(tasks):  # sent dearest first: the quick ones still go first (then the oldest)
        send(queue, task, "everyone")
    received = [queue.receive() for _ in tasks]
    assert [from_body(m.body) for m in received if m] == [*reversed(tasks[:4]), tasks[5], tasks[4]]
