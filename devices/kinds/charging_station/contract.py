"""E-bike charging station (电动自行车集中充电设施): one station, many ports, usually in a shed.

A station publishes one telemetry snapshot of itself and all its ports; each port becomes
its own time-series point tagged with its port number, so a port's temperature curve can
be read on its own.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from devices.messages import Celsius, Count, DeviceKind, Message, NonNegative, Point, ShortText, scalar_fields
from devices.topics import MessageClass

PortNumber = Annotated[int, msgspec.Meta(ge=1, le=256)]
PortState = Literal["idle", "charging", "full", "fault"]


class Port(msgspec.Struct, kw_only=True, frozen=True):
    port: PortNumber
    state: PortState
    voltage_v: NonNegative = 0.0
    current_a: NonNegative = 0.0
    power_w: NonNegative = 0.0
    energy_wh: NonNegative = 0.0
    temperature_c: Celsius | None = None
    session_s: Count = 0


class StationStatus(Message, tag="station_status"):
    CLASS = MessageClass.TELEMETRY
    ambient_temp_c: Celsius | None = None
    smoke: bool = False
    mains_power: bool = True
    ports: Annotated[list[Port], msgspec.Meta(max_length=256)] = []

    def points(self) -> list[Point]:
        station = scalar_fields(self)
        station["port_count"] = len(self.ports)
        out: list[Point] = [({}, station)]
        for p in self.ports:
            fields = scalar_fields(p, skip=frozenset({"port"}))
            fields["seq"] = self.seq
            out.append(({"port": str(p.port)}, fields))
        return out


_PORT_SKIP = frozenset({"v", "ts", "port"})


def _port_points(msg: Overcurrent | PortFault | SessionStarted | SessionEnded) -> list[Point]:
    """A port's event: one point tagged with its port, like the snapshot's per-port points.

    As a field, two ports' events in one millisecond (two bikes plugged in at once) would be
    one series and time, and InfluxDB would keep only the last of them.
    """
    return [({"port": str(msg.port)}, scalar_fields(msg, skip=_PORT_SKIP))]


class SmokeDetected(Message, tag="smoke_detected"):
    """The station's own smoke sensor in the shed."""

    CLASS = MessageClass.EVENT
    level: NonNegative | None = None


class SmokeCleared(Message, tag="smoke_cleared"):
    CLASS = MessageClass.EVENT


class PowerLost(Message, tag="power_lost"):
    CLASS = MessageClass.EVENT


class PowerRestored(Message, tag="power_restored"):
    CLASS = MessageClass.EVENT


class Overcurrent(Message, tag="overcurrent"):
    CLASS = MessageClass.EVENT
    port: PortNumber
    current_a: NonNegative
    points = _port_points


class PortFault(Message, tag="port_fault"):
    CLASS = MessageClass.EVENT
    port: PortNumber
    code: ShortText
    points = _port_points


class SessionStarted(Message, tag="session_started"):
    CLASS = MessageClass.EVENT
    port: PortNumber
    points = _port_points


class SessionEnded(Message, tag="session_ended"):
    CLASS = MessageClass.EVENT
    port: PortNumber
    energy_wh: NonNegative
    duration_s: Count
    reason: Literal["full", "unplugged", "timeout", "fault", "remote_stop"]
    points = _port_points


KIND = DeviceKind(
    name="charging_station",
    label_zh="电动车充电桩",
    messages=(StationStatus, SmokeDetected, SmokeCleared, PowerLost, PowerRestored, Overcurrent, PortFault,
              SessionStarted, SessionEnded),
    heartbeat_s=60,
)
