"""The load generator against real Mosquitto: more QoS 1 messages than MQTT has packet ids, none wedged or lost."""

from __future__ import annotations

import pytest

from devices.hierarchy import load_hierarchy
from simulators.load import STREET_MIX, build_messages, publish
from simulators.population import Population

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
