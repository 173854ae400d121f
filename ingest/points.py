"""A time-series point, independent of any store: what the spool keeps and every store writes.

One accepted message becomes one point (a charging snapshot: one for the station and one
per port). The measurement is the device kind; tags say whose and what (street, device,
message type and class, and ``port``); fields are the message's scalar values and ``seq``;
the time is the device's own, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from devices.messages import Scalar
from devices.reading import Reading


class TelemetryPoint(msgspec.Struct, array_like=True, frozen=True):
    measurement: str
    tags: dict[str, str]
    fields: dict[str, Scalar]
    ts_ms: int


def points_of(reading: Reading) -> list[TelemetryPoint]:
    base = {"street": reading.street, "device": reading.device_id, "type": reading.type, "class": reading.msg_class.value}
    return [
        TelemetryPoint(reading.kind, {**base, **extra} if extra else base, fields, reading.ts_ms)
        for extra, fields in reading.message.points()
        if fields
    ]


def points_of_all(readings: Iterable[Reading]) -> list[TelemetryPoint]:
    out: list[TelemetryPoint] = []
    for r in readings:
        out.extend(points_of(r))
    return out


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[TelemetryPoint])


def pack(points: list[TelemetryPoint]) -> bytes:
    return _ENCODER.encode(points)


def unpack(blob: bytes) -> list[TelemetryPoint]:
    return _DECODER.decode(blob)
