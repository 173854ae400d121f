"""The registry and CSV import with a real SQLite database."""

import io
import json

import pytest

from alerts.incidents import State
from devices.kinds.smoke_detector import contract as smoke_detector
from devices.csv_import import import_csv
from devices.hierarchy import load_hierarchy
from devices.messages import Offline
from devices.reading import Reading
from devices.registry import DeviceRecord, DeviceRegistry, Health, Lifecycle, RegisterOutcome, health
from devices.topics import MessageClass
from ingest.pipeline import RawMessage
from tests.component.test_pipeline import NOW, Env
from tests.support.readings import reading as support_reading
from foundation.db import create_schema, make_engine
from foundation.errors import Conflict, Invalid, NotFound

HEADER = "device_id,kind,building_id,floor,unit,label\n"


@pytest.fixture
def registry(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    create_schema(engine)
    return DeviceRegistry(engine, load_hierarchy())


def sd(device_id="SD-XQ01-0101", building="xq-01", floor=1, unit="0101"):
    return DeviceRecord(device_id, "smoke_detector", "wanli", building, floor, unit)


def test_register_is_idempotent_and_a_different_placement_is_a_conflict(registry):
    assert registry.register(sd(), "维护员 刘", NOW) is RegisterOutcome.CREATED
    assert registry.register(sd(), "维护员 刘", NOW + 1) is RegisterOutcome.UNCHANGED
    with pytest.raises(Conflict, match="already registered at 香泉居民区 香泉 1号楼 1层 0101室; move it instead"):
        registry.register(sd(floor=2, unit="0201"), "维护员 刘", NOW)
    with pytest.raises(Conflict, match="registered as a smoke_detector, not a elderly_alarm"):
        registry.register(DeviceRecord("SD-XQ01-0101", "elderly_alarm", "wanli", "xq-01", 1, "0101"), "x", NOW)
    assert [h.action for h in registry.history("SD-XQ01-0101")] == ["created"]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (sd(building="nowhere"), "unknown building 'nowhere'"),
        (sd(floor=19), "floor 19 is outside 香泉 1号楼 (floors 1-18"),
        (sd(floor=0), "floor 0 is outside"),
        (sd(device_id="SD 1"), "device id 'SD 1'"),
        (DeviceRecord("X-1", "toaster", "wanli", "xq-01"), "unknown device kind 'toaster'"),
        (DeviceRecord("X-1", "smoke_detector", "ganquan", "xq-01"), "street 'ganquan'"),
        (DeviceRecord("X-1", "smoke_detector", "wanli", "", 3), "a floor or unit needs a building"),
    ],
)
def test_invalid_registrations_say_what_is_wrong(registry, record, message):
    with pytest.raises(Invalid, match=message.replace("(", r"\(")):
        registry.register(record, "x", NOW)
    assert registry.count() == 0


def test_register_many_is_all_or_nothing(registry):
    with pytest.raises(Invalid):
        registry.register_many([sd("A-1"), sd("A-2", building="nowhere")], "x", NOW)
    assert registry.count() == 0


def test_csv_import_lands_good_rows_reports_bad_ones_and_reimport_changes_nothing(registry):
    csv_text = HEADER + "\n".join([
        "SD-XQ01-0101,smoke_detector,xq-01,1,0101,厨房",
        "SD-XQ01-0102,smoke_detector,xq-01,1,0102,",
        "SD-XQ01-0101,smoke_detector,xq-01,1,0101,again",  # duplicate id in the same file
        "SD-BAD-1,smoke_detector,xq-99,1,0101,",  # unknown building
        "SD-BAD-2,smoke_detector,xq-01,one,0101,",  # floor not a number
        "SD-BAD-3,toaster,xq-01,1,0101,",  # unknown kind
        "SD-BAD-4,smoke_detector,xq-01",  # too few columns
        "",  # blank lines are skipped
        "EA-XQ01-0301,elderly_alarm,xq-01,3,0301,独居 王阿婆",
    ]) + "\n"
    seen_progress = []
    report = import_csv(registry, csv_text.splitlines(), actor="维护员", now_ms=NOW, chunk_size=2,
                        progress=seen_progress.append)
    assert (report.rows, report.created, report.unchanged) == (8, 3, 0)
    assert [(e.line, e.device_id) for e in report.rejected] == [
        (4, "SD-XQ01-0101"), (5, "SD-BAD-1"), (6, "SD-BAD-2"), (7, "SD-BAD-3"), (8, "SD-BAD-4")]
    reasons = [e.reason for e in report.rejected]
    assert reasons[0] == "duplicate of line 2" and "unknown building 'xq-99'" in reasons[1]
    assert "'one' is not a whole number" in reasons[2] and "toaster" in reasons[3] and "expected 6 columns" in reasons[4]
    assert seen_progress and seen_progress[-1] == 8
    assert registry.get("EA-XQ01-0301").label == "独居 王阿婆"

    again = import_csv(registry, csv_text.splitlines(), actor="维护员", now_ms=NOW + 1000)
    assert (again.created, again.unchanged, len(again.rejected)) == (0, 3, 5)
    assert registry.count() == 3
    assert len(registry.history("SD-XQ01-0101")) == 1


