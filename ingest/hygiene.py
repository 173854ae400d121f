"""Message hygiene: the device's clock and the server's.

Hygiene *flags* an alarm; it never discards one. A device whose clock reset (8 days behind)
or runs ahead still gets its smoke alarm evaluated: an event (``MessageClass.EVENT``) that
fails the clock check goes on with the server's time of receipt in place of its own, and
carries a flag in words that the incident shows ("设备时钟偏差 8.0 天"). Telemetry and status
messages with an impossible time are still refused (``ts_past`` / ``ts_future``): a
heartbeat stamped last week is no news, and it must not write last week's point.

The server's clock can be the wrong one. ``ClockSkew`` watches the offset between device
time and receipt time over the last devices heard from; when most devices agree that the
server is off (their median offset is past ``alert_ms``), the service raises a system
incident ("the server's clock disagrees with most devices"); when the devices are *ahead*
(the server is behind, and their telemetry would be refused as ``ts_future``),
``offset_ms`` says by how much and the clock check measures every device against the
corrected time. ``check_clock`` is pure; ``ClockSkew`` is written by ingest and read by the
system health probe's thread, so its table is read and written under its own lock (a leaf).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace as dc_replace

import msgspec
import numpy as np

from devices.reading import Reading
from devices.topics import MessageClass
from ingest.decode import DAY_MS, DecodeLimits
from foundation.errors import PayloadError


def clock_flag(off_ms: int) -> str:
    """Words for a device clock off by ``off_ms`` (positive: ahead), for the incident and the device's health."""
    size = abs(off_ms)
    amount = f"{size / DAY_MS:.1f} 天" if size >= DAY_MS else f"{size / 60_000:.0f} 分钟"
    way = "超前" if off_ms > 0 else "落后"
    return f"设备时钟{way} {amount}（device clock {'ahead' if off_ms > 0 else 'behind'} by {_english(size)}）"


def _english(size_ms: int) -> str:
    return f"{size_ms / DAY_MS:.1f} days" if size_ms >= DAY_MS else f"{size_ms / 60_000:.0f} min"


def check_clock(reading: Reading, limits: DecodeLimits, server_offset_ms: int = 0) -> Reading:
    """The reading as ingest should take it, or ``PayloadError`` (``ts_past``/``ts_future``) for telemetry.

    ``server_offset_ms``: how far the server's clock is behind what most devices say (``ClockSkew``);
    devices are judged against the corrected time.
    """
    now = reading.received_ms + server_offset_ms
    ts = reading.message.ts
    if ts > now + limits.max_future_ms:
        reason, text = "ts_future", f"timestamp {ts} is {(ts - now) / 1000:.0f} s in the future"
    elif ts < now - limits.max_past_ms:
        reason, text = "ts_past", f"timestamp {ts} is {(now - ts) / DAY_MS:.1f} days in the past"
    else:
        return reading
    if reading.msg_class is not MessageClass.EVENT:
        raise PayloadError(text, device_id=reading.device_id, reason=reason)
    # An alarm from a device with a broken clock: evaluated now, at the time it arrived.
    message = msgspec.structs.replace(reading.message, ts=now)
    return dc_replace(reading, message=message, flags=(*reading.flags, clock_flag(ts - now)))


class ClockSkew:
    """The server's clock against the devices': the median offset over the last ``devices`` heard from.

    One sample per device, so one device with a broken clock moves nothing; an offset past
    ``PLAUSIBLE_MS`` is a broken (or hostile) device clock and is not a sample at all.
    Telemetry and ``online`` only: an event may have waited in a buffer, a last will was
    stamped when its connection opened. Only ``online`` (stamped the moment it is sent) can
    say a device is *behind*; other telemetry may come from a buffer, so it counts only as
    evidence of a device ahead. A device's sample is its last ``online``'s offset, or the
    largest offset its telemetry showed within ``window_ms`` since.
    """

    PLAUSIBLE_MS = 6 * 3_600_000  # a server clock off by more than this is not what this corrects

    def __init__(self, devices: int = 500, min_devices: int = 20, alert_ms: int = 120_000,
                 window_ms: int = 120_000) -> None:
        self._offsets: OrderedDict[str, tuple[int, int]] = OrderedDict()  # device → (largest offset, since)
        self._lock = threading.Lock()  # ingest writes, the health probe's thread reads the median
        self._size = devices
        self.min_devices = min_devices
        self.alert_ms = alert_ms
        self.window_ms = window_ms

    def observe(self, device_id: str, device_ts_ms: int, received_ms: int, live: bool = False) -> None:
        """``live``: stamped the moment it was sent (an ``online``). Other telemetry may come from a buffer
        (stamped hours ago, legitimately): it counts only as evidence of a device *ahead* of the server."""
        offset = device_ts_ms - received_ms
        if abs(offset) > self.PLAUSIBLE_MS:
            return  # a broken device clock (or a hostile one), not evidence about the server's
        with self._lock:
            offsets = self._offsets
            held = offsets.get(device_id)
            if live or held is None or received_ms - held[1] >= self.window_ms:
                sample = offset if live else max(offset, 0)
                offsets[device_id] = (sample, received_ms)
            elif offset > held[0]:
                offsets[device_id] = (offset, held[1])
            offsets.move_to_end(device_id)
            if len(offsets) > self._size:
                offsets.popitem(last=False)

    def observe_many(self, samples: Iterable[tuple[str, int, int, bool]]) -> None:
        """``observe(device_id, device_ts_ms, received_ms, live)`` for each sample in order, the lock taken once
        (ingest's batch: what it saw of the devices' clocks, after the batch's messages were judged against
        ``offset_ms``, which it read before them)."""
        plausible, window_ms, size = self.PLAUSIBLE_MS, self.window_ms, self._size
        with self._lock:
            offsets = self._offsets
            for device_id, device_ts_ms, received_ms, live in samples:
                offset = device_ts_ms - received_ms
                if abs(offset) > plausible:
                    continue
                held = offsets.get(device_id)
                if live or held is None or received_ms - held[1] >= window_ms:
                    offsets[device_id] = (offset if live else max(offset, 0), received_ms)
                elif offset > held[0]:
                    offsets[device_id] = (offset, held[1])
                offsets.move_to_end(device_id)
                if len(offsets) > size:
                    offsets.popitem(last=False)

    @property
    def median_ms(self) -> int | None:
        """The devices' median offset (positive: they are ahead of the server), or None with too few devices."""
        with self._lock:
            samples = [o for o, _ in self._offsets.values()]
        if len(samples) < self.min_devices:
            return None
        return int(np.median(np.array(samples, np.int64)))

    @property
    def offset_ms(self) -> int:
        """How far to correct the server's clock when judging devices: the median, once the devices are more than
        ``alert_ms`` *ahead* (a server behind refuses their telemetry as ``ts_future``). A server ahead refuses
        nothing for 7 days' tolerance, so it is only reported, never corrected: a correction must never be
        pulled by readings that are merely old."""
        median = self.median_ms
        return median if median is not None and median >= self.alert_ms else 0

    @property
    def devices(self) -> int:
        return len(self._offsets)
