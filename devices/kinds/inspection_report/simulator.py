"""A person's reporting app (随手拍): a grid patroller or a rider volunteer photographs a hazard.

No heartbeat: people report when they see something. ``report`` publishes one
``hazard_report``; ``patrol`` schedules a few over a shift at human intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from devices.topics import MessageClass
from simulators.clock import shanghai
from simulators.devices.base import LoadStream, Publication, SimulatedDevice

CATEGORIES = ("corridor_clutter", "flying_wire_charging", "fire_lane_blocked", "ebike_indoors",
              "extinguisher_missing", "extinguisher_expired", "manhole_damaged", "other")
NOTES = {"corridor_clutter": "楼道堆放纸箱杂物", "flying_wire_charging": "电线从窗口拉下给电动车充电",
         "fire_lane_blocked": "消防通道停放车辆", "ebike_indoors": "电动车推进楼道充电",
         "extinguisher_missing": "灭火器箱空", "extinguisher_expired": "灭火器压力不足已过期",
         "manhole_damaged": "井盖破损", "other": "其他隐患"}


@dataclass
class InspectionReporterSim(SimulatedDevice):
    kind: str = "inspection_report"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "hazard_report": LoadStream(lambda d, t: d.report(t, "corridor_clutter"), street_weight=0.0002),
    }
    reporter: str = "网格员 张伟"
    community: str = ""

    def report(self, now_ms: int, category: str, building: str = "", location: str = "", note: str = "") -> Publication:
        n = self.seq + 1
        report_id = f"R-{shanghai(now_ms):%Y%m%d}-{self.device_id}-{n:04d}"
        return self.publication(MessageClass.EVENT, "hazard_report", now_ms, report_id=report_id, category=category,
                                community=self.community, building=building, location=location,
                                photos=[f"s3://reports/{report_id}-1.jpg"], reporter=self.reporter,
                                note=note or NOTES.get(category, ""))

    def patrol(self, start_ms: int, buildings: list[str], reports: int = 3) -> None:
        t = start_ms
        for _ in range(reports):
            t += int(self.rng.uniform(10, 40) * 60_000)
            building, category = self.rng.choice(buildings), self.rng.choice(CATEGORIES)
            floor = self.rng.randint(1, 18)
            self.schedule(t, lambda at, b=building, c=category, f=floor: [self.report(at, c, b, f"{f}楼")])
