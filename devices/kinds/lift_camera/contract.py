"""Lift e-bike camera (电梯阻车): AI camera that spots an e-bike being wheeled into a lift."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from devices.messages import DeviceKind, Message, ShortText
from devices.topics import MessageClass

Confidence = Annotated[float, msgspec.Meta(ge=0, le=1)]


class EbikeDetected(Message, tag="ebike_detected"):
    CLASS = MessageClass.EVENT
    confidence: Confidence
    lift: ShortText = ""  # which lift car of the building
    action: Literal["door_held", "alarm_sounded", "none"] = "door_held"  # what the lift did to stop it
    snapshot: Annotated[str, msgspec.Meta(max_length=300)] = ""


class Heartbeat(Message, tag="heartbeat"):
    CLASS = MessageClass.TELEMETRY
    detections_today: int = 0


KIND = DeviceKind(name="lift_camera", label_zh="电梯阻车摄像头", messages=(EbikeDetected, Heartbeat), heartbeat_s=600)
