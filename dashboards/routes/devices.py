from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from dashboards.auth import VIEWER_ONLY, ErrorPublic, Maintainer, actor_of
from dashboards.deps import Ctx
from dashboards.schemas import (
    CredentialsPublic,
    DeviceCounts,
    DeviceCreate,
    DeviceKindPublic,
    DeviceHistoryEntry,
    DeviceMove,
    DevicePublic,
    DeviceRetire,
    ImportReportPublic,
)
from devices.catalog import KINDS
from devices.csv_import import import_csv
from devices.registry import DeviceRecord, Health, Lifecycle, RegisterOutcome
from wanli.errors import Invalid, TooLarge

MAX_CSV_BYTES = 32 * 1024 * 1024

router = APIRouter(prefix="/api/devices", tags=["devices"], dependencies=VIEWER_ONLY)


def _public(ctx: Ctx, rec: DeviceRecord) -> DevicePublic:
    return DevicePublic.of(rec, ctx.registry.location(rec), ctx.clock_ms())


@router.get("", response_model=list[DevicePublic])
def list_devices(ctx: Ctx, kind: str = "", building_id: str = "", community_id: str = "",
                 health: Health | None = None, lifecycle: Lifecycle | None = Lifecycle.ACTIVE,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                 offset: Annotated[int, Query(ge=0)] = 0) -> list[DevicePublic]:
    """Devices by kind, place and health (online, offline, low_battery, tampered, never_seen)."""
    recs = ctx.registry.list(now_ms=ctx.clock_ms(), kind=kind, building_id=building_id, community_id=community_id,
                             health_flag=health, lifecycle=lifecycle, limit=limit, offset=offset)
    return [_public(ctx, r) for r in recs]


@router.get("/counts", response_model=DeviceCounts)
def count_devices(ctx: Ctx, kind: str = "", building_id: str = "", community_id: str = "",
                  lifecycle: Lifecycle | None = Lifecycle.ACTIVE) -> DeviceCounts:
    """How many devices match, in all and per health flag: the maintainers' lists at a glance."""
    counts = ctx.registry.count_health(now_ms=ctx.clock_ms(), kind=kind, building_id=building_id,
                                       community_id=community_id, lifecycle=lifecycle)
    return DeviceCounts(**counts)


@router.post("", response_model=DevicePublic, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": DevicePublic, "description": "already registered there: nothing changed, or only its label"}})
def register_device(ctx: Ctx, body: DeviceCreate, response: Response, who: Maintainer) -> DevicePublic:
    rec = DeviceRecord(body.device_id, body.kind, ctx.registry.hierarchy.street_id, body.building_id, body.floor,
                       body.unit, body.label)
    outcome = ctx.registry.register(rec, actor_of(who, body.actor), ctx.clock_ms())
    response.headers["X-Register-Outcome"] = outcome.value  # created, reactivated, updated or unchanged
    if outcome in (RegisterOutcome.UNCHANGED, RegisterOutcome.UPDATED):
        response.status_code = status.HTTP_200_OK
    return _public(ctx, ctx.registry.get(body.device_id))


@router.post("/import", response_model=ImportReportPublic, responses={
    413: {"model": ErrorPublic, "description": "the file is larger than 32 MiB"}}, openapi_extra={"requestBody": {
    "required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
async def import_devices(ctx: Ctx, request: Request, who: Maintainer,
                         actor: Annotated[str, Query(max_length=100, description="for a machine token: the person it acts for")] = "",
                         first_line: Annotated[int, Query(ge=1)] = 1) -> ImportReportPublic:
    """Bulk registration: the request body is a UTF-8 CSV file. Bad rows are reported; good rows land.

    ``first_line``: the line number of this body's header in the whole file, for a client that
    uploads a large file in pieces, so that reported line numbers are the file's own.
    """
    body = await _body_within(request, MAX_CSV_BYTES)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the CSV file is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    # newline="" lets the csv module see a quoted field's own line breaks; splitlines() would cut it
    report = import_csv(ctx.registry, io.StringIO(text, newline=""), actor=actor_of(who, actor), now_ms=ctx.clock_ms())
    return ImportReportPublic.of(report, line_offset=first_line - 1)


async def _body_within(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit``: by its declared length, else while it streams."""
    too_large = TooLarge(f"the CSV file is larger than {limit // (1024 * 1024)} MiB; split it")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


@router.get("/{device_id}", response_model=DevicePublic)
def get_device(ctx: Ctx, device_id: str) -> DevicePublic:
    return _public(ctx, ctx.registry.get(device_id))


@router.get("/{device_id}/history", response_model=list[DeviceHistoryEntry])
def device_history(ctx: Ctx, device_id: str) -> list[DeviceHistoryEntry]:
    return [DeviceHistoryEntry.of(h) for h in ctx.registry.history(device_id)]


@router.post("/{device_id}/move", response_model=DevicePublic)
def move_device(ctx: Ctx, device_id: str, body: DeviceMove, who: Maintainer) -> DevicePublic:
    """Install a device somewhere else. Incidents already open keep the place they happened at."""
    return _public(ctx, ctx.registry.move(device_id, body.building_id, body.floor, body.unit, actor_of(who, body.actor),
                                          ctx.clock_ms(), body.label))


@router.post("/{device_id}/credentials", response_model=CredentialsPublic, status_code=status.HTTP_201_CREATED)
def issue_credentials(ctx: Ctx, device_id: str, _who: Maintainer) -> CredentialsPublic:
    """New MQTT credentials for a device (any earlier ones stop working). The password is shown only here, once."""
    issued = ctx.broker_access.issue(device_id)
    return CredentialsPublic(device_id=issued.device_id, username=issued.username, password=issued.password,
                             publish_filter=issued.publish_filter, broker_updated=ctx.broker_access.manages_broker)


@router.post("/{device_id}/retire", response_model=DevicePublic)
def retire_device(ctx: Ctx, device_id: str, body: DeviceRetire, who: Maintainer) -> DevicePublic:
    """Retire a device: from now on its messages are quarantined and its broker credentials revoked."""
    return _public(ctx, ctx.registry.retire(device_id, actor_of(who, body.actor), ctx.clock_ms(), body.reason))


kinds_router = APIRouter(prefix="/api", tags=["devices"], dependencies=VIEWER_ONLY)


@kinds_router.get("/device-kinds", response_model=list[DeviceKindPublic])
def device_kinds() -> list[DeviceKindPublic]:
    """Every device kind the system understands, with its label and message types."""
    return [DeviceKindPublic(name=k.name, label_zh=k.label_zh, heartbeat_s=k.heartbeat_s, messages=k.message_types())
            for k in KINDS.values()]
