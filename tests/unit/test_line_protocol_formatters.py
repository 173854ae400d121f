"""``encode_readings`` through its formatters (one made per message type and per the types its fields hold) is
byte for byte what the loop over each message's fields made, and what building the points and encoding them
makes, for every message type of every kind: valid messages as the decoder makes them, and messages whose
fields hold anything (a struct built without validation: None, ints in float fields, text to escape, lists)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from hypothesis import given, settings as hsettings, strategies as st

from devices.messages import Message
from devices.reading import Reading
from devices.topics import MessageClass
from ingest.line_protocol import (_FIELD_FORMATTERS, _FIRST_TAGS_SET, _FORMATTERS, _ONE_POINT_FIELDS, _TAG_ESCAPE,
                                   _field_value, _fields_formatter, _fields_text, _one_point_fields, _reading_series,
                                   encode_bytes, encode_readings, line)
from ingest.points import TelemetryPoint, points_of_all
from tests.reliability.strategies import MESSAGE_TYPES, payloads


def encode_readings_one_by_one(readings: Sequence[Reading]) -> tuple[bytes, list[int]]:
    """``encode_readings`` as it was before its formatters: a loop over each message's fields."""
    out: list[str] = []
    times: list[int] = []
    add, add_time = out.append, times.append
    for r in readings:
        msg = r.message
        prefix = _reading_series(r)
        ts = msg.ts
        names = _ONE_POINT_FIELDS.get(type(msg))
        if names is None:
            names = _one_point_fields(type(msg))
        if names:
            parts = []
            for name, key in names:
                v = getattr(msg, name)
                kind = type(v)
                if kind is float:
                    parts.append(key + repr(v))
                elif kind is int:
                    parts.append(f"{key}{v}i")
                elif kind is bool or kind is str:
                    parts.append(key + _field_value(v))
            if parts:
                add(f"{prefix} {','.join(parts)} {ts}")
                add_time(ts)
            continue
        for extra, fields in msg.points():
            if not fields:
                continue
            if not extra:
                add(f"{prefix} {_fields_text(fields)} {ts}")
            elif extra.keys() & _FIRST_TAGS_SET:
                tags = {"street": r.street, "device": r.device_id, "type": r.type, "class": r.msg_class.value, **extra}
                add(line(TelemetryPoint(r.kind, tags, fields, ts)))
            else:
                tag_text = "".join(f",{k.translate(_TAG_ESCAPE)}={extra[k].translate(_TAG_ESCAPE)}" for k in sorted(extra))
                add(f"{prefix}{tag_text} {_fields_text(fields)} {ts}")
            add_time(ts)
    return "\n".join(out).encode(), times


_ENVELOPE = ("v", "ts", "seq")
_odd_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_anything = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                      st.floats(allow_nan=False, allow_infinity=False), _odd_text, st.lists(st.integers(), max_size=2))
_device = st.one_of(st.sampled_from(["SD-1", "CS-2", "EH-3"]), st.text(st.characters(blacklist_categories=("Cs",),
                                                                                      blacklist_characters="\\\r"),
                                                                       min_size=1, max_size=6))


@st.composite
def _valid(draw: st.DrawFn) -> tuple[str, Message]:
    kind, message = draw(st.sampled_from(MESSAGE_TYPES))
    return kind, msgspec.convert(draw(payloads(message)), message)


@st.composite
def _loose(draw: st.DrawFn) -> tuple[str, Message]:
    """A message type whose fields hold whatever was drawn (its envelope's ``ts`` an int, as a line needs one)."""
    kind, message = draw(st.sampled_from(MESSAGE_TYPES))
    fields: dict[str, Any] = {name: draw(_anything) for name in message.__struct_fields__ if name not in _ENVELOPE}
    try:
        valid = msgspec.convert(draw(payloads(message)), message)
    except msgspec.ValidationError:
        return draw(_valid())
    if message.points is not Message.points:
        return kind, valid  # a type with its own points reads its fields as it knows them
    loose = msgspec.structs.replace(valid, **fields)
    return kind, msgspec.structs.replace(loose, seq=draw(st.one_of(st.integers(0, 2**53), _anything)))


@st.composite
def _readings(draw: st.DrawFn) -> list[Reading]:
    out = []
    for kind, message in draw(st.lists(st.one_of(_valid(), _loose()), max_size=8)):
        cls = draw(st.sampled_from([message.CLASS, *MessageClass]))
        out.append(Reading(draw(st.sampled_from(["wanli", "xin hua"])), kind, draw(_device), cls, message, 0))
    return out


@hsettings(max_examples=400, deadline=None)
@given(_readings())
def test_the_formatters_write_what_the_field_loop_and_the_points_write(readings):
    body, times = encode_readings(readings)
    points = points_of_all(readings)
    assert (body, times) == encode_readings_one_by_one(readings)
    assert body == encode_bytes(points) and times == [p.ts_ms for p in points]


def test_one_type_whose_fields_change_types_gets_one_formatter_per_signature():
    kind, message = next((k, m) for k, m in MESSAGE_TYPES if k == "smoke_detector" and m.__name__ == "Heartbeat")
    a = msgspec.structs.replace(msgspec.convert({"type": "heartbeat", "v": 1, "ts": 5, "seq": 1, "battery_pct": 50,
                                                 "rssi_dbm": -60}, message))
    b = msgspec.structs.replace(a, battery_pct=50, temperature_c="hot \"x\"")  # not what the decoder makes
    readings = [Reading("wanli", kind, "SD-1", MessageClass.TELEMETRY, m, 0) for m in (a, b, a)]
    body, _ = encode_readings(readings)
    lines = body.decode().split("\n")
    assert lines[0] == lines[2] and "battery_pct=50.0," in lines[0]
    assert 'battery_pct=50i,' in lines[1] and 'temperature_c="hot \\"x\\""' in lines[1]
    assert sum(1 for key in _FORMATTERS if key[0] is message) >= 2
    assert (body, _) == encode_readings_one_by_one(readings)


_name = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6)


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_name, _anything, min_size=1, max_size=5), min_size=1, max_size=4))
def test_a_points_fields_formatter_writes_what_fields_text_writes_any_names_any_values(many_fields):
    # names with quotes, braces and backslashes, values of any type: the formatter's source holds neither
    for fields in many_fields:
        values = tuple(fields.values())
        formatter = _FIELD_FORMATTERS.get((*fields, *map(type, values))) or _fields_formatter(fields, values)
        assert formatter(values) == _fields_text(fields)
