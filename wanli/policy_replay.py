"""Replaying stories under an escalation policy version, to see what a draft would change (the dry-run).

Two sources of stories:

* **The scenario library** (``simulators/scenarios``). Each scenario's script is played in this
  process on a stepped clock, with no broker and no HTTP: its devices' messages are decoded
  (``ingest.decode``) and handed straight to a private alert engine (the real rules and the real
  escalation, an in-memory SQLite database for its incidents and outbox). Micro fire stations
  answer the dispatches the engine sends them, after their simulated delays. Time jumps from
  one due moment to the next (a device's message, a deadline, the rules' 10-second look at the
  clock), so a day-long scenario replays in seconds. Ingest's hygiene (sequence, clock checks)
  is not replayed: the scenarios that test it say nothing about policies.
* **Past incidents** in a time range, from the incident store: each incident's escalation is
  recomputed under a version from when it opened until someone acknowledged it (or it ended),
  as the engine would have climbed it.

Each replay yields the escalation steps that fired (``Fired``: which incident, which step,
when, to whom); ``compare`` sets the current version's against the draft's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts import escalation
from alerts.context import RegistryContext
from alerts.incidents import Incident, State
from alerts.outbox import Outbox, notifications_table
from alerts.policies import PolicySet
from alerts.rules import default_rules
from alerts.service import AlertService
from alerts.store import IncidentStore
from alerts.thresholds import Thresholds
from devices.catalog import KINDS
from devices.hierarchy import Hierarchy
from devices.registry import DeviceRegistry
from ingest.decode import decode_message
from foundation.db import METADATA, make_engine
from foundation.errors import WanliError

log = logging.getLogger(__name__)

TICK_MS = 10_000  # how often the rules look at the clock in a replay (deadlines are met exactly)
MAX_STORY_MS = 3 * 24 * 3600 * 1000  # a replayed scenario stops after three simulated days
# The library's stories a dry-run replays unless asked for others: those that raise incidents, each in well under a
# second (elderly_inactivity_day replays a day in ~6 s: asked for by name; reconnect_storm needs a broker).
DEFAULT_STORIES = ("real_fire_spreading", "thermal_runaway_shed", "station_slow_ack", "kitchen_false_alarm",
                   "elderly_press", "press_then_cancel", "full_battery_power", "hostile_messages")


@dataclass(frozen=True, slots=True)
class Fired:
    """One escalation step that fired in a replay: its notices' recipients, seconds after the incident opened."""

    story: str
    incident: str  # the incident's title and dedup key: the same incident in both replays
    policy: str
    step: int
    at_s: float
    who: tuple[str, ...]  # "role 名字", sorted


@dataclass(frozen=True, slots=True)
class Difference:
    story: str
    incident: str
    step: int
    change: str  # earlier, later, added, removed, recipients
    current_at_s: float | None
    draft_at_s: float | None
    current_who: tuple[str, ...]
    draft_who: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"story": self.story, "incident": self.incident, "step": self.step + 1, "change": self.change,
                "current_at_s": self.current_at_s, "draft_at_s": self.draft_at_s,
                "current_who": list(self.current_who), "draft_who": list(self.draft_who)}


@dataclass
class StoryReplay:
    story: str
    fired: list[Fired] = field(default_factory=list)
    error: str = ""
    incidents: int = 0


