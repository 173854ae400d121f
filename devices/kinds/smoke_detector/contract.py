"""Independent smoke detector (独立式感烟火灾探测报警器, GB 20517), NB-IoT / 4G / LoRa.

Alarms come as events; a heartbeat (battery, signal, optional smoke density and
temperature) comes as telemetry every few hours on real devices.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from devices.messages import Celsius, Dbm, DeviceKind, Message, NonNegative, Percent, ShortText
from devices.topics import MessageClass

SmokeDensity = Annotated[float, msgspec.Meta(ge=0, le=100)]  # dB/m obscuration, as GB 20517 states it


class Heartbeat(Message, tag="heartbeat"):
    CLASS = MessageClass.TELEMETRY
    battery_pct: Percent
    rssi_dbm: Dbm
    smoke_density: SmokeDensity | None = None
    temperature_c: Celsius | None = None


class Alarm(Message, tag="alarm"):
    """Smoke over the alarm threshold: the detector is sounding."""

    CLASS = MessageClass.EVENT
    smoke_density: SmokeDensity | None = None
    temperature_c: Celsius | None = None


class AlarmCleared(Message, tag="alarm_cleared"):
    CLASS = MessageClass.EVENT
    smoke_density: SmokeDensity | None = None


class Fault(Message, tag="fault"):
    CLASS = MessageClass.EVENT
    code: ShortText
    detail: ShortText = ""


class LowBattery(Message, tag="low_battery"):
    CLASS = MessageClass.EVENT
    battery_pct: Percent


class Tamper(Message, tag="tamper"):
    """Removed from (or put back on) its mounting base."""

    CLASS = MessageClass.EVENT
    state: Literal["removed", "restored"]

    def tampered(self) -> bool | None:
        return self.state == "removed"


class SelfTest(Message, tag="self_test"):
    CLASS = MessageClass.EVENT
    result: Literal["pass", "fail"]


class Silenced(Message, tag="silenced"):
    """A resident pressed mute while the detector was sounding."""

    CLASS = MessageClass.EVENT
    duration_s: NonNegative = 0


KIND = DeviceKind(
    name="smoke_detector",
    label_zh="烟感探测器",
    messages=(Heartbeat, Alarm, AlarmCleared, Fault, LowBattery, Tamper, SelfTest, Silenced),
    heartbeat_s=4 * 3600,
)
