"""MQTT 5 packets cut from a byte stream in bulk, by the ``mqtt5`` codec (Rust): no Python call a packet but one.

A receiver reads its socket in large chunks (``recv_into`` the buffer's free space) and asks
``FrameBuffer.frames`` for every complete frame at once; the incomplete tail waits for the next
read. The bulk receiver (ingest/bulk_receiver.py, ``WANLI_INGEST_RECEIVER=bulk``) reads with it,
and ``wanli bench receive`` (tooling/bench_receive.py) measures it against paho.

A PUBLISH whose topic is not UTF-8 makes mqtt5 0.8 panic (pyo3's ``PanicException``, a
``BaseException``). Such a frame is whole (its length is in its fixed header), so it is read by
hand here instead (``_publish_with_bad_topic``): its topic decoded with U+FFFD in place of the bad
bytes, as the paho receiver passes it on, so that ingest dead-letters it (the topic parser refuses
it) and its packet id is acknowledged like any other once ingest said so. Dropping the connection
instead would stall the session: the broker would send the same frame again after every reconnect.
"""

from __future__ import annotations

from typing import Any

import mqtt5

BUFFER_BYTES = 4 << 20  # four times the broker's max_packet_size: a tail always leaves room for a read


class MalformedFrame(ValueError):
    """The byte stream holds a frame the codec cannot read although all its bytes have arrived."""


def _declared_size(view: memoryview) -> int | None:
    """The whole size of the frame starting at ``view[0]`` from its fixed header (1 byte + the remaining length,
    a variable-length integer of 1–4 bytes); None while the header itself is incomplete."""
    multiplier, value = 1, 0
    for i in range(1, min(len(view), 5)):
        byte = view[i]
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return 1 + i + value
        multiplier <<= 7
    if len(view) >= 5:
        raise MalformedFrame("the remaining length of a frame runs past 4 bytes")
    return None


def _variable_int(view: memoryview, pos: int) -> tuple[int, int]:
    """MQTT's variable byte integer at ``pos``: (value, the position after it). MalformedFrame past the view."""
    multiplier, value = 1, 0
    for i in range(4):
        if pos + i >= len(view):
            break
        byte = view[pos + i]
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, pos + i + 1
        multiplier <<= 7
    raise MalformedFrame("a variable byte integer runs past its frame or past 4 bytes")


def _publish_with_bad_topic(frame: memoryview) -> tuple[str, bytes, int, int | None] | None:
    """A whole MQTT 5 PUBLISH frame (QoS 0 or 1) whose topic is not UTF-8, read by hand: (topic with U+FFFD for the
    bad bytes, payload, QoS, packet id). None when the frame is anything else (the caller refuses it)."""
    if len(frame) < 2 or frame[0] >> 4 != 3 or (frame[0] >> 1) & 3 > 1:
        return None
    qos = (frame[0] >> 1) & 3
    try:
        _length, pos = _variable_int(frame, 1)
        if pos + 2 > len(frame):
            return None
        topic_len = int.from_bytes(frame[pos:pos + 2], "big")
        raw_topic = bytes(frame[pos + 2:pos + 2 + topic_len])
        pos += 2 + topic_len
        packet_id = None
        if qos:
            packet_id = int.from_bytes(frame[pos:pos + 2], "big")
            pos += 2
        properties_len, pos = _variable_int(frame, pos)
        pos += properties_len
    except MalformedFrame:
        return None
    if len(raw_topic) != topic_len or pos > len(frame) or (qos and not packet_id):
        return None
    try:
        raw_topic.decode("utf-8")
        return None  # the topic is fine: the codec refused the frame for another reason
    except UnicodeDecodeError:
        pass
    return raw_topic.decode("utf-8", "replace"), bytes(frame[pos:]), qos, packet_id


class FrameBuffer:
    """A byte stream from the broker, cut into MQTT 5 packets in bulk.

    Fill ``space()`` (``sock.recv_into``) and say how much with ``filled(n)``, or ``feed(data)``;
    ``frames()`` parses every complete frame in the buffer with ``mqtt5.read`` and keeps the
    incomplete tail (moved to the front) for the next fill. PUBLISH packets come back as
    (topic, payload, qos, packet id) tuples, every other packet (SUBACK, PINGRESP, DISCONNECT …)
    as the codec's object. A frame the codec cannot read although it is complete raises
    ``MalformedFrame`` (the connection must then be dropped: the stream has lost its framing).
    """

    def __init__(self, size: int = BUFFER_BYTES) -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._end = 0
        self.bad_topics = 0  # PUBLISH frames whose topic was not UTF-8, read by hand (the codec panics on them)

    def space(self) -> memoryview:
        return self._view[self._end:]

    def filled(self, n: int) -> None:
        self._end += n

    def feed(self, data: bytes) -> None:
        if len(data) > len(self._buf) - self._end:
            raise MalformedFrame(f"a frame larger than the buffer ({len(self._buf):,} bytes)")
        self._buf[self._end:self._end + len(data)] = data
        self._end += len(data)

    def held(self) -> bytes:
        """The bytes waiting for the rest of their frame."""
        return bytes(self._view[:self._end])

    def frames(self, publishes: list[tuple[str, bytes, int, int | None]], others: list[Any]) -> int:
        """Append the complete frames' messages to ``publishes`` and other packets to ``others``; how many publishes."""
        read, publish_type = mqtt5.read, mqtt5.PublishPacket
        view, end, pos, count = self._view, self._end, 0, 0
        while pos < end:
            try:
                packet, size = read(view[pos:end])
            except IndexError:  # "Not enough bytes": the frame is cut, unless its header says it is all here
                declared = _declared_size(view[pos:end])
                if declared is not None and declared <= end - pos:
                    raise MalformedFrame(f"a complete frame of {declared} bytes the codec could not read") from None
                break
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - ValueError, and the codec's panic on a topic that is not
                # UTF-8 (mqtt5 0.8.0: pyo3's PanicException, a BaseException, with a Rust backtrace on stderr)
                declared = _declared_size(view[pos:end])
                salvaged = (_publish_with_bad_topic(view[pos:pos + declared])
                            if declared is not None and declared <= end - pos else None)
                if salvaged is None:
                    raise MalformedFrame(f"{type(exc).__name__}: {exc}") from exc
                publishes.append(salvaged)
                self.bad_topics += 1
                count += 1
                pos += declared  # type: ignore[operator]
                continue
            pos += size
            if type(packet) is publish_type:
                publishes.append((packet.topic, packet.payload, int(packet.qos), packet.packet_id))  # QoS 0 is truthy
                count += 1
            else:
                others.append(packet)
        rest = end - pos
        if pos and rest:
            self._buf[:rest] = view[pos:end]  # bytearray copies a memoryview of itself before assigning
        self._end = rest
        if rest >= len(self._buf):
            raise MalformedFrame(f"a frame larger than the buffer ({len(self._buf):,} bytes)")
        return count
