import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.catalog import KINDS
from devices.kinds.charging_station import contract as charging_station
from devices.kinds.elderly_alarm import contract as elderly_alarm
from devices.kinds.fire_station import contract as fire_station
from devices.kinds.inspection_report import contract as inspection_report
from devices.kinds.smoke_detector import contract as smoke_detector
from devices.topics import MessageClass
from devices.topics import device_id_of_topic
from ingest.decode import DecodeLimits, decode_message, nesting_depth
from foundation.errors import PayloadError, RejectedMessage, TopicError

NOW = 1_795_000_000_000
TOPIC = "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event"


def payload(**fields):
    body = {"v": 1, "ts": NOW - 1000, "seq": 7}
    body.update(fields)
    return json.dumps(body).encode()


def test_decodes_a_smoke_alarm_into_a_reading():
    r = decode_message(TOPIC, payload(type="alarm", smoke_density=0.3), NOW, KINDS)
    assert (r.street, r.kind, r.device_id, r.msg_class) == ("wanli", "smoke_detector", "SD-XQ01-0101", MessageClass.EVENT)
    assert isinstance(r.message, smoke_detector.Alarm)
    assert r.message.smoke_density == 0.3
    assert (r.type, r.seq, r.ts_ms, r.received_ms) == ("alarm", 7, NOW - 1000, NOW)


@pytest.mark.parametrize(
    ("kind", "cls", "body", "expected"),
    [
        ("smoke_detector", "telemetry", {"type": "heartbeat", "battery_pct": 88, "rssi_dbm": -90}, smoke_detector.Heartbeat),
        ("smoke_detector", "event", {"type": "tamper", "state": "removed"}, smoke_detector.Tamper),
        ("smoke_detector", "event", {"type": "silenced", "duration_s": 60}, smoke_detector.Silenced),
        ("smoke_detector", "status", {"type": "offline"}, None),
        ("charging_station", "telemetry", {"type": "station_status", "ports": [{"port": 1, "state": "full", "power_w": 12}]},
         charging_station.StationStatus),
        ("charging_station", "event", {"type": "overcurrent", "port": 3, "current_a": 9.5}, charging_station.Overcurrent),
        ("fire_station", "event", {"type": "dispatch_ack", "dispatch_id": "d-1"}, fire_station.DispatchAck),
        ("fire_station", "event", {"type": "equipment_check",
                                   "items": [{"item": "extinguisher", "status": "expired", "expires_on": "2026-01-01"}]},
         fire_station.EquipmentCheck),
        ("elderly_alarm", "event", {"type": "press"}, elderly_alarm.Press),
        ("elderly_alarm", "telemetry", {"type": "activity", "source": "water"}, elderly_alarm.Activity),
        ("inspection_report", "event", {"type": "hazard_report", "report_id": "r1", "category": "flying_wire_charging",
                                        "photos": ["p/1.jpg"], "note": "三楼窗口飞线"}, inspection_report.HazardReport),
    ],
)
def test_every_kind_decodes_its_messages(kind, cls, body, expected):
    r = decode_message(f"safety/v1/wanli/{kind}/DEV-1/{cls}", payload(**body), NOW, KINDS)
    assert r.type == body["type"]
    if expected is not None:
        assert isinstance(r.message, expected)


