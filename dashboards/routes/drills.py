"""A drill's own devices: registered and archived only in the drill namespace (devices/drill.py).

``wanli scenario run --api`` and ``wanli simulate`` register their simulated devices here, not
through the maintainers' import: this door takes only ``DRILL-…`` ids, so a drill can never
reactivate, relabel or move a real device, whatever its file says.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from dashboards.auth import VIEWER_ONLY, Tester
from dashboards.deps import Ctx
from devices.drill import active_drill_devices, end_drill, register_drill
from devices.registry import DeviceRecord
from foundation.errors import Conflict

router = APIRouter(prefix="/api/drills", tags=["drills"], dependencies=VIEWER_ONLY)
clock_router = APIRouter(prefix="/api/clock", tags=["drills"], dependencies=VIEWER_ONLY)

MAX_DEVICES = 60_000  # the whole generated street is 50,615


class DrillDevice(BaseModel):
    device_id: str = Field(pattern=r"^(?i:DRILL-)[A-Za-z0-9_-]{1,58}$", examples=["DRILL-SD-XQ01-0301"],
                           description="a drill device's id: the reserved prefix DRILL- (anything else is refused)")
    kind: str = Field(examples=["smoke_detector"])
    building_id: str = Field(default="", max_length=64, examples=["xq-01"])
    floor: int | None = Field(default=None, ge=-5, le=200)
    unit: str = Field(default="", max_length=16)
    label: str = Field(default="", max_length=200)


class DrillDevices(BaseModel):
    devices: list[DrillDevice] = Field(max_length=MAX_DEVICES)


class DrillEnd(BaseModel):
    device_ids: list[str] | None = Field(
        default=None, max_length=MAX_DEVICES, description="the drill's devices (DRILL-…); omitted: every active one")


class DrillCount(BaseModel):
    count: int
    device_ids: list[str] = Field(default_factory=list)


@router.get("/devices", response_model=DrillCount)
def list_drill_devices(ctx: Ctx) -> DrillCount:
    """Drill devices still registered and active (a drill that ended cleanly leaves none)."""
    ids = active_drill_devices(ctx.registry)
    return DrillCount(count=len(ids), device_ids=ids[:1000])


@router.post("/devices", response_model=DrillCount)
def register_drill_devices(ctx: Ctx, body: DrillDevices, who: Tester) -> DrillCount:
    """Register a drill's devices (422 for any id without the DRILL- prefix: nothing is written)."""
    street = ctx.registry.hierarchy.street_id
    records = [DeviceRecord(d.device_id, d.kind, street, d.building_id, d.floor, d.unit, label=d.label)
               for d in body.devices]
    n = register_drill(ctx.registry, records, actor=f"drill:{who.name}", now_ms=ctx.clock_ms())
    return DrillCount(count=n)


@router.post("/end", response_model=DrillCount)
def end_drill_devices(ctx: Ctx, body: DrillEnd, who: Tester) -> DrillCount:
    """Archive a drill's devices (retired, history kept); 422 for a real device's id."""
    ids = body.device_ids if body.device_ids is not None else active_drill_devices(ctx.registry)
    n = end_drill(ctx.registry, ids, actor=f"drill:{who.name}", now_ms=ctx.clock_ms())
    return DrillCount(count=n)


class ClockPublic(BaseModel):
    now_ms: int = Field(description="the service's time now, ms since the epoch (UTC)")
    speed: float = Field(description="how many times real time it runs: 1 on the wall clock, more on a tester's clock "
                                     "(WANLI_CLOCK_SPEED, never in production)")
    test_clock: bool = Field(description="a tester's clock (accelerated or started elsewhere), not the wall clock")


@clock_router.get("", response_model=ClockPublic)
def service_clock(ctx: Ctx) -> ClockPublic:
    """The service's clock: what a scenario played against it stamps its devices' messages with."""
    s = ctx.settings
    return ClockPublic(now_ms=ctx.clock_ms(), speed=s.clock_speed if s is not None else 1.0,
                       test_clock=bool(s is not None and s.test_clock))


class ClockStep(BaseModel):
    seconds: float = Field(gt=0, le=30 * 86_400, description="how far to step the tester's clock ahead")


@clock_router.post("/advance", response_model=ClockPublic)
def advance_clock(ctx: Ctx, body: ClockStep, request: Request, _who: Tester) -> ClockPublic:
    """Step a tester's clock ahead (a stepped clock: skip a quiet night at once). 409 on the wall clock: the
    street's real time never jumps."""
    clock = getattr(request.app.state, "service_clock", None)
    if clock is None:
        raise Conflict("this service runs on the wall clock, which never jumps: start it with WANLI_CLOCK_SPEED or "
                       "WANLI_CLOCK_START (a tester's clock, development mode) to step it")
    clock.advance(int(body.seconds * 1000))
    return service_clock(ctx)
