import pytest
from hypothesis import given, settings as hsettings, strategies as st

from devices.kinds.charging_station import contract as charging_station
from devices.kinds.smoke_detector import contract as smoke_detector
from devices.topics import MessageClass
from ingest.line_protocol import encode, encode_bytes, encode_readings, parse, parse_bytes
from ingest.points import TelemetryPoint, pack, points_of, points_of_all, unpack
from tests.support.readings import reading as support_reading


def reading(message, kind="smoke_detector", device="SD-XQ01-0101", cls=MessageClass.EVENT):
    return support_reading(kind, message, device, msg_class=cls, received_ms=message.ts + 5)


def reading_lines(r):
    return encode(points_of(r))


def test_an_alarm_becomes_one_point_with_tags_and_typed_fields():
    lines = reading_lines(reading(smoke_detector.Alarm(v=1, ts=1_700_000_000_123, seq=42, smoke_density=0.25)))
    assert lines == [
        "smoke_detector,street=wanli,device=SD-XQ01-0101,type=alarm,class=event smoke_density=0.25,seq=42i 1700000000123"
    ]


def test_booleans_strings_and_special_characters_are_escaped():
    msg = smoke_detector.Fault(v=1, ts=1, seq=1, code='E 1,"x"', detail="line\nbreak")
    (line,) = reading_lines(reading(msg, device="D,1 =x"))
    assert r"device=D\,1\ \=x" in line
    assert r'code="E 1,\"x\""' in line
    assert r'detail="line\nbreak"' in line


def test_a_station_snapshot_becomes_one_point_per_port_tagged_with_the_port():
    msg = charging_station.StationStatus(
        v=1, ts=10, seq=3, ambient_temp_c=21.0, smoke=False, mains_power=True,
        ports=[charging_station.Port(port=1, state="charging", temperature_c=41.5, power_w=180.0),
               charging_station.Port(port=2, state="idle")],
    )
    lines = reading_lines(reading(msg, kind="charging_station", device="CS-1", cls=MessageClass.TELEMETRY))
    assert len(lines) == 3
    assert "smoke=false,mains_power=true" in lines[0] and "port_count=2i" in lines[0]
    assert lines[1].startswith("charging_station,street=wanli,device=CS-1,type=station_status,class=telemetry,port=1 ")
    assert 'state="charging"' in lines[1] and "temperature_c=41.5" in lines[1] and "seq=3i" in lines[1]
    assert "temperature_c" not in lines[2]  # a port that reports no temperature writes none


def test_encode_concatenates_readings_in_order():
    a = reading(smoke_detector.Alarm(v=1, ts=1, seq=1))
    b = reading(smoke_detector.AlarmCleared(v=1, ts=2, seq=2))
    assert [line.rsplit(" ", 1)[1] for line in encode(points_of_all([a, b]))] == ["1", "2"]


def test_points_survive_the_spool_encoding_unchanged():
    msg = charging_station.StationStatus(v=1, ts=10, seq=3, ports=[charging_station.Port(port=4, state="full")])
    points = points_of(reading(msg, kind="charging_station", device="CS-1", cls=MessageClass.TELEMETRY))
    assert unpack(pack(points)) == points
    assert points[1].tags["port"] == "4" and points[1].fields["state"] == "full"


def test_two_ports_events_in_one_millisecond_are_two_series_tagged_with_their_port():
    # Two bikes plugged in at once: with the port as a field they were one series and time, and InfluxDB kept one.
    started = [charging_station.SessionStarted(v=1, ts=10, seq=s, port=p) for s, p in ((5, 1), (6, 2))]
    ended = charging_station.SessionEnded(v=1, ts=10, seq=7, port=3, energy_wh=12.5, duration_s=60, reason="full")
    lines = encode(points_of_all([reading(m, kind="charging_station", device="CS-1") for m in (*started, ended)]))
    assert [line.split(" ")[0] for line in lines] == [
        f"charging_station,street=wanli,device=CS-1,type={t},class=event,port={p}"
        for t, p in (("session_started", 1), ("session_started", 2), ("session_ended", 3))]
    assert lines[2].split(" ")[1] == 'energy_wh=12.5,duration_s=60i,reason="full",seq=7i'  # no field named port


# -- one body per batch, and reading our own lines back (the spool keeps line protocol: ingest/spool.py) --------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\\\r"), min_size=1, max_size=12)
_scalar = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=12))
_point = st.builds(TelemetryPoint, _text, st.dictionaries(_text, _text, max_size=5),
                   st.dictionaries(_text, _scalar, min_size=1, max_size=5), st.integers(0, 2**53))


def _mixed_points():
    station = charging_station.StationStatus(
        v=1, ts=10, seq=3, ambient_temp_c=21.5, smoke=False, mains_power=True,
        ports=[charging_station.Port(port=1, state="charging", temperature_c=41.5, power_w=180.0)])
    fault = smoke_detector.Fault(v=1, ts=11, seq=4, code='E 1,"x"', detail="line\nbreak \\ end")
    return points_of_all([reading(station, kind="charging_station", device="CS 1,=x", cls=MessageClass.TELEMETRY),
                          reading(fault, device="D,1 =x")])


def test_encode_bytes_is_the_lines_of_encode_joined_in_one_body():
    points = _mixed_points()
    assert encode_bytes(points) == "\n".join(encode(points)).encode()
    assert encode_bytes([]) == b""


def test_lines_read_back_as_the_points_they_were_escapes_and_types_included():
    points = _mixed_points()
    assert parse_bytes(encode_bytes(points)) == points
    back = parse_bytes(encode_bytes(points))
    assert [type(v) for p in back for v in p.fields.values()] == [type(v) for p in points for v in p.fields.values()]


@hsettings(max_examples=300, deadline=None)
@given(st.lists(_point, min_size=1, max_size=5))
def test_any_point_survives_line_protocol_and_back(points):
    assert encode_bytes(points) == "\n".join(encode(points)).encode()
    assert parse_bytes(encode_bytes(points)) == points


def test_a_line_that_is_not_line_protocol_is_refused_with_its_text():
    with pytest.raises(ValueError, match="not a line of line protocol"):
        parse("garbage")


def test_lines_built_straight_from_readings_are_the_points_lines_byte_for_byte():
    station = charging_station.StationStatus(
        v=1, ts=10, seq=3, ambient_temp_c=None, smoke=False, mains_power=True,
        ports=[charging_station.Port(port=1, state="charging", temperature_c=41.5, power_w=180.0),
               charging_station.Port(port=2, state="idle")])
    readings = [
        reading(smoke_detector.Alarm(v=1, ts=1, seq=1, smoke_density=0.25)),
        reading(smoke_detector.Fault(v=1, ts=2, seq=2, code='E 1,"x"', detail="line\nbreak \\"), device="D,1 =x"),
        reading(station, kind="charging_station", device="CS-1", cls=MessageClass.TELEMETRY),
        reading(charging_station.SessionEnded(v=1, ts=11, seq=4, port=3, energy_wh=12.5, duration_s=60,
                                              reason="full"), kind="charging_station", device="CS-1"),
        reading(smoke_detector.Alarm(v=1, ts=5, seq=5, smoke_density=0.5)),  # the same series again
    ]
    points = points_of_all(readings)
    body, times = encode_readings(readings)
    assert body == encode_bytes(points) and times == [p.ts_ms for p in points] and len(times) == 7
    assert encode_readings([]) == (b"", [])
