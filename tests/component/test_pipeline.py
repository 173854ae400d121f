"""The ingest pipeline with its real embedded stores (SQLite), no broker."""

import json

import pytest

from alerts.incidents import Action, State
from alerts.context import RegistryContext
from alerts.rules import default_rules
from alerts.service import AlertService
from alerts.thresholds import Thresholds
from alerts.store import IncidentStore
from devices.catalog import KINDS
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from ingest.dead_letters import DeadLetterStore
from ingest.pipeline import IngestPipeline, RawMessage, SpoolRefused
from ingest.rate_limit import DeviceRateLimits, RateLimitPolicy
from ingest.spool import Spool, SpoolDrainer
from ingest.telemetry import SqliteTelemetryStore
from foundation.db import create_schema, make_engine
from foundation.errors import StoreUnavailable

NOW = 1_795_000_000_000
ALARM_TOPIC = "safety/v1/wanli/smoke_detector/SD-XQ01-0301/event"


def body(seq, type_="alarm", ts=NOW - 500, **fields):
    return json.dumps({"v": 1, "ts": ts, "seq": seq, "type": type_, **fields}).encode()


class Env:
    """The pipeline with its real embedded stores; ``drain()`` moves the spool to the telemetry store."""

    def __init__(self, tmp_path, telemetry=None, keep_lines=False):
        self.engine = make_engine(f"sqlite:///{tmp_path / 'wanli.db'}")
        create_schema(self.engine)
        self.registry = DeviceRegistry(self.engine, load_hierarchy())
        self.incidents = IncidentStore(self.engine)
        rules = default_rules()
        self.ctx = RegistryContext(self.registry, Thresholds(rules, lambda d: ""))
        self.alerts = AlertService(self.incidents, self.ctx.locate, self.ctx, self.registry.hierarchy, rules)
        self.telemetry = telemetry or SqliteTelemetryStore(tmp_path / "telemetry.db")
        self.spool = Spool(tmp_path / "spool.db", keep_lines=keep_lines)
        self.drainer = SpoolDrainer(self.spool, self.telemetry)
        self.dead = DeadLetterStore(self.engine)
        self.pipeline = IngestPipeline(KINDS, self.engine, self.registry, self.spool, self.dead, self.alerts,
                                       clock_ms=lambda: NOW)

    def drain(self):
        moved = 0
        while n := self.drainer.drain_once():
            moved += n
        return moved


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    e.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    return e


def test_an_alarm_is_stored_raises_an_incident_located_in_the_street_and_marks_the_device_seen(env):
    result = env.pipeline.process([RawMessage(ALARM_TOPIC, body(1, smoke_density=0.4), NOW)])
    assert (result.readings, result.rejected, result.spooled_points, result.incidents_changed) == (1, 0, 1, 1)
    assert env.spool.state().points == 1 and env.drain() == 1 and env.spool.state().points == 0
    (incident,) = env.incidents.list()
    assert incident.state is State.OPEN and incident.device_id == "SD-XQ01-0301"
    assert incident.location.label() == "香泉居民区 香泉 1号楼 3层 0301室"
    assert incident.location.area == "颐华片区"
    (point,) = env.telemetry.recent("SD-XQ01-0301")
    assert point.type == "alarm" and point.fields["smoke_density"] == 0.4 and point.ts_ms == NOW - 500
    assert env.registry.get("SD-XQ01-0301").last_seen_ms == NOW - 500


def test_repeated_alarms_update_one_incident(env):
    env.pipeline.process([RawMessage(ALARM_TOPIC, body(1), NOW), RawMessage(ALARM_TOPIC, body(2, ts=NOW - 400), NOW)])
    env.pipeline.process([RawMessage(ALARM_TOPIC, body(3, ts=NOW - 300), NOW)])
    (incident,) = env.incidents.list()
    assert incident.event_count == 3
    assert [a.action for a in env.incidents.audit(incident.id)] == ["open", "notify"]  # repeats add no entries


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
    assert [(a.action, a.actor) for a in restarted.incidents.audit(first.id)] == [
        ("open", "system"), ("notify", "system"), ("acknowledge", "值班员 王")]


