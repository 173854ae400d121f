"""The live feed's wiring (dashboards/live.py ``follow``): every incident change goes to the screens, and a
``NoticesChanged`` when an active incident opened or moved to another step (its notices were queued then) or when
the dispatcher sent its notices; a repeat on the same step tells nothing new about who was told."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from alerts.incidents import Incident, Severity, Signal, State, open_or_update
from alerts.service import IncidentChange, Listener
from dashboards.live import LiveFeed, NoticesChanged, follow
from devices.hierarchy import load_hierarchy
from tests.support.waiting import run_in_own_loop

H = load_hierarchy()
T0 = 1_760_000_000_000


def incident(incident_id: str = "inc_1", **kw: Any) -> Incident:
    sig = Signal("SD-XQ01-0101", "smoke_detector", "smoke_alarm", "fire", Severity.HIGH, "烟感报警", T0, "")
    inc, _ = open_or_update(None, sig, H.locate("xq-01", 1, "0101"), T0, incident_id)
    return replace(inc, escalation_policy="fire", tier="building", **kw)


class Alerts:
    """What ``follow`` asks of the alert service: to be told of its changes (AlertService.subscribe)."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def changed(self, *changes: IncidentChange) -> None:
        for listener in self.listeners:
            listener(changes)


def test_the_feed_carries_every_change_and_tells_of_notices_when_they_were_queued_or_sent() -> None:
    async def run() -> list[Any]:
        feed, alerts = LiveFeed(), Alerts()
        feed.bind(asyncio.get_running_loop())
        notices_changed = follow(feed, alerts)  # type: ignore[arg-type]  # the one method it uses
        events: list[Any] = []
        async with feed.subscription() as q:
            opened = incident()
            alerts.changed(IncidentChange(opened, True))
            alerts.changed(IncidentChange(replace(opened, event_count=2), False))  # a repeat: same step
            alerts.changed(IncidentChange(replace(opened, escalation_step=1, tier="community"), False))
            notices_changed({"inc_1"})  # the dispatcher sent them
            notices_changed(set())  # a round that sent nothing says nothing
            alerts.changed(IncidentChange(replace(opened, state=State.CLOSED, escalation_step=1), False),
                           IncidentChange(incident("inc_2"), True))
            await asyncio.sleep(0.05)
            while not q.empty():
                events.append(q.get_nowait())
        return events

    events = run_in_own_loop(run)
    said = [("notices", sorted(e.incident_ids)) if isinstance(e, NoticesChanged)
            else ("incident", e["incident"]["id"], e["created"], e["incident"]["escalation_step"]) for e in events]
    assert said == [
        ("incident", "inc_1", True, 0), ("notices", ["inc_1"]),
        ("incident", "inc_1", False, 0),
        ("incident", "inc_1", False, 1), ("notices", ["inc_1"]),
        ("notices", ["inc_1"]),
        ("incident", "inc_1", False, 1), ("incident", "inc_2", True, 0), ("notices", ["inc_2"]),
    ]
