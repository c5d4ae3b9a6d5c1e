"""/docs (Swagger UI) and /redoc, served with their assets from the app: they work without internet; and
what the OpenAPI document says beyond the routes: the flow from upload to download, the webhook, and
errors as the service really answers them.

The files come from fastapi-offline's bundled copy of Swagger UI and ReDoc; Swagger UI starts from
/static/docs.js instead of FastAPI's inline script, so /docs keeps a strict Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import fastapi_offline
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from api.responses import JOB_EXAMPLE
from api.templating import templates
from video_converter.webhooks import WebhookEvent

router = APIRouter(include_in_schema=False)
webhooks = APIRouter()  # documented only (OpenAPI 3.1 ``webhooks``): what this service sends to receivers

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"


def assets() -> StaticFiles:
    return StaticFiles(directory=ASSETS_DIR)


def _page(request: Request, template: str) -> HTMLResponse:
    context = {"title": request.app.title, "openapi_url": request.app.openapi_url, "assets": ASSETS_URL}
    return templates.TemplateResponse(request, template, context)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, "swagger.html")


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    return _page(request, "redoc.html")


DESCRIPTION = """\
Upload a video; get MP4 renditions, WebM, MP3, GIF and thumbnails back. [Back to the converter](/)

## From upload to download

1. **Send the file.** Small files: `POST /api/jobs` as `multipart/form-data` with `file` and `formats`
   (repeated, or comma-separated), which answers the job at once. Large files: `POST /api/uploads` for a
   ticket, POST the file to its `url` (every `fields` entry, then `file`; on AWS this goes straight to
   S3), then `POST /api/jobs` as JSON naming its `upload_id`.
2. **Follow the job.** `GET /api/jobs/{job_id}` until `status` is `completed`, `partial` or `failed`
   (every second or two; back off while nothing changes), or give a `callback_url` and receive the
   `job-finished` webhook (below) instead.
3. **Download.** `GET /api/jobs/{job_id}/outputs/{format}` redirects (307) to a fresh signed link;
   `GET /api/jobs/{job_id}/archive` streams every completed output as one ZIP. `DELETE` removes it all.

```sh
curl -F file=@holiday.mov -F formats=720p,mp3 http://127.0.0.1:8000/api/jobs
curl http://127.0.0.1:8000/api/jobs/JOB_ID
curl -LOJ http://127.0.0.1:8000/api/jobs/JOB_ID/outputs/720p
```

## Errors

Every error is JSON `{"detail": "<one sentence saying what went wrong and what to do>"}`, with the
status saying what kind: 404 no such job, 409 not ready (or already done), 413 too large, 422 invalid
request, 503 try again after `Retry-After`.
"""

TAGS = [
    {"name": "jobs", "description": "Create a job from a file, follow it, download its outputs, delete it."},
    {"name": "uploads", "description": "Tickets to send a large file straight to storage before its job."},
    {"name": "formats", "description": "The output formats a job can ask for."},
    {"name": "health", "description": "For load balancers and uptime monitors."},
]


# The body of a job-finished event, as a receiver gets it (the job's links made absolute).
EVENT_EXAMPLE = {
    "id": "evt_5b0c1f6e2a9d4c3b8e7f6a5d4c3b2a19",
    "type": "job.completed",
    "created_at": "2026-11-29T09:02:28+00:00",
    "timestamp": 1795942948,
    "job_url": f"https://video.example.com/api/jobs/{JOB_EXAMPLE['job_id']}",
    "job": JOB_EXAMPLE,
}


@webhooks.post(
    "job-finished",
    response_class=Response,  # the receiver's answer has no body the service reads
    responses={
        200: {"description": "Received: any 2xx answer within 10 s ends the delivery (its body is not read)."},
        "default": {"description": "Any other answer, a redirect, or none within 10 s is retried (4 attempts)."},
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"example": EVENT_EXAMPLE}}}},
)
def job_finished(
    event: WebhookEvent,
    x_webhook_id: Annotated[str, Header(description="The event's id, the same on every attempt.")],
    x_webhook_event: Annotated[str, Header(description="The event's type: job.completed, job.partial or job.failed.")],
    x_webhook_timestamp: Annotated[str, Header(description="When this attempt was sent, seconds since the epoch.")],
    x_webhook_signature: Annotated[
        str,
        Header(description="`sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<raw body>` under the webhook key."),
    ],
) -> None:
    """Sent to the job's `callback_url` once every output is final: an event with the job's JSON as
    `GET /api/jobs/{job_id}` answers it, its links absolute (`PUBLIC_URL`, else the creating request's
    origin). Verify `X-Webhook-Signature` over `X-Webhook-Timestamp`, a dot and the raw body, and refuse a
    timestamp more than 5 minutes from your clock (a replayed request); answer 2xx within 10 s. Delivered
    at least once: a receiver may see an event twice (its `id` tells). The job's `webhook` field shows
    the delivery as it stands."""


STOCK_ERRORS = ("HTTPValidationError", "ValidationError")


def drop_stock_errors(schema: dict[str, Any]) -> None:
    """Take FastAPI's stock 422 (a list of pydantic errors, which the service never answers: its errors
    are ``{"detail": "<sentence>"}``, declared on each route) out of ``schema``."""
    for path in [*schema.get("paths", {}).values(), *schema.get("webhooks", {}).values()]:
        for operation in path.values():
            responses = operation.get("responses", {})
            if any(name in str(responses.get("422", "")) for name in STOCK_ERRORS):
                del responses["422"]
    for name in STOCK_ERRORS:
        schema.get("components", {}).get("schemas", {}).pop(name, None)


class DocumentedAPI(FastAPI):
    """FastAPI with this service's docs: the flow, the tags, the webhook it sends, its real errors."""

    def __init__(self, **kwargs: Any) -> None:
        # One JobView schema for what the API answers and the webhook sends (the same document).
        super().__init__(description=DESCRIPTION, openapi_tags=TAGS, separate_input_output_schemas=False, **kwargs)
        self.webhooks.include_router(webhooks)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            drop_stock_errors(super().openapi())
        return super().openapi()
