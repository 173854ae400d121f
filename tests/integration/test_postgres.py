"""The SQL stores behave the same on PostgreSQL (production) as on SQLite (the default).

Every store test runs twice through ``sql_engine``: on a fresh SQLite file and on a fresh
database in the real PostgreSQL server (tests/fixtures/postgres.py); the PostgreSQL runs
carry the ``postgres`` marker. Times are real epoch milliseconds (past 2^31), so a
32-bit column would fail here. The last test runs the whole service on PostgreSQL.
"""

from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from alerts.incidents import Action, Severity, Signal, State, new_incident_id, open_or_update, transition
from alerts.store import IncidentStore, incidents_table
from devices.kinds.smoke_detector import contract as smoke_detector
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry, Health, Lifecycle, RegisterOutcome, health
from ingest.dead_letters import KEEP_BYTES, DeadLetter, DeadLetterBounds, DeadLetterStore
from tests.fixtures.service import auth_headers, now_ms, publish, register_building, wait_for
from tests.support.readings import reading as support_reading
from foundation.db import make_engine
from foundation.errors import Conflict, NotFound, StaleIncident

NOW = 1_795_000_000_000
HIERARCHY = load_hierarchy()
DETECTOR = DeviceRecord("SD-PG-0301", "smoke_detector", "wanli", "xq-01", 3, "0301", label="厨房")
METER = DeviceRecord("WM-PG-0101", "water_meter", "wanli", "xq-01", 1, "0101")


def reading(message, device=DETECTOR.device_id):
    return support_reading("smoke_detector", message, device)


# -- the device registry --------------------------------------------------------------


def test_registering_is_idempotent_and_a_different_placement_is_a_conflict(sql_engine):
    registry = DeviceRegistry(sql_engine, HIERARCHY)
    assert registry.register_many([DETECTOR, METER], "安装员 张", NOW) == [RegisterOutcome.CREATED] * 2
    assert registry.register(DETECTOR, "安装员 张", NOW + 1) is RegisterOutcome.UNCHANGED
    with pytest.raises(Conflict, match="move it instead"):
        registry.register(replace(DETECTOR, floor=4, unit="0401"), "安装员 张", NOW + 2)

    reloaded = DeviceRegistry(sql_engine, HIERARCHY)
    assert reloaded.count() == 2
    assert reloaded.get(DETECTOR.device_id) == replace(DETECTOR, registered_ms=NOW)
    assert [h.action for h in reloaded.history(DETECTOR.device_id)] == ["created"]


def test_moves_and_retirements_are_kept_with_their_history_and_survive_a_restart(sql_engine):
    registry = DeviceRegistry(sql_engine, HIERARCHY)
    registry.register_many([DETECTOR, METER], "安装员 张", NOW)
    registry.move(DETECTOR.device_id, "xq-01", 5, "0502", "维修员 李", NOW + 1_000, label="客厅")
    registry.retire(METER.device_id, "维修员 李", NOW + 2_000, reason="拆除")

    reloaded = DeviceRegistry(sql_engine, HIERARCHY)
    moved = reloaded.get(DETECTOR.device_id)
    assert (moved.floor, moved.unit, moved.label, moved.lifecycle) == (5, "0502", "客厅", Lifecycle.ACTIVE)
    retired = reloaded.get(METER.device_id)
    assert retired.lifecycle is Lifecycle.RETIRED and retired.retired_ms == NOW + 2_000
    assert reloaded.find(METER.device_id) is None and reloaded.is_retired(METER.device_id)
    history = reloaded.history(DETECTOR.device_id)
    assert [(h.action, h.actor, h.at_ms) for h in history] == [("created", "安装员 张", NOW),
                                                               ("moved", "维修员 李", NOW + 1_000)]
    assert "→" in history[1].detail and [h.detail for h in reloaded.history(METER.device_id)][-1] == "拆除"

    assert reloaded.register(METER, "安装员 张", NOW + 3_000) is RegisterOutcome.REACTIVATED
    assert DeviceRegistry(sql_engine, HIERARCHY).get(METER.device_id).retired_ms is None
    with pytest.raises(NotFound):
        reloaded.history("SD-NOPE")


