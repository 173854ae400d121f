"""The load generator against real Mosquitto: more QoS 1 messages than MQTT has packet ids, none wedged or lost."""

from __future__ import annotations

import time

import pytest

from devices.hierarchy import load_hierarchy
from simulators.load import STREET_MIX, build_messages, publish
from simulators.population import Population
from simulators.publisher import BrokerAddress, MqttPublisher
from foundation.mqtt import Subscriber

pytestmark = pytest.mark.mosquitto


def test_seventy_thousand_qos1_messages_through_a_bounded_window_are_all_acknowledged(mosquitto):
    population = Population.of(load_hierarchy(), whole_street=True)
    messages = build_messages(population.records, 70_000, STREET_MIX, seed=1)  # > 65,535 packet ids
    seen: list[int] = []
    report = publish(messages, mosquitto.host, mosquitto.port, inflight=500, progress=seen.append)
    assert report.sent == report.acknowledged == 70_000
    assert sum(report.by_kind.values()) == 70_000 and report.by_kind["smoke_detector"] > report.by_kind["water_meter"]
    assert seen == list(range(0, 70_000, 10_000)) and report.rate > 0
    assert "as fast as possible" in report.summary()


def test_a_target_rate_is_kept(mosquitto):
    population = Population.of(load_hierarchy(), building_ids=["xq-01"])
    messages = build_messages(population.records, 600, STREET_MIX, seed=2)
    report = publish(messages, mosquitto.host, mosquitto.port, rate=400)
    assert report.acknowledged == 600
    assert report.seconds >= 1.4  # 600 at 400/s take 1.5 s: paced, not as fast as possible


def test_qos0_publishing_takes_no_place_in_the_window_and_every_message_arrives(mosquitto):
    """QoS 0 (metered links' telemetry): nothing is acknowledged, so nothing may be released from the window either
    (it once was: 'Semaphore released too many times' killed the network thread and the publisher stalled)."""
    topic, count = "safety/v1/wanli/smoke_detector/SD-QOS0/telemetry", 5_000
    received = []
    sub = Subscriber(mosquitto.host, mosquitto.port, topic, lambda m: received.append(m.payload),
                     client_id="test-qos0-sub", qos=0)
    try:
        assert sub.wait(10)
        pub = MqttPublisher(BrokerAddress(mosquitto.host, mosquitto.port), qos=0, inflight=10)
        for i in range(count):
            pub.publish(topic, str(i).encode())
        assert pub.flush(30), f"{pub.acked} of {pub.sent} written"
        assert (pub.sent, pub.acked, pub.lost) == (count, count, 0) and pub.connected
        deadline = time.monotonic() + 10
        while len(received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert received == [str(i).encode() for i in range(count)]  # in order, none missing (one local broker)

        pub.close()  # a QoS 0 message published with no connection is gone, and flush does not wait for it
        pub.publish(topic, b"after close")
        assert pub.lost == 1 and pub.flush(1)
    finally:
        sub.close()
