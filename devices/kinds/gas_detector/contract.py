"""Combustible-gas detector (家用可燃气体探测器, GB 15322.2), in the kitchens of old estates.

It measures the gas in the kitchen's air as a percentage of the lower explosive limit (%LEL:
100 % LEL is the leanest mixture that burns; for natural gas about 5 % by volume). It sounds at
its own set points, a *low* alarm first (GB 15322.2: at most 25 % LEL) and, on detectors with two
levels, a *high* one, and on alarm it drives the kitchen's gas shut-off valve (燃气紧急切断阀,
a solenoid on the supply pipe) and reports what the valve did: that feedback is how the street
knows the gas is off. Mains-powered with a back-up cell on most models; a sensor lasts about
five years, and a detector past its sensor's life reports a fault.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from devices.messages import Dbm, DeviceKind, Message, Percent, ShortText
from devices.topics import MessageClass

Lel = Annotated[float, msgspec.Meta(ge=0, le=100)]  # % of the lower explosive limit
ValveState = Literal["open", "closed", "failed", "none"]  # none: no valve fitted to this detector


class Heartbeat(Message, tag="heartbeat"):
    """Every half hour: the gas now, the valve's position, the link."""

    CLASS = MessageClass.TELEMETRY
    lel_pct: Lel
    valve: ValveState = "none"
    rssi_dbm: Dbm | None = None
    battery_pct: Percent | None = None  # the back-up cell, on models that have one


class GasAlarm(Message, tag="gas_alarm"):
    """Gas over one of the detector's set points: it is sounding (and, fitted with one, shutting its valve)."""

    CLASS = MessageClass.EVENT
    level: Literal["low", "high"]
    lel_pct: Lel


class GasCleared(Message, tag="gas_cleared"):
    """Back under the low set point."""

    CLASS = MessageClass.EVENT
    lel_pct: Lel


class Valve(Message, tag="valve"):
    """What the shut-off valve did, and why: its feedback contact, not the command sent to it."""

    CLASS = MessageClass.EVENT
    state: Literal["closed", "open", "failed"]  # failed: commanded to close, the feedback says it did not
    cause: Literal["alarm", "manual", "remote", "test"] = "alarm"


class Fault(Message, tag="fault"):
    """The detector cannot measure: sensor failure, sensor past its service life, power."""

    CLASS = MessageClass.EVENT
    code: ShortText
    detail: ShortText = ""


KIND = DeviceKind(
    name="gas_detector",
    label_zh="可燃气体探测器",
    messages=(Heartbeat, GasAlarm, GasCleared, Valve, Fault),
    heartbeat_s=1800,
)
