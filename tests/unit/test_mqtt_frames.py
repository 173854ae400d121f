"""The bulk frame parser of the bulk receiver and ``wanli bench receive`` (ingest/mqtt_frames.py): a byte stream of MQTT 5 packets,
cut anywhere, comes out as exactly the packets written into it, in order. The packets are written by the
``mqtt5`` codec itself, so the test checks the cutting and the buffer, not a hand-made encoding."""

from __future__ import annotations

from typing import Any

import mqtt5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.mqtt_frames import FrameBuffer, MalformedFrame

# Remaining lengths of 1, 2 and 3 bytes (a payload of 0, 200 and 20,000 bytes), QoS 0 and 1, a non-ASCII topic,
# and packets other than PUBLISH between them.
MESSAGES: list[tuple[str, bytes, int, int | None]] = [
    ("safety/v1/wanli/smoke_detector/SD-0001/telemetry", b'{"seq":1,"smoke":0}', 1, 1),
    ("safety/v1/wanli/elderly_alarm/EA-0002/telemetry", b"", 0, None),
    ("safety/v1/wanli/charging_station/CS-0003/telemetry", b"x" * 200, 1, 65535),
    ("safety/v1/万里/smoke_detector/SD-0004/telemetry", b"y" * 20_000, 1, 2),
    ("safety/v1/wanli/lift_camera/LC-0005/telemetry", b'{"seq":5}', 0, None),
]


def _stream() -> tuple[bytes, list[Any]]:
    """The messages' PUBLISH frames with a SUBACK first and a PINGRESP in the middle; the expected output."""
    parts = [mqtt5.SubAckPacket(1, [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]).write()]
    for i, (topic, payload, qos, pid) in enumerate(MESSAGES):
        parts.append(mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS(qos), packet_id=pid).write())
        if i == 2:
            parts.append(mqtt5.PingRespPacket().write())
    return b"".join(parts), MESSAGES


def _drain(frames: FrameBuffer, pieces: list[bytes]) -> tuple[list[tuple[str, bytes, int, int | None]], list[Any]]:
    publishes: list[tuple[str, bytes, int, int | None]] = []
    others: list[Any] = []
    for piece in pieces:
        frames.feed(piece)
        frames.frames(publishes, others)
    return publishes, others


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_stream_cut_at_any_points_gives_exactly_its_packets_in_order(data: st.DataObject) -> None:
    stream, expected = _stream()
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40), label="cuts"))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    publishes, others = _drain(FrameBuffer(64 * 1024), pieces)

    assert publishes == expected
    assert [type(p) for p in others] == [mqtt5.SubAckPacket, mqtt5.PingRespPacket]


def test_a_frame_is_returned_once_whole_and_not_before() -> None:
    frame = mqtt5.PublishPacket("a/b", b"payload", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=7).write()
    frames = FrameBuffer(1024)
    publishes: list[tuple[str, bytes, int, int | None]] = []
    others: list[Any] = []
    frames.feed(frame[:-1])
    assert frames.frames(publishes, others) == 0
    assert publishes == []
    frames.feed(frame[-1:] + frame)  # its last byte, then a second whole copy
    assert frames.frames(publishes, others) == 2
    assert publishes == [("a/b", b"payload", 1, 7)] * 2


def test_the_buffer_is_reused_after_each_parse() -> None:
    # 1,000 frames of ~60 bytes through a 1 KiB buffer: only possible if consumed bytes are given back.
    frame = mqtt5.PublishPacket("safety/v1/wanli/k/d/telemetry", b'{"seq":1,"v":2}', qos=mqtt5.QoS.AT_LEAST_ONCE,
                                packet_id=9).write()
    publishes, _ = _drain(FrameBuffer(1024), [frame] * 1000)
    assert len(publishes) == 1000


@pytest.mark.parametrize("frame", [
    b"\x36\x03\x00\x01a",  # PUBLISH with QoS 3
    b"\x30\x03\x00\x05a",  # a topic longer than the frame
    b"\x30\x80\x80\x80\x80\x01",  # a remaining length of five bytes
    # QoS 1 without room for its packet id, with a topic that is not UTF-8: the codec panics, and the frame
    # cannot be read by hand either
    pytest.param(b"\x32\x03\x00\x01\xff",
                 marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")),
])
def test_a_malformed_frame_is_refused_not_waited_for(frame: bytes) -> None:
    frames = FrameBuffer(1024)
    frames.feed(frame)
    with pytest.raises(MalformedFrame):
        frames.frames([], [])


def _size_from_header(frame: bytes) -> int | None:
    """MQTT's fixed header read here independently: 1 byte, then the remaining length (7 bits a byte, the high bit
    saying another follows); None while the header is cut."""
    value = 0
    for i, byte in enumerate(frame[1:5]):
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return 2 + i + value
    return None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_parsed_refused_or_held_only_while_incomplete(garbage: bytes) -> None:
    """Whatever arrives, the parser never sits on a frame whose bytes are all there (the stream would stall)."""
    frames = FrameBuffer(1024)
    frames.feed(garbage)
    try:
        frames.frames([], [])
    except MalformedFrame:
        return
    held = frames.held()
    assert garbage.endswith(held)
    if held:
        size = _size_from_header(held)
        assert size is None or size > len(held)


def _bad_topic_publish(qos: int, packet_id: int, payload: bytes) -> bytes:
    """An MQTT 5 PUBLISH whose topic holds a byte that is not UTF-8, written by hand (mqtt5 writes only str topics)."""
    topic = b"safety/v1/wanli/smoke_detector/SD-\xff\xfe/telemetry"
    body = len(topic).to_bytes(2, "big") + topic + (packet_id.to_bytes(2, "big") if qos else b"")
    body += b"\x02\x01\x01" + payload  # properties: 2 bytes (payload format indicator 1)
    return bytes([0x30 | qos << 1]) + bytes([len(body)]) + body


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("qos", [0, 1])
def test_a_topic_that_is_not_utf8_is_passed_on_by_hand_and_the_stream_goes_on(qos: int) -> None:
    """mqtt5 0.8.0 panics on it (pyo3's PanicException, a BaseException, after an "unraisable" UnicodeDecodeError).
    The frame is read by hand instead: its topic with U+FFFD for the bad bytes (ingest dead-letters it, as it does
    paho's), its packet id kept for the acknowledgement, and the frames around it parsed as usual: a poison message
    neither stalls the session nor drops the connection."""
    before = mqtt5.PublishPacket("a/b", b"1", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=4).write()
    after = mqtt5.PublishPacket("a/c", b"3", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=6).write()
    frames = FrameBuffer(1024)
    publishes, others = _drain(frames, [before + _bad_topic_publish(qos, 5, b'{"seq":2}') + after])
    assert publishes == [
        ("a/b", b"1", 1, 4),
        ("safety/v1/wanli/smoke_detector/SD-\ufffd\ufffd/telemetry", b'{"seq":2}', qos, 5 if qos else None),
        ("a/c", b"3", 1, 6),
    ]
    assert others == [] and frames.bad_topics == 1 and frames.held() == b""
