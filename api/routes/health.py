"""For load-balancer checks."""

from fastapi import APIRouter

from video_converter.views import Health

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Health:
    """The process is up and serving."""
    return Health(status="ok")