def compare(current: Sequence[Fired], draft: Sequence[Fired]) -> list[Difference]:
    """Step by step, what the draft does differently: fires earlier, later, newly, no longer, or to other people.

    Steps are matched by story, incident and step number (a step repeated is matched repeat by repeat)."""
    def index(fired: Sequence[Fired]) -> dict[tuple[str, str, int], Fired]:
        return {(f.story, f.incident, f.step): f for f in fired}

    a, b = index(current), index(draft)
    out: list[Difference] = []
    for key in sorted(set(a) | set(b)):
        fa, fb = a.get(key), b.get(key)
        if fa is None and fb is not None:
            change = "added"
        elif fb is None and fa is not None:
            change = "removed"
        elif fa is not None and fb is not None:
            if abs(fa.at_s - fb.at_s) >= 0.5:
                change = "earlier" if fb.at_s < fa.at_s else "later"
            elif fa.who != fb.who:
                change = "recipients"
            else:
                continue
        else:
            continue
        out.append(Difference(key[0], key[1], key[2], change, fa.at_s if fa else None, fb.at_s if fb else None,
                              fa.who if fa else (), fb.who if fb else ()))
    return out


# -- past incidents ---------------------------------------------------------------------------------------------------

def replay_history(incidents: Iterable[Incident], policies: PolicySet, hierarchy: Hierarchy,
                   answered_ms: Callable[[Incident], int | None]) -> list[Fired]:
    """The steps each past incident would have climbed under ``policies``: from its opening until it was answered
    (``answered_ms``: acknowledged, dispatched, or ended; None: never), at most 50 steps each."""
    out: list[Fired] = []
    for incident in incidents:
        start = replace_open(incident)
        stop = answered_ms(incident)
        current, notices, _ = escalation.start(start, hierarchy, incident.opened_ms, policies)
        out.append(_fired("history", incident, current, notices, incident.opened_ms))
        for _ in range(50):
            deadline = current.next_deadline_ms
            if deadline is None or (stop is not None and deadline >= stop):
                break
            current, notices, _ = escalation.advance(current, hierarchy, deadline, policies)
            if notices:
                out.append(_fired("history", incident, current, notices, deadline))
    return out


def replace_open(incident: Incident) -> Incident:
    from dataclasses import replace
    return replace(incident, state=State.OPEN, escalation_step=0, escalation_policy="", next_deadline_ms=None)


def _fired(story: str, incident: Incident, at: Incident, notices: Sequence[escalation.Notice], now_ms: int) -> Fired:
    return Fired(story, f"{incident.title}（{incident.key}）", at.escalation_policy, at.escalation_step,
                 (now_ms - incident.opened_ms) / 1000, tuple(sorted({f"{n.role} {n.name}" for n in notices})))


# -- the scenario library ---------------------------------------------------------------------------------------------

class _ReplayStopped(WanliError):
    pass