def test_csv_without_the_required_columns_is_refused_as_a_whole(registry):
    with pytest.raises(Invalid, match="lacks kind, building_id"):
        import_csv(registry, ["device_id,floor", "A,1"], actor="x", now_ms=NOW)
    with pytest.raises(Invalid, match="empty"):
        import_csv(registry, [], actor="x", now_ms=NOW)


def test_a_byte_order_mark_and_column_order_do_not_matter(registry):
    report = import_csv(registry, ["\ufeffkind,device_id,building_id", "smoke_detector,SD-1,xq-02"], actor="x", now_ms=NOW)
    assert report.created == 1 and registry.get("SD-1").building_id == "xq-02"


def test_moving_a_device_with_an_open_incident_keeps_the_incident_where_it_happened(tmp_path):
    env = Env(tmp_path)
    env.registry.register(sd("SD-XQ01-0301", floor=3, unit="0301"), "x", NOW)
    topic = "safety/v1/wanli/smoke_detector/SD-XQ01-0301/event"
    alarm = json.dumps({"v": 1, "ts": NOW - 10, "seq": 1, "type": "alarm"}).encode()
    env.pipeline.process([RawMessage(topic, alarm, NOW)])

    moved = env.registry.move("SD-XQ01-0301", "xq-02", 7, "0702", "维护员 刘", NOW + 100)
    assert env.registry.location(moved).label() == "香泉居民区 香泉 2号楼 7层 0702室"
    (incident,) = env.incidents.list()
    assert incident.state is State.OPEN and incident.location.label() == "香泉居民区 香泉 1号楼 3层 0301室"
    history = env.registry.history("SD-XQ01-0301")
    assert history[-1].action == "moved" and "1号楼 3层" in history[-1].detail and "2号楼 7层" in history[-1].detail


def test_a_retired_device_is_quarantined_and_can_be_reactivated(tmp_path):
    env = Env(tmp_path)
    env.registry.register(sd(), "x", NOW)
    env.registry.retire("SD-XQ01-0101", "维护员 刘", NOW + 1, "replaced after fire")
    with pytest.raises(Conflict, match="retired; cannot move"):
        env.registry.move("SD-XQ01-0101", "xq-01", 2, "0201", "x", NOW + 2)
    alarm = json.dumps({"v": 1, "ts": NOW - 10, "seq": 1, "type": "alarm"}).encode()
    env.pipeline.process([RawMessage("safety/v1/wanli/smoke_detector/SD-XQ01-0101/event", alarm, NOW)])
    assert env.incidents.list() == []
    (letter,) = env.dead.list()
    assert letter.reason == "retired_device"
    (held,) = env.dead.quarantined()
    assert (held["device_id"], held["reason"], held["kind"], held["messages"]) == ("SD-XQ01-0101", "retired_device", "smoke_detector", 1)

    assert env.registry.register(sd(floor=2, unit="0201"), "x", NOW + 3) is RegisterOutcome.REACTIVATED
    assert env.registry.get("SD-XQ01-0101").lifecycle is Lifecycle.ACTIVE
    assert [h.action for h in env.registry.history("SD-XQ01-0101")] == ["created", "retired", "reactivated"]
    assert len(env.dead.list()) == 1  # registering releases nothing from quarantine, the history stays


