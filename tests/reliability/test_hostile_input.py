"""Hostile input, property-based: the topic parser, every payload decoder, the CSV importer.

Each either accepts what it is given (and then round-trips it) or refuses it with one of
the documented error types and reasons; nothing else may escape. Run with
``HYPOTHESIS_PROFILE=thorough`` for 2,000 examples a property instead of 100.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devices.catalog import KINDS
from devices.csv_import import RowError, import_csv, parse_rows
from devices.hierarchy import load_hierarchy
from devices.messages import Message
from devices.registry import DeviceRecord, DeviceRegistry
from devices.topics import MessageClass, TopicAddress, device_topic, is_device_id, parse_topic
from ingest.decode import DAY_MS, MINUTE_MS, decode_message
from ingest.line_protocol import encode as line_protocol
from ingest.line_protocol import encode_bytes, encode_readings
from ingest.points import points_of
from tests.reliability.strategies import MESSAGE_TYPES, encode, mutated, payloads, round_trip
from foundation.db import create_schema, make_engine
from foundation.errors import Invalid, PayloadError, RejectedMessage, TopicError

NOW = 1_795_000_000_000
REPO = Path(__file__).resolve().parents[2]


def documented_reasons() -> set[str]:
    """The rejection reasons docs/mqtt-contract.md lists (its table under "### Rejections")."""
    text = (REPO / "docs" / "mqtt-contract.md").read_text("utf-8")
    table = text.split("### Rejections", 1)[1].split("\n## ", 1)[0]
    return {reason for row in table.splitlines() if row.startswith("| `") for reason in re.findall(r"`(\w+)`", row.split("|")[1])}


DOCUMENTED = documented_reasons()
DECODE_REASONS = DOCUMENTED - {"unregistered_device"}  # the registry's, not the decoder's


def test_the_contract_documents_the_reasons_decoding_gives():
    assert DECODE_REASONS >= {"bad_topic", "unknown_kind", "oversized", "bad_json", "bad_utf8", "too_deep",
                              "missing_type", "missing_field", "invalid_field", "unknown_type", "wrong_class",
                              "ts_future", "ts_past"}


# --- topics -----------------------------------------------------------------------------

IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
DEVICE = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)
HOSTILE_CHARS = st.sampled_from(["/", "+", "#", "$", "\x00", "\n", "\r", " ", "\t", "..", "%2F", "\u202e", "é", "火",
                                 "\ufeff", "\\", "'", '"', "*", "-", "_", "A", "0"])


@st.composite
def mutated_topics(draw: st.DrawFn) -> str:
    topic = device_topic(draw(IDENT), draw(IDENT), draw(DEVICE), draw(st.sampled_from(list(MessageClass))))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(topic)))
        match draw(st.sampled_from(["insert", "delete", "replace", "double"])):
            case "insert":
                topic = topic[:i] + draw(HOSTILE_CHARS) + topic[i:]
            case "delete":
                topic = topic[:i] + topic[i + 1:]
            case "replace":
                topic = topic[:i] + draw(HOSTILE_CHARS) + topic[i + 1:]
            case "double":
                topic = topic + "/" + topic
    return topic


def _parse_or_refuse(topic: str) -> TopicAddress | None:
    try:
        addr = parse_topic(topic)
    except TopicError as exc:
        assert exc.reason == "bad_topic" and exc.topic == topic and str(exc)
        return None
    assert addr.topic == topic  # what parses is exactly the contract's spelling of it
    return addr


@given(mutated_topics())
def test_mutated_contract_topics_parse_back_to_themselves_or_are_refused_with_the_topic(topic):
    first = _parse_or_refuse(topic)
    assert _parse_or_refuse(topic) == first  # the parse cache answers a refused topic the same way twice


@given(st.text(max_size=80))
def test_a_device_id_is_accepted_in_a_topic_exactly_when_the_registry_accepts_it(device_id):
    try:
        TopicAddress("wanli", "smoke_detector", device_id, MessageClass.EVENT)
    except TopicError:
        assert not is_device_id(device_id)
    else:
        assert is_device_id(device_id)


# --- every payload decoder ------------------------------------------------------------------

IDS = [f"{kind}.{m.__struct_config__.tag}" for kind, m in MESSAGE_TYPES]
IN_WINDOW = st.integers(NOW - 7 * DAY_MS, NOW + 5 * MINUTE_MS)


def _same(given_value: object, decoded: object) -> bool:
    """``decoded`` holds what the JSON gave (an integral number given for a float compares equal)."""
    if isinstance(decoded, msgspec.Struct):
        return all(_same(v, getattr(decoded, k)) for k, v in given_value.items())  # type: ignore[attr-defined]
    if isinstance(decoded, list):
        return len(decoded) == len(given_value) and all(  # type: ignore[arg-type]
            _same(a, b) for a, b in zip(given_value, decoded, strict=True))  # type: ignore[call-overload]
    return given_value == decoded


@pytest.mark.parametrize(("kind", "message"), MESSAGE_TYPES, ids=IDS)
@given(data=st.data())
def test_every_message_of_every_kind_decodes_what_its_schema_allows_and_round_trips(kind, message, data):
    body = data.draw(payloads(message, ts=IN_WINDOW))
    raw = encode(body)
    assume(len(raw) <= 16_384)  # the size limit is its own property below
    reading = decode_message(f"safety/v1/wanli/{kind}/DEV-1/{message.CLASS.value}", raw, NOW, KINDS)
    assert type(reading.message) is message and reading.kind == kind
    assert all(_same(v, getattr(reading.message, k)) for k, v in body.items() if k != "type")
    assert round_trip(reading.message) == reading.message
    # What it becomes in the time series is one line of line protocol per point, whatever its strings hold.
    lines = line_protocol(points_of(reading))
    assert all("\n" not in line for line in lines) and len(lines) == len(points_of(reading))
    # The spool's lines built straight from the reading (the hot path) are the points' lines, byte for byte.
    assert encode_readings([reading]) == (encode_bytes(points_of(reading)), [p.ts_ms for p in points_of(reading)])


@pytest.mark.parametrize("kind", sorted(KINDS))
@given(data=st.data())
def test_mutated_payloads_decode_or_are_rejected_with_a_documented_reason(kind, data):
    message: type[Message] = data.draw(st.sampled_from([m for k, m in MESSAGE_TYPES if k == kind]))
    raw = data.draw(mutated(encode(data.draw(payloads(message, ts=IN_WINDOW)))))
    # Invalid UTF-8 has its own (failing) property below; here the bytes stay hostile but UTF-8.
    raw = raw.decode("utf-8", "replace").encode()
    cls = data.draw(st.sampled_from([message.CLASS, *MessageClass]))
    try:
        reading = decode_message(f"safety/v1/wanli/{kind}/DEV-1/{cls.value}", raw, NOW, KINDS)
    except RejectedMessage as exc:
        assert isinstance(exc, PayloadError | TopicError)
        assert exc.reason in DECODE_REASONS, exc
        assert exc.device_id == "DEV-1" and str(exc)
        return
    assert reading.message.CLASS is cls and reading.type in KINDS[kind].message_types(cls)


INVALID_UTF8 = st.sampled_from([b"\x80", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"])


@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_invalid_utf8_inside_a_string_is_rejected_as_bad_utf8(kind, data):
    message: type[Message] = data.draw(st.sampled_from([m for k, m in MESSAGE_TYPES if k == kind]))
    raw = encode(data.draw(payloads(message, ts=IN_WINDOW)))
    at = raw.index(b'"type": "') + len(b'"type": "')  # inside the first string value
    raw = raw[:at] + data.draw(INVALID_UTF8) + raw[at:]
    with pytest.raises(PayloadError) as caught:
        decode_message(f"safety/v1/wanli/{kind}/DEV-1/{message.CLASS.value}", raw, NOW, KINDS)
    assert caught.value.reason == "bad_utf8" and caught.value.device_id == "DEV-1"


@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_invalid_utf8_in_a_field_the_contract_ignores_is_rejected_as_bad_utf8(kind, data):
    message: type[Message] = data.draw(st.sampled_from([m for k, m in MESSAGE_TYPES if k == kind]))
    raw = encode(data.draw(payloads(message, ts=IN_WINDOW)))
    assume(len(raw) < 16_000)
    decode_message(f"safety/v1/wanli/{kind}/DEV-1/{message.CLASS.value}", raw, NOW, KINDS)  # valid as it is
    raw = raw[:-1] + b', "firmware_note": "' + data.draw(INVALID_UTF8) + b'"}'
    with pytest.raises(PayloadError) as caught:
        decode_message(f"safety/v1/wanli/{kind}/DEV-1/{message.CLASS.value}", raw, NOW, KINDS)
    assert caught.value.reason == "bad_utf8" and caught.value.device_id == "DEV-1"


@given(st.binary(max_size=64), st.integers(16_385, 200_000))
def test_anything_over_the_size_limit_is_refused_as_oversized_before_parsing(head, size):
    raw = head + b"x" * (size - len(head))  # valid JSON or not, it is never parsed
    with pytest.raises(PayloadError) as caught:
        decode_message("safety/v1/wanli/smoke_detector/SD-1/event", raw, NOW, KINDS)
    assert caught.value.reason == "oversized"


@pytest.mark.parametrize(("opener", "depth", "closer"),
                         [(b"[", 33, b"]"), (b"[", 2_000, b"]"), (b"[", 8_000, b"]"), (b"[", 8_150, b"]"),
                          (b'{"a":', 33, b"}"), (b'{"a":', 2_700, b"}"), (b'["",{"":', 1_500, b"}]")])
def test_deeply_nested_json_under_the_size_limit_is_rejected_as_too_deep_not_a_recursion_error(opener, depth, closer):
    raw = b'{"v":1,"ts":%d,"seq":1,"type":"alarm","x":%s}' % (NOW, opener * depth + b"1" + closer * depth)
    assert len(raw) <= 16_384
    with pytest.raises(PayloadError) as caught:
        decode_message("safety/v1/wanli/smoke_detector/SD-1/event", raw, NOW, KINDS)
    assert (caught.value.reason, caught.value.device_id) == ("too_deep", "SD-1")


def test_the_decoder_itself_turns_a_recursion_error_into_too_deep():
    """The last line behind the depth check: a kind's decoder given the nesting directly."""
    raw = b'{"v":1,"ts":%d,"seq":1,"type":"alarm","x":%s}' % (NOW, b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(PayloadError) as caught:
        KINDS["smoke_detector"].decode(MessageClass.EVENT, raw)
    assert caught.value.reason == "too_deep"


@pytest.mark.parametrize("depth", [1, 10, 32])
def test_nesting_up_to_the_limit_in_an_ignored_field_is_accepted(depth):
    raw = b'{"v":1,"ts":%d,"seq":1,"type":"alarm","x":%s}' % (NOW, b"[" * (depth - 1) + b"1" + b"]" * (depth - 1))
    assert decode_message("safety/v1/wanli/smoke_detector/SD-1/event", raw, NOW, KINDS).type == "alarm"


# --- the CSV importer ---------------------------------------------------------------------

HIERARCHY = load_hierarchy()
BUILDINGS = sorted(HIERARCHY.buildings.values(), key=lambda b: b.id)
LABEL = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=60)


