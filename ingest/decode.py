"""From raw MQTT bytes to a ``Reading``, or a ``RejectedMessage`` saying exactly why not. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from devices.messages import DeviceKind
from devices.reading import Reading
from devices.topics import TopicAddress, device_id_of_topic, parse_topic
from foundation.errors import PayloadError, TopicError

if TYPE_CHECKING:
    from devices.registry import DeviceRecord

MINUTE_MS = 60_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_payload_bytes: int = 16_384
    max_future_ms: int = 5 * MINUTE_MS  # device clocks drift; more than this is a broken clock
    max_past_ms: int = 7 * DAY_MS  # devices buffer while offline; older than this is a replay or a reset clock
    max_depth: int = 32  # arrays and objects inside each other; the deepest schema needs 3


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')  # all but quotes and brackets
_DEPTH_STEP = np.zeros(256, np.int32)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1


def nesting_depth(payload: bytes) -> int:
    """How deep arrays and objects nest in ``payload`` (brackets inside strings do not count).

    In C throughout: escaped backslashes and quotes are cut out (JSON has backslashes only
    inside strings), then everything but quotes and brackets; of what remains, every other
    piece between quotes is a string's inside and is dropped; the running sum of openings
    minus closings over the brackets left is the depth. A payload that is not JSON gets
    some number; only the decoder says whether it is JSON.
    """
    if b"\\" in payload:
        payload = payload.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = payload.translate(None, _NOT_STRUCTURE)
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    return int(np.cumsum(_DEPTH_STEP[np.frombuffer(structure, np.uint8)]).max(initial=0))


def _too_deep(payload: bytes, limit: int) -> bool:
    # Cheap first: a payload with no more openings than the limit cannot nest deeper than it.
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return False
    return nesting_depth(payload) > limit


def _invalid_utf8(payload: bytes) -> UnicodeDecodeError | None:
    """Why ``payload`` is not UTF-8, or None. The decoder skips fields the contract ignores unread, so
    the whole payload is checked here: bytes that are not text must not pass through in any field."""
    if payload.isascii():
        return None
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc
    return None


def decode_message(
    topic: str,
    payload: bytes,
    received_ms: int,
    kinds: Mapping[str, DeviceKind],
    limits: DecodeLimits = DecodeLimits(),
    registered: Callable[[TopicAddress, str], DeviceRecord] | None = None,
) -> Reading:
    """The message as a ``Reading``, or a ``RejectedMessage`` saying what is wrong with it.

    ``registered``: ingest's check that the device is registered as what it publishes as (raises
    ``UnregisteredDevice`` else), asked with the topic's address once the message itself is valid (a bad
    message is refused for what is wrong with it first); the registration it returns travels on the
    reading (``Reading.registration``): the message's one registry lookup.
    """
    try:
        addr = parse_topic(topic)
    except TopicError as exc:
        exc.device_id = device_id_of_topic(topic)
        raise
    kind = kinds.get(addr.kind)
    if kind is None:
        raise TopicError(f"unknown device kind {addr.kind!r}; known: {', '.join(sorted(kinds))}",
                         topic=topic, device_id=addr.device_id, reason="unknown_kind")
    if len(payload) > limits.max_payload_bytes:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}",
                           topic=topic, device_id=addr.device_id, reason="oversized")
    # the cheap tests first, here (a call each saved on the hot path): ASCII is UTF-8, and a payload with no more
    # openings than the limit cannot nest deeper than it
    if not payload.isascii() and (bad := _invalid_utf8(payload)) is not None:
        raise PayloadError(f"not valid UTF-8: byte {payload[bad.start]:#04x} at offset {bad.start} ({bad.reason})",
                           topic=topic, device_id=addr.device_id, reason="bad_utf8")
    if payload.count(b"[") + payload.count(b"{") > limits.max_depth and _too_deep(payload, limits.max_depth):
        raise PayloadError(f"JSON nested deeper than {limits.max_depth} levels",
                           topic=topic, device_id=addr.device_id, reason="too_deep")
    try:
        msg = kind.decode(addr.msg_class, payload)
    except PayloadError as exc:
        exc.topic, exc.device_id = topic, addr.device_id
        raise
    # The device's clock is judged after the sequence (ingest/hygiene.py): an alarm is flagged, not refused.
    registration = None if registered is None else registered(addr, topic)
    return Reading(addr.street, addr.kind, addr.device_id, addr.msg_class, msg, received_ms, (), registration)