class FlakyStore:
    """A real SQLite store that refuses the first N writes, as an InfluxDB that is restarting would."""

    name = "flaky"

    def __init__(self, inner, failures):
        self.inner, self.failures = inner, failures

    def write_points(self, points):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable(self.name, "connection refused")
        return self.inner.write_points(points)

    def recent(self, device_id, limit=100):
        return self.inner.recent(device_id, limit)

    def close(self):
        self.inner.close()


def test_a_spool_of_line_protocol_keeps_what_the_pipeline_stored_field_for_field(tmp_path):
    env = Env(tmp_path, keep_lines=True)  # as for InfluxDB; drained here into the embedded store, parsed back
    env.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    topic = ALARM_TOPIC.replace("/event", "/telemetry")
    result = env.pipeline.process([RawMessage(ALARM_TOPIC, body(1, smoke_density=0.4), NOW),
                                   RawMessage(topic, body(2, "heartbeat", ts=NOW - 400, battery_pct=90.5,
                                                          rssi_dbm=-70), NOW)])
    assert result.spooled_points == 2 and env.spool.state().points == 2 and env.drain() == 2
    heartbeat, alarm = env.telemetry.recent("SD-XQ01-0301")
    assert (alarm.type, alarm.fields["smoke_density"], alarm.fields["seq"]) == ("alarm", 0.4, 1)
    assert (heartbeat.type, heartbeat.fields["battery_pct"], heartbeat.fields["rssi_dbm"]) == ("heartbeat", 90.5, -70)


def test_an_unavailable_telemetry_store_holds_points_in_the_spool_but_never_the_incident(tmp_path):
    env = Env(tmp_path, telemetry=FlakyStore(SqliteTelemetryStore(tmp_path / "t.db"), failures=2))
    env.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    env.pipeline.process([RawMessage(ALARM_TOPIC, body(i, ts=NOW - 1000 + i), NOW) for i in range(1, 4)])
    assert len(env.incidents.list()) == 1  # the alarm is out while the store is away
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            env.drainer.drain_once()
        assert env.spool.state().points == 3
    assert env.drain() == 3
    assert [p.ts_ms for p in env.telemetry.recent("SD-XQ01-0301")] == [NOW - 997, NOW - 998, NOW - 999]


def test_the_spool_survives_a_restart_and_keeps_order(tmp_path):
    env = Env(tmp_path, telemetry=FlakyStore(SqliteTelemetryStore(tmp_path / "t.db"), failures=10**6))
    env.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    for i in range(1, 6):
        env.pipeline.process([RawMessage(ALARM_TOPIC, body(i, ts=NOW - 100 + i), NOW)])
    env.spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert reopened.state().points == 5 and reopened.state().batches == 5
    store = SqliteTelemetryStore(tmp_path / "t2.db")
    drainer = SpoolDrainer(reopened, store, batch_points=2)
    while drainer.drain_once():
        pass
    assert [p.ts_ms for p in reversed(store.recent("SD-XQ01-0301"))] == [NOW - 100 + i for i in range(1, 6)]


def test_a_full_spool_never_stops_an_alarm_the_batch_is_retried_and_the_alarm_commits(tmp_path):
    env = Env(tmp_path)
    env.spool.max_points = 2
    env.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    batch = [RawMessage(ALARM_TOPIC, body(i, ts=NOW - 100 + i), NOW) for i in range(1, 4)]
    with pytest.raises(SpoolRefused):  # the append failed: nothing committed, try again at once
        env.pipeline.process(batch)
    assert env.incidents.list() == [] and env.registry.get("SD-XQ01-0301").seq_highest is None
    result = env.pipeline.process(batch)  # the spool is known to refuse: the alarms go on without it
    assert result.readings == 3 and env.incidents.list()[0].event_count == 3
    assert env.pipeline.counters.telemetry_dropped_points == 3 and "bound" not in env.pipeline.spool_refusal
    assert env.spool.state().points == 0