def test_health_from_readings_is_written_and_read_back(sql_engine):
    registry = DeviceRegistry(sql_engine, HIERARCHY)
    registry.register(DETECTOR, "安装员 张", NOW)
    registry.observe_batch([
        reading(smoke_detector.Heartbeat(v=1, ts=NOW + 1_000, seq=7, battery_pct=15, rssi_dbm=-80)),
        reading(smoke_detector.Tamper(v=1, ts=NOW + 2_000, seq=8, state="removed")),
        reading(smoke_detector.Heartbeat(v=1, ts=NOW + 500, seq=6, battery_pct=90, rssi_dbm=-80)),  # late: ignored
    ])

    seen = DeviceRegistry(sql_engine, HIERARCHY).get(DETECTOR.device_id)
    assert (seen.last_seen_ms, seen.last_type, seen.battery_pct, seen.tampered, seen.connected) == (
        NOW + 2_000, "tamper", 15.0, True, True)
    assert (seen.seq_highest, seen.event_seq_highest) == (7, 8)  # events are numbered apart (the alarm lane)
    assert health(seen, NOW + 3_000) == {Health.ONLINE, Health.LOW_BATTERY, Health.TAMPERED}


# -- incidents ------------------------------------------------------------------------


def test_incidents_are_upserted_with_their_audit_trail(sql_engine):
    store = IncidentStore(sql_engine)
    location = HIERARCHY.locate("xq-01", 3, "0301")
    alarm = Signal(DETECTOR.device_id, "smoke_detector", "smoke_alarm", "fire", Severity.HIGH, "烟雾报警", NOW,
                   "烟雾浓度 0.3")

    def saved(incident, audit):  # the incident as stored: with the version its write gave it
        return replace(incident, version=store.save([incident], audit)[incident.id])

    opened, audit = open_or_update(None, alarm, location, NOW + 10, new_incident_id())
    opened = saved(opened, [audit])
    repeated, no_audit = open_or_update(opened, replace(alarm, at_ms=NOW + 5_000), location, NOW + 5_010, "unused")
    assert no_audit is None
    repeated = saved(repeated, [])
    acknowledged, ack = transition(repeated, Action.ACKNOWLEDGE, "值班员 王", "收到", NOW + 6_000)
    acknowledged = saved(acknowledged, [ack])

    (active,) = store.active()
    assert active == acknowledged and active.version == 3  # every field, the Chinese location included, round-trips
    assert (active.event_count, active.state, active.acknowledged_by) == (2, State.ACKNOWLEDGED, "值班员 王")
    assert [(a.action, a.from_state, a.to_state) for a in store.audit(opened.id)] == [
        ("open", None, State.OPEN), ("acknowledge", State.OPEN, State.ACKNOWLEDGED)]

    # another instance's copy from before the acknowledgement cannot overwrite it: nothing of that write lands
    late, late_audit = transition(repeated, Action.FALSE_ALARM, "另一台实例", "误报", NOW + 6_500)
    with pytest.raises(StaleIncident) as stale:
        store.save([late], [late_audit])
    assert stale.value.incident_ids == [opened.id] and store.get(opened.id) == acknowledged
    assert len(store.audit(opened.id)) == 2

    incident = acknowledged
    for action in (Action.DISPATCH, Action.ARRIVE, Action.RESOLVE, Action.VERIFY):
        incident, entry = transition(incident, action, "值班员 王", action.value, NOW + 7_000)
        incident = saved(incident, [entry])
    assert store.active() == []
    closed = store.get(opened.id)
    assert closed.state is State.CLOSED and closed.closed_ms == NOW + 7_000
    assert store.list(states=["closed"], building_id="xq-01") == [closed]
    with pytest.raises(NotFound):
        store.get("inc_nope")


# -- dead letters ---------------------------------------------------------------------


