"""Reaching people: contact points and rules (operators edit them, audited), channel health, a test
message, and the open doors people answer through (the signed link's page, the carrier's callbacks)."""

from __future__ import annotations

import hmac
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from alerts.notify.base import Channel, ContactKind, mask
from alerts.notify.rules import DEFAULT_RULES, MOBILE, ContactPoint, NotifyRule, RuleStep, Urgency, rule_for
from alerts.notify.service import ANSWERS, Notifier
from dashboards.auth import Operator, Viewer, actor_of
from dashboards.deps import AppContext, Ctx
from devices.hierarchy import ROLE_LABELS
from foundation.errors import Invalid, NotFound

router = APIRouter(prefix="/api/notify", tags=["notify"])
answer_router = APIRouter(prefix="/api/answer", tags=["notify"])
callback_router = APIRouter(prefix="/api/notify/callbacks", tags=["notify"])

_ADDRESS = {ContactKind.MOBILE: MOBILE, ContactKind.PHONE: re.compile(r"^[0-9+-]{7,20}$"),
            ContactKind.WECOM: re.compile(r"^[A-Za-z0-9_-]{8,100}$"),
            ContactKind.DINGTALK: re.compile(r"^[A-Za-z0-9_-]{8,100}$"),
            ContactKind.FEISHU: re.compile(r"^[A-Za-z0-9_-]{8,100}$"),
            ContactKind.EMAIL: re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")}
_SECRET_KINDS = (ContactKind.WECOM, ContactKind.DINGTALK, ContactKind.FEISHU)  # a robot's key is its credential: shown masked


def _notifier(ctx: AppContext) -> Notifier:
    if ctx.notifier is None:
        raise NotFound("notifier", "disabled (WANLI_NOTIFY_ENABLED=false)")
    return ctx.notifier


class ContactPointIn(BaseModel):
    kind: ContactKind
    address: str = Field(min_length=1, max_length=300)
    priority: int = Field(default=0, ge=0, le=1000)
    drill: bool = False

    @field_validator("address")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class ContactPointPublic(BaseModel):
    kind: ContactKind
    address: str
    priority: int
    drill: bool
    source: Literal["operator", "street_data"]


class PersonContacts(BaseModel):
    person: str
    role: str
    role_zh: str
    contact_points: list[ContactPointPublic]


class RuleStepModel(BaseModel):
    after_s: int = Field(ge=0, le=7 * 24 * 3600)
    channels: list[Channel] = Field(min_length=1, max_length=5)
    first_only: bool = False


class RulePublic(BaseModel):
    role: str
    urgency: str
    steps: list[RuleStepModel]
    source: Literal["operator", "default"]


class TestRequest(BaseModel):
    person: str = Field(min_length=1, max_length=200)


class TestOutcomePublic(BaseModel):
    channel: str
    address: str
    provider: str
    message_id: str
    error: str
    ok: bool


class ChangePublic(BaseModel):
    at_ms: int
    actor: str
    what: str
    subject: str
    detail: str


class TokenBody(BaseModel):
    token: str = Field(min_length=10, max_length=600)


class AnswerBody(TokenBody):
    answer: Literal["ack", "arrived", "false_alarm"]


class AnswerFacts(BaseModel):
    incident_id: str
    person: str
    title: str
    severity: str
    location: str
    opened_ms: int
    state: str
    next_step: str
    expires_ms: int
    answered: str  # what this person answered already ("" if nothing)
    answers: dict[str, str]


def _person_contacts(n: Notifier, person: str) -> PersonContacts:
    role = n._people.get(person, ("", ""))[0]  # noqa: SLF001 - the street's data, read only
    stored = {(c.kind, c.address) for c in n.store.contact_points(person)}
    points = [c for c in n.store.contact_points(person)] + [c for c in n.contacts_of(person)
                                                            if (c.kind, c.address) not in stored]
    return PersonContacts(person=person, role=role, role_zh=ROLE_LABELS.get(role, role), contact_points=[
        ContactPointPublic(kind=c.kind, address=mask(c.address) if c.kind in _SECRET_KINDS else c.address,
                           priority=c.priority, drill=c.drill,
                           source="operator" if (c.kind, c.address) in stored else "street_data") for c in points])


@router.get("/people", response_model=list[PersonContacts])
def list_notify_people(ctx: Ctx, _who: Operator) -> list[PersonContacts]:
    """Everyone in the street's data and everyone with contact points, with their contact points."""
    n = _notifier(ctx)
    names = list(n._people) + sorted({c.person for c in n.store.contact_points()} - set(n._people))  # noqa: SLF001
    return [_person_contacts(n, p) for p in names]


@router.put("/people/{person}/contact-points", response_model=PersonContacts)
def put_contact_points(ctx: Ctx, who: Operator, person: Annotated[str, Path(min_length=1, max_length=200)],
                       points: Annotated[list[ContactPointIn], Body(max_length=20)]) -> PersonContacts:
    """Replace the contact points operators gave this person (the street data's phone stays); audited."""
    n = _notifier(ctx)
    for p in points:
        if not _ADDRESS[p.kind].match(p.address):
            raise Invalid(f"联系方式 {p.kind.value} 的地址格式不对（{p.kind.value} address {p.address[:40]!r} is malformed）")
    n.store.replace_contact_points(person, [ContactPoint(person, p.kind, p.address, p.priority, p.drill) for p in points],
                                   actor_of(who), ctx.clock_ms())
    return _person_contacts(n, person)


@router.get("/rules", response_model=list[RulePublic])
def list_notify_rules(ctx: Ctx, _who: Viewer) -> list[RulePublic]:
    """The notification rules in force: every rule operators stored, and the defaults they did not override."""
    stored = _notifier(ctx).store.rules()
    keys = list(dict.fromkeys([*stored, *DEFAULT_RULES]))
    return [RulePublic(role=r, urgency=u, source="operator" if (r, u) in stored else "default",
                       steps=[RuleStepModel(after_s=s.after_s, channels=list(s.channels), first_only=s.first_only)
                              for s in rule_for(r, u, stored).steps]) for r, u in keys]


@router.put("/rules/{role}/{urgency}", response_model=RulePublic)
def put_notify_rule(ctx: Ctx, who: Operator, role: Annotated[str, Path(pattern=r"^(\*|[a-z_]{1,32})$")],
                    urgency: Literal["critical", "high", "low"],
                    steps: Annotated[list[RuleStepModel], Body(max_length=10)]) -> RulePublic:
    """Set how a role is reached at an urgency ("*": every role without its own rule); audited."""
    if role != "*" and role not in ROLE_LABELS:
        raise Invalid(f"未知角色 {role!r}（unknown role; one of {', '.join(sorted(ROLE_LABELS))} or *）")
    rule = NotifyRule(role, urgency, tuple(RuleStep(s.after_s, tuple(s.channels), s.first_only) for s in steps))
    _notifier(ctx).store.put_rule(rule, actor_of(who), ctx.clock_ms())
    return RulePublic(role=role, urgency=urgency, steps=steps, source="operator")


@router.get("/changes", response_model=list[ChangePublic])
def list_notify_changes(ctx: Ctx, _who: Operator) -> list[ChangePublic]:
    """Who changed which contact points and rules, newest first."""
    return [ChangePublic(at_ms=c.at_ms, actor=c.actor, what=c.what, subject=c.subject, detail=c.detail)
            for c in _notifier(ctx).store.changes()]


@router.get("/faults", response_model=list[str])
def notify_faults(ctx: Ctx, _who: Viewer) -> list[str]:
    """Channels failing for longer than WANLI_NOTIFY_CHANNEL_FAILING_AFTER_S: ``notify_channel_failing:<channel>``."""
    return _notifier(ctx).faults(ctx.clock_ms())


@router.post("/test", response_model=list[TestOutcomePublic])
async def notify_test(ctx: Ctx, _who: Operator, body: TestRequest) -> list[TestOutcomePublic]:
    """Send a test message through every contact point of a person now, and say what each provider answered."""
    n = _notifier(ctx)
    outcomes = await run_in_threadpool(n.send_test, body.person)
    return [TestOutcomePublic(ok=not o.error, **vars(o)) for o in outcomes]


@answer_router.post("/facts", response_model=AnswerFacts)
def answer_facts(ctx: Ctx, body: TokenBody) -> AnswerFacts:
    """What the answer page shows: the incident the signed link is for, and what its person answered already."""
    n = _notifier(ctx)
    grant = n.grant(body.token, ctx.clock_ms())
    facts = n._facts(grant.incident_id)  # noqa: SLF001
    if facts is None:
        raise NotFound("incident", grant.incident_id)
    answered = next((a.answer for a in n.store.for_incident(grant.incident_id)
                     if a.person == grant.person and a.answer), "")
    return AnswerFacts(incident_id=facts.id, person=grant.person, title=facts.title, severity=facts.severity,
                       location=facts.location, opened_ms=facts.opened_ms, state=facts.state, next_step=facts.next_step,
                       expires_ms=grant.expires_ms, answered=answered, answers=ANSWERS)


@answer_router.post("", response_model=AnswerFacts)
def answer_incident(ctx: Ctx, body: AnswerBody) -> AnswerFacts:
    """The person the signed link names answers: 收到 (ack), 已到场 (arrived) or 误报 (false_alarm)."""
    n = _notifier(ctx)
    grant = n.grant(body.token, ctx.clock_ms())
    if n._facts(grant.incident_id) is None:  # noqa: SLF001
        raise NotFound("incident", grant.incident_id)
    n.answer(grant.incident_id, grant.person, body.answer, "link", ctx.clock_ms())
    return answer_facts(ctx, body)


def _check_callback_token(ctx: AppContext, token: str) -> Notifier:
    expected = ctx.settings.notify_callback_token.get_secret_value() if ctx.settings else ""
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
        raise NotFound("callback", "…")
    return _notifier(ctx)


class AliyunAck(BaseModel):
    code: int
    msg: str


@callback_router.post("/aliyun/voice/{token}", response_model=AliyunAck)
def aliyun_voice_report(ctx: Ctx, token: str, reports: Annotated[list[dict[str, Any]], Body(max_length=1000)]) -> AliyunAck:
    """Aliyun's VoiceReport push (HTTP batch): answered calls, and key 1 pressed (``dtmf``) acknowledging."""
    _check_callback_token(ctx, token).on_voice_report(reports, ctx.clock_ms())
    return AliyunAck(code=0, msg="成功")


@callback_router.post("/aliyun/sms/{token}", response_model=AliyunAck)
def aliyun_sms_report(ctx: Ctx, token: str, reports: Annotated[list[dict[str, Any]], Body(max_length=1000)]) -> AliyunAck:
    """Aliyun's SmsReport push: delivered, or failed (then the person's next contact point)."""
    _check_callback_token(ctx, token).on_sms_report(reports, ctx.clock_ms())
    return AliyunAck(code=0, msg="成功")


__all__ = ["answer_router", "callback_router", "router", "Urgency"]
