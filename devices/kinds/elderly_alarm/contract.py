"""One-touch alarm for elderly people living alone (一键通).

A press needs a human call-back within about a minute. ``activity`` telemetry (door,
water, motion) lets the alert engine notice a day without any sign of life.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from devices.messages import Count, Dbm, DeviceKind, Message, Percent
from devices.topics import MessageClass


class Heartbeat(Message, tag="heartbeat"):
    CLASS = MessageClass.TELEMETRY
    battery_pct: Percent
    rssi_dbm: Dbm | None = None


class Activity(Message, tag="activity"):
    CLASS = MessageClass.TELEMETRY
    source: Literal["door", "water", "motion", "button"]
    count: Count = 1


class Press(Message, tag="press"):
    CLASS = MessageClass.EVENT


class Cancel(Message, tag="cancel"):
    CLASS = MessageClass.EVENT


class Fall(Message, tag="fall"):
    CLASS = MessageClass.EVENT
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None


class LowBattery(Message, tag="low_battery"):
    CLASS = MessageClass.EVENT
    battery_pct: Percent


KIND = DeviceKind(
    name="elderly_alarm",
    label_zh="一键通",
    messages=(Heartbeat, Activity, Press, Cancel, Fall, LowBattery),
    heartbeat_s=3600,
)
