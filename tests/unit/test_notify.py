"""Pure pieces of reaching people: signatures as the providers document them, answer links, rules and plans."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.notify.aliyun import rpc_signature
from alerts.notify.base import Channel, ContactKind, mask, utf8_truncate
from alerts.notify.links import sign_answer_token, verify_answer_token
from alerts.notify.robots import dingtalk_sign, feishu_sign
from alerts.notify.rules import (
    DEFAULT_RULES,
    ContactPoint,
    NotifyRule,
    RuleStep,
    Urgency,
    contact_points_from_phone,
    plan,
    rule_for,
    urgency_of,
)
from foundation.errors import Invalid
from wanli.notify_setup import parse_drill_contacts, people_of

ALL = set(Channel)


def test_aliyun_rpc_signature_matches_aliyuns_documented_example() -> None:
    # The worked example of Aliyun's SMS API signature documentation (签名机制), secret "testSecret".
    params = {"AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
              "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
              "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
              "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25"}
    assert rpc_signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_dingtalk_sign_is_the_urlencoded_base64_hmac_sha256_of_timestamp_newline_secret() -> None:
    ts, secret = 1_700_000_000_000, "SECabc"
    raw = base64.b64encode(hmac.new(b"SECabc", b"1700000000000\nSECabc", hashlib.sha256).digest())
    assert urllib.parse.unquote_plus(dingtalk_sign(ts, secret)).encode() == raw
    assert "+" not in dingtalk_sign(ts, secret) and "/" not in dingtalk_sign(ts, secret)


def test_feishu_sign_is_base64_hmac_sha256_keyed_by_timestamp_newline_secret_over_nothing() -> None:
    raw = base64.b64encode(hmac.new(b"1700000000\nfs-secret", b"", hashlib.sha256).digest()).decode()
    assert feishu_sign(1_700_000_000, "fs-secret") == raw


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_an_answer_link_names_its_incident_and_person_and_nothing_else(incident_id: str, person: str) -> None:
    token = sign_answer_token("k" * 32, incident_id, person, 2_000_000_000_000)
    grant = verify_answer_token("k" * 32, token, 1_000_000_000_000)
    assert (grant.incident_id, grant.person) == (incident_id, person)
    with pytest.raises(Invalid):
        verify_answer_token("other-secret", token, 1_000_000_000_000)


def test_an_answer_link_expires_and_refuses_tampering() -> None:
    token = sign_answer_token("secret", "inc_1", "儿子 王强", 10_000_000)
    assert verify_answer_token("secret", token, 9_999_000).person == "儿子 王强"
    with pytest.raises(Invalid, match="过期"):
        verify_answer_token("secret", token, 10_000_000)
    other = sign_answer_token("secret", "inc_2", "儿子 王强", 10_000_000)
    spliced = ".".join(other.split(".")[:1] + token.split(".")[1:])  # another incident, this link's signature
    for bad in (spliced, token + "x", "a.b.c", "", "." * 3):
        with pytest.raises(Invalid):
            verify_answer_token("secret", bad, 0)
    assert len(token) < 100  # fits an SMS beside the message


def test_severities_map_to_three_urgencies() -> None:
    assert [urgency_of(s) for s in ("critical", "high", "warning", "info")] == ["critical", "high", "low", "low"]


def test_defaults_follow_the_brief_and_never_robot_call_119() -> None:
    assert rule_for("family", Urgency.CRITICAL, {}).steps == (RuleStep(0, (Channel.VOICE, Channel.SMS)),)
    high = rule_for("building_leader", Urgency.HIGH, {}).steps
    assert high[0].after_s == 0 and Channel.SMS in high[0].channels and Channel.WECOM in high[0].channels
    assert high[1] == RuleStep(120, (Channel.VOICE,))
    assert rule_for("property", Urgency.LOW, {}).steps[0].first_only
    assert rule_for("fire_rescue", Urgency.CRITICAL, {}).steps == ()
    stored = {("*", Urgency.CRITICAL): NotifyRule("*", Urgency.CRITICAL, (RuleStep(0, (Channel.SMS,)),))}
    assert rule_for("fire_rescue", Urgency.CRITICAL, stored).steps == ()  # a role's own default beats "*"
    assert rule_for("family", Urgency.CRITICAL, stored) is stored[("*", Urgency.CRITICAL)]
    assert set(DEFAULT_RULES) >= {("*", u) for u in Urgency.ALL}


def test_the_street_datas_phones_become_mobiles_or_landlines() -> None:
    assert contact_points_from_phone("a", "13600000001")[0].kind is ContactKind.MOBILE
    assert contact_points_from_phone("a", "021-60000001")[0].kind is ContactKind.PHONE
    assert contact_points_from_phone("a", "119") == [] == contact_points_from_phone("a", "")


def test_a_plan_uses_each_channels_contact_points_with_stand_ins() -> None:
    contacts = [ContactPoint("p", ContactKind.MOBILE, "13600000001", 1), ContactPoint("p", ContactKind.MOBILE,
                                                                                      "13600000002", 2),
                ContactPoint("p", ContactKind.WECOM, "robotkey01", 0)]
    rule = NotifyRule("*", "high", (RuleStep(0, (Channel.WECOM, Channel.SMS)), RuleStep(120, (Channel.VOICE,))))
    p = plan("p", rule, contacts, ALL)
    got = [(a.channel, a.address, a.after_s, a.standby) for a in p.attempts]
    assert got == [(Channel.WECOM, "robotkey01", 0, False), (Channel.SMS, "13600000001", 0, False),
                   (Channel.SMS, "13600000002", 0, True), (Channel.VOICE, "13600000001", 120, False),
                   (Channel.VOICE, "13600000002", 120, True)]
    assert p.attempts[0].mention_mobile == "13600000001"
    assert plan("p", rule, contacts, {Channel.SMS}).missing == (Channel.WECOM, Channel.VOICE)


def test_first_only_takes_the_first_channel_the_person_has() -> None:
    rule = NotifyRule("*", "low", (RuleStep(0, (Channel.WECOM, Channel.DINGTALK, Channel.EMAIL), first_only=True),))
    email_only = [ContactPoint("p", ContactKind.EMAIL, "p@example.org")]
    assert [a.channel for a in plan("p", rule, email_only, ALL).attempts] == [Channel.EMAIL]
    both = email_only + [ContactPoint("p", ContactKind.WECOM, "robotkey01")]
    assert [a.channel for a in plan("p", rule, both, ALL).attempts] == [Channel.WECOM]
    assert plan("p", rule, [], ALL).missing == (Channel.WECOM, Channel.DINGTALK, Channel.EMAIL)


def test_addresses_are_masked_for_logs_and_viewers() -> None:
    assert mask("13600000001") == "136****0001"
    assert mask("wang@example.org") == "w***@example.org"
    assert mask("0123456789abcdef") == "…cdef"


@given(st.text(max_size=3000))
def test_utf8_truncate_never_breaks_a_character_or_exceeds_its_limit(text: str) -> None:
    cut = utf8_truncate(text, 2048)
    assert len(cut.encode()) <= 2048 and (cut == text or cut.endswith("…"))


def test_drill_contacts_setting_and_the_street_datas_people() -> None:
    points = parse_drill_contacts("演练 张三=mobile:13900009999; 演练群=wecom:robotkey99")
    assert [(p.person, p.kind, p.address, p.drill) for p in points] == [
        ("演练 张三", ContactKind.MOBILE, "13900009999", True), ("演练群", ContactKind.WECOM, "robotkey99", True)]
    with pytest.raises(ValueError):
        parse_drill_contacts("nobody")
    from devices.hierarchy import load_hierarchy

    people = people_of(load_hierarchy())
    assert people["儿子 王强"] == ("family", "13600000001") and people["楼组长 李阿姨"][0] == "building_leader"