def test_a_device_publishing_as_another_kind_is_quarantined(tmp_path):
    env = Env(tmp_path)
    env.registry.register(sd(), "x", NOW)
    press = json.dumps({"v": 1, "ts": NOW - 10, "seq": 1, "type": "press"}).encode()
    env.pipeline.process([RawMessage("safety/v1/wanli/elderly_alarm/SD-XQ01-0101/event", press, NOW)])
    (letter,) = env.dead.list()
    assert letter.reason == "kind_mismatch" and "registered as smoke_detector" in letter.detail
    assert env.incidents.list() == []


def reading(message, cls=MessageClass.TELEMETRY):
    return support_reading("smoke_detector", message, "SD-XQ01-0101", msg_class=cls)


def test_health_follows_readings_and_silence(registry):
    registry.register(sd(), "x", NOW)
    assert health(registry.get("SD-XQ01-0101"), NOW) == {Health.NEVER_SEEN}
    registry.observe_batch([reading(smoke_detector.Heartbeat(v=1, ts=NOW, seq=1, battery_pct=15, rssi_dbm=-90))])
    assert health(registry.get("SD-XQ01-0101"), NOW + 1000) == {Health.ONLINE, Health.LOW_BATTERY}
    registry.observe_batch([reading(smoke_detector.Tamper(v=1, ts=NOW + 5, seq=2, state="removed"), MessageClass.EVENT)])
    assert Health.TAMPERED in health(registry.get("SD-XQ01-0101"), NOW + 1000)
    registry.observe_batch([reading(Offline(v=1, ts=NOW + 6, seq=3), MessageClass.STATUS)])
    assert Health.OFFLINE in health(registry.get("SD-XQ01-0101"), NOW + 1000)
    # An old, buffered reading does not move health back in time.
    registry.observe_batch([reading(smoke_detector.Heartbeat(v=1, ts=NOW - 5000, seq=0, battery_pct=99, rssi_dbm=-90))])
    assert registry.get("SD-XQ01-0101").battery_pct == 15

    registry.observe_batch([reading(smoke_detector.Heartbeat(v=1, ts=NOW + 10, seq=4, battery_pct=80, rssi_dbm=-90))])
    silent_for = 3 * 4 * 3600 * 1000 + 1  # three missed heartbeats of a smoke detector
    assert Health.OFFLINE in health(registry.get("SD-XQ01-0101"), NOW + 10 + silent_for)
    assert Health.ONLINE in health(registry.get("SD-XQ01-0101"), NOW + 10 + silent_for - 2)

    fresh = DeviceRegistry(registry._engine, load_hierarchy())  # noqa: SLF001 - reload from the database
    assert fresh.get("SD-XQ01-0101") == registry.get("SD-XQ01-0101")


def test_lists_filter_by_kind_place_and_health(registry):
    registry.register_many([sd("SD-1"), sd("SD-2", building="yh-01", floor=5, unit="0501"),
                            DeviceRecord("EA-1", "elderly_alarm", "wanli", "xq-01", 3, "0301")], "x", NOW)
    low = smoke_detector.Heartbeat(v=1, ts=NOW, seq=1, battery_pct=10, rssi_dbm=-90)
    registry.observe_batch([Reading("wanli", "smoke_detector", "SD-1", MessageClass.TELEMETRY, low, NOW)])
    ids = lambda **kw: [r.device_id for r in registry.list(now_ms=NOW, **kw)]  # noqa: E731
    assert ids() == ["EA-1", "SD-1", "SD-2"]
    assert ids(kind="smoke_detector") == ["SD-1", "SD-2"]
    assert ids(community_id="xiangquan") == ["EA-1", "SD-1"]
    assert ids(building_id="yh-01") == ["SD-2"]
    assert ids(health_flag=Health.LOW_BATTERY) == ["SD-1"]
    assert ids(health_flag=Health.NEVER_SEEN) == ["EA-1", "SD-2"]
    assert ids(limit=1, offset=1) == ["SD-1"]
    with pytest.raises(NotFound):
        registry.list(now_ms=NOW, community_id="atlantis")


