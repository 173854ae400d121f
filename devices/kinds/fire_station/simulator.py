"""A micro fire station's duty terminal (微型消防站): people on duty, shifts, and answering dispatches.

- ``duty_status`` every five minutes (the kind's cadence): staff on duty and readiness;
- shift changes at 08:00 and 20:00 Shanghai time: ``shift_change`` with the new leader,
  and a few minutes of handover with one person fewer;
- an equipment check every morning at 09:00;
- dispatches: the platform's notice arrives on ``dispatch/v1/{street}/fire_station/{id}/duty``
  (``on_dispatch``); people then press acknowledge, depart, on scene and finished on the
  terminal after human delays. ``response`` chooses how fast: ``prompt`` (acknowledged in
  about 10–40 s, on scene within about 2½ minutes), ``slow`` (the duty phone in another
  room: acknowledged after 1½–2½ minutes, on scene after 4–5), ``silent`` (nobody answers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

from devices.topics import MessageClass
from simulators.clock import next_local_time_ms
from simulators.devices.base import LoadStream, Publication, SimulatedDevice

LEADERS = ("队长 王磊", "队长 李强", "副队长 陈杰", "副队长 刘洋")
EQUIPMENT = (("extinguisher", 8), ("hose", 4), ("breathing_set", 2), ("helmet", 6), ("fire_suit", 6), ("flashlight", 4))
RESPONSES = {  # (ack, depart after ack, on scene after depart) in seconds, each a (low, high) range
    "prompt": ((10, 40), (20, 40), (60, 100)),
    "slow": ((90, 150), (60, 90), (90, 120)),
    # `wanli simulate alarm`'s drill station: answers within seconds, so a one-alarm drill ends in a quarter minute
    # and leaves no unanswered dispatch behind (devices/drill.py)
    "drill": ((1, 3), (1, 3), (2, 5)),
}


@dataclass
class FireStationSim(SimulatedDevice):
    kind: str = "fire_station"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "fire_station_duty": LoadStream(lambda d, t: d.duty_status(t), street_weight=0.005),
    }
    staff_on_duty: int = 4
    response: str = "prompt"
    leader: str = field(default="", init=False)
    answered: dict[str, list[str]] = field(default_factory=dict, init=False)  # dispatch id → the steps sent so far
    _shift: int = field(default=0, init=False, repr=False)

    def on_start(self, now_ms: int) -> None:
        self.leader = self.rng.choice(LEADERS)
        self.schedule(min(next_local_time_ms(now_ms, 8), next_local_time_ms(now_ms, 20)), self._shift_change)
        self.schedule(next_local_time_ms(now_ms, 9), self._equipment_check)

    def periodic(self, at_ms: int) -> list[Publication]:
        return [self.duty_status(at_ms)]

    def duty_status(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.TELEMETRY, "duty_status", now_ms, staff_on_duty=self.staff_on_duty,
                                ready=self.staff_on_duty >= 3)

    def _shift_change(self, at_ms: int) -> list[Publication]:
        self._shift += 1
        self.schedule(min(next_local_time_ms(at_ms + 1, 8), next_local_time_ms(at_ms + 1, 20)), self._shift_change)
        self.leader = LEADERS[(LEADERS.index(self.leader) + 1) % len(LEADERS)] if self.leader in LEADERS else LEADERS[0]
        self.staff_on_duty = self.rng.randint(3, 5)
        return [self.publication(MessageClass.EVENT, "shift_change", at_ms, staff_on_duty=self.staff_on_duty,
                                 leader=self.leader)]

    def _equipment_check(self, at_ms: int) -> list[Publication]:
        self.schedule(next_local_time_ms(at_ms + 1, 9), self._equipment_check)
        return [self.equipment_check(at_ms)]

    def equipment_check(self, now_ms: int, problems: dict[str, str] | None = None) -> Publication:
        items = [{"item": item, "status": (problems or {}).get(item, "ok"), "quantity": n} for item, n in EQUIPMENT]
        return self.publication(MessageClass.EVENT, "equipment_check", now_ms, items=items, checked_by=self.leader)

    def on_dispatch(self, notice: bytes | str | dict[str, object], received_ms: int) -> str | None:
        """A dispatch notice reached the terminal: schedule the crew's answers; the dispatch id, if it is one."""
        body = notice if isinstance(notice, dict) else json.loads(notice)
        dispatch_id = body.get("dispatch_id")
        if not isinstance(dispatch_id, str) or not dispatch_id or dispatch_id in self.answered:
            return None
        self.answered[dispatch_id] = []
        if self.response == "silent":
            return dispatch_id
        ack, depart, scene = RESPONSES[self.response]
        t = received_ms
        for step, (low, high) in (("dispatch_ack", ack), ("dispatch_depart", depart), ("dispatch_on_scene", scene)):
            t += int(self.rng.uniform(low, high) * 1000)
            self.schedule(t, lambda at, s=step: self._answer(at, s, dispatch_id))
        return dispatch_id

    def finish(self, now_ms: int, dispatch_id: str, outcome: str = "extinguished") -> Publication:
        self.answered.setdefault(dispatch_id, []).append("dispatch_finished")
        return self.publication(MessageClass.EVENT, "dispatch_finished", now_ms, dispatch_id=dispatch_id, outcome=outcome)

    def _answer(self, at_ms: int, step: str, dispatch_id: str) -> list[Publication]:
        self.answered[dispatch_id].append(step)
        return [self.publication(MessageClass.EVENT, step, at_ms, dispatch_id=dispatch_id)]
