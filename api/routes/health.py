"""For load-balancer checks."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import RuntimeDep
from video_converter.views import Health

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    response_model_exclude_none=True,
    responses={
        503: {
            "model": Health,
            "description": "Cannot do its work right now.",
            "content": {
                "application/json": {
                    "example": {
                        "status": "unhealthy",
                        "detail": "The data folder cannot be written to (no space left).",
                    }
                }
            },
        }
    },
)
async def health(rt: RuntimeDep) -> Health | JSONResponse:
    """The process is up and can do its work: 200, or 503 with the reason (a read-only or full data
    folder, an unreadable queue), so a load balancer or supervisor takes it out of service."""
    problem = await run_in_threadpool(rt.health_problem)
    if problem is None:
        return Health(status="ok")
    return JSONResponse(Health(status="unhealthy", detail=problem).model_dump(), status_code=503)  # not cached


@router.head("/health", include_in_schema=False)
async def health_head(rt: RuntimeDep) -> Response:
    """Uptime monitors often probe with HEAD: the same answer as GET, without a body."""
    problem = await run_in_threadpool(rt.health_problem)
    return Response(status_code=200 if problem is None else 503)
