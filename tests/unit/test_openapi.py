"""The OpenAPI document (/docs, /redoc) says what the service really does: its errors, formats, examples,
the flow and the webhook."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.responses import JOB_EXAMPLE, UPLOAD_EXAMPLE
from api.routes.docs import EVENT_EXAMPLE
from video_converter.model import OutputRecord, OutputStatus
from video_converter.presets import DEFAULT_FORMATS, PRESETS
from video_converter.runtime import Runtime
from video_converter.views import JobView, OutputView, UploadTicket
from video_converter.webhooks import EVENT_HEADER, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookEvent

ERROR = {"$ref": "#/components/schemas/ErrorDetail"}
HEALTH = {"$ref": "#/components/schemas/Health"}


@pytest.fixture
def client(mem_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(mem_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for section in ("paths", "webhooks"):
        for path, methods in spec.get(section, {}).items():
            for method, operation in methods.items():
                yield path, method, operation


def documented(spec: dict[str, Any], path: str, method: str) -> set[int]:
    return {int(status) for status in spec["paths"][path][method]["responses"]}


def test_every_error_is_the_services_detail_sentence_with_an_example(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in json.dumps(spec)  # FastAPI's stock 422 (an array) is never answered
    errors = 0
    for path, method, operation in operations(spec):
        for status, answer in operation["responses"].items():
            if status == "default" or int(status) < 400:
                continue
            errors += 1
            content = answer["content"]["application/json"]
            # /health answers its own document (a status and why), for load balancers.
            assert content["schema"] == (HEALTH if path == "/health" else ERROR), (path, method, status)
            detail = content["example"]["detail"]
            assert detail[:1].isupper() and detail.endswith("."), (path, method, status, detail)
    assert errors >= 12
    assert spec["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]


def test_each_route_documents_the_errors_it_gives(client: TestClient, spec: dict[str, Any]) -> None:
    missing = f"/api/jobs/{uuid.uuid4()}"
    answers = {
        ("/api/jobs/{job_id}", "get"): client.get(missing),
        ("/api/jobs/{job_id}", "delete"): client.delete(missing),
        ("/api/jobs/{job_id}/archive", "get"): client.get(f"{missing}/archive"),
        ("/api/jobs/{job_id}/outputs/{format_id}", "get"): client.get(f"{missing}/outputs/720p"),
        ("/api/jobs", "post"): client.post("/api/jobs", json={"upload_id": "x", "filename": "a.mp4", "formats": []}),
    }
    for (path, method), response in answers.items():
        assert response.status_code in documented(spec, path, method), (path, method, response.text)
        assert isinstance(response.json()["detail"], str)
    assert {409, 413, 422, 503} <= documented(spec, "/api/jobs", "post")
    assert {404, 409} <= documented(spec, "/api/jobs/{job_id}/outputs/{format_id}", "get")
    assert {404, 409} <= documented(spec, "/api/jobs/{job_id}/archive", "get")
    assert 503 in documented(spec, "/api/uploads", "post")


def test_formats_are_an_enum_with_working_defaults(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    multipart = body["multipart/form-data"]["schema"]["properties"]["formats"]
    schemas = spec["components"]["schemas"]
    as_json = (body["application/json"]["schema"].get("properties") or schemas["JobFromUpload"]["properties"])[
        "formats"
    ]
    for formats in (multipart, as_json):
        assert formats["items"]["enum"] == list(PRESETS)
        assert formats["examples"] == [DEFAULT_FORMATS] and set(DEFAULT_FORMATS) <= set(PRESETS)
    assert multipart["default"] == DEFAULT_FORMATS  # what "Try it out" sends (the form's ticked boxes)
    (format_param,) = [
        p
        for p in spec["paths"]["/api/jobs/{job_id}/outputs/{format_id}"]["get"]["parameters"]
        if p["name"] == "format_id"
    ]
    assert format_param["schema"]["enum"] == list(PRESETS)
    assert body["application/json"]["example"]["formats"] == DEFAULT_FORMATS


def test_examples_are_real_documents(spec: dict[str, Any]) -> None:
    """Every example shown validates against its model, so the docs cannot drift from the answers."""
    JobView.model_validate(JOB_EXAMPLE)
    UploadTicket.model_validate(UPLOAD_EXAMPLE)
    created = spec["paths"]["/api/jobs"]["post"]["responses"]["201"]["content"]["application/json"]
    assert created["example"] == JOB_EXAMPLE and created["schema"] == {"$ref": "#/components/schemas/JobView"}
    polled = spec["paths"]["/api/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert polled["example"] == JOB_EXAMPLE
    (job_param,) = spec["paths"]["/api/jobs/{job_id}"]["get"]["parameters"]
    assert uuid.UUID(next(iter(job_param["examples"].values()))["value"]).version == 4


def test_the_webhook_is_an_openapi_3_1_webhooks_entry(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    hook = spec["webhooks"]["job-finished"]["post"]
    body = hook["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/WebhookEvent"}  # the event the service signs
    assert body["example"] == EVENT_EXAMPLE
    assert WebhookEvent.model_validate(EVENT_EXAMPLE).job.job_id == JOB_EXAMPLE["job_id"]  # a real event
    headers = [p["name"].lower() for p in hook["parameters"] if p["in"] == "header"]
    assert headers == ["x-webhook-id", "x-webhook-event", "x-webhook-timestamp", "x-webhook-signature"]
    assert [SIGNATURE_HEADER, TIMESTAMP_HEADER, EVENT_HEADER, ID_HEADER] == [
        "X-Webhook-Signature",
        "X-Webhook-Timestamp",
        "X-Webhook-Event",
        "X-Webhook-Id",
    ]  # the names the service sends are the ones documented
    assert "callback_url" in hook["description"]


def test_the_description_walks_through_the_flow_and_links_back(spec: dict[str, Any]) -> None:
    description = spec["info"]["description"]
    steps = ["POST /api/uploads", "POST /api/jobs", "GET /api/jobs/{job_id}", "/outputs/{format}", "/archive"]
    positions = [description.index(step) for step in steps]
    assert positions[1:3] == sorted(positions[1:3])
    assert "](/)" in description  # a link back to the app
    assert {tag["name"] for tag in spec["tags"]} >= {"jobs", "uploads", "formats", "health"}


def test_outputs_carry_codec_bit_rate_and_duration() -> None:
    done = OutputRecord(format="720p", status=OutputStatus.COMPLETED, size_bytes=1_000_000, duration=8.0)
    video = OutputView.of(
        PRESETS["720p"],
        done.model_copy(update={"video_codec": "h264", "audio_codec": "aac"}),
        download_url="/x",
        filename="a",
    )
    assert (video.video_codec, video.audio_codec, video.bit_rate, video.duration) == ("h264", "aac", 1_000_000, 8.0)
    gif = OutputView.of(PRESETS["gif"], done.model_copy(update={"format": "gif"}), download_url="/x", filename="a")
    assert gif.bit_rate == 1_000_000 and gif.duration == 8.0  # a GIF plays
    still = done.model_copy(update={"format": "thumbnail", "duration": 0.04, "video_codec": "mjpeg"})
    thumbnail = OutputView.of(PRESETS["thumbnail"], still, download_url="/x", filename="a")
    assert (thumbnail.video_codec, thumbnail.duration, thumbnail.bit_rate) == ("mjpeg", None, None)
