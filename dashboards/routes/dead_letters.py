from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashboards.auth import VIEWER_ONLY
from dashboards.deps import Ctx
from dashboards.schemas import DeadLetterPublic, QuarantinedDevice

router = APIRouter(prefix="/api", tags=["dead letters"], dependencies=VIEWER_ONLY)


@router.get("/dead-letters", response_model=list[DeadLetterPublic])
def list_dead_letters(ctx: Ctx, reason: str = "", device_id: str = "", before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DeadLetterPublic]:
    """Rejected and quarantined messages, newest first, with their reason and raw payload preview."""
    return [DeadLetterPublic.of(d) for d in ctx.dead_letters.list(reason, device_id, limit, before_id)]


@router.get("/dead-letters/counts")
def dead_letter_counts(ctx: Ctx) -> dict[str, int]:
    """How many messages were rejected, per reason."""
    return ctx.dead_letters.counts()


@router.get("/quarantine", response_model=list[QuarantinedDevice])
def quarantine(ctx: Ctx, limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[QuarantinedDevice]:
    """Devices seen but not registered (or retired): their messages are kept, never alerted on."""
    held = [QuarantinedDevice(**q) for q in ctx.dead_letters.quarantined(limit)]
    # A device registered (or reactivated) since is no longer waiting; its held messages stay as history.
    return [q for q in held if ctx.registry.find(q.device_id) is None or q.reason == "kind_mismatch"]