def test_a_device_id_with_a_trailing_newline_is_refused(registry):
    with pytest.raises(Invalid, match="device id"):
        registry.register(sd(device_id="SD-1\n"), "x", NOW)


def test_device_states_are_flushed_in_slices_and_a_failed_slice_keeps_the_rest_dirty(tmp_path, monkeypatch):
    """Heartbeats of a street dirty every device; they are written a slice per transaction (an alarm's commit waits
    for one slice, not for the street), and when a slice fails, it and every later one are written next time."""
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    create_schema(engine)
    registry = DeviceRegistry(engine, load_hierarchy())
    records = [DeviceRecord(f"SD-T-{i:04d}", "smoke_detector", "wanli", "xq-01") for i in range(250)]
    registry.register_many(records, actor="test", now_ms=NOW)
    monkeypatch.setattr(DeviceRegistry, "FLUSH_SLICE", 100)
    transactions = []
    original_begin = engine.begin

    def counting_begin():
        transactions.append(1)
        if len(transactions) == 2:
            raise OSError("disk went away for one slice")
        return original_begin()

    monkeypatch.setattr(engine, "begin", counting_begin)
    with registry.batch() as devices:
        for i, rec in enumerate(records):
            devices.admit(Reading("wanli", "smoke_detector", rec.device_id, MessageClass.TELEMETRY,
                                  smoke_detector.Heartbeat(v=1, ts=NOW + i, seq=1, battery_pct=90, rssi_dbm=-70), NOW + i))
        devices.committed = True
    with pytest.raises(OSError):
        registry.flush_states()
    assert transactions == [1, 1]  # the first slice landed, the second failed, the third was not tried
    assert registry.flush_states() == 150 and len(transactions) == 4  # the second and third, now
    assert registry.flush_states() == 0
    fresh = DeviceRegistry(engine, load_hierarchy())
    assert [fresh.get(r.device_id).last_seen_ms for r in records] == [NOW + i for i in range(250)]


@pytest.mark.parametrize("device_id", ["wanli-ingest", "wanli-ingest-dispatch", "wanli-ingest-alarms", "wanli-canary",
                                       "WANLI-INGEST", "Wanli-anything"])
def test_the_service_prefix_is_refused_as_a_device_id_at_registration_and_import(registry, device_id):
    with pytest.raises(Invalid, match="is reserved"):
        registry.register(sd(device_id=device_id), "x", NOW)
    report = import_csv(registry, io.StringIO(HEADER + f"{device_id},smoke_detector,xq-01,1,0101,\n"), actor="x", now_ms=NOW)
    assert report.created == 0 and [e.line for e in report.rejected] == [2] and "is reserved" in report.rejected[0].reason
    assert registry.find(device_id) is None
    assert registry.register(sd(device_id="wanli_ok-1"), "x", NOW) is RegisterOutcome.CREATED  # only the prefix "wanli-"


def test_the_services_configured_logins_are_refused_whatever_they_are(registry):
    registry.reserve_logins(["svc-ingest", "svc-ingest-alarms", "", "svc-ingest-dispatch"])
    for device_id in ("svc-ingest", "SVC-INGEST-ALARMS", "svc-ingest-dispatch"):
        with pytest.raises(Invalid, match="the service logs in to the MQTT broker under that name"):
            registry.register(sd(device_id=device_id), "x", NOW)
    assert registry.register(sd(device_id="svc-ingest-2"), "x", NOW) is RegisterOutcome.CREATED


def test_a_device_registered_under_a_reserved_id_before_the_rule_cannot_be_moved(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    create_schema(engine)
    DeviceRegistry(engine, load_hierarchy()).register(sd(device_id="svc-dispatch"), "x", NOW)  # then not reserved
    restarted = DeviceRegistry(engine, load_hierarchy(), reserved_logins=["svc-dispatch"])
    with pytest.raises(Invalid, match="is reserved"):
        restarted.move("svc-dispatch", "xq-01", 2, "0201", "x", NOW)
    assert restarted.get("svc-dispatch").floor == 1
    assert restarted.retire("svc-dispatch", "x", NOW).lifecycle is Lifecycle.RETIRED  # retiring it stays possible