class ReplayStage:
    """What a scenario's script works with (``simulators.scenario.Stage``'s calls), on a private engine and a stepped
    clock: no broker, no API, no sleeping."""

    def __init__(self, scenario: Any, policies: PolicySet, seed: int = 0) -> None:
        from simulators.scenario import start_ms_for

        self.scenario = scenario
        self.hierarchy = scenario.load_hierarchy()
        self.population = scenario.population(self.hierarchy, seed)
        self._now = start_ms_for(scenario, 1_767_225_600_000)  # a fixed day (2026-01-01): replays are repeatable
        self.started_ms = self._now
        engine = make_engine("sqlite://")
        METADATA.create_all(engine)  # the tables of the stores imported above
        self._engine = engine
        registry = DeviceRegistry(engine, self.hierarchy)
        registry.register_many(self.population.records, actor="replay", now_ms=self._now)
        rules = default_rules()
        thresholds = Thresholds(rules, lambda d: (rec.building_id if (rec := registry.find(d)) else ""))
        ctx = RegistryContext(registry, thresholds)
        ctx.set_policy_thresholds(policies.thresholds)
        self.outbox = Outbox(engine)
        self.alerts = AlertService(IncidentStore(engine), ctx.locate, ctx, self.hierarchy, rules, self.outbox,
                                   clock_ms=self.now_ms, policies=policies)
        self._seen_outbox = 0
        self._next_tick = self._now + TICK_MS
        self.marks: dict[str, int] = {}
        self.last_sent: dict[str, Any] = {}
        self.sink = None

    # the Stage's calls that scripts make
    def now_ms(self) -> int:
        return self._now

    def local_time(self) -> str:
        from simulators.clock import shanghai
        return shanghai(self._now).strftime("%H:%M")

    def device(self, device_id: str) -> Any:
        return self.population.device(device_id)

    def say(self, text: str) -> None:
        log.debug("replay %s: %s", self.scenario.name, text)

    def mark(self, name: str) -> int:
        self.marks[name] = self._now
        return self._now

    def changed(self, device: Any) -> None:
        self.population.touch(device)

    def send(self, publications: Sequence[tuple[str, bytes]]) -> None:
        readings = []
        for topic, payload in publications:
            try:
                readings.append(decode_message(topic, payload if isinstance(payload, bytes) else payload.encode(),
                                               self._now, KINDS))
            except WanliError:
                continue  # what ingest would dead-letter: no incident either way
        if readings:
            self.alerts.handle_batch(readings, self._now)
            self._answer_dispatches()

    def wait(self, seconds: float) -> None:
        target = self._now + int(seconds * 1000)
        if target - self.started_ms > MAX_STORY_MS:
            raise _ReplayStopped(f"{self.scenario.name} runs longer than {MAX_STORY_MS // 3_600_000} h")
        while True:
            self.send(self.population.tick(self._now))
            if self._now >= self._next_tick:
                self.alerts.tick(self._now)
                self._answer_dispatches()
                self._next_tick = self._now + TICK_MS
            if self._now >= target:
                return
            deadlines = [i.next_deadline_ms for i in self.alerts.active_incidents() if i.next_deadline_ms]
            self._now = max(self._now + 1, min([target, self._next_tick, self.population.next_due_ms(), *deadlines]))
            if any(d <= self._now for d in deadlines):
                self._next_tick = self._now  # a deadline is due: the engine looks now

    def skip(self, seconds: float, step_s: float = 3600.0) -> None:
        self.wait(seconds)

    def settle(self, timeout_s: float = 15.0) -> bool:
        return True

    def checkpoint(self, name: str) -> None:
        pass

    # what the engine sent
    def _answer_dispatches(self) -> None:
        rows = self._outbox_rows(self._seen_outbox)
        for row in rows:
            self._seen_outbox = max(self._seen_outbox, row["id"])
            if row["dispatch_id"] and row["tier"] == "fire_station" and row["role"] != escalation.STAND_DOWN_ROLE:
                station = self.population.devices.get(row["place_id"])
                if station is not None and hasattr(station, "on_dispatch"):
                    if station.on_dispatch(row["payload"], self._now):
                        self.population.touch(station)

    def _outbox_rows(self, after_id: int) -> list[Any]:
        from sqlalchemy import select
        t = notifications_table
        with self._engine.connect() as conn:
            return list(conn.execute(select(t).where(t.c.id > after_id).where(t.c.channel == "mqtt")
                                     .order_by(t.c.id)).mappings())

    def fired(self) -> list[Fired]:
        """Every escalation step the engine took: its notices grouped by incident and step, with when."""
        store = self.alerts.store
        by_step: dict[tuple[str, int, int], set[str]] = {}
        for row in self._outbox_rows(0):
            if row["role"] == escalation.STAND_DOWN_ROLE:
                continue
            by_step.setdefault((row["incident_id"], row["step"], row["created_ms"]), set()).add(
                f"{row['role']} {row['recipient']}")
        out: list[Fired] = []
        incidents: dict[str, Incident] = {}
        repeats: dict[tuple[str, int], int] = {}
        for (incident_id, step, at), who in sorted(by_step.items(), key=lambda kv: kv[0][2]):
            incident = incidents.get(incident_id) or incidents.setdefault(incident_id, store.get(incident_id))
            # the same step again: the last one repeated, or a rescale starting over
            n = repeats[(incident_id, step)] = repeats.get((incident_id, step), 0) + 1
            label = f"{incident.title}（{incident.key}）" + (f" 第{n}次" if n > 1 else "")
            out.append(Fired(self.scenario.name, label, incident.escalation_policy, step,
                             (at - incident.opened_ms) / 1000, tuple(sorted(who))))
        return out


