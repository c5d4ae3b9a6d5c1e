from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """For load-balancer checks: the process is up and serving."""
    return {"status": "ok"}
