"""Simulated buildings and scenarios, started and followed from the tester page.

A simulation runs in this service's process, in a thread of its own, publishing through
this service's MQTT broker exactly as devices do (the MQTT contract, QoS 1), with devices
registered in this service's registry. Scenarios judge their expected outcomes through
this API, with the caller's own credentials.

This service runs on the wall clock, so scenarios that jump hours ahead (a day without
activity, a twelve-hour outage) cannot run here: they are refused with the command that
runs them on a simulated clock of their own (``wanli scenario run NAME``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from dashboards.auth import VIEWER_ONLY, Tester
from dashboards.deps import AppContext, Ctx
from devices.drill import end_drill, register_drill
from simulators.drill import drill_rows
from simulators.expectations import Outcome
from simulators.player import ExternalClock, play_population
from simulators.population import Population, place_rows
from simulators.publisher import BrokerAddress
from simulators.scenario import (
    ApiClient,
    Progress,
    ScenarioError,
    ScenarioResult,
    ScenarioStopped,
    run_scenario,
)
from simulators.scenarios import get as get_scenario
from simulators.scenarios import scenarios
from foundation.errors import Conflict, Invalid, NotFound, StoreUnavailable
from foundation.service_clock import wall_ms

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/simulations", tags=["simulations"], dependencies=VIEWER_ONLY)  # starting, stopping: Tester

MAX_KEPT = 50  # finished simulations remembered for the page


# -- schemas ------------------------------------------------------------------------------------------------------------


class SimulationStart(BaseModel):
    kind: Literal["building", "community", "scenario"] = Field(description="what to simulate")
    target: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                        description="a building id (xq-01), a community id (xiangquan) or a scenario name",
                        examples=["xq-01"])
    duration_s: float | None = Field(default=None, gt=0, le=7 * 86_400,
                                     description="a building or community stops after this long (default: when stopped)")


class OutcomePublic(BaseModel):
    expectation: str
    met: bool
    detail: str = Field(description="what was seen, in the machine's terms (condition@device severity state tier)")
    checkpoint: str
    expectation_zh: str = Field(description="the expectation as a Chinese sentence, for the testers' page")
    detail_zh: str = Field(description="what was seen, in Chinese")

    @classmethod
    def of(cls, o: Outcome) -> OutcomePublic:
        return cls(expectation=o.expectation, met=o.met, detail=o.detail, checkpoint=o.checkpoint,
                   expectation_zh=o.expectation_zh, detail_zh=o.detail_zh)


class ScenarioResultPublic(BaseModel):
    ok: bool
    sent: int
    sim_seconds: float
    real_seconds: float
    outcomes: list[OutcomePublic]

    @classmethod
    def of(cls, r: ScenarioResult) -> ScenarioResultPublic:
        return cls(ok=r.ok, sent=r.sent, sim_seconds=r.sim_seconds, real_seconds=r.real_seconds,
                   outcomes=[OutcomePublic.of(o) for o in r.outcomes])


class SimulationPublic(BaseModel):
    id: str
    kind: str
    target: str
    title: str
    state: Literal["running", "finished", "stopped", "failed"]
    started_at: datetime
    devices: int
    sent: int
    acked: int
    rate: float = Field(description="messages per second since it started")
    simulated_at: datetime | None = Field(description="the devices' clock now")
    phase: str = Field(description="what it is doing now")
    drill: bool = Field(description="played by drill devices (DRILL-…): its incidents are drills, notices reach only "
                                    "drill contacts, its devices are archived when it ends (docs/incidents.md)")
    progress: float | None = Field(description="how far a scenario's script is, 0..1 (None: runs until stopped)")
    left_s: float | None = Field(description="real seconds a scenario has left (None: unknown)")
    log: list[str]
    result: ScenarioResultPublic | None = Field(description="a scenario's expected outcomes, met or not, when it ends")
    error: str


class ScenarioPublic(BaseModel):
    name: str
    title: str
    summary: str
    speed: float
    runs_here: bool = Field(description="false: it jumps hours ahead and runs only on its own clock (the CLI)")
    expect: list[str] = Field(description="its expected outcomes in the machine's terms")
    expect_zh: list[str] = Field(description="the same, as Chinese sentences")


# -- the runs -----------------------------------------------------------------------------------------------------------


@dataclass
class Simulation:
    id: str
    kind: str
    target: str
    title: str
    started_ms: int
    progress: Progress
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    result: ScenarioResult | None = None
    error: str = ""
    devices: frozenset[str] = frozenset()  # its drill devices: two runs at once may not share one

    @property
    def state(self) -> Literal["running", "finished", "stopped", "failed"]:
        if self.error:
            return "failed"
        if not self.progress.done:
            return "running"
        return "stopped" if self.stop.is_set() else "finished"

    def public(self) -> SimulationPublic:
        p = self.progress
        return SimulationPublic(
            id=self.id, kind=self.kind, target=self.target, title=self.title, state=self.state,
            started_at=_dt(self.started_ms), devices=p.devices, sent=p.sent, acked=p.acked, rate=round(p.rate, 1),
            simulated_at=_dt(p.sim_ms) if p.sim_ms else None, phase=p.phase, log=list(p.log[-30:]), drill=True,
            progress=None if p.fraction is None else round(p.fraction, 4),
            left_s=None if p.left_s is None else round(p.left_s, 1),
            result=ScenarioResultPublic.of(self.result) if self.result else None, error=self.error)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Simulations:
    """The simulations this service runs, newest first."""

    def __init__(self) -> None:
        self._runs: dict[str, Simulation] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def all(self) -> list[Simulation]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda s: s.started_ms, reverse=True)

    def get(self, sim_id: str) -> Simulation:
        with self._lock:
            found = self._runs.get(sim_id)
        if found is None:
            raise NotFound("simulation", sim_id)
        return found

    def add(self, sim: Simulation) -> None:
        with self._lock:
            for other in self._runs.values():
                if other.state == "running" and (other.kind, other.target) == (sim.kind, sim.target):
                    raise Conflict(f"{sim.kind} {sim.target} is already being simulated ({other.id}); stop it first")
                if other.state == "running" and sim.devices & other.devices:
                    # the first to end would archive the other's devices under it
                    raise Conflict(f"{other.id} is playing some of the same drill devices "
                                   f"({len(sim.devices & other.devices)}); stop it first")
            self._runs[sim.id] = sim
            finished = [s for s in self._runs.values() if s.state != "running"]
            for old in sorted(finished, key=lambda s: s.started_ms)[: max(0, len(self._runs) - MAX_KEPT)]:
                del self._runs[old.id]

    def next_id(self) -> str:
        return f"sim-{next(self._ids)}-{int(time.time()) % 100_000}"


def get_simulations(request: Request) -> Simulations:
    state = request.app.state
    if not hasattr(state, "simulations"):
        state.simulations = Simulations()
    return state.simulations  # type: ignore[no-any-return]


SimulationsDep = Annotated[Simulations, Depends(get_simulations)]


def _broker(ctx: AppContext) -> BrokerAddress:
    """This service's own broker (embedded or external), from its settings."""
    if ctx.settings is None:
        raise StoreUnavailable("mqtt", "this service does not tell simulations where its broker is")
    host, port = ctx.settings.mqtt_host_port
    return BrokerAddress(host, port)


