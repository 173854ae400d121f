"""Rules for lift e-bike cameras (电梯阻车): an e-bike wheeled into a lift is on its way into a home.

Detections are a hazard of the building, not of one camera: every lift of the building adds
to the same incident, which counts how often it happens and which cameras saw it. A camera
that stopped reporting no longer keeps e-bikes out of its lift: it is offline
(``CameraOffline``, the shared dead-man timer of ``silence.py``).
"""

from __future__ import annotations

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext
from alerts.rules.silence import DeadMan
from devices.kinds.lift_camera import contract as lc
from devices.reading import Reading

KIND = "lift_camera"
_ACTION_ZH = {"door_held": "电梯已保持开门、阻止运行", "alarm_sounded": "电梯已发出语音报警", "none": "电梯未采取阻止措施"}


class EbikeInLift(Rule):
    """An e-bike wheeled into a lift: a hazard for the building, every lift and camera adding to one incident."""

    kinds = frozenset({KIND})
    messages = (lc.EbikeDetected,)
    THRESHOLDS = {KIND: {"min_confidence": 0.8}}

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if not isinstance(msg, lc.EbikeDetected) or msg.confidence < ctx.threshold(KIND, "min_confidence", dev):
            return []
        place = ctx.place(dev)
        building = place.building_id if place is not None else ""
        lift = f"{msg.lift} 号电梯" if msg.lift else "电梯"
        return [Signal(dev, KIND, "ebike_in_lift", "hazard", Severity.WARNING, "电动车进电梯", reading.ts_ms,
                       f"{building or '未登记楼栋'} {lift}（摄像头 {dev}）检测到电动自行车进入，置信度 {msg.confidence:.0%}；"
                       f"{_ACTION_ZH[msg.action]}。请物业劝离并登记，电动车严禁进楼入户",
                       scope=f"building:{building}" if building else "", members=(dev,))]


class CameraOffline(DeadMan):
    """A lift camera silent for several heartbeats: e-bikes can ride its lift unseen (storms grouped, silence.py)."""

    KIND = KIND
    HEARTBEAT_MS = (lc.KIND.heartbeat_s or 600) * 1000
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 10.0, "storm_window_s": 300.0}}
    NOUN = "电梯阻车摄像头"
    ADVICE = "离线期间电动车进电梯无法发现和阻止，请物业检查摄像头供电与网络"


RULES: tuple[type[Rule], ...] = (EbikeInLift, CameraOffline)
