"""The estimate of a job's time (``video_converter.estimate``): the work of each message times the measured
speed of its kind, laid over the workers in queue order, and corrected by what finished messages took."""

from __future__ import annotations

from datetime import timedelta

import pytest

from video_converter.estimate import (
    DEFAULT_RATES,
    FACTOR_RANGE,
    SpeedBook,
    Speeds,
    family,
    forecast,
    message_work,
)
from video_converter.jobs import new_job
from video_converter.model import JobRecord, OutputRecord, OutputStatus, SourceInfo, utcnow
from video_converter.presets import PRESETS
from video_converter.storage import MemoryStorage
from video_converter.work import divide

HD = SourceInfo(duration=55.0, width=1280, height=720, video_codec="h264", audio_codec="aac", frame_rate=24.0)
EVERY = list(PRESETS)


def job(formats: list[str]) -> JobRecord:
    return new_job("6f1c0f5e-0000-4000-8000-000000000000", "trailer.mp4", formats, 1)


def queued(formats: list[str]) -> list[OutputRecord]:
    return [OutputRecord(format=f) for f in formats]


def test_the_mp4_sizes_are_one_family_and_the_others_their_own() -> None:
    assert {family(f) for f in ("1080p", "720p", "480p", "360p", "hls")} == {"h264"}
    assert [family(f) for f in ("webm", "mp3", "gif", "thumbnail")] == ["webm", "mp3", "gif", "thumbnail"]
    assert set(DEFAULT_RATES) == {family(f) for f in PRESETS}


def test_sizes_that_are_one_encode_cost_one() -> None:
    """1080p of a 720p source is the 720p encode (stored once): it adds no work to their message."""
    alone = message_work(["720p", "480p"], ("720p", "480p"), HD)
    with_1080 = message_work(["1080p", "720p", "480p"], ("1080p", "720p", "480p"), HD)
    assert with_1080 == pytest.approx(alone)
    assert message_work(["720p"], ("720p",), HD) < alone


def test_with_two_workers_the_quick_outputs_are_ready_in_seconds_and_the_job_when_its_longest_is() -> None:
    found = forecast(job(EVERY), queued(EVERY), HD, Speeds(), workers=2)
    assert found is not None and not found.calibrated
    ready = found.outputs
    assert ready["thumbnail"] < 5 and ready["mp3"] < 15 and ready["gif"] < 15
    assert ready["thumbnail"] <= ready["mp3"] <= ready["gif"] < ready["720p"] < ready["webm"]
    assert ready["1080p"] == ready["720p"] == ready["360p"]  # one message
    webm = Speeds().seconds("webm", message_work(EVERY, ("webm",), HD))
    assert found.seconds_left == ready["webm"] and webm < found.seconds_left < webm + 15


def test_one_worker_takes_them_one_after_another_and_lambda_all_at_once() -> None:
    one = forecast(job(EVERY), queued(EVERY), HD, Speeds(), workers=1)
    side_by_side = forecast(job(EVERY), queued(EVERY), HD, Speeds(), workers=None)
    assert one is not None and side_by_side is not None
    costs = [Speeds().seconds(family(w.formats[0]), message_work(EVERY, w.formats, HD)) for w in divide("j", EVERY)]
    assert one.seconds_left == pytest.approx(sum(costs))
    assert side_by_side.seconds_left == pytest.approx(max(costs))
    assert side_by_side.outputs["thumbnail"] == pytest.approx(costs[0])


def test_finished_outputs_drop_out_and_a_running_one_counts_what_is_left() -> None:
    formats = ["thumbnail", "720p", "webm"]
    now = utcnow()
    cost = Speeds().seconds("webm", message_work(formats, ("webm",), HD))
    records = [
        OutputRecord(format="thumbnail", status=OutputStatus.COMPLETED),
        OutputRecord(format="720p", status=OutputStatus.FAILED),
        OutputRecord(
            format="webm", status=OutputStatus.PROCESSING, progress=50, started_at=now - timedelta(seconds=30)
        ),
    ]
    found = forecast(job(formats), records, HD, Speeds(), workers=2, now=now)
    assert found is not None and set(found.outputs) == {"webm"}
    # Half done in 30 s: its pace says 30 s more, and at 50 % the pace is what counts.
    assert found.seconds_left == pytest.approx(30, abs=0.5)
    early = [records[0], records[1], records[2].model_copy(update={"progress": 0.0})]
    found = forecast(job(formats), early, HD, Speeds(), workers=2, now=now)
    assert found is not None and found.seconds_left == pytest.approx(cost - 30, abs=0.5)


def test_a_long_video_is_shared_by_the_workers_in_pieces() -> None:
    long = HD.model_copy(update={"duration": 600.0})
    whole = forecast(job(["720p"]), queued(["720p"]), long, Speeds(), workers=4)
    pieces = forecast(job(["720p"]), queued(["720p"]), long, Speeds(), workers=4, segment_seconds=60)
    assert whole is not None and pieces is not None
    assert pieces.seconds_left == pytest.approx(whole.seconds_left / 10 * 3, rel=0.01)  # 10 pieces on 4 workers


def test_no_estimate_before_the_source_is_probed() -> None:
    assert forecast(job(["720p"]), queued(["720p"]), None, Speeds(), workers=2) is None
    assert forecast(job(["720p"]), queued(["720p"]), SourceInfo(), Speeds(), workers=2) is None


def test_a_finished_message_corrects_its_family_and_is_kept_in_the_store() -> None:
    store = MemoryStorage()
    book = SpeedBook(store)
    assert book.current() == Speeds()
    work = message_work(["720p"], ("720p",), HD)
    predicted = Speeds().seconds("h264", work)
    book.learn(job(["720p"]), ("720p",), HD, predicted * 2)  # this machine is twice as slow
    assert SpeedBook(store).current().seconds("h264", work) == pytest.approx(predicted * 2)  # the first counts whole
    assert SpeedBook(store).current().seconds("webm", work) == Speeds().seconds("webm", work)  # other families kept
    for _ in range(20):
        book.learn(job(["720p"]), ("720p",), HD, predicted)  # and back to the defaults' speed
    learned = SpeedBook(store).current()
    assert learned.calibrated and learned.samples == {"h264": 21}
    assert learned.seconds("h264", work) == pytest.approx(predicted, rel=0.01)


def test_one_odd_run_cannot_make_the_estimates_absurd() -> None:
    speeds = Speeds().learned("gif", 0.01, observed=1e9)
    assert speeds.factors["gif"] == FACTOR_RANGE[1]


def test_an_unreadable_speeds_file_gives_the_defaults() -> None:
    store = MemoryStorage()
    store.put_bytes("speeds.json", b"{not json")
    assert SpeedBook(store).current() == Speeds()
