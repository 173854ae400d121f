"""Which topics the alarm lane takes (ingest/mqtt_consumer.py alarm_lane_filters). Pure."""

import pytest
from paho.mqtt.client import topic_matches_sub

from ingest.mqtt_consumer import alarm_lane_filters


@pytest.mark.parametrize(("filters", "lane"), [
    (["safety/#"], ["safety/+/+/+/+/event"]),
    (["safety/v1/+/smoke_detector/#"], ["safety/v1/+/smoke_detector/+/event"]),
    (["safety/v1/wanli/#", "safety/v1/other/#"], ["safety/v1/wanli/+/+/event", "safety/v1/other/+/+/event"]),
    (["safety/v1/wanli/smoke_detector/SD-1/#"], ["safety/v1/wanli/smoke_detector/SD-1/event"]),
    (["safety/v1/wanli/smoke_detector/+/telemetry"], []),  # no '#': nothing to split
    (["safety/#", "safety/#"], ["safety/+/+/+/+/event"]),
])
def test_the_alarm_lane_takes_the_event_topics_under_each_family(filters, lane):
    assert alarm_lane_filters(filters) == lane


def test_every_event_topic_of_the_contract_goes_to_the_lane_and_nothing_else_does():
    lane = alarm_lane_filters(["safety/#"])
    assert all(topic_matches_sub(lane[0], t) for t in (
        "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event", "safety/v1/wanli/elderly_alarm/EA-1/event"))
    assert not any(topic_matches_sub(lane[0], t) for t in (
        "safety/v1/wanli/smoke_detector/SD-XQ01-0101/telemetry", "safety/v1/wanli/smoke_detector/SD-1/status",
        "safety/v1/wanli/event", "safety/v1/wanli/smoke_detector/SD-1/event/extra"))
