"""Composition of the notifier (alerts/notify) from the settings: its providers, people, facts and answers."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Engine

from alerts.incidents import Action, State
from alerts.notify.aliyun import AliyunRpc, AliyunSms, AliyunVoice
from alerts.notify.base import Channel, ContactKind, Provider
from alerts.notify.email import SmtpEmail
from alerts.notify.gammu import GammuFolders, GammuSms
from alerts.notify.robots import DingTalkRobot, FeishuRobot, WeComRobot
from alerts.notify.rules import ContactPoint
from alerts.notify.service import UNREACHABLE, IncidentFacts, NotifyConfig, Notifier
from alerts.notify.store import NotifyStore
from alerts.store import IncidentStore
from devices.hierarchy import Hierarchy
from foundation.change_bus import ChangeBus
from foundation.errors import IllegalTransition, NotFound
from foundation.service_clock import ClockMs
from wanli.settings import Settings

log = logging.getLogger(__name__)

NEXT_STEP = {"welfare": "请立即回电老人，并安排人员上门查看", "fire": "请立即到场核实，确认起火即拨打119",
             "charging": "请立即到场断电查看", "readiness": "请尽快处理"}


def people_of(hierarchy: Hierarchy) -> dict[str, tuple[str, str]]:
    """Every person the street's data names: name → (role, phone)."""
    people: dict[str, tuple[str, str]] = {}
    nodes = [hierarchy.district_responders, hierarchy.street_responders]
    nodes += [n.responders for group in (hierarchy.areas, hierarchy.communities, hierarchy.buildings,
                                          hierarchy.fire_stations) for n in group.values()]
    nodes += [h.contacts for h in hierarchy.households.values()]
    for responders in nodes:
        for r in responders:
            people.setdefault(r.name, (r.role, r.phone))
    return people


def parse_drill_contacts(text: str) -> tuple[ContactPoint, ...]:
    """``name=kind:address;…`` (WANLI_NOTIFY_DRILL_CONTACTS) as drill contact points."""
    out = []
    for i, item in enumerate(p.strip() for p in text.split(";") if p.strip()):
        name, _, point = item.partition("=")
        kind, _, address = point.partition(":")
        if not name.strip() or not address.strip():
            raise ValueError(f"WANLI_NOTIFY_DRILL_CONTACTS: {item!r} is not name=kind:address")
        out.append(ContactPoint(name.strip(), ContactKind(kind.strip()), address.strip(), i, drill=True))
    return tuple(out)


def providers_from(settings: Settings, clock_ms: ClockMs) -> tuple[dict[Channel, list[Provider]], GammuSms | None]:
    s = settings
    providers: dict[Channel, list[Provider]] = {c: [] for c in Channel}
    if s.notify_smtp_host:
        providers[Channel.EMAIL].append(SmtpEmail(s.notify_smtp_host, s.notify_smtp_port, s.notify_smtp_sender,
                                                  username=s.notify_smtp_username,
                                                  password=s.notify_smtp_password.get_secret_value(),
                                                  security=s.notify_smtp_security))
    if s.notify_wecom_enabled:
        providers[Channel.WECOM].append(WeComRobot(s.notify_wecom_url))
    if s.notify_dingtalk_enabled:
        providers[Channel.DINGTALK].append(DingTalkRobot(
            {k: v.get_secret_value() for k, v in s.notify_dingtalk_secrets.items()}, s.notify_dingtalk_url,
            clock_ms=clock_ms))
    if s.notify_feishu_enabled:
        providers[Channel.FEISHU].append(FeishuRobot(
            {k: v.get_secret_value() for k, v in s.notify_feishu_secrets.items()}, s.notify_feishu_url, clock_ms=clock_ms))
    key_id, secret = s.notify_aliyun_access_key_id, s.notify_aliyun_access_key_secret.get_secret_value()
    if key_id and secret and s.notify_aliyun_voice_show_number:
        providers[Channel.VOICE].append(AliyunVoice(
            AliyunRpc(s.notify_aliyun_voice_url, key_id, secret, region=s.notify_aliyun_region, clock_ms=clock_ms),
            s.notify_aliyun_voice_show_number, s.notify_aliyun_voice_tts_code, s.notify_aliyun_voice_confirm_tts_code))
    if key_id and secret and s.notify_aliyun_sms_sign_name:
        providers[Channel.SMS].append(AliyunSms(
            AliyunRpc(s.notify_aliyun_sms_url, key_id, secret, region=s.notify_aliyun_region, clock_ms=clock_ms),
            s.notify_aliyun_sms_sign_name, s.notify_aliyun_sms_template))
    gammu = GammuSms(GammuFolders.under(s.notify_gammu_dir)) if s.notify_gammu_dir else None
    if gammu is not None:  # after the carrier's API: the path that needs no internet
        providers[Channel.SMS].append(gammu)
    return providers, gammu


def build_notifier(settings: Settings, engine: Engine, hierarchy: Hierarchy, incidents: IncidentStore,
                   clock_ms: ClockMs, bus: ChangeBus | None = None) -> tuple[Notifier, Callable[[Callable[..., object]], None]]:
    """The notifier, and a function that gives it the alert service's ``act`` once that exists."""
    s = settings
    act: dict[str, Callable[..., object]] = {}

    def facts(incident_id: str) -> IncidentFacts | None:
        try:
            i = incidents.get(incident_id)
        except NotFound:
            return None
        return IncidentFacts(i.id, i.title, i.severity.value, i.location.label(), i.opened_ms, i.state.value,
                             NEXT_STEP.get(i.category, ""))

    def on_answer(incident_id: str, actor: str, answer: str, note: str) -> None:
        """The answer as a step of the incident's trail: an acknowledgement while it is open, else a note."""
        record = act.get("act")
        if record is None:
            log.error("answer to incident=%s by %s before the alert service exists", incident_id, actor)
            return
        now = clock_ms()
        try:
            state = incidents.get(incident_id).state
            action = Action.ACKNOWLEDGE if state is State.OPEN and answer != UNREACHABLE else Action.NOTE
            record(incident_id, action, actor, note, now)
        except IllegalTransition:
            record(incident_id, Action.NOTE, actor, note, now)

    providers, gammu = providers_from(s, clock_ms)
    base_url = s.notify_answer_base_url or f"http://{s.http_host}:{s.http_port}"
    config = NotifyConfig(s.notify_link_key, base_url, s.notify_link_ttl_s, s.notify_rate_limit,
                          s.notify_rate_window_s, s.notify_max_tries, s.notify_retry_after_s,
                          s.notify_channel_failing_after_s, s.notify_drill_only,
                          parse_drill_contacts(s.notify_drill_contacts))
    notifier = Notifier(NotifyStore(engine, bus), people_of(hierarchy), providers, config, facts, on_answer, gammu=gammu,
                        tick_s=s.notify_tick_s, clock_ms=clock_ms)
    return notifier, lambda f: act.__setitem__("act", f)
