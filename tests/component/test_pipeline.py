"""The ingest pipeline with its real embedded stores (SQLite), no broker."""

import json

import pytest

from alerts.incidents import Action, State
from alerts.service import AlertService
from alerts.store import IncidentStore
from devices.catalog import KINDS
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from ingest.dead_letters import DeadLetterStore
from ingest.pipeline import IngestPipeline, RawMessage
from ingest.telemetry import SqliteTelemetryStore
from wanli.db import create_schema, make_engine
from wanli.errors import StoreUnavailable

NOW = 1_795_000_000_000
ALARM_TOPIC = "safety/v1/wanli/smoke_detector/SD-XQ01-0301/event"


def body(seq, type_="alarm", ts=NOW - 500, **fields):
    return json.dumps({"v": 1, "ts": ts, "seq": seq, "type": type_, **fields}).encode()


class Env:
    def __init__(self, tmp_path, telemetry=None):
        self.engine = make_engine(f"sqlite:///{tmp_path / 'wanli.db'}")
        create_schema(self.engine)
        self.registry = DeviceRegistry(self.engine, load_hierarchy())
        self.incidents = IncidentStore(self.engine)
        self.alerts = AlertService(self.incidents, lambda d: self.registry.location(self.registry.get(d)))
        self.telemetry = telemetry or SqliteTelemetryStore(tmp_path / "telemetry.db")
        self.dead = DeadLetterStore(self.engine)
        self.pipeline = IngestPipeline(KINDS, self.registry, self.telemetry, self.dead, self.alerts,
                                       clock_ms=lambda: NOW, sleep=lambda _s: None)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    e.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    return e


def test_an_alarm_is_stored_raises_an_incident_located_in_the_street_and_marks_the_device_seen(env):
    result = env.pipeline.process([RawMessage(ALARM_TOPIC, body(1, smoke_density=0.4), NOW)])
    assert (result.readings, result.rejected, result.stored_points, result.incidents_changed) == (1, 0, 1, 1)
    (incident,) = env.incidents.list()
    assert incident.state is State.OPEN and incident.device_id == "SD-XQ01-0301"
    assert incident.location.label() == "香泉居民区 香泉 1号楼 3层 0301室"
    assert incident.location.area == "颐华片区"
    (point,) = env.telemetry.recent("SD-XQ01-0301")
    assert point.type == "alarm" and point.fields["smoke_density"] == 0.4 and point.ts_ms == NOW - 500
    assert env.registry.get("SD-XQ01-0301").last_seen_ms == NOW - 500


def test_repeated_alarms_update_one_incident(env):
    env.pipeline.process([RawMessage(ALARM_TOPIC, body(1), NOW), RawMessage(ALARM_TOPIC, body(2), NOW)])
    env.pipeline.process([RawMessage(ALARM_TOPIC, body(3), NOW)])
    (incident,) = env.incidents.list()
    assert incident.event_count == 3
    assert [a.action for a in env.incidents.audit(incident.id)] == ["open"]


def test_bad_messages_go_to_dead_letters_with_reason_and_raw_bytes_and_the_good_ones_still_land(env):
    raw_bad = b'{"v":1,"ts":"yesterday","seq":1,"type":"alarm"}'
    batch = [
        RawMessage(ALARM_TOPIC, raw_bad, NOW),
        RawMessage("safety/v1/wanli/smoke_detector", body(2), NOW),
        RawMessage(ALARM_TOPIC, body(3), NOW),
        RawMessage("safety/v1/wanli/smoke_detector/SD-UNKNOWN/event", body(4), NOW),
    ]
    result = env.pipeline.process(batch)
    assert (result.readings, result.rejected) == (1, 3)
    letters = {d.reason: d for d in env.dead.list()}
    assert set(letters) == {"invalid_field", "bad_topic", "unregistered_device"}
    assert letters["invalid_field"].payload == raw_bad and letters["invalid_field"].topic == ALARM_TOPIC
    assert "$.ts" in letters["invalid_field"].detail
    assert letters["unregistered_device"].device_id == "SD-UNKNOWN"
    assert env.dead.counts() == {"invalid_field": 1, "bad_topic": 1, "unregistered_device": 1}
    assert env.pipeline.counters.rejected == {"invalid_field": 1, "bad_topic": 1, "unregistered_device": 1}
    assert len(env.incidents.list()) == 1  # the quarantined device raised nothing


def test_incidents_survive_a_restart_and_repeats_still_fold_into_them(env, tmp_path):
    env.pipeline.process([RawMessage(ALARM_TOPIC, body(1), NOW)])
    (first,) = env.incidents.list()
    env.alerts.act(first.id, Action.ACKNOWLEDGE, "值班员 王", "calling the building", NOW + 10)

    restarted = Env(tmp_path, telemetry=env.telemetry)
    restarted.pipeline.process([RawMessage(ALARM_TOPIC, body(2), NOW)])
    (again,) = restarted.incidents.list()
    assert again.id == first.id and again.event_count == 2 and again.state is State.ACKNOWLEDGED
    assert [(a.action, a.actor) for a in restarted.incidents.audit(first.id)] == [("open", "system"), ("acknowledge", "值班员 王")]


class FlakyStore:
    """A real SQLite store that refuses the first N writes, as an InfluxDB that is restarting would."""

    name = "flaky"

    def __init__(self, inner, failures):
        self.inner, self.failures = inner, failures

    def write_batch(self, readings):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable(self.name, "connection refused")
        return self.inner.write_batch(readings)

    def recent(self, device_id, limit=100):
        return self.inner.recent(device_id, limit)

    def close(self):
        self.inner.close()


def test_an_unavailable_telemetry_store_delays_storage_but_not_the_incident(tmp_path):
    env = Env(tmp_path)
    env.telemetry = FlakyStore(SqliteTelemetryStore(tmp_path / "t.db"), failures=3)
    seen_incident_before_store = []
    env.alerts.subscribe(lambda changes: seen_incident_before_store.append(env.telemetry.failures))
    env.pipeline = IngestPipeline(KINDS, env.registry, env.telemetry, env.dead, env.alerts,
                                  clock_ms=lambda: NOW, sleep=lambda _s: None)
    env.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    result = env.pipeline.process([RawMessage(ALARM_TOPIC, body(1), NOW)])
    assert result.stored_points == 1 and env.pipeline.counters.store_retries == 3
    assert seen_incident_before_store == [3]  # the incident was out while the store still refused
    assert len(env.telemetry.recent("SD-XQ01-0301")) == 1
