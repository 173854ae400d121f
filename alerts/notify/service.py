"""The notifier: turns the outbox's notices into attempts on people's phones, sends them, hears the answers.

    notice (in the incident's transaction) ──plan──▶ attempts (queued, standby), committed with it
    send round (every tick, or woken):  sending ▶ sent ▶ delivered ▶ answered  |  failed ▶ fall-through
    answers: the signed link's page, an SMS reply "1" (Gammu's inbox), a voice keypress (Aliyun's report)

Attempts are planned in the same transaction as the incident change that made the notice
(``Outbox(plan=…)``), so a crash loses none. Each attempt has a key derived from the incident,
the escalation step, the person, the channel and the contact point: planned twice, it is
kept once. An attempt is marked ``sending`` (committed) before its provider is called; one
found ``sending`` after a restart is not sent again (its outcome is unknown: it is marked
failed and the person's next contact point takes over), except a Gammu message, whose file
says whether it went.

Storm grouping: the due attempts to one address on one channel go as one message naming
every incident (one SMS for a storm, not fifty). Rate limit: at most ``rate_limit`` messages
a person and channel per ``rate_window``; more wait (never dropped). A person who answered
gets nothing more for that incident; once anybody acknowledged, the later steps of the rule
(the 2-minute call) are cancelled for everyone.

Channel health: ``faults(now)`` names every channel failing without a success for longer than
``failing_after_s`` (``notify_channel_failing:<channel>``): the system-incident hook.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from alerts.escalation import Notice
from alerts.notify.base import (
    CHANNEL_CONTACTS,
    Channel,
    Message,
    NotifyError,
    Provider,
    ProviderRejected,
    SendResult,
    mask,
)
from alerts.notify.gammu import GammuSms
from alerts.notify.links import AnswerGrant, sign_answer_token, verify_answer_token
from alerts.notify.rules import ContactPoint, contact_points_from_phone, plan, rule_for, urgency_of
from alerts.notify.store import (
    ANSWERED,
    CANCELLED,
    DELIVERED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    STANDBY,
    AttemptRow,
    NotifyStore,
)
from devices.hierarchy import ROLE_LABELS
from foundation.background import WakeableLoop
from foundation.errors import NotFound
from foundation.service_clock import ClockMs, wall_ms

log = logging.getLogger(__name__)

ANSWERS = {"ack": "收到", "arrived": "已到场", "false_alarm": "误报"}
HOW_ZH = {"link": "应答链接", "sms": "短信回复", "voice": "电话按键", "api": "接口"}
SEVERITY_ZH = {"critical": "紧急", "high": "重要", "warning": "提示", "info": "通知"}
SMS_CONFIRM_WORDS = {"1": "ack", "收到": "ack", "确认": "ack", "2": "arrived", "已到场": "arrived", "到场": "arrived",
                     "3": "false_alarm", "误报": "false_alarm"}
FAULT_PREFIX = "notify_channel_failing:"
_CST = timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    link_secret: str
    answer_base_url: str  # the page's address as people's phones reach it
    link_ttl_s: int = 24 * 3600
    rate_limit: int = 6  # messages per person and channel …
    rate_window_s: int = 600  # … in this window
    max_tries: int = 3  # a transient failure is retried this often, then the next contact point
    retry_after_s: int = 5
    failing_after_s: int = 300
    drill_only: bool = False  # every notice is a drill: only drill contacts are reached
    drill_contacts: tuple[ContactPoint, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    id: str
    title: str
    severity: str
    location: str
    opened_ms: int
    state: str
    next_step: str = ""


@dataclass
class TestOutcome:
    channel: str
    address: str
    provider: str = ""
    message_id: str = ""
    error: str = ""


@dataclass
class Counters:
    planned: int = 0
    sent: int = 0
    failed: int = 0
    answered: int = 0
    grouped: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


# (incident id, actor, answer, note) → the incident's audit trail; answer UNREACHABLE: a note that a person
# could not be reached at all.
AnswerHook = Callable[[str, str, str, str], None]
UNREACHABLE = "unreachable"


class Notifier(WakeableLoop):
    def __init__(self, store: NotifyStore, people: Mapping[str, tuple[str, str]], providers: Mapping[Channel, Sequence[Provider]],
                 config: NotifyConfig, incident_facts: Callable[[str], IncidentFacts | None], on_answer: AnswerHook,
                 *, gammu: GammuSms | None = None, tick_s: float = 1.0,
                 clock_ms: ClockMs = wall_ms) -> None:
        """``people``: every person in the street's data by name → (role, phone)."""
        super().__init__("notifier")
        self.store, self._people, self._config = store, dict(people), config
        self._providers = {ch: list(ps) for ch, ps in providers.items() if ps}
        self._facts, self._on_answer, self._gammu = incident_facts, on_answer, gammu
        self._tick_s, self._clock_ms = tick_s, clock_ms
        self._failing_since: dict[str, int] = {}
        self.counters = Counters()

    @property
    def channels(self) -> set[Channel]:
        return set(self._providers)

    # --- planning (in the caller's transaction)
    def plan_notices(self, notices: Sequence[Notice], now_ms: int, conn: Connection, drill: bool = False) -> int:
        """Plan the attempts for these notices in the incident's own transaction; return how many are new."""
        rules, stored = self.store.routing()
        rows: list[dict[str, object]] = []
        for n in notices:
            if n.tier == "fire_station" and not n.phone:
                continue
            payload = json.loads(n.payload)
            urgency = urgency_of(str(payload.get("severity", "")))
            is_drill = drill or n.drill or self._config.drill_only or bool(payload.get("drill"))
            for person, role, contacts in self._recipients(n, is_drill, stored):
                p = plan(person, rule_for(role, urgency, rules), contacts, self.channels)
                if p.missing:
                    log.info("incident=%s person=%s has no %s contact point", n.incident_id, person,
                             ",".join(c.value for c in p.missing))
                for a in p.attempts:
                    key = f"{n.incident_id}:{n.step}:{a.rule_step}:{a.channel.value}:{_short(person)}:{_short(a.address)}"
                    rows.append({"incident_id": n.incident_id, "attempt_key": key, "created_ms": now_ms,
                                 "due_ms": now_ms + a.after_s * 1000, "step": n.step, "tier": n.tier,
                                 "place_id": n.place_id, "role": role, "person": person, "urgency": urgency,
                                 "rule_step": a.rule_step, "channel": a.channel.value, "kind": a.kind.value,
                                 "address": a.address, "mention_mobile": a.mention_mobile, "drill": is_drill,
                                 "status": STANDBY if a.standby else QUEUED, "provider": "", "provider_message_id": "",
                                 "tries": 0, "error": "", "sent_ms": None, "delivered_ms": None, "answered_ms": None,
                                 "answer": ""})
        added = self.store.add_attempts(rows, conn)
        self.counters.planned += added
        return added

    def _recipients(self, n: Notice, drill: bool, stored: list[ContactPoint]) -> list[tuple[str, str, list[ContactPoint]]]:
        if drill:  # never a real person: the drill's own test contacts, whoever the notice was for
            points = [c for c in stored if c.drill] + list(self._config.drill_contacts)
            by_person: dict[str, list[ContactPoint]] = {}
            for c in points:
                by_person.setdefault(c.person, []).append(c)
            return [(person, n.role, cps) for person, cps in by_person.items()]
        return [(n.name, n.role, self.contacts_of(n.name, n.phone, stored))]

    def drill_contacts(self) -> list[ContactPoint]:
        """Whom a drill reaches: the contact points marked drill and WANLI_NOTIFY_DRILL_CONTACTS (never a real one)."""
        return [c for c in self.store.contact_points() if c.drill] + list(self._config.drill_contacts)

    def contacts_of(self, person: str, phone: str = "", stored: list[ContactPoint] | None = None) -> list[ContactPoint]:
        """A person's contact points: the operators' ones, then the phone in the street's data (drill ones never)."""
        stored = self.store.contact_points(person) if stored is None else [c for c in stored if c.person == person]
        own = [c for c in stored if not c.drill]
        phone = phone or self._people.get(person, ("", ""))[1]
        have = {(c.kind, c.address) for c in own}
        return own + [c for c in contact_points_from_phone(person, phone) if (c.kind, c.address) not in have]

    # --- sending
    def recover(self, now_ms: int) -> None:
        """After a restart: attempts left ``sending`` are never sent again (a Gammu file tells if it went)."""
        for a in self.store.with_status(SENDING):
            name = GammuSms.file_name(a.address, a.attempt_key)
            if self._gammu is not None and a.channel == Channel.SMS and self._gammu.state(name):
                self.store.update([a.id], status=SENT, provider="gammu", provider_message_id=name, sent_ms=now_ms)
                continue
            self.store.update([a.id], status=FAILED, error="发送中断，结果未知，不重发（interrupted; not sent again）")
            self._fall_through(a, now_ms)

    def send_round(self, now_ms: int | None = None) -> int:
        """One round: receipts and replies first, then every due attempt; return how many messages went."""
        now_ms = self._clock_ms() if now_ms is None else now_ms
        if self._gammu is not None:
            self._poll_gammu(now_ms)
        due = self.store.due(now_ms)
        groups: dict[tuple[str, str], list[AttemptRow]] = {}
        facts: dict[str, IncidentFacts | None] = {}
        for a in due:
            f = facts[a.incident_id] = facts.get(a.incident_id) or self._facts(a.incident_id)
            if f is None or f.state in ("closed", "false_alarm", "merged") or (f.state != "open" and a.rule_step > 0):
                self.store.update([a.id], status=CANCELLED, error=f"事件已{_STATE_ZH.get(f.state if f else '', '结束')}，不再呼叫")
                continue
            if self.store.sent_since(a.person, a.channel, now_ms - self._config.rate_window_s * 1000) >= self._config.rate_limit:
                later = now_ms + self._config.rate_window_s * 1000 // self._config.rate_limit
                self.store.update([a.id], due_ms=later, error="按人按渠道限流，稍后发送（rate limited）")
                continue
            groups.setdefault((a.channel, a.address), []).append(a)
        sent = 0
        for (channel, _address), attempts in groups.items():
            claimed = set(self.store.claim([a.id for a in attempts], now_ms))
            attempts = [a for a in attempts if a.id in claimed]
            if attempts:
                sent += self._send_group(Channel(channel), attempts, facts, now_ms)
        return sent

    def _send_group(self, channel: Channel, attempts: list[AttemptRow], facts: Mapping[str, IncidentFacts | None],
                    now_ms: int) -> int:
        first = attempts[0]
        message = self._message(channel, attempts, facts, now_ms)
        errors: list[str] = []
        result: SendResult | None = None
        last_exc: NotifyError | None = None
        for provider in self._providers.get(channel, ()):
            try:
                result = provider.send(message)
                break
            except NotifyError as exc:
                last_exc = exc
                errors.append(str(exc))
                log.warning("notify incident=%s person=%s channel=%s to=%s via %s failed: %s", first.incident_id,
                            first.person, channel.value, mask(first.address), provider.name, exc)
            except Exception as exc:  # noqa: BLE001 - a provider's bug must not stop the others
                last_exc = NotifyError(f"{type(exc).__name__}: {exc}", channel=channel.value, provider=provider.name)
                errors.append(str(last_exc))
                log.exception("notify provider %s raised", provider.name)
        ids = [a.id for a in attempts]
        if result is not None:
            self._failing_since.pop(channel.value, None)
            status = DELIVERED if result.delivered else SENT
            self.store.update(ids, status=status, provider=result.provider, provider_message_id=result.message_id[:200],
                              sent_ms=now_ms, delivered_ms=now_ms if result.delivered else None,
                              error="; ".join(errors)[:500])
            self.counters.sent += 1
            self.counters.grouped += len(attempts) - 1
            self.counters.by_channel[channel.value] = self.counters.by_channel.get(channel.value, 0) + 1
            log.info("notify incident=%s person=%s channel=%s to=%s via %s id=%s (%d incidents)", first.incident_id,
                     first.person, channel.value, mask(first.address), result.provider, result.message_id, len(attempts))
            return 1
        self._failing_since.setdefault(channel.value, now_ms)
        error = "; ".join(errors)[:500] or f"没有可用的 {channel.value} 发送方式（no provider）"
        retry = last_exc is not None and not isinstance(last_exc, ProviderRejected)
        for a in attempts:
            if retry and a.tries + 1 < self._config.max_tries:  # a.tries: before this claim
                self.store.update([a.id], status=QUEUED, error=error,
                                  due_ms=now_ms + self._config.retry_after_s * 1000 * (a.tries + 1))
            else:
                self.store.update([a.id], status=FAILED, error=error)
                self.counters.failed += 1
                self._fall_through(a, now_ms)
        return 0

    def _fall_through(self, a: AttemptRow, now_ms: int) -> None:
        """A failed attempt: the person's next contact point on the channel, else their next rule step now."""
        standby = self.store.promote_standby(a.incident_id, a.person, a.channel, now_ms)
        if standby is not None:
            log.info("notify incident=%s person=%s: %s failed, trying %s", a.incident_id, a.person, mask(a.address),
                     mask(standby.address))
        elif self.store.bring_forward(a.incident_id, a.person, now_ms):
            log.info("notify incident=%s person=%s: %s failed, the next step goes now", a.incident_id, a.person,
                     a.channel)
        else:
            mine = [r for r in self.store.for_incident(a.incident_id) if r.person == a.person]
            if mine and all(r.status in (FAILED, CANCELLED) for r in mine):
                # nobody can reach them by any way we have: the incident's trail says so (the operators call round,
                # and the escalation's next step reaches the next people at its deadline)
                log.warning("notify incident=%s person=%s: unreachable, every contact point failed", a.incident_id,
                            a.person)
                self._on_answer(a.incident_id, "系统（通知）", UNREACHABLE,
                                f"无法联系 {a.person}：所有联系方式均失败（{a.error[:120]}）")
        self.wake()

    def _message(self, channel: Channel, attempts: list[AttemptRow], facts: Mapping[str, IncidentFacts | None],
                 now_ms: int) -> Message:
        first = attempts[0]
        known = [f for f in (facts.get(a.incident_id) for a in attempts) if f is not None]
        links = {a.incident_id: self.answer_link(a.incident_id, a.person, now_ms) for a in attempts}
        drill = "【演练】" if first.drill else ""
        if len(known) == 1:
            f = known[0]
            subject = f"【万里安全】{drill}{SEVERITY_ZH.get(f.severity, f.severity)} {f.title}"
            text = (f"{f.location}，{_clock(f.opened_ms)}。"
                    + (f"{f.next_step}。" if f.next_step else "")
                    + ("回复1确认；" if channel == Channel.SMS else "") + f"应答：{links[f.id]}")
        else:
            subject = f"【万里安全】{drill}{len(known)} 起事件"
            text = "\n".join(f"{i + 1}. {SEVERITY_ZH.get(f.severity, f.severity)} {f.title}｜{f.location}｜"
                             f"{_clock(f.opened_ms)} 应答：{links[f.id]}" for i, f in enumerate(known))
            if channel == Channel.SMS:
                text += "\n回复1确认全部"
        head = known[0] if known else None
        tts = {"title": (f"{drill}{head.title}" if len(known) == 1 else f"{drill}{len(known)}起事件") if head else "事件",
               "location": head.location if head else ""}
        return Message(first.attempt_key, channel, first.address, first.person, subject, text,
                       mention_mobile=first.mention_mobile, tts_params=tts)

    # --- answers
    def answer_link(self, incident_id: str, person: str, now_ms: int) -> str:
        token = sign_answer_token(self._config.link_secret, incident_id, person, now_ms + self._config.link_ttl_s * 1000)
        return f"{self._config.answer_base_url.rstrip('/')}/ops/answer.html#{token}"

    def grant(self, token: str, now_ms: int) -> AnswerGrant:
        return verify_answer_token(self._config.link_secret, token, now_ms)

    def answer(self, incident_id: str, person: str, answer: str, how: str, now_ms: int,
               attempt: AttemptRow | None = None) -> None:
        """A person answered (收到 / 已到场 / 误报) by the link, an SMS reply or a keypress: the incident's
        trail says who and how, and the person's further attempts on it stop."""
        if answer not in ANSWERS:
            raise ValueError(f"unknown answer {answer!r}")
        rows = self.store.for_incident(incident_id)
        mine = [a for a in rows if a.person == person]
        if attempt is None:
            sent = [a for a in mine if a.sent_ms is not None and a.status in (SENT, DELIVERED, ANSWERED)]
            channel = {"sms": Channel.SMS, "voice": Channel.VOICE}.get(how)
            attempt = next((a for a in reversed(sent) if channel is None or a.channel == channel),
                           sent[-1] if sent else None)
        if attempt is not None:
            self.store.update([attempt.id], status=ANSWERED, answered_ms=now_ms, answer=f"{ANSWERS[answer]}（{HOW_ZH[how]}）")
        self.store.close_person(incident_id, person, now_ms, f"{person} 已应答：{ANSWERS[answer]}")
        role = mine[0].role if mine else self._people.get(person, ("", ""))[0]
        actor = f"{ROLE_LABELS.get(role, role)} {person}".strip()[:100]
        self.counters.answered += 1
        log.info("notify incident=%s person=%s answered %s by %s", incident_id, person, answer, how)
        self._on_answer(incident_id, actor, answer, f"{ANSWERS[answer]}（{HOW_ZH[how]}）")

    def on_sms_reply(self, sender: str, text: str, now_ms: int) -> bool:
        """An SMS from a phone we wrote to: "1" (or 收到) acknowledges the incidents of the last SMS to it."""
        answer = SMS_CONFIRM_WORDS.get(text.strip())
        number = sender.removeprefix("+86").removeprefix("86") if len(sender) > 11 else sender
        last = self.store.latest_to_address(number, [Channel.SMS.value]) or self.store.latest_to_address(
            sender, [Channel.SMS.value])
        if answer is None or last is None:
            log.info("SMS from %s not taken as an answer: %r", mask(sender), text[:40])
            return False
        group = self.store.same_message(last)
        for incident_id in dict.fromkeys([last.incident_id] + [a.incident_id for a in group]):
            self.answer(incident_id, last.person, answer, "sms", now_ms,
                        attempt=next((a for a in group if a.incident_id == incident_id), None))
        return True

    def _grouped_incidents(self, a: AttemptRow) -> list[str]:
        """The incidents that went in the same message as this attempt (storm grouping)."""
        return [r.incident_id for r in self.store.same_message(a)]

    def _reported(self, reports: Sequence[Mapping[str, object]]) -> list[tuple[Mapping[str, object], AttemptRow]]:
        """The provider's reports that name one of our attempts (its ``out_id``), with that attempt."""
        found = [(r, self.store.by_key(str(r.get("out_id", "")))) for r in reports]
        return [(r, a) for r, a in found if a is not None]

    def on_voice_report(self, reports: Sequence[Mapping[str, object]], now_ms: int) -> int:
        """Aliyun's VoiceReport: the call was answered (status_code 200000) and key 1 pressed (dtmf) → acknowledged."""
        known = self._reported(reports)
        for r, a in known:
            if str(r.get("status_code", "")) == "200000" and a.delivered_ms is None:
                self.store.update([a.id], delivered_ms=now_ms, status=DELIVERED if a.status == SENT else a.status)
            if "1" in str(r.get("dtmf", "") or ""):
                for incident_id in dict.fromkeys([a.incident_id] + self._grouped_incidents(a)):
                    self.answer(incident_id, a.person, "ack", "voice", now_ms)
            elif str(r.get("status_code", "")) not in ("200000", "") and a.status in (SENT, SENDING):
                self.store.update([a.id], status=FAILED, error=f"电话未接通 {r.get('status_code')} {r.get('status_msg', '')}"[:500])
                self._fall_through(a, now_ms)
        return len(known)

    def on_sms_report(self, reports: Sequence[Mapping[str, object]], now_ms: int) -> int:
        """Aliyun's SmsReport: delivered, or failed (then the next contact point)."""
        known = self._reported(reports)
        for r, a in known:
            if r.get("success") in (True, "true"):
                if a.status == SENT:
                    self.store.update([a.id], status=DELIVERED, delivered_ms=now_ms)
            elif a.status in (SENT, DELIVERED):
                self.store.update([a.id], status=FAILED, error=f"短信未送达 {r.get('err_code', '')}"[:500])
                self._fall_through(a, now_ms)
        return len(known)

    def _poll_gammu(self, now_ms: int) -> None:
        assert self._gammu is not None
        for a in self.store.with_status(SENT, provider="gammu"):
            state = self._gammu.state(a.provider_message_id)
            if state == "sent":
                self.store.update([a.id], status=DELIVERED, delivered_ms=now_ms)
            elif state == "error":
                self.store.update([a.id], status=FAILED, error="短信猫发送失败（gammu-smsd error folder）")
                self._failing_since.setdefault(Channel.SMS.value, now_ms)
                self._fall_through(a, now_ms)
        for inbound in self._gammu.received():
            try:
                self.on_sms_reply(inbound.sender, inbound.text, now_ms)
            except Exception:  # noqa: BLE001 - one bad reply must not block the others
                log.exception("SMS reply %s not handled", inbound.file)
            self._gammu.take(inbound)

    # --- health, tests
    def faults(self, now_ms: int | None = None) -> list[str]:
        """``notify_channel_failing:<channel>`` for each channel failing longer than ``failing_after_s``."""
        now_ms = self._clock_ms() if now_ms is None else now_ms
        return sorted(f"{FAULT_PREFIX}{ch}" for ch, since in self._failing_since.items()
                      if now_ms - since >= self._config.failing_after_s * 1000)

    def send_test(self, person: str) -> list[TestOutcome]:
        """A test message through every contact point of the person, on every channel it serves; what came back."""
        if person not in self._people and not self.store.contact_points(person):
            raise NotFound("person", person)
        now_ms = self._clock_ms()
        out: list[TestOutcome] = []
        for cp in self.contacts_of(person):
            for channel, kinds in CHANNEL_CONTACTS.items():
                if cp.kind not in kinds:
                    continue
                outcome = TestOutcome(channel.value, mask(cp.address))
                providers = self._providers.get(channel, ())
                if not providers:
                    outcome.error = "未配置（no provider configured）"
                for provider in providers:
                    msg = Message(f"test-{now_ms}-{_short(person)}-{channel.value}", channel, cp.address, person,
                                  "【万里安全】测试消息", f"这是发给 {person} 的测试消息，无需处理。",
                                  tts_params={"title": "测试消息", "location": "无需处理"})
                    try:
                        r = provider.send(msg)
                        outcome.provider, outcome.message_id, outcome.error = r.provider, r.message_id, ""
                        break
                    except NotifyError as exc:
                        outcome.provider, outcome.error = provider.name, str(exc)
                out.append(outcome)
        return out

    def _run(self) -> None:
        try:
            self.recover(self._clock_ms())
        except Exception:
            log.exception("notifier could not look at interrupted attempts")
        while not self._stop.is_set():
            if self._held_back():
                continue
            try:
                self.send_round()
            except Exception:  # the database is away: attempts stay queued, the next round tries again
                log.exception("notify round failed")
            pause = self._tick_s
            try:
                nxt = self.store.next_due_ms()
                if nxt is not None:
                    pause = max(0.05, min(pause, (nxt - self._clock_ms()) / 1000))
            except Exception:  # noqa: BLE001
                pass
            self._pause(pause)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread.ident is not None:  # started
            super().stop(timeout_s)
        self.close()

    def close(self) -> None:
        """Let go of the providers' connections (a notifier used without its loop: ``wanli notify test``)."""
        for providers in self._providers.values():
            for p in providers:
                p.close()


_STATE_ZH = {"acknowledged": "确认", "dispatched": "派单", "on_scene": "到场", "resolved": "处置", "closed": "结案",
             "false_alarm": "判定误报", "merged": "合并"}


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _clock(ms: int) -> str:
    return (datetime.fromtimestamp(ms / 1000, UTC) + _CST).strftime("%m-%d %H:%M")
