"""The drill of issue 22, end to end: an elderly resident's one-touch press in the simulated building
reaches the family's SMS (through gammu-smsd and its dummy phone) and the building leader's WeCom
robot (a contract server) within 5 s; nobody answers, so the voice call goes at the rule step's
deadline (3 s here); a keypress on the call (Aliyun's VoiceReport) acknowledges; the incident's
notifications show every attempt. Also: an SMS reply "1" in Gammu's inbox acknowledges, and the
signed link's page answers."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from tests.fixtures.notify_servers import (  # noqa: F401 - fixtures
    ContractServer,
    GammuDaemon,
    contract_server,
    gammu_smsd,
)
from tests.fixtures.service import ServiceFactory, now_ms, publish, register_building, wait_for
from wanli.runtime import WanliService

pytestmark = pytest.mark.slow

FAMILY, FAMILY_PHONE = "儿子 王强", "13600000001"
LEADER, LEADER_PHONE = "楼组长 李阿姨", "13700000001"
CALLBACK = "cb-token-0123456789"


def start(service_factory: ServiceFactory, contracts: ContractServer, gammu: GammuDaemon) -> WanliService:
    return service_factory(
        notify_tick_s=0.1, alert_tick_s=0.2, notify_gammu_dir=gammu.root, notify_callback_token=CALLBACK,
        notify_wecom_enabled=True, notify_wecom_url=f"{contracts.url}/cgi-bin/webhook/send",
        notify_aliyun_access_key_id="LTAI-test-key", notify_aliyun_access_key_secret="aliyun-test-secret",
        notify_aliyun_voice_url=f"{contracts.url}/voice/", notify_aliyun_voice_show_number="02166520000",
        notify_aliyun_voice_tts_code="TTS_0001", notify_aliyun_voice_confirm_tts_code="TTS_0002")


def configure(service_factory: ServiceFactory, service: WanliService) -> None:
    """As an operator would: the leader's WeCom group robot, and rules with the call 3 s after the message."""
    op = service_factory.client(service, "operator")
    r = op.put(f"/api/notify/people/{LEADER}/contact-points",
               json=[{"kind": "wecom", "address": "wecom-key-building-xq01", "priority": 0}])
    assert r.status_code == 200, r.text
    assert {(c["kind"], c["source"]) for c in r.json()["contact_points"]} == {("wecom", "operator"), ("mobile", "street_data")}
    for role, first in (("family", "sms"), ("building_leader", "wecom")):
        r = op.put(f"/api/notify/rules/{role}/critical", json=[{"after_s": 0, "channels": [first]},
                                                                {"after_s": 3, "channels": ["voice"]}])
        assert r.status_code == 200, r.text
    assert op.put("/api/notify/rules/*/critical", json=[]).status_code == 200  # nobody else in this drill
    assert op.put("/api/notify/rules/nobody/critical", json=[]).status_code == 422
    changes = op.get("/api/notify/changes").json()
    assert {c["subject"] for c in changes} >= {LEADER, "family/critical", "building_leader/critical"}
    assert all(c["actor"] for c in changes)


def press(service: WanliService) -> str:
    sim = register_building(service)
    device = next(p.device for p in sim.placed if isinstance(p.device, ElderlyAlarmSim) and p.unit == "0601")
    assert service.broker is not None
    topic, payload = device.press(now_ms())
    publish(service.broker.host, service.broker.port, [(topic, payload)])
    return wait_for(lambda: next((i.id for i in service.services.alerts.active() if i.device_id == device.device_id),
                                 None))


def test_press_reaches_family_sms_and_leader_wecom_then_a_call_whose_keypress_acknowledges(
        service_factory: ServiceFactory, contract_server: ContractServer, gammu_smsd: GammuDaemon) -> None:
    service = start(service_factory, contract_server, gammu_smsd)
    configure(service_factory, service)
    pressed = time.monotonic()
    incident_id = press(service)

    sms_file = wait_for(lambda: next(iter(gammu_smsd.folders.sent.glob(f"OUTA_{FAMILY_PHONE}_*.txt")), None), 10)
    wecom = wait_for(lambda: contract_server.of("wecom"), 10)
    reached_s = time.monotonic() - pressed
    assert reached_s < 5, f"the family's SMS and the leader's WeCom took {reached_s:.1f} s"
    text = sms_file.read_bytes().decode("utf-16")
    assert "一键通紧急呼叫" in text and "回复1确认" in text and "/ops/answer.html#" in text
    assert wecom[0]["body"]["text"]["mentioned_mobile_list"] == [LEADER_PHONE]
    assert not contract_server.of("aliyunvoice")  # nobody is called before the step's deadline

    calls = wait_for(lambda: len(contract_server.of("aliyunvoice")) >= 2 and contract_server.of("aliyunvoice"), 10)
    assert time.monotonic() - pressed >= 3
    assert {c["params"]["CalledNumber"] for c in calls} == {FAMILY_PHONE, LEADER_PHONE}
    family_call = next(c["params"] for c in calls if c["params"]["CalledNumber"] == FAMILY_PHONE)

    anonymous = service_factory.anonymous(service)
    report = [{"call_id": "call-1", "out_id": family_call["OutId"], "status_code": "200000", "status_msg": "用户应答",
               "dtmf": "1", "duration": 21}]
    assert anonymous.post("/api/notify/callbacks/aliyun/voice/wrong-token", json=report).status_code == 404
    r = anonymous.post(f"/api/notify/callbacks/aliyun/voice/{CALLBACK}", json=report)
    assert r.json() == {"code": 0, "msg": "成功"}

    viewer = service_factory.client(service, "operator")  # a family's names and numbers: operators only (access.md)
    incident = wait_for(lambda: (i := viewer.get(f"/api/incidents/{incident_id}").json())["state"] == "acknowledged" and i)
    trail = incident["audit"]
    assert any(FAMILY in a["actor"] and "电话按键" in a["note"] for a in trail), trail

    rows = viewer.get(f"/api/incidents/{incident_id}/notifications").json()
    attempts = {(r["recipient"], r["channel"]): r for r in rows if r["attempt_id"] is not None}
    assert attempts[(FAMILY, "sms")]["status"] == "delivered" and attempts[(FAMILY, "sms")]["address"] == "136****0001"
    assert attempts[(LEADER, "wecom")]["status"] == "delivered"
    assert attempts[(FAMILY, "voice")]["status"] == "answered" and "电话按键" in attempts[(FAMILY, "voice")]["answer"]
    assert attempts[(LEADER, "voice")]["status"] in ("sent", "delivered")
    assert all(r["status"] in ("sent", "queued") for r in rows if r["attempt_id"] is None)  # MQTT rows as before


