"""Micro fire station duty terminal (微型消防站): who is on duty, equipment, and dispatch handling.

Dispatch steps (acknowledge, depart, on scene, finished) carry the dispatch id the alert
engine sent; their device timestamps measure the 1-minute / 3-minute rule.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from devices.messages import Count, DeviceKind, DispatchAnswer, IsoDate, Message, ShortText
from devices.topics import MessageClass

class DutyStatus(Message, tag="duty_status"):
    CLASS = MessageClass.TELEMETRY
    staff_on_duty: Count
    ready: bool


class EquipmentItem(msgspec.Struct, kw_only=True, frozen=True):
    item: ShortText  # e.g. extinguisher, hose, breathing_set
    status: Literal["ok", "missing", "expired", "damaged"]
    quantity: Count = 1
    expires_on: IsoDate | None = None


class EquipmentCheck(Message, tag="equipment_check"):
    CLASS = MessageClass.EVENT
    items: Annotated[list[EquipmentItem], msgspec.Meta(max_length=200)]
    checked_by: ShortText = ""


class ShiftChange(Message, tag="shift_change"):
    CLASS = MessageClass.EVENT
    staff_on_duty: Count
    leader: ShortText = ""


class DispatchStep(DispatchAnswer):
    """The station's steps answering a dispatch (devices.messages.DispatchAnswer): each moves the incident."""


class DispatchAck(DispatchStep, tag="dispatch_ack"):
    ANSWERS = "acknowledge"
    STEP_ZH = "确认出动"


class DispatchDepart(DispatchStep, tag="dispatch_depart"):
    ANSWERS = "dispatch"
    STEP_ZH = "出发"


class DispatchOnScene(DispatchStep, tag="dispatch_on_scene"):
    ANSWERS = "arrive"
    STEP_ZH = "到达现场"


class DispatchFinished(DispatchStep, tag="dispatch_finished"):
    ANSWERS = "resolve"
    STEP_ZH = "处置完毕"
    outcome: ShortText = ""


KIND = DeviceKind(
    name="fire_station",
    label_zh="微型消防站",
    messages=(DutyStatus, EquipmentCheck, ShiftChange, DispatchAck, DispatchDepart, DispatchOnScene, DispatchFinished),
    heartbeat_s=300,
)
