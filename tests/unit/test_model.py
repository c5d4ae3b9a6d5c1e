"""Job status derivation and job ids."""

from __future__ import annotations

import uuid
from itertools import product

import pytest

from video_converter.model import JobStatus, OutputRecord, OutputStatus, is_job_id, job_status, new_job_id

Q, P, C, F = OutputStatus.QUEUED, OutputStatus.PROCESSING, OutputStatus.COMPLETED, OutputStatus.FAILED


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], JobStatus.QUEUED),
        ([Q], JobStatus.QUEUED),
        ([Q, Q, Q], JobStatus.QUEUED),
        ([P], JobStatus.PROCESSING),
        ([Q, P], JobStatus.PROCESSING),
        ([Q, C], JobStatus.PROCESSING),  # started: something finished, something waits
        ([Q, F], JobStatus.PROCESSING),
        ([C, P, F], JobStatus.PROCESSING),
        ([C], JobStatus.COMPLETED),
        ([C, C, C], JobStatus.COMPLETED),
        ([F], JobStatus.FAILED),
        ([F, F], JobStatus.FAILED),
        ([C, F], JobStatus.PARTIAL),
        ([F, C, C], JobStatus.PARTIAL),
    ],
)
def test_job_status(states: list[OutputStatus], expected: JobStatus) -> None:
    assert job_status(states) is expected
    assert job_status(iter(states)) is expected  # any iterable, consumed once


@pytest.mark.parametrize("states", [list(p) for n in (1, 2, 3) for p in product(list(OutputStatus), repeat=n)])
def test_job_status_exhaustive_rules(states: list[OutputStatus]) -> None:
    status = job_status(states)
    if all(s is Q for s in states):
        assert status is JobStatus.QUEUED
    elif not all(s.finished for s in states):
        assert status is JobStatus.PROCESSING
    elif C in states and F in states:
        assert status is JobStatus.PARTIAL
    else:
        assert status is (JobStatus.COMPLETED if C in states else JobStatus.FAILED)


def test_finished() -> None:
    assert {s for s in OutputStatus if s.finished} == {C, F}


def test_new_job_id_is_uuid4() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert str(parsed) == value
        assert is_job_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        str(uuid.uuid1()),
        str(uuid.uuid4()).upper(),
        str(uuid.uuid4()).replace("-", ""),
        "../" + str(uuid.uuid4()),
        str(uuid.uuid4()) + "/../x",
        str(uuid.uuid4()) + "x",
        " " + str(uuid.uuid4()),
        "{" + str(uuid.uuid4()) + "}",
        "00000000-0000-0000-0000-000000000000",
        "..",
        "source",
    ],
)
def test_is_job_id_rejects(value: str) -> None:
    assert not is_job_id(value)


def test_is_job_id_rejects_trailing_newline() -> None:
    assert not is_job_id(str(uuid.uuid4()) + "\n")


def test_output_record_defaults() -> None:
    record = OutputRecord(format="720p")
    assert record.status is Q
    assert record.progress == 0.0
    assert record.attempts == 0
    assert record.updated_at.tzinfo is not None
    again = OutputRecord.model_validate_json(record.model_dump_json())
    assert again == record


def test_records_written_before_colour_tags_stay_readable() -> None:
    old = '{"format": "720p", "status": "completed", "source": {"duration": 2.0, "video_codec": "h264"}}'
    source = OutputRecord.model_validate_json(old).source
    assert source is not None
    assert (source.color_transfer, source.color_primaries, source.color_space) == (None, None, None)
    assert not source.hdr


def test_state_changes_return_changed_copies_and_refuse_unknown_fields() -> None:
    record = OutputRecord(format="720p")
    started = record.started(2)
    assert (started.status, started.attempts, record.status) == (OutputStatus.PROCESSING, 2, Q)
    assert started.progressed(120.0).progress == 99.0  # 100 % is only ever "completed"
    assert started.failed("broken").model_dump(include={"status", "error"}) == {"status": F, "error": "broken"}
    assert started.requeued("again").model_dump(include={"status", "progress"}) == {"status": Q, "progress": 0.0}
    with pytest.raises(TypeError, match="no field progres"):
        record._changed(progres=1.0)  # model_copy alone would store it silently