def _caller_headers(request: Request) -> dict[str, str]:
    """The caller's own credentials, for the scenario to read the API as they may."""
    return {k: v for k, v in (("Authorization", request.headers.get("authorization")),
                              ("Cookie", request.headers.get("cookie"))) if v}


# -- routes -------------------------------------------------------------------------------------------------------------


@router.get("/scenarios", response_model=list[ScenarioPublic])
def list_scenarios() -> list[ScenarioPublic]:
    """The scenario library, each with what it expects of the system."""
    return [ScenarioPublic(name=s.name, title=s.title, summary=s.summary, speed=s.speed,
                           runs_here=not s.needs_shared_clock, expect=[e.describe() for e in s.expect],
                           expect_zh=s.expect_zh())
            for s in scenarios().values()]


@router.get("", response_model=list[SimulationPublic])
def list_simulations(sims: SimulationsDep) -> list[SimulationPublic]:
    """Running and recently finished simulations, newest first."""
    return [s.public() for s in sims.all()]


@router.get("/{sim_id}", response_model=SimulationPublic)
def get_simulation(sims: SimulationsDep, sim_id: str) -> SimulationPublic:
    return sims.get(sim_id).public()


@router.post("/{sim_id}/stop", response_model=SimulationPublic)
def stop_simulation(sims: SimulationsDep, sim_id: str, _who: Tester) -> SimulationPublic:
    """Stop a running simulation (a scenario stops where it is and judges nothing)."""
    sim = sims.get(sim_id)
    sim.stop.set()
    if sim.thread is not None:
        sim.thread.join(5)
    return sim.public()


