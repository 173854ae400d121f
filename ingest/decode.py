"""From raw MQTT bytes to a ``Reading``, or a ``RejectedMessage`` saying exactly why not. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devices.messages import DeviceKind
from devices.reading import Reading
from devices.topics import parse_topic
from wanli.errors import PayloadError, TopicError

MINUTE_MS = 60_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_payload_bytes: int = 16_384
    max_future_ms: int = 5 * MINUTE_MS  # device clocks drift; more than this is a broken clock
    max_past_ms: int = 7 * DAY_MS  # devices buffer while offline; older than this is a replay or a reset clock


def decode_message(
    topic: str,
    payload: bytes,
    received_ms: int,
    kinds: Mapping[str, DeviceKind],
    limits: DecodeLimits = DecodeLimits(),
) -> Reading:
    addr = parse_topic(topic)
    kind = kinds.get(addr.kind)
    if kind is None:
        raise TopicError(f"unknown device kind {addr.kind!r}; known: {', '.join(sorted(kinds))}",
                         topic=topic, device_id=addr.device_id, reason="unknown_kind")
    if len(payload) > limits.max_payload_bytes:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}",
                           topic=topic, device_id=addr.device_id, reason="oversized")
    try:
        msg = kind.decode(addr.msg_class, payload)
    except PayloadError as exc:
        exc.topic, exc.device_id = topic, addr.device_id
        raise
    # The device's clock is judged after the sequence (ingest/hygiene.py): an alarm is flagged, not refused.
    return Reading(addr.street, addr.kind, addr.device_id, addr.msg_class, msg, received_ms)
