"""Inspection reports from people (随手拍): grid patrollers and rider volunteers.

The "device" is the reporter's app account; its id stands in the topic like a device's.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from devices.messages import DeviceKind, LongText, Message, ShortText
from devices.topics import MessageClass

HazardCategory = Literal[
    "corridor_clutter",  # 楼道堆物
    "flying_wire_charging",  # 飞线充电
    "fire_lane_blocked",  # 消防通道占用
    "ebike_indoors",  # 电动车进楼入户
    "extinguisher_missing",  # 灭火器缺失
    "extinguisher_expired",  # 灭火器过期
    "manhole_damaged",  # 井盖破损
    "other",
]
PhotoRef = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class HazardReport(Message, tag="hazard_report"):
    CLASS = MessageClass.EVENT
    report_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    category: HazardCategory
    community: ShortText = ""
    building: ShortText = ""
    location: ShortText = ""
    photos: Annotated[list[PhotoRef], msgspec.Meta(max_length=20)] = []
    reporter: ShortText = ""
    note: LongText = ""


KIND = DeviceKind(
    name="inspection_report",
    label_zh="巡查上报",
    messages=(HazardReport,),
)