@router.post("", response_model=SimulationPublic, status_code=status.HTTP_201_CREATED)
def start_simulation(ctx: Ctx, sims: SimulationsDep, body: SimulationStart, request: Request,
                     _who: Tester) -> SimulationPublic:
    """Start simulating a building, a community (every device at its real cadence) or a scenario."""
    hierarchy = ctx.registry.hierarchy
    broker = _broker(ctx)
    clock = ExternalClock(ctx.clock_ms)
    progress = Progress(scenario=f"{body.kind} {body.target}")
    sim_id = sims.next_id()
    actor = f"drill:{_who.name}"  # every run here is a drill on the live street (devices/drill.py)
    if body.kind == "scenario":
        try:
            scenario = get_scenario(body.target)
        except ScenarioError as exc:
            raise NotFound("scenario", body.target) from exc
        if scenario.needs_shared_clock:
            raise Invalid(f"scenario {scenario.name} jumps hours ahead and cannot run on this service's real clock; "
                          f"run it on a simulated clock of its own: wanli scenario run {scenario.name}")
        sim = Simulation(sim_id, body.kind, body.target, scenario.title, ctx.clock_ms(), progress,
                         devices=frozenset(r[0] for r in drill_rows(
                             scenario.rows(hierarchy) if scenario.rows else place_rows(
                                 hierarchy, building_ids=scenario.buildings, community_ids=scenario.communities))))
        api = ApiClient(str(request.base_url).rstrip("/"), _caller_headers(request))

        def work() -> None:
            try:
                sim.result = run_scenario(
                    scenario, api=api, broker=broker, clock=clock, hierarchy=hierarchy, progress=progress,
                    stop=sim.stop, drill=True, register=lambda recs: register_drill(ctx.registry, recs, actor,
                                                                                    ctx.clock_ms()),
                    end=lambda ids: end_drill(ctx.registry, ids, actor, ctx.clock_ms()))
            finally:
                api.close()
    else:
        if body.kind == "building":
            building = hierarchy.building(body.target)  # 404 if unknown
            title, rows = building.name, place_rows(hierarchy, building_ids=[body.target])
        else:
            community = hierarchy.communities.get(body.target)
            if community is None:
                raise NotFound("community", body.target)
            title, rows = community.name, place_rows(hierarchy, community_ids=[body.target])
        population = Population.from_rows(drill_rows(rows), hierarchy.street_id, start_seq=wall_ms())
        sim = Simulation(sim_id, body.kind, body.target, title, ctx.clock_ms(), progress,
                         devices=frozenset(population.devices))

        def work() -> None:
            register_drill(ctx.registry, population.records, actor, ctx.clock_ms())
            try:
                play_population(population, broker, clock, stop=sim.stop, progress=progress,
                                duration_s=body.duration_s, drill=True)
            finally:
                n = end_drill(ctx.registry, list(population.devices), actor, ctx.clock_ms())
                progress.log.append(f"{n} 台演练设备已归档")

    def guarded() -> None:
        try:
            work()
        except ScenarioStopped:  # the tester stopped it: stopped, not failed
            progress.say("已停止")
        except Exception as exc:  # the broker went away, a scenario failed: the page shows why
            log.exception("simulation %s failed", sim_id)
            sim.error = str(exc) or type(exc).__name__
            progress.say(f"失败：{sim.error}")
        finally:
            progress.done = True

    sims.add(sim)
    sim.thread = threading.Thread(target=guarded, name=f"simulation-{sim_id}", daemon=True)
    sim.thread.start()
    return sim.public()