@pytest.mark.parametrize(
    ("topic", "raw", "reason", "fragment"),
    [
        (TOPIC, b"{not json", "bad_json", "not valid JSON"),
        (TOPIC, b"[1, 2]", "invalid_field", "Expected `object`"),
        (TOPIC, payload(type="alarm", smoke_density="high"), "invalid_field", "$.smoke_density"),
        (TOPIC, json.dumps({"v": 1, "ts": NOW, "type": "alarm"}).encode(), "missing_field", "`seq`"),
        (TOPIC, payload(type="meltdown"), "unknown_type", "alarm, alarm_cleared"),
        (TOPIC, payload(type="heartbeat", battery_pct=50, rssi_dbm=-80), "unknown_type", "event messages"),
        (TOPIC, payload(type="alarm", v=2), "invalid_field", "$.v"),
        (TOPIC, payload(type="alarm", seq=-1), "invalid_field", "$.seq"),
        (TOPIC, payload(type="low_battery", battery_pct=140), "invalid_field", "$.battery_pct"),
        ("safety/v1/wanli/toaster/T-1/event", payload(type="alarm"), "unknown_kind", "unknown device kind 'toaster'"),
        ("safety/v1/wanli/inspection_report/R-1/telemetry", payload(type="hazard_report"), "wrong_class", "publishes nothing"),
        ("not/a/topic", payload(type="alarm"), "bad_topic", "expected 6 segments"),
        (TOPIC, payload(type="alarm", pad="x" * 20_000), "oversized", "exceeds the limit"),
        (TOPIC, payload(type="alarm", note="ok")[:-1] + b', "ignored": "\xff"}', "bad_utf8", "0xff"),
        (TOPIC, b'{"v":1,"ts":%d,"seq":1,"type":"alarm","x":%s}' % (NOW, b"[" * 8000 + b"]" * 8000), "too_deep",
         "deeper than 32"),
        (TOPIC, json.dumps({"v": 1, "ts": NOW, "seq": 1}).encode(), "missing_type", "alarm, alarm_cleared"),
        ("safety/v1/wanli/lift_camera/LC-1/event", payload(confidence=0.9), "missing_type", "ebike_detected"),
        ("safety/v1/wanli/lift_camera/LC-1/event", payload(type="", confidence=0.9), "unknown_type", "ebike_detected"),
        ("safety/v1/wanli/water_meter/W-1/event", payload(flow_l_per_min=6.0, duration_s=60), "missing_type", "leak"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(topic, raw, reason, fragment):
    with pytest.raises(RejectedMessage) as caught:
        decode_message(topic, raw, NOW, KINDS)
    assert caught.value.reason == reason
    assert fragment in str(caught.value)
    assert caught.value.topic == topic


def test_rejections_name_the_device_when_the_topic_did():
    with pytest.raises(PayloadError) as caught:
        decode_message(TOPIC, b"{", NOW, KINDS)
    assert caught.value.device_id == "SD-XQ01-0101"


@pytest.mark.parametrize(
    "topic",
    ["safety/v1/Wanli/smoke_detector/SD-XQ01-0101/event", "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event/extra",
     "safety/v1/wanli/smoke_detector/SD-XQ01-0101/alarms", "safety/v1/wanli/toaster/SD-XQ01-0101/event"],
)
def test_a_bad_topic_names_the_device_its_device_segment_names(topic):
    with pytest.raises(RejectedMessage) as caught:
        decode_message(topic, payload(type="alarm"), NOW, KINDS)
    assert caught.value.device_id == "SD-XQ01-0101"


@pytest.mark.parametrize(
    ("topic", "device_id"),
    [("safety/v1/wanli/smoke_detector/SD-1/event", "SD-1"), ("safety/v1/X/Y/SD-1", "SD-1"),
     ("safety/v1/a/b/SD-1/c/d/e", "SD-1"), ("safety/v1/a/b", ""), ("safety/v2/a/b/SD-1/event", ""),
     ("other/v1/a/b/SD-1/event", ""), ("safety/v1/a/b/-x/event", ""), ("safety/v1/a/b/+/event", ""),
     ("safety/v1/a/b//event", "")],
)
def test_device_id_of_topic_takes_the_fifth_segment_of_a_contract_topic_only(topic, device_id):
    assert device_id_of_topic(topic) == device_id


@pytest.mark.parametrize(
    ("raw", "depth"),
    [(b"{}", 1), (b"[]", 1), (b"1", 0), (b'{"a":[1,{"b":"]]][[["}]}', 3), (b'"[[[[" ', 0), (rb'["\\", ["\"["]]', 2),
     (b"[" * 40, 40), (b"[]" * 40, 1)],
)
def test_nesting_depth_counts_brackets_outside_strings(raw, depth):
    assert nesting_depth(raw) == depth


def test_brackets_inside_strings_do_not_count_towards_the_depth_limit():
    note = "[" * 500 + "{" * 500
    r = decode_message("safety/v1/wanli/inspection_report/R-1/event",
                       payload(type="hazard_report", report_id="r1", category="corridor_clutter", note=note), NOW, KINDS)
    assert r.message.note == note


def test_depth_limit_is_configurable_and_the_deepest_schema_fits_the_default():
    station = payload(type="station_status", smoke=False, mains_power=True,
                      ports=[{"port": 1, "state": "idle", "voltage_v": 220, "current_a": 0, "power_w": 0, "energy_wh": 0,
                              "session_s": 0}] * 100)
    topic = "safety/v1/wanli/charging_station/CS-1/telemetry"
    assert decode_message(topic, station, NOW, KINDS).type == "station_status"
    with pytest.raises(PayloadError) as caught:
        decode_message(topic, station, NOW, KINDS, DecodeLimits(max_depth=2))
    assert caught.value.reason == "too_deep"


def test_size_limit_is_configurable():
    with pytest.raises(PayloadError):
        decode_message(TOPIC, payload(type="alarm"), NOW, KINDS, DecodeLimits(max_payload_bytes=256 // 8))


def test_unknown_extra_fields_are_tolerated_for_forward_compatibility():
    r = decode_message(TOPIC, payload(type="alarm", firmware_extra={"a": 1}), NOW, KINDS)
    assert r.type == "alarm"


@given(st.binary(max_size=400), st.sampled_from(list(KINDS)), st.sampled_from(list(MessageClass)))
def test_arbitrary_bytes_never_escape_as_anything_but_a_rejection(raw, kind, cls):
    try:
        decode_message(f"safety/v1/wanli/{kind}/D-1/{cls.value}", raw, NOW, KINDS)
    except (PayloadError, TopicError) as exc:
        assert exc.device_id == "D-1"


@given(st.dictionaries(st.sampled_from(["v", "ts", "seq", "type", "smoke_density", "battery_pct", "state"]),
                       st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.booleans()),
                       max_size=7))
def test_arbitrary_json_objects_decode_or_are_rejected(body):
    try:
        decode_message(TOPIC, json.dumps(body).encode(), NOW, KINDS)
    except PayloadError as exc:
        assert exc.reason in {"bad_json", "invalid_field", "missing_field", "missing_type", "unknown_type", "ts_future",
                              "ts_past"}


@pytest.mark.parametrize(
    ("kind", "cls", "body"),
    [
        ("water_meter", "telemetry", {"type": "reading", "total_l": 58231.5, "interval_l": 0.0, "interval_s": 3600}),
        ("water_meter", "telemetry", {"type": "daily_usage", "date": "2026-11-22", "litres": 3.5}),
        ("water_meter", "event", {"type": "leak", "flow_l_per_min": 6.0, "duration_s": 7200}),
        ("lift_camera", "event", {"type": "ebike_detected", "confidence": 0.93, "lift": "A"}),
        ("lift_camera", "telemetry", {"type": "heartbeat", "detections_today": 2}),
    ],
)
def test_kinds_added_by_one_module_and_one_line_decode(kind, cls, body):
    assert decode_message(f"safety/v1/wanli/{kind}/DEV-9/{cls}", payload(**body), NOW, KINDS).type == body["type"]


def test_a_water_meter_date_must_be_a_date():
    with pytest.raises(PayloadError) as caught:
        decode_message("safety/v1/wanli/water_meter/W-1/telemetry", payload(type="daily_usage", date="yesterday", litres=1),
                       NOW, KINDS)
    assert caught.value.reason == "invalid_field"


def _depth_of(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth_of(v) for v in value), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\\\ab\n\u00e9\u706b', max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\\\k', max_size=4), inner,
                                                                max_size=4),
    max_leaves=40,
)


@given(JSON_VALUES, st.booleans())
def test_nesting_depth_is_the_depth_of_any_json_whatever_its_strings_hold(value, ascii_only):
    assert nesting_depth(json.dumps(value, ensure_ascii=ascii_only).encode()) == _depth_of(value)
