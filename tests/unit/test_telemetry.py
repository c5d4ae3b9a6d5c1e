"""Everything visible: JSON log lines carry the job, the format and the attempt; a conversion prints
its metrics as CloudWatch EMF lines on stdout."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from tests.conftest import ClipFactory, Env
from video_converter import telemetry
from video_converter.outcome import Action


def emf_lines(text: str) -> list[dict[str, Any]]:
    return [doc for line in text.splitlines() if line.startswith("{") and "_aws" in (doc := json.loads(line))]


def metric_names(doc: dict[str, Any]) -> set[str]:
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "VideoConverter"
    assert directive["Dimensions"] == [["Format"]]
    return {m["Name"] for m in directive["Metrics"]}


@pytest.fixture
def json_log() -> Any:
    """The lines the root logger writes meanwhile, through the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.JsonFormatter())
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_conversion_prints_its_metrics_and_logs_its_fields(env: Env, make_clip: ClipFactory, capsys, json_log):
    job_id = env.create(make_clip(seconds=1.0), ["mp3"])
    capsys.readouterr()

    assert env.convert(job_id, "mp3", attempt=2).action is Action.ACK

    docs = emf_lines(capsys.readouterr().out)
    waited, done = docs
    assert metric_names(waited) == {"QueueWaitSeconds"} and waited["QueueWaitSeconds"] >= 0
    assert metric_names(done) == {"OutputsCompleted", "SecondsConverted", "ConversionSeconds"}
    assert done["Format"] == "mp3" and done["OutputsCompleted"] == 1
    assert done["SecondsConverted"] == pytest.approx(1.0, abs=0.1)
    assert 0 <= done["ConversionSeconds"] < 60
    assert (done["job_id"], done["format"], done["attempt"]) == (job_id, "mp3", 2)
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (finished,) = [line for line in lines if "done" in line["message"]]
    assert (finished["job_id"], finished["format"], finished["attempt"], finished["level"]) == (
        job_id,
        "mp3",
        2,
        "INFO",
    )


def test_a_failure_prints_outputs_failed(env: Env, make_clip: ClipFactory, capsys):
    job_id = env.create(make_clip(seconds=1.0), ["mp3"])
    env.rt.jobs.save_failure(job_id, "Not a video.")  # another output found the original unusable
    capsys.readouterr()
    env.convert(job_id, "mp3")
    (failed,) = emf_lines(capsys.readouterr().out)
    assert metric_names(failed) == {"OutputsFailed"}
    assert (failed["Format"], failed["OutputsFailed"], failed["job_id"]) == ("mp3", 1, job_id)


def test_fields_nest_and_end_with_their_block():
    with telemetry.fields(job_id="j", attempt=None):
        with telemetry.fields(format="720p"):
            assert telemetry.current() == {"job_id": "j", "format": "720p"}
        assert telemetry.current() == {"job_id": "j"}
    assert telemetry.current() == {}


def test_api_lines_carry_the_job_and_format_of_the_request(
    env: Env, make_clip: ClipFactory, monkeypatch: pytest.MonkeyPatch
):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from video_converter.documents import JobDocuments

    job_id = env.create(make_clip(seconds=1.0), ["mp3"])
    seen: list[dict[str, Any]] = []
    output_url = JobDocuments.output_url

    def watched(self: JobDocuments, job: str, format_id: str) -> str:
        seen.append(telemetry.current())  # what a log line written here would carry
        return output_url(self, job, format_id)

    monkeypatch.setattr(JobDocuments, "output_url", watched)
    client = TestClient(create_app(env.rt))
    assert client.get(f"/api/jobs/{job_id}/outputs/mp3", follow_redirects=False).status_code == 409
    assert seen == [{"job_id": job_id, "format": "mp3"}]
    assert client.get("/api/jobs/not-a-job").status_code == 404  # no field from a path that is no job