def replay_scenario(scenario: Any, policies: PolicySet, seed: int = 0) -> StoryReplay:
    """Play one scenario of the library on a private engine under ``policies``; what fired, or why it could not."""
    result = StoryReplay(scenario.name)
    try:
        stage = ReplayStage(scenario, policies, seed)
        stage.send(stage.population.start(stage.now_ms()))
        scenario.play(stage)
        stage.wait(0)
        result.fired = stage.fired()
        result.incidents = len(stage.alerts.store.list(limit=100_000))
    except Exception as exc:  # a script that needs a broker (reconnects) or the API: said, not fatal
        log.info("replay of %s under policy v%s stopped: %s", scenario.name, policies.version, exc)
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def library_choices() -> list[dict[str, Any]]:
    """The scenario library as a dry-run can replay it: name, title, and whether it is replayed by default."""
    from simulators.scenarios import scenarios

    return [{"name": name, "title": sc.title, "default": name in DEFAULT_STORIES}
            for name, sc in scenarios().items() if name not in NOT_REPLAYABLE]


NOT_REPLAYABLE = ("reconnect_storm",)  # it drops and restores the devices' broker connections: nothing to replay


def replay_library(policies: PolicySet, names: Sequence[str] = DEFAULT_STORIES) -> list[StoryReplay]:
    from simulators.scenarios import scenarios

    library = scenarios()
    out = []
    for name in names:
        scenario = library.get(name)
        if scenario is None:
            out.append(StoryReplay(name, error=f"no scenario {name!r}"))
            continue
        began = time.monotonic()
        out.append(replay_scenario(scenario, policies))
        log.debug("replayed scenario=%s policy=v%s in %.2f s", name, policies.version, time.monotonic() - began)
    return out


def dry_run(current: PolicySet, draft: PolicySet, what: Mapping[str, Any], *,
            incidents: Callable[[int, int], Sequence[Incident]] | None = None,
            answered_ms: Callable[[Incident], int | None] | None = None,
            hierarchy: Hierarchy | None = None) -> dict[str, Any]:
    """The dry-run report: stories replayed under both versions, and the differences.

    ``what``: {"scenarios": [names]} (default: ``DEFAULT_STORIES``; [] for none), and optionally
    {"from_ms": …, "to_ms": …} to replay the incidents opened in that range (``incidents(from, to)``)."""
    began = time.monotonic()
    names = list(what.get("scenarios") or ()) if "scenarios" in what else list(DEFAULT_STORIES)
    stories: list[dict[str, Any]] = []
    differences: list[Difference] = []
    for name in names:
        a, b = replay_library(current, [name])[0], replay_library(draft, [name])[0]
        found = compare(a.fired, b.fired)
        differences += found
        stories.append({"story": name, "kind": "scenario", "incidents": max(a.incidents, b.incidents),
                        "steps_current": len(a.fired), "steps_draft": len(b.fired), "differences": len(found),
                        "error": a.error or b.error})
    if what.get("from_ms") is not None and incidents is not None and hierarchy is not None and answered_ms:
        past = incidents(int(what["from_ms"]), int(what.get("to_ms") or time.time() * 1000))
        a_f = replay_history(past, current, hierarchy, answered_ms)
        b_f = replay_history(past, draft, hierarchy, answered_ms)
        found = compare(a_f, b_f)
        differences += found
        stories.append({"story": "history", "kind": "history", "incidents": len(past), "steps_current": len(a_f),
                        "steps_draft": len(b_f), "differences": len(found), "error": ""})
    return {"stories": stories, "differences": [d.as_dict() for d in differences],
            "seconds": round(time.monotonic() - began, 2)}
