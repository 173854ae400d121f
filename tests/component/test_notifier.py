"""The notifier's behaviour over a real database, a real SMTP server and the contract server: fall-through,
never twice after a restart, storm grouping, rate limits, drills, answers stopping attempts, channel faults.
Time is a fake clock the tests move."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from alerts.escalation import Notice
from alerts.notify.base import Channel, ContactKind, Message, ProviderUnavailable, SendResult
from alerts.notify.email import SmtpEmail
from alerts.notify.robots import WeComRobot
from alerts.notify.rules import ContactPoint, NotifyRule, RuleStep
from alerts.notify.service import IncidentFacts, NotifyConfig, Notifier
from alerts.notify.store import NotifyStore
from tests.fixtures.notify_servers import ContractServer, SmtpInbox, contract_server, smtp_server  # noqa: F401
from foundation.db import create_schema, make_engine

T0 = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Flaky:
    """A provider that fails while ``down`` (as a carrier's API that does not answer), and counts its sends."""

    name, channel = "flaky_sms", Channel.SMS

    def __init__(self) -> None:
        self.down, self.sent = False, []

    def send(self, message: Message) -> SendResult:
        if self.down:
            raise ProviderUnavailable("connect timeout", channel="sms", provider=self.name)
        self.sent.append(message)
        return SendResult(self.name, f"id{len(self.sent)}")

    def close(self) -> None:
        pass


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    create_schema(e)
    yield e
    e.dispose()


def notice(incident_id: str, person: str, phone: str, role: str = "family", severity: str = "critical",
           drill: bool = False) -> Notice:
    payload = json.dumps({"severity": severity, "incident_id": incident_id})
    return Notice(incident_id, 0, "household", "xq-01-0601", role, person, phone, "t", payload, drill=drill)


def make(engine: Engine, clock: Clock, providers: dict, *, answers: list | None = None, **config: object) -> Notifier:
    facts = {f"inc_{i}": IncidentFacts(f"inc_{i}", f"事件{i}", "critical", "香泉 1号楼", T0, "open") for i in range(60)}
    cfg = NotifyConfig(**{"link_secret": "s" * 32, "answer_base_url": "http://wanli.test", "failing_after_s": 60,
                          **config})  # type: ignore[arg-type]
    return Notifier(NotifyStore(engine), {"儿子 王强": ("family", "13600000001")}, providers, cfg, facts.get,
                    lambda *a: (answers if answers is not None else []).append(a), clock_ms=clock)


def plan(n: Notifier, engine: Engine, notices: list[Notice], now: int) -> int:
    with engine.begin() as conn:
        return n.plan_notices(notices, now, conn)


def rule(store: NotifyStore, *steps: RuleStep, role: str = "family") -> None:
    store.put_rule(NotifyRule(role, "critical", steps), "test", T0)


def test_a_failed_contact_point_falls_through_to_the_next_then_the_next_step(
        engine: Engine, smtp_server: SmtpInbox) -> None:
    clock, sms = Clock(), Flaky()
    email = SmtpEmail(smtp_server.host, smtp_server.port, "w@example.org", security="none")
    answers: list = []
    n = make(engine, clock, {Channel.SMS: [sms], Channel.EMAIL: [email]}, max_tries=2, retry_after_s=1, answers=answers)
    rule(n.store, RuleStep(0, (Channel.SMS,)), RuleStep(600, (Channel.EMAIL,)))
    n.store.replace_contact_points("儿子 王强", [ContactPoint("儿子 王强", ContactKind.MOBILE, "13600000002", 200),
                                            ContactPoint("儿子 王强", ContactKind.EMAIL, "wq@example.org")], "op", T0)
    assert plan(n, engine, [notice("inc_1", "儿子 王强", "13600000001")], T0) == 3  # sms, its stand-in, e-mail
    assert plan(n, engine, [notice("inc_1", "儿子 王强", "13600000001")], T0) == 0  # planned twice: kept once
    sms.down = True
    for _ in range(6):  # each mobile: tried, retried after a pause, then the stand-in takes over, and fails too …
        n.send_round(clock.now)
        clock.now += 1000
    assert len(smtp_server.messages) == 1
    rows = {(a.channel, a.address): a for a in n.store.for_incident("inc_1")}
    assert rows[("sms", "13600000001")].status == "failed" and rows[("sms", "13600000002")].status == "failed"
    # … so the next step (the e-mail, planned for 10 minutes later) went now, through the real SMTP server
    assert rows[("email", "wq@example.org")].status == "sent" and len(smtp_server.messages) == 1
    assert n.faults(clock.now) == [] and n.faults(clock.now + 61_000) == ["notify_channel_failing:sms"]
    assert answers == []  # the e-mail went: reachable after all
    sms.down = False
    plan(n, engine, [notice("inc_2", "儿子 王强", "13600000001")], clock.now)
    n.send_round(clock.now)
    assert n.faults(clock.now + 61_000) == []  # a success ends the fault


def test_an_attempt_interrupted_mid_send_is_never_sent_twice(engine: Engine) -> None:
    clock, sms = Clock(), Flaky()
    n = make(engine, clock, {Channel.SMS: [sms]})
    rule(n.store, RuleStep(0, (Channel.SMS,)))
    plan(n, engine, [notice("inc_1", "儿子 王强", "13600000001")], T0)
    attempt = n.store.due(T0)[0]
    assert n.store.claim([attempt.id], T0) == [attempt.id]  # marked sending; then the process died
    restarted = make(engine, clock, {Channel.SMS: [sms]})
    restarted.recover(T0 + 5000)
    restarted.send_round(T0 + 5000)
    assert sms.sent == [] and n.store.for_incident("inc_1")[0].status == "failed"


def test_a_storm_is_one_message_per_person_and_the_rate_limit_defers_never_drops(engine: Engine) -> None:
    clock, sms = Clock(), Flaky()
    n = make(engine, clock, {Channel.SMS: [sms]}, rate_limit=2, rate_window_s=600)
    rule(n.store, RuleStep(0, (Channel.SMS,)))
    plan(n, engine, [notice(f"inc_{i}", "儿子 王强", "13600000001") for i in range(50)], T0)
    assert n.send_round(T0) == 1
    assert len(sms.sent) == 1 and sms.sent[0].subject.endswith("50 起事件") and sms.sent[0].text.count("应答：") == 50
    assert {a.provider_message_id for a in n.store.for_incident("inc_7")} == {"id1"}
    for i in (50, 51, 52):  # three more incidents, one at a time
        plan(n, engine, [notice(f"inc_{i % 60}", "儿子 王强", "13600000001")], T0)
        plan(n, engine, [Notice(f"inc_{i % 60}", 1, "household", "x", "family", "儿子 王强", "13600000001", "t",
                                json.dumps({"severity": "critical"}))], T0)
        clock.now += 1000
        n.send_round(clock.now)
    assert len(sms.sent) == 2  # the limit: 2 messages a person per 10 minutes; the rest wait
    waiting = [a for i in (51, 52) for a in n.store.for_incident(f"inc_{i}") if a.status == "queued"]
    assert waiting and all(a.due_ms > clock.now for a in waiting)
    clock.now += 600_000
    n.send_round(clock.now)
    assert len(sms.sent) == 3 and all(a.status == "sent" for i in (51, 52) for a in n.store.for_incident(f"inc_{i}"))


def test_a_drill_reaches_only_drill_contacts(engine: Engine, contract_server: ContractServer) -> None:
    clock, sms = Clock(), Flaky()
    drill_robot = ContactPoint("演练群", ContactKind.WECOM, "wecom-key-building-xq01", drill=True)
    n = make(engine, clock, {Channel.SMS: [sms], Channel.WECOM: [WeComRobot(f"{contract_server.url}/cgi-bin/webhook/send")]},
             drill_contacts=(ContactPoint("演练 张三", ContactKind.MOBILE, "13900009999", drill=True), drill_robot))
    rule(n.store, RuleStep(0, (Channel.SMS, Channel.WECOM)), role="family")
    plan(n, engine, [notice("inc_1", "儿子 王强", "13600000001", drill=True)], T0)
    n.send_round(T0)
    assert [m.address for m in sms.sent] == ["13900009999"] and sms.sent[0].subject.startswith("【万里安全】【演练】")
    assert len(contract_server.of("wecom")) == 1
    assert {a.person for a in n.store.for_incident("inc_1")} == {"演练 张三", "演练群"}
    assert all(a.drill for a in n.store.for_incident("inc_1"))
    # the drill contact points an operator stores are never used for a real notice
    n.store.replace_contact_points("儿子 王强", [ContactPoint("儿子 王强", ContactKind.MOBILE, "13900001111", drill=True)],
                                   "op", T0)
    plan(n, engine, [notice("inc_2", "儿子 王强", "13600000001")], T0)
    assert {a.address for a in n.store.for_incident("inc_2")} == {"13600000001"}


def test_an_answer_stops_the_persons_attempts_and_is_an_audit_step(engine: Engine) -> None:
    clock, sms, answers = Clock(), Flaky(), []
    voice = Flaky()
    voice.name, voice.channel = "flaky_voice", Channel.VOICE
    n = make(engine, clock, {Channel.SMS: [sms], Channel.VOICE: [voice]}, answers=answers)
    rule(n.store, RuleStep(0, (Channel.SMS,)), RuleStep(120, (Channel.VOICE,)))
    plan(n, engine, [notice("inc_1", "儿子 王强", "13600000001")], T0)
    n.send_round(T0)
    assert n.on_sms_reply("+8613600000001", "1", T0 + 10_000)
    assert not n.on_sms_reply("13600000001", "什么事？", T0 + 11_000)  # not an answer: nothing happens
    clock.now = T0 + 200_000
    n.send_round(clock.now)
    assert voice.sent == []
    statuses = {a.channel: a.status for a in n.store.for_incident("inc_1")}
    assert statuses == {"sms": "answered", "voice": "cancelled"}
    assert answers == [("inc_1", "家属 儿子 王强", "ack", "收到（短信回复）")]


def test_receipts_deliver_or_fall_through_and_an_acknowledged_incident_calls_nobody_later(engine: Engine) -> None:
    clock, sms = Clock(), Flaky()
    voice = Flaky()
    voice.name, voice.channel = "flaky_voice", Channel.VOICE
    facts_state = {"state": "open"}
    n = make(engine, clock, {Channel.SMS: [sms], Channel.VOICE: [voice]})
    n._facts = lambda i: IncidentFacts(i, "一键通紧急呼叫", "critical", "香泉 1号楼", T0, facts_state["state"])
    rule(n.store, RuleStep(0, (Channel.SMS,)), RuleStep(120, (Channel.VOICE,)))
    n.store.replace_contact_points("儿子 王强", [ContactPoint("儿子 王强", ContactKind.MOBILE, "13600000002", 200)],
                                   "op", T0)
    plan(n, engine, [notice("inc_1", "儿子 王强", "13600000001")], T0)
    n.send_round(T0)
    first = next(a for a in n.store.for_incident("inc_1") if a.status == "sent")
    assert n.on_sms_report([{"out_id": first.attempt_key, "success": False, "err_code": "MOBILE_NOT_ON_SERVICE"},
                            {"out_id": "no-such-attempt", "success": True}], T0 + 5000) == 1
    n.send_round(T0 + 5000)  # the stand-in mobile took over
    second = next(a for a in n.store.for_incident("inc_1") if a.address == "13600000002")
    assert second.status == "sent" and [m.address for m in sms.sent] == ["13600000001", "13600000002"]
    n.on_sms_report([{"out_id": second.attempt_key, "success": True, "err_code": "DELIVERED"}], T0 + 6000)
    assert n.store.by_key(second.attempt_key).status == "delivered"  # type: ignore[union-attr]
    facts_state["state"] = "acknowledged"  # an operator acknowledged: the 2-minute call is not made
    n.send_round(T0 + 200_000)
    assert voice.sent == [] and {a.status for a in n.store.for_incident("inc_1") if a.channel == "voice"} == {
        "cancelled", "standby"}


def test_one_reply_to_a_grouped_message_answers_every_incident_in_it(engine: Engine) -> None:
    clock, sms, answers = Clock(), Flaky(), []
    n = make(engine, clock, {Channel.SMS: [sms]}, answers=answers)
    rule(n.store, RuleStep(0, (Channel.SMS,)))
    plan(n, engine, [notice(f"inc_{i}", "儿子 王强", "13600000001") for i in range(5)], T0)
    n.send_round(T0)
    assert len(sms.sent) == 1 and sms.sent[0].text.endswith("回复1确认全部")
    plan(n, engine, [notice("inc_9", "其他人", "13600000009", role="family")], T0)  # another person's message
    n.send_round(T0)
    assert n.on_sms_reply("13600000001", "1", T0 + 1000)
    assert sorted(a[0] for a in answers) == [f"inc_{i}" for i in range(5)]
    assert all(a.status == "answered" for i in range(5) for a in n.store.for_incident(f"inc_{i}"))
    assert n.store.for_incident("inc_9")[0].status == "sent"


def test_a_person_no_contact_point_reaches_is_a_note_on_the_incident(engine: Engine) -> None:
    clock, sms, answers = Clock(), Flaky(), []
    sms.down = True
    n = make(engine, clock, {Channel.SMS: [sms]}, answers=answers, max_tries=1)
    rule(n.store, RuleStep(0, (Channel.SMS,)))
    plan(n, engine, [notice("inc_1", "儿子 王强", "13600000001")], T0)
    n.send_round(T0)
    assert [(a[0], a[2]) for a in answers] == [("inc_1", "unreachable")] and "无法联系 儿子 王强" in answers[0][3]
