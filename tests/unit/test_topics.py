import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.topics import (
    MessageClass,
    TopicAddress,
    device_topic,
    dispatch_street_filter,
    dispatch_topic,
    parse_topic,
    subscription,
)
from foundation.errors import TopicError


def test_parses_a_contract_topic():
    addr = parse_topic("safety/v1/wanli/smoke_detector/SD-XQ01-0101/event")
    assert addr == TopicAddress("wanli", "smoke_detector", "SD-XQ01-0101", MessageClass.EVENT)
    assert addr.topic == "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event"


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("safety/v1/wanli/smoke_detector/SD-1", "expected 6 segments"),
        ("safety/v1/wanli/smoke_detector/SD-1/event/extra", "expected 6 segments"),
        ("other/v1/wanli/smoke_detector/SD-1/event", "must start with safety/"),
        ("safety/v2/wanli/smoke_detector/SD-1/event", "unsupported contract version"),
        ("safety/v1/wanli/smoke_detector/SD-1/alarm", "class 'alarm'"),
        ("safety/v1/Wanli/smoke_detector/SD-1/event", "street 'Wanli'"),
        ("safety/v1/wanli/Smoke/SD-1/event", "kind 'Smoke'"),
        ("safety/v1/wanli/smoke_detector//event", "device id ''"),
        ("safety/v1/wanli/smoke_detector/SD 1/event", "device id 'SD 1'"),
        ("safety/v1/wanli/smoke_detector/" + "x" * 65 + "/event", "device id"),
        ("", "expected 6 segments"),
        ("safety/v1/wanli/smoke_detector/SD-1\n/event", "device id 'SD-1\\n'"),
        ("safety/v1/wanli\n/smoke_detector/SD-1/event", "street 'wanli\\n'"),
    ],
)
def test_rejects_topics_outside_the_contract_and_says_why(topic, fragment):
    with pytest.raises(TopicError) as caught:
        parse_topic(topic)
    assert fragment in str(caught.value)
    assert caught.value.reason == "bad_topic"
    assert caught.value.topic == topic


@given(st.text(max_size=200))
def test_any_string_either_parses_or_raises_topic_error(topic):
    try:
        addr = parse_topic(topic)
    except TopicError:
        return
    assert addr.topic == topic


@given(
    street=st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True),
    kind=st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True),
    device=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True),
    cls=st.sampled_from(list(MessageClass)),
)
def test_built_topics_round_trip(street, kind, device, cls):
    assert parse_topic(device_topic(street, kind, device, cls)) == TopicAddress(street, kind, device, cls)


def test_subscription_filter_covers_every_topic_under_the_root_so_bad_ones_are_seen_too():
    assert subscription() == "safety/#"
    assert subscription("wanli") == "safety/v1/wanli/#"


def test_dispatch_topics_sit_outside_safety_and_a_drills_under_drill_v1():
    assert dispatch_topic("wanli", "building", "xq-01", "building_leader") == \
        "dispatch/v1/wanli/building/xq-01/building_leader"
    assert dispatch_topic("wanli", "fire_station", "DRILL-MFS-XQ", "duty", drill=True) == \
        "drill/v1/wanli/fire_station/DRILL-MFS-XQ/duty"
    assert dispatch_street_filter("wanli") == "dispatch/v1/wanli/#"
    assert dispatch_street_filter("wanli", drill=True) == "drill/v1/wanli/#"
    with pytest.raises(TopicError):
        parse_topic(dispatch_topic("wanli", "building", "xq-01", "building_leader"))  # ingest never reads its own
