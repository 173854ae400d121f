"""Escalation policies as data (alerts/policies.py): the version in force, its history (the audit trail),
a check and a dry-run of a draft, and applying it. Administrators only: a policy decides who is woken."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from alerts.policies import MAX_ACK_S, MIN_ACK_S, PolicySet, pretty_json
from alerts.policy_desk import PolicyDesk
from alerts.policy_store import PolicyVersion
from dashboards.auth import Admin, actor_of
from dashboards.deps import AppContext, Ctx
from dashboards.schemas import ms_to_dt
from devices.hierarchy import ROLE_LABELS
from foundation.errors import Invalid, NotFound

router = APIRouter(prefix="/api/policies", tags=["policies"])


def _desk(ctx: AppContext) -> PolicyDesk:
    if ctx.policy_desk is None:
        raise NotFound("policy desk", "not available on this service")
    return ctx.policy_desk  # type: ignore[no-any-return]


class PolicyVersionPublic(BaseModel):
    version: int
    created_at: datetime
    actor: str = Field(description="who stored it: the signed-in account, or the file that seeded the database")
    previous_version: int | None
    digest: str
    comment: str
    changes: list[str] = Field(description="what this version changed from the previous one, line by line")


class StoryChoice(BaseModel):
    name: str
    title: str
    default: bool = Field(description="replayed when a dry-run names no scenarios")


class PolicyInForce(PolicyVersionPublic):
    document: str = Field(description="the policy document (JSON, pretty-printed): what a draft starts from")
    roles: dict[str, str] = Field(description="the roles a step may name, with their Chinese labels")
    thresholds: dict[str, dict[str, float]] = Field(description="the rules' defaults per kind, which the "
                                                                "document's thresholds may change")
    ack_limits_s: list[int] = Field(description="the shortest and the longest acknowledgement deadline allowed")
    stories: list[StoryChoice] = Field(default=[], description="the scenario library stories a dry-run can replay")


class DraftIn(BaseModel):
    document: str = Field(min_length=2, max_length=200_000, description="the whole policy document, as JSON")


class DryRunIn(DraftIn):
    scenarios: list[str] | None = Field(default=None, max_length=20,
                                        description="scenario library stories to replay (default: the quick ones)")
    from_at: datetime | None = Field(default=None, description="also replay the incidents opened from then…")
    to_at: datetime | None = Field(default=None, description="…until then (default: now)")


class ApplyIn(DraftIn):
    based_on: int = Field(ge=1, le=2**31 - 1, description="the version the draft was edited from (another applied since: 409)")
    comment: str = Field(default="", max_length=400, description="why (kept with the version)")


class CheckPublic(BaseModel):
    valid: Literal[True]
    changes: list[str]


class DifferencePublic(BaseModel):
    story: str
    incident: str
    step: int = Field(description="1 = the policy's first step")
    change: Literal["earlier", "later", "added", "removed", "recipients"]
    current_at_s: float | None = Field(description="seconds after the incident opened, under the version in force")
    draft_at_s: float | None
    current_who: list[str]
    draft_who: list[str]


class StoryPublic(BaseModel):
    story: str
    kind: Literal["scenario", "history"]
    incidents: int
    steps_current: int
    steps_draft: int
    differences: int
    error: str = Field(description="why a story could not be replayed (empty: it was)")


class DryRunPublic(BaseModel):
    current_version: int
    changes: list[str]
    stories: list[StoryPublic]
    differences: list[DifferencePublic]
    seconds: float


class AppliedPublic(PolicyVersionPublic):
    rebased: int = Field(description="open incidents whose running deadline now follows this version")


def _version(v: PolicyVersion) -> dict[str, Any]:
    return {"version": v.version, "created_at": ms_to_dt(v.created_ms), "actor": v.actor,
            "previous_version": v.previous_version, "digest": v.digest, "comment": v.comment, "changes": v.changes}


@router.get("", response_model=PolicyInForce)
def policy_in_force(ctx: Ctx, _who: Admin) -> PolicyInForce:
    """The escalation policies and kind thresholds in force, as the document a draft is edited from."""
    desk = _desk(ctx)
    policies: PolicySet = desk.in_force
    stored = desk.store.get(policies.version) if policies.version else None
    thresholds = {k: dict(v) for k, v in (desk.threshold_defaults or {}).items()}
    base = _version(stored) if stored else {"version": 0, "created_at": ms_to_dt(0), "actor": "", "previous_version":
                                             None, "digest": policies.digest, "comment": "", "changes": []}
    return PolicyInForce(**base, document=pretty_json(policies.document), roles=dict(ROLE_LABELS),
                         thresholds=thresholds, ack_limits_s=[MIN_ACK_S, MAX_ACK_S],
                         stories=[StoryChoice(**s) for s in desk.stories])


@router.get("/versions", response_model=list[PolicyVersionPublic])
def policy_versions(ctx: Ctx, _who: Admin, limit: int = Query(50, ge=1, le=500)) -> list[PolicyVersionPublic]:
    """Every version stored, newest first: who applied it, when, which version it replaced, what it changed."""
    return [PolicyVersionPublic(**_version(v)) for v in _desk(ctx).history(limit)]


@router.get("/versions/{version}", response_model=PolicyInForce)
def policy_version(ctx: Ctx, _who: Admin, version: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> PolicyInForce:
    """One stored version with its document (to compare, or to start a draft from an older one)."""
    v = _desk(ctx).store.get(version)
    return PolicyInForce(**_version(v), document=pretty_json(v.document), roles=dict(ROLE_LABELS), thresholds={},
                         ack_limits_s=[MIN_ACK_S, MAX_ACK_S])


@router.post("/check", response_model=CheckPublic)
def check_policy(ctx: Ctx, _who: Admin, body: DraftIn) -> CheckPublic:
    """Validate a draft (422 with the first thing wrong) and list what it would change."""
    desk = _desk(ctx)
    return CheckPublic(valid=True, changes=desk.changes(desk.check(body.document)))


@router.post("/dry-run", response_model=DryRunPublic)
async def dry_run_policy(ctx: Ctx, _who: Admin, body: DryRunIn) -> DryRunPublic:
    """Replay the scenario library (and past incidents in a range) under the version in force and under the draft:
    each escalation step that would fire earlier, later, newly, no more, or to other people. Nothing is stored."""
    desk = _desk(ctx)
    what: dict[str, Any] = {}
    if body.scenarios is not None:
        what["scenarios"] = body.scenarios
    if body.from_at is not None:
        what["from_ms"] = int(body.from_at.timestamp() * 1000)
        what["to_ms"] = int(body.to_at.timestamp() * 1000) if body.to_at else ctx.clock_ms()
        if what["to_ms"] <= what["from_ms"]:
            raise Invalid("时间范围有误：结束须晚于开始（to_at must be after from_at）")
    report = await run_in_threadpool(desk.dry_run, body.document, what)
    return DryRunPublic(**report)


@router.post("/apply", response_model=AppliedPublic)
def apply_policy(ctx: Ctx, who: Admin, body: ApplyIn) -> AppliedPublic:
    """Store the draft as the next version and put it in force at once: new incidents follow it, and open
    (unacknowledged) incidents' running deadlines are recomputed under it. Audited with the account's name."""
    applied = _desk(ctx).apply(body.document, actor=actor_of(who), comment=body.comment, based_on=body.based_on)
    return AppliedPublic(**_version(applied.version), rebased=applied.rebased)