@st.composite
def device_rows(draw: st.DrawFn) -> list[DeviceRecord]:
    ids = draw(st.lists(DEVICE.filter(lambda d: not d.casefold().startswith("wanli-")),  # reserved: a bad row below
                        min_size=1, max_size=20, unique_by=str.lower))
    out = []
    for device_id in ids:
        b = draw(st.sampled_from(BUILDINGS))
        floor = draw(st.none() | st.integers(1, b.floors) | st.integers(-5, -1))
        unit = draw(st.from_regex(r"[0-9A-Za-z-]{0,16}", fullmatch=True))
        out.append(DeviceRecord(device_id, draw(st.sampled_from(sorted(KINDS))), "wanli", b.id, floor, unit,
                                draw(LABEL).strip()))
    return out


GARBAGE_ROWS = st.sampled_from([
    ["BAD ID", "smoke_detector", "xq-01", "1", "", ""],  # not a device id
    ["SD-GARBAGE", "toaster", "xq-01", "1", "", ""],  # unknown kind
    ["SD-GARBAGE", "smoke_detector", "nowhere", "1", "", ""],  # unknown building
    ["SD-GARBAGE", "smoke_detector", "xq-01", "ninety", "", ""],  # floor not a number
    ["SD-GARBAGE", "smoke_detector", "xq-01", "999", "", ""],  # floor outside the building
    ["SD-GARBAGE", "smoke_detector", "xq-01"],  # too few columns
    ["SD-GARBAGE", "smoke_detector", "xq-01", "1", "", "", "extra"],  # too many
    ["SD-GARBAGE", "smoke_detector", "xq-01", "1", "", "x" * 1001],  # a field too long
    ["wanli-ingest-dispatch", "smoke_detector", "xq-01", "1", "", ""],  # the service's own MQTT account
    ["WANLI-Canary", "smoke_detector", "xq-01", "1", "", ""],  # any id under the service's prefix, in any case
])


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(rows=device_rows(), garbage=st.lists(st.tuples(st.integers(0, 20), GARBAGE_ROWS), max_size=5))
def test_csv_import_lands_every_good_row_exactly_reports_every_bad_one_and_round_trips(rows, garbage):
    cells = [[r.device_id, r.kind, r.building_id, "" if r.floor is None else str(r.floor), r.unit, r.label]
             for r in rows]
    for position, bad in sorted(garbage, reverse=True):
        cells.insert(min(position, len(cells)), ["__bad__", *bad])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["device_id", "kind", "building_id", "floor", "unit", "label"])
    writer.writerows(row[1:] if row[0] == "__bad__" else row for row in cells)
    # The line each record ends on, as a spreadsheet counts (a quoted label may span lines).
    reader = csv.reader(io.StringIO(out.getvalue(), newline=""))
    next(reader)
    ends = [reader.line_num for _ in reader]
    bad_lines = [end for end, row in zip(ends, cells, strict=True) if row[0] == "__bad__"]

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/r.db")
        create_schema(engine)
        try:
            registry = DeviceRegistry(engine, HIERARCHY)
            report = import_csv(registry, io.StringIO(out.getvalue(), newline=""), actor="hypothesis", now_ms=NOW)
            assert report.created == len(rows)
            assert len(report.rejected) == len(garbage)
            assert [e.line for e in report.rejected] == bad_lines
            for r in rows:  # what was written is what the registry holds
                got = registry.get(r.device_id)
                assert (got.kind, got.building_id, got.floor, got.unit, got.label) == (
                    r.kind, r.building_id, r.floor, r.unit, r.label)
            again = import_csv(registry, io.StringIO(out.getvalue(), newline=""), actor="hypothesis", now_ms=NOW + 1)
            assert (again.created, again.unchanged) == (0, len(rows))  # re-importing changes nothing
        finally:
            engine.dispose()


@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_any_text_as_a_csv_file_gives_rows_or_row_errors_or_invalid_and_nothing_else(text):
    try:
        for line, item in parse_rows(io.StringIO(text, newline=""), "wanli"):
            assert line >= 2 and isinstance(item, DeviceRecord | RowError)
            if isinstance(item, RowError):
                assert item.reason and item.line == line
    except Invalid as exc:
        assert str(exc)