def test_dead_letters_keep_raw_bytes_and_list_and_count_by_reason(sql_engine):
    store = DeadLetterStore(sql_engine)
    binary = b"\x00\xff\xfe not json \x00"
    sd1 = "safety/v1/wanli/smoke_detector/SD-1/event"
    store.add_batch([
        DeadLetter(NOW, sd1, "SD-1", "bad_json", "not JSON", binary, len(binary)),
        DeadLetter(NOW + 1, "safety/v1/wanli/oops", "", "bad_topic", "no such topic", b"{}", 2),
        DeadLetter(NOW + 2, "x" * 600, "SD-2", "too_large", "d" * 2_000, b"y" * (KEEP_BYTES + 10), KEEP_BYTES + 10),
        DeadLetter(NOW + 3, "safety/v1/wanli/smoke_detector/SD-9/event", "SD-9", "unregistered_device", "", b"{}", 2),
    ])

    newest_first = store.list()
    assert [d.reason for d in newest_first] == ["unregistered_device", "too_large", "bad_topic", "bad_json"]
    (bad_json,) = store.list(reason="bad_json")
    assert bad_json.payload == binary and bad_json.received_ms == NOW and bad_json.device_id == "SD-1"
    (large,) = store.list(device_id="SD-2")
    assert (len(large.payload), large.payload_size, len(large.topic), len(large.detail)) == (
        KEEP_BYTES, KEEP_BYTES + 10, 512, 1000)
    assert [d.reason for d in store.list(limit=2, before_id=newest_first[1].id)] == ["bad_topic", "bad_json"]
    assert store.counts() == {"bad_json": 1, "bad_topic": 1, "too_large": 1, "unregistered_device": 1}


def _letters(n, start_ms, device="SD-1", reason="bad_json", size=1000):
    return [DeadLetter(start_ms + i, f"safety/v1/wanli/smoke_detector/{device}/event", device, reason, "why",
                       b"x" * size, size) for i in range(n)]


def test_dead_letters_are_pruned_by_age_and_size_and_their_counts_per_reason_stay_whole(sql_engine):
    store = DeadLetterStore(sql_engine)
    day = 86_400_000
    store.add_batch(_letters(30, NOW - 40 * day, reason="oversized"))  # older than the age limit
    store.add_batch(_letters(1200, NOW - day, reason="bad_json"))
    store.add_batch(_letters(10, NOW, device="SD-2", reason="bad_utf8"))
    store.count_unstored({"bad_json": 5000, "too_deep": 7, "nothing": 0})  # what the rate limits only counted
    before = store.counts()
    assert before == {"oversized": 30, "bad_json": 6200, "bad_utf8": 10, "too_deep": 7}

    row = 1000 + len("why") + len("safety/v1/wanli/smoke_detector/SD-1/event") + 100
    bounds = DeadLetterBounds(max_bytes=500 * row, max_age_ms=30 * day, prune_batch_rows=100)
    result = store.prune(NOW, bounds)
    assert result.by_reason == {"oversized": 30, "bad_json": 1210 - 450}  # down to 90 % of the bound, oldest first
    assert result.rows == 30 + 760 and result.stored_bytes == store.stored_bytes() == 450 * row
    assert store.counts() == before  # pruned rows are still counted under their reasons
    kept = store.list(limit=2000)
    assert len(kept) == 450 and {d.reason for d in kept} == {"bad_json", "bad_utf8"}
    assert min(d.received_ms for d in kept) == NOW - day + 760  # the newest were kept
    assert store.prune(NOW, bounds).rows == 0  # within the bounds: nothing more
    store.count_unstored({"too_deep": 3})
    assert store.counts()["too_deep"] == 10


# -- the whole service ----------------------------------------------------------------


@pytest.mark.postgres
def test_an_alarm_raises_an_incident_stored_in_postgresql(postgres_url, service_factory):
    # postgres_url first: fixtures end in reverse order, so the service stops before its database is dropped.
    service = service_factory(database_url=postgres_url)
    assert service.services.engine.dialect.name == "postgresql"
    detector = register_building(service).smoke_detectors()[5]
    broker = service.broker
    assert broker is not None

    publish(broker.host, broker.port, [detector.alarm(now_ms())])
    (incident,) = wait_for(lambda: httpx.get(f"{service.http_url}/api/incidents", params={"active": True}, headers=auth_headers(service)).json())
    assert incident["device_id"] == detector.device_id and incident["state"] == "open"

    engine = make_engine(postgres_url)  # a separate connection: what a second process would read
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(incidents_table.c.device_id, incidents_table.c.state)
                                  .where(incidents_table.c.id == incident["id"])).one()
    finally:
        engine.dispose()
    assert tuple(stored) == (detector.device_id, "open")
