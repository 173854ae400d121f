"""Each channel against a real server (SMTP: aiosmtpd; SMS offline: gammu-smsd with the dummy phone) or,
for the providers that cannot run here, a contract server checking requests as their documentation says."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from alerts.notify.aliyun import AliyunRpc, AliyunSms, AliyunVoice
from alerts.notify.base import Channel, Message, ProviderRejected, ProviderUnavailable, RateLimited
from alerts.notify.email import SmtpEmail
from alerts.notify.gammu import GammuSms
from alerts.notify.robots import DingTalkRobot, FeishuRobot, WeComRobot
from tests.fixtures.notify_servers import (  # noqa: F401 - fixtures
    ContractServer,
    GammuDaemon,
    SmtpInbox,
    contract_server,
    gammu_smsd,
    smtp_server,
)
from tests.fixtures.service import wait_for


def message(channel: Channel, address: str, key: str = "inc_1:0:0:x", mention: str = "") -> Message:
    return Message(key, channel, address, "儿子 王强", "【万里安全】紧急 一键通紧急呼叫",
                   "香泉 1号楼 6层 0601室，12-07 09:00。应答：http://127.0.0.1/ops/answer.html#t", mention_mobile=mention,
                   tts_params={"title": "一键通紧急呼叫", "location": "香泉 1号楼 6层 0601室"})


def test_email_reaches_a_real_smtp_server_with_the_attempt_as_its_message_id(smtp_server: SmtpInbox) -> None:
    email = SmtpEmail(smtp_server.host, smtp_server.port, "wanli@example.org", security="none")
    result = email.send(message(Channel.EMAIL, "wang.qiang@example.org", key="inc_1-0-0-email"))
    got = wait_for(lambda: smtp_server.messages)[0]
    assert got["To"] == "wang.qiang@example.org" and got["From"] == "wanli@example.org"
    assert "一键通紧急呼叫" in str(got["Subject"]) or "=?utf-8?" in str(got["Subject"]).lower()
    assert got["Message-ID"] == "<inc_1-0-0-email@wanli.notify>" == result.message_id
    assert "香泉 1号楼" in got.get_payload(decode=True).decode()


def test_email_to_a_server_that_is_down_is_unavailable_not_rejected() -> None:
    from tests.fixtures.servers import free_port

    with pytest.raises(ProviderUnavailable):
        SmtpEmail("127.0.0.1", free_port(), "wanli@example.org", security="none", timeout_s=2).send(
            message(Channel.EMAIL, "a@example.org"))


def test_wecom_robot_contract(contract_server: ContractServer) -> None:
    robot = WeComRobot(f"{contract_server.url}/cgi-bin/webhook/send")
    result = robot.send(message(Channel.WECOM, "wecom-key-building-xq01", mention="13700000001"))
    assert result.delivered
    req = contract_server.of("wecom")[-1]
    assert req["query"] == {"key": "wecom-key-building-xq01"}
    assert req["body"]["msgtype"] == "text" and req["body"]["text"]["mentioned_mobile_list"] == ["13700000001"]
    # a long text is cut to WeCom's 2048 bytes, not refused
    long = Message("k", Channel.WECOM, "wecom-key-building-xq01", "p", "s", "火" * 2000)
    robot.send(long)
    assert len(contract_server.of("wecom")[-1]["body"]["text"]["content"].encode()) <= 2048
    with pytest.raises(ProviderRejected) as refused:
        robot.send(message(Channel.WECOM, "no-such-key-0000"))
    assert refused.value.code == "93000"
    contract_server.rate_per_minute = 2
    with pytest.raises(RateLimited) as limited:
        robot.send(message(Channel.WECOM, "wecom-key-building-xq01"))
    assert limited.value.code == "45009"
    robot.close()


def test_dingtalk_robot_contract_signs_with_timestamp_and_secret(contract_server: ContractServer) -> None:
    robot = DingTalkRobot({"dingtalk-token-ops": "SEC0123456789abcdef"}, f"{contract_server.url}/robot/send")
    robot.send(message(Channel.DINGTALK, "dingtalk-token-ops", mention="13800000011"))
    req = contract_server.of("dingtalk")[-1]
    assert set(req["query"]) == {"access_token", "timestamp", "sign"}
    assert req["body"]["at"] == {"atMobiles": ["13800000011"], "isAtAll": False}
    wrong = DingTalkRobot({"dingtalk-token-ops": "SEC-not-the-secret"}, f"{contract_server.url}/robot/send")
    with pytest.raises(ProviderRejected) as refused:
        wrong.send(message(Channel.DINGTALK, "dingtalk-token-ops"))
    assert refused.value.code == "310000"
    stale = DingTalkRobot({"dingtalk-token-ops": "SEC0123456789abcdef"}, f"{contract_server.url}/robot/send",
                          clock_ms=lambda: time.time_ns() // 1_000_000 - 2 * 3600_000)
    with pytest.raises(ProviderRejected):
        stale.send(message(Channel.DINGTALK, "dingtalk-token-ops"))
    contract_server.rate_per_minute = 1
    with pytest.raises(RateLimited) as limited:
        robot.send(message(Channel.DINGTALK, "dingtalk-token-ops"))
    assert limited.value.code == "130101"
    for r in (robot, wrong, stale):
        r.close()


def test_feishu_robot_contract_signs_with_timestamp_and_secret(contract_server: ContractServer) -> None:
    robot = FeishuRobot({"feishu-hook-token-01": "feishu-secret-01"}, f"{contract_server.url}/open-apis/bot/v2/hook")
    assert robot.send(message(Channel.FEISHU, "feishu-hook-token-01")).delivered
    req = contract_server.of("feishu")[-1]
    assert req["token"] == "feishu-hook-token-01" and req["body"]["msg_type"] == "text"
    assert "一键通紧急呼叫" in req["body"]["content"]["text"] and req["body"]["timestamp"].isdigit()
    wrong = FeishuRobot({"*": "not-the-secret"}, f"{contract_server.url}/open-apis/bot/v2/hook")
    with pytest.raises(ProviderRejected) as refused:
        wrong.send(message(Channel.FEISHU, "feishu-hook-token-01"))
    assert refused.value.code == "19021"
    contract_server.rate_per_minute = 1
    with pytest.raises(RateLimited) as limited:
        robot.send(message(Channel.FEISHU, "feishu-hook-token-01"))
    assert limited.value.code == "11232"
    robot.close()
    wrong.close()


def _rpc(server: ContractServer, path: str, secret: str = "aliyun-test-secret") -> AliyunRpc:
    return AliyunRpc(f"{server.url}{path}", "LTAI-test-key", secret)


def test_aliyun_sms_contract(contract_server: ContractServer) -> None:
    sms = AliyunSms(_rpc(contract_server, "/sms/"), "万里街道", "SMS_0001")
    result = sms.send(message(Channel.SMS, "13600000001", key="inc_1:0:0:sms:ab"))
    assert result.message_id.startswith("biz")
    p = contract_server.of("aliyunsms")[-1]["params"]
    assert (p["Action"], p["PhoneNumbers"], p["SignName"], p["TemplateCode"], p["OutId"]) == (
        "SendSms", "13600000001", "万里街道", "SMS_0001", "inc_1:0:0:sms:ab")
    long = Message("k2", Channel.SMS, "13600000001", "p", "s", "t", tts_params={"title": "火" * 80, "location": "x"})
    sms.send(long)  # template variables are cut to Aliyun's 35 characters, not refused
    with pytest.raises(ProviderRejected) as bad_number:
        sms.send(message(Channel.SMS, "12345"))
    assert bad_number.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    with pytest.raises(ProviderRejected) as bad_sig:
        AliyunSms(_rpc(contract_server, "/sms/", secret="wrong"), "万里街道", "SMS_0001").send(
            message(Channel.SMS, "13600000001"))
    assert bad_sig.value.code == "SignatureDoesNotMatch"
    contract_server.fail_with = "isv.BUSINESS_LIMIT_CONTROL"
    with pytest.raises(RateLimited):
        sms.send(message(Channel.SMS, "13600000001"))
    contract_server.fail_with = "isp.SYSTEM_ERROR"
    with pytest.raises(ProviderUnavailable) as down:
        sms.send(message(Channel.SMS, "13600000001"))
    assert not isinstance(down.value, RateLimited)
    sms.close()


def test_aliyun_voice_contract_takes_a_keypress(contract_server: ContractServer) -> None:
    voice = AliyunVoice(_rpc(contract_server, "/voice/"), "02166520000", "TTS_0001", "TTS_0002")
    result = voice.send(message(Channel.VOICE, "13600000001", key="inc_1:0:1:voice:cd"))
    assert result.message_id.startswith("call")
    p = contract_server.of("aliyunvoice")[-1]["params"]
    assert (p["Action"], p["CalledNumber"], p["CalledShowNumber"], p["StartCode"], p["MenuKeyMap.1.Key"],
            p["OutId"]) == ("IvrCall", "13600000001", "02166520000", "TTS_0001", "1", "inc_1:0:1:voice:cd")
    assert "一键通紧急呼叫" in urllib.parse.unquote(p["StartTtsParams"])
    voice.close()


def test_sms_through_gammu_smsd_and_a_reply_in_its_inbox(gammu_smsd: GammuDaemon) -> None:
    sms = GammuSms(gammu_smsd.folders)
    result = sms.send(message(Channel.SMS, "13600000001", key="inc_1:0:0:sms:ef"))
    assert wait_for(lambda: sms.state(result.message_id) == "sent", timeout_s=30)
    sent = (gammu_smsd.folders.sent / result.message_id).read_bytes().decode("utf-16")
    assert "一键通紧急呼叫" in sent and "香泉 1号楼" in sent
    # sent again (a restart): the file is found, nothing is written twice
    assert sms.send(message(Channel.SMS, "13600000001", key="inc_1:0:0:sms:ef")).message_id == result.message_id
    assert len(list(gammu_smsd.folders.sent.iterdir())) == 1 and not list(gammu_smsd.folders.outbox.glob("OUT*"))
    gammu_smsd.receive("13600000001", "1")
    inbound = wait_for(sms.received, timeout_s=30)
    assert [(m.sender, m.text) for m in inbound] == [("13600000001", "1")]
    sms.take(inbound[0])
    assert sms.received() == []
