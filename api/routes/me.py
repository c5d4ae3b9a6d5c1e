"""The caller: who the requests act for, its limits and what it uses of them."""

import time

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import OwnerDep, QuotasDep
from api.rate_limit import RateLimiter
from video_converter.owners import Owner
from video_converter.quotas import DAY, Quotas, quota_of
from video_converter.views import LimitsView, MeView, OwnerView, UsageView

router = APIRouter(prefix="/api/me", tags=["me"])


def _me(owner: Owner, quotas: Quotas, per_minute: int | None, now: float) -> MeView:
    quota = quota_of(owner, quotas.settings)
    limits = LimitsView(
        active_jobs=quota.active_jobs,
        source_minutes_per_day=quota.source_minutes_per_day,
        storage_bytes=quota.storage_bytes,
        requests_per_minute=per_minute,
    )
    usage = None
    if quotas.counts(owner):
        counted = quotas.usage(owner)
        usage = UsageView(
            active_jobs=counted.unfinished(),
            source_minutes_today=round(counted.minutes_since(now - DAY), 2),
            storage_bytes=counted.stored(),
        )
    return MeView(owner=OwnerView(id=owner.id, kind=owner.kind.value, name=owner.name), limits=limits, usage=usage)


@router.get("")
async def get_me(request: Request, owner: OwnerDep, quotas: QuotasDep) -> MeView:
    """The owner the request acts for (its key, its session, or everyone with AUTH=none), its limits
    (null: none) and its usage: unfinished jobs, the last 24 hours' work and the bytes its jobs keep."""
    limiter: RateLimiter = request.app.state.rate_limiter
    return await run_in_threadpool(_me, owner, quotas, limiter.limit, time.time())
