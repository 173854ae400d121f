"""A lift e-bike camera (电梯阻车): a heartbeat every ten minutes, and e-bikes wheeled in now and then.

Riders try it a few times a week per lift, mostly in the evening; the camera holds the
doors and reports ``ebike_detected`` with its confidence. ``detections_today`` in the
heartbeat resets at local midnight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from devices.topics import MessageClass
from simulators.clock import local_hour, shanghai
from simulators.devices.base import LoadStream, Publication, SimulatedDevice


@dataclass
class LiftCameraSim(SimulatedDevice):
    kind: str = "lift_camera"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "lift_heartbeat": LoadStream(lambda d, t: d.periodic(t)[-1], street_weight=0.08),
        "ebike_in_lift": LoadStream(lambda d, t: d.ebike(t), street_weight=0.0005),
    }
    lift: str = "A"
    attempts_per_day: float = 0.5
    detections_today: int = field(default=0, init=False)
    _day: str = field(default="", init=False, repr=False)
    _last_ms: int | None = field(default=None, init=False, repr=False)

    def periodic(self, at_ms: int) -> list[Publication]:
        out: list[Publication] = []
        day = shanghai(at_ms).date().isoformat()
        if day != self._day:
            self._day, self.detections_today = day, 0
        if self._last_ms is not None:
            evening = 3.0 if 17 <= local_hour(at_ms) < 22 else 0.5
            rate = self.attempts_per_day * evening / 86_400_000 * (at_ms - self._last_ms)
            if self.rng.random() < 1 - math.exp(-rate):
                out.append(self.ebike(at_ms))
        self._last_ms = at_ms
        out.append(self.publication(MessageClass.TELEMETRY, "heartbeat", at_ms, detections_today=self.detections_today))
        return out

    def ebike(self, now_ms: int, confidence: float | None = None) -> Publication:
        self.detections_today += 1
        conf = confidence if confidence is not None else round(self.rng.uniform(0.82, 0.99), 2)
        return self.publication(MessageClass.EVENT, "ebike_detected", now_ms, confidence=conf, lift=self.lift,
                                action="door_held", snapshot=f"s3://lift/{self.device_id}/{self.seq + 1}.jpg")