def test_an_sms_reply_1_acknowledges_and_stops_the_call(
        service_factory: ServiceFactory, contract_server: ContractServer, gammu_smsd: GammuDaemon) -> None:
    service = start(service_factory, contract_server, gammu_smsd)
    configure(service_factory, service)
    op = service_factory.client(service, "operator")
    assert op.put("/api/notify/rules/family/critical", json=[{"after_s": 0, "channels": ["sms"]},
                                                             {"after_s": 30, "channels": ["voice"]}]).status_code == 200
    incident_id = press(service)
    wait_for(lambda: next(iter(gammu_smsd.folders.sent.glob(f"OUTA_{FAMILY_PHONE}_*.txt")), None), 10)
    gammu_smsd.receive(FAMILY_PHONE, "1")
    viewer = service_factory.client(service, "operator")  # a family's names and numbers: operators only (access.md)
    wait_for(lambda: viewer.get(f"/api/incidents/{incident_id}").json()["state"] == "acknowledged", 20)
    rows = viewer.get(f"/api/incidents/{incident_id}/notifications").json()
    family = {r["channel"]: r for r in rows if r["attempt_id"] is not None and r["recipient"] == FAMILY}
    assert family["sms"]["status"] == "answered" and "短信回复" in family["sms"]["answer"]
    assert family["voice"]["status"] == "cancelled"  # the person answered: no call


def test_the_signed_link_answers_for_its_person_only(
        service_factory: ServiceFactory, contract_server: ContractServer, gammu_smsd: GammuDaemon) -> None:
    service = start(service_factory, contract_server, gammu_smsd)
    configure(service_factory, service)
    incident_id = press(service)
    sms_file = wait_for(lambda: next(iter(gammu_smsd.folders.sent.glob(f"OUTA_{FAMILY_PHONE}_*.txt")), None), 10)
    link = sms_file.read_bytes().decode("utf-16").split("应答：", 1)[1].split()[0]
    token = urllib.parse.urlsplit(link).fragment
    anonymous = service_factory.anonymous(service)
    facts = anonymous.post("/api/answer/facts", json={"token": token}).json()
    assert (facts["incident_id"], facts["person"], facts["title"]) == (incident_id, FAMILY, "一键通紧急呼叫")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert anonymous.post("/api/answer", json={"token": forged, "answer": "ack"}).status_code == 422
    assert anonymous.post("/api/answer", json={"token": token, "answer": "maybe"}).status_code == 422
    r = anonymous.post("/api/answer", json={"token": token, "answer": "arrived"})
    assert r.status_code == 200 and r.json()["answered"].startswith("已到场")
    viewer = service_factory.client(service, "operator")  # a family's names and numbers: operators only (access.md)
    wait_for(lambda: viewer.get(f"/api/incidents/{incident_id}").json()["state"] == "acknowledged")


def test_with_notify_disabled_the_notices_still_go_and_no_phone_rings(service_factory: ServiceFactory,
                                                                     contract_server: ContractServer) -> None:
    service = service_factory(notify_enabled=False, notify_wecom_enabled=True,
                              notify_wecom_url=f"{contract_server.url}/cgi-bin/webhook/send")
    viewer = service_factory.client(service, "operator")  # a family's names and numbers: operators only (access.md)
    assert viewer.get("/api/notify/rules").status_code == 404
    incident_id = press(service)
    rows = wait_for(lambda: viewer.get(f"/api/incidents/{incident_id}/notifications").json())
    assert rows and all(r["attempt_id"] is None and r["channel"] == "mqtt" for r in rows)
    assert contract_server.of("wecom") == []
