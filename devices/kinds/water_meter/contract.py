"""Smart water meter (智能水表) in the home of an elderly person living alone.

Almost no water used over 12 hours is a sign that something may be wrong: the alert engine
turns it into a welfare check.
"""

from __future__ import annotations

from devices.messages import Count, DeviceKind, IsoDate, Message, NonNegative, Percent
from devices.topics import MessageClass


class Reading(Message, tag="reading"):
    """Cumulative meter reading and the usage since the previous one."""

    CLASS = MessageClass.TELEMETRY
    total_l: NonNegative
    interval_l: NonNegative
    interval_s: Count
    battery_pct: Percent | None = None


class DailyUsage(Message, tag="daily_usage"):
    CLASS = MessageClass.TELEMETRY
    date: IsoDate
    litres: NonNegative


class Leak(Message, tag="leak"):
    """Continuous flow for a long time: a tap left running, or a burst pipe."""

    CLASS = MessageClass.EVENT
    flow_l_per_min: NonNegative
    duration_s: Count


KIND = DeviceKind(name="water_meter", label_zh="智能水表", messages=(Reading, DailyUsage, Leak), heartbeat_s=3600)