def test_a_batch_that_did_not_commit_charges_nothing_to_its_devices_rate_limits(tmp_path):
    # each attempt at a batch went through the per-device limit; retried a few times, the same heartbeats used up
    # their devices' budgets and were refused as "too fast" (seen in CI: 78 of 20,000 backlog heartbeats lost)
    env = Env(tmp_path)
    now = [NOW]
    env.pipeline = IngestPipeline(KINDS, env.engine, env.registry, env.spool, env.dead, env.alerts,
                                  clock_ms=lambda: now[0],
                                  rate_limits=DeviceRateLimits(RateLimitPolicy(messages_per_s=1, message_burst=3)))
    env.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    topic = ALARM_TOPIC.replace("/event", "/telemetry")
    batch = [RawMessage(topic, body(i, "heartbeat", ts=NOW - 100 + i, battery_pct=90.0, rssi_dbm=-70), NOW)
             for i in (1, 2, 3)]
    append, failures = env.spool.append_row, []

    def failing_append(row, now_ms):
        if len(failures) < 2:
            failures.append(now_ms)
            raise OSError(28, "No space left on device")
        return append(row, now_ms)

    env.spool.append_row = failing_append
    for _ in range(2):
        with pytest.raises(SpoolRefused):
            env.pipeline.process(batch)
        now[0] += env.pipeline.SPOOL_RETRY_MS  # the spool is asked again
    result = env.pipeline.process(batch)
    assert (result.readings, result.rejected, result.spooled_points) == (3, 0, 3)
    assert not env.pipeline.counters.rejected and env.pipeline.rate_limits.total_refused == 0
    assert env.pipeline.process([RawMessage(topic, body(4, "heartbeat", ts=NOW - 96, battery_pct=90.0, rssi_dbm=-70),
                                            now[0])]).rejected == 1  # the budget is spent once, by what committed


def test_redelivered_and_resent_messages_are_evaluated_and_stored_once_even_after_a_restart(tmp_path):
    env = Env(tmp_path)
    env.registry.register(DeviceRecord("SD-XQ01-0301", "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
    batch = [RawMessage(ALARM_TOPIC, body(i, ts=NOW - 100 + i), NOW) for i in (1, 2, 3)]
    first = env.pipeline.process(batch + batch[:1])  # a device re-sending inside one batch
    assert (first.readings, first.duplicates) == (3, 1)

    restarted = Env(tmp_path, telemetry=env.telemetry)  # the process died before acknowledging: redelivery
    again = restarted.pipeline.process(batch)
    assert (again.readings, again.duplicates, again.spooled_points, again.incidents_changed) == (0, 3, 0, 0)
    (incident,) = restarted.incidents.list()
    assert incident.event_count == 3
    restarted.drain()
    assert len(restarted.telemetry.recent("SD-XQ01-0301")) == 3


def test_telemetry_going_backwards_is_dead_lettered_an_alarm_is_flagged_and_a_counter_restart_is_accepted(env):
    heartbeat_topic = ALARM_TOPIC.replace("/event", "/telemetry")
    env.pipeline.process([RawMessage(heartbeat_topic, body(5000, "heartbeat", ts=NOW - 50, battery_pct=90.0,
                                                                rssi_dbm=-70), NOW)])
    result = env.pipeline.process([RawMessage(heartbeat_topic, body(4000, "heartbeat", ts=NOW - 40, battery_pct=90.0,
                                                                         rssi_dbm=-70), NOW)])
    assert result.rejected == 1
    (letter,) = env.dead.list(reason="seq_backwards")
    assert "4000 is behind" in letter.detail
    env.pipeline.process([RawMessage(ALARM_TOPIC, body(5001, ts=NOW - 35), NOW)])
    alarm = env.pipeline.process([RawMessage(ALARM_TOPIC, body(4001, "alarm_cleared", ts=NOW - 34), NOW),
                                  RawMessage(ALARM_TOPIC, body(4002, ts=NOW - 33), NOW)])
    assert (alarm.readings, alarm.rejected) == (2, 0)  # an event going backwards: evaluated, flagged
    (incident,) = env.incidents.list()
    assert any("序号倒退" in f for f in incident.flags), incident.flags
    restarted = env.pipeline.process([RawMessage(ALARM_TOPIC, body(1, ts=NOW - 30), NOW)])
    assert restarted.readings == 1 and env.pipeline.counters.seq_resets == 1
