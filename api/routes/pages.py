"""The browser UI: server-rendered shells; the data comes from the JSON API."""

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import JobsDep
from video_converter.model import is_job_id
from video_converter.owners import AuthMode
from video_converter.presets import PRESETS
from video_converter.views import FormatView

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


@router.get("/", response_class=HTMLResponse)
def index(request: Request, jobs: JobsDep) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "formats": [FormatView.of(p) for p in PRESETS.values()],
            "max_bytes": jobs.settings.max_upload_bytes,
            # With owners (AUTH=keys), recent jobs are the owner's, from GET /api/jobs; else this browser's.
            "recent_source": "server" if jobs.settings.auth_mode is AuthMode.KEYS else "browser",
        },
    )


@router.head("/")
def index_head() -> Response:
    """For uptime monitors: the page is there (HEAD gets no body)."""
    return Response(status_code=200, media_type="text/html; charset=utf-8")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    status = 200 if is_job_id(job_id) else 404
    context = {"job_id": job_id, "api_base": f"/api/jobs/{job_id}", "shared": False}
    return templates.TemplateResponse(request, "job.html", context, status_code=status)
