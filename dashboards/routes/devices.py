from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from dashboards.auth import VIEWER_ONLY, ErrorPublic, Maintainer, actor_of
from dashboards.deps import Ctx
from dashboards.schemas import (
    BrokerAccessPublic,
    BulkCredentialsRequest,
    CredentialsPublic,
    DeviceCounts,
    DeviceCreate,
    DeviceKindPublic,
    DeviceHistoryEntry,
    DeviceMove,
    DevicePublic,
    DeviceRetire,
    ImportReportPublic,
    ms_to_dt,
)
from devices.catalog import KINDS
from devices.kinds import SLICES
from devices.csv_import import decode_csv, import_csv
from devices.registry import DeviceRecord, Health, Lifecycle, RegisterOutcome
from foundation.errors import Invalid, NotFound, TooLarge

MAX_CSV_BYTES = 32 * 1024 * 1024

router = APIRouter(prefix="/api/devices", tags=["devices"], dependencies=VIEWER_ONLY)
# Search by device id: any part of it, any case (SD-XQ01, xq01-05, 0101)
DeviceSearch = Annotated[str, Query(max_length=64, description="part of the device id, any case")]


def _public(ctx: Ctx, rec: DeviceRecord) -> DevicePublic:
    return DevicePublic.of(rec, ctx.registry.location(rec), ctx.clock_ms())


@router.get("", response_model=list[DevicePublic])
def list_devices(ctx: Ctx, kind: str = "", building_id: str = "", community_id: str = "",
                 health: Health | None = None, lifecycle: Lifecycle | None = Lifecycle.ACTIVE,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                 offset: Annotated[int, Query(ge=0)] = 0, q: DeviceSearch = "") -> list[DevicePublic]:
    """Devices by kind, place, health (online, offline, low_battery, tampered, never_seen) and part of their id."""
    recs = ctx.registry.list(now_ms=ctx.clock_ms(), kind=kind, building_id=building_id, community_id=community_id,
                             health_flag=health, lifecycle=lifecycle, limit=limit, offset=offset, id_contains=q)
    return [_public(ctx, r) for r in recs]


@router.get("/counts", response_model=DeviceCounts)
def count_devices(ctx: Ctx, kind: str = "", building_id: str = "", community_id: str = "",
                  lifecycle: Lifecycle | None = Lifecycle.ACTIVE, q: DeviceSearch = "") -> DeviceCounts:
    """How many devices match, in all and per health flag: the maintainers' lists at a glance."""
    counts = ctx.registry.count_health(now_ms=ctx.clock_ms(), kind=kind, building_id=building_id,
                                       community_id=community_id, lifecycle=lifecycle, id_contains=q)
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
                         first_line: Annotated[int, Query(ge=1)] = 1,
                         reactivate: Annotated[bool, Query(description="rows of retired devices bring them back "
                                                                      "(default: they stay retired, reported)")] = False
                         ) -> ImportReportPublic:
    """Bulk registration: the request body is a CSV file, UTF-8 or GBK/GB18030 (Chinese Excel's "CSV (逗号分隔)"),
    detected, or as its content type's charset says. Bad rows are reported; good rows land; rows of retired
    devices leave them retired and are reported, unless ``reactivate``. The history records the signed-in account.

    ``first_line``: the line number of this body's header in the whole file, for a client that
    uploads a large file in pieces, so that reported line numbers are the file's own.
    """
    body = await _body_within(request, MAX_CSV_BYTES)
    text, encoding = decode_csv(body, _charset(request))
    # newline="" lets the csv module see a quoted field's own line breaks; splitlines() would cut it
    report = import_csv(ctx.registry, io.StringIO(text, newline=""), actor=actor_of(who, actor), now_ms=ctx.clock_ms(),
                        reactivate=reactivate)
    return ImportReportPublic.of(report, line_offset=first_line - 1, encoding=encoding)


def _charset(request: Request) -> str:
    """The charset the content type declares ("" if none)."""
    for part in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            return value.strip()
    return ""


async def _body_within(request: Request, limit: int, what: str = "the CSV file") -> bytes:
    """The request body, refused (413) as soon as it passes ``limit``: by its declared length, else while it streams."""
    too_large = TooLarge(f"{what} is larger than {limit // (1024 * 1024)} MiB; split it")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


_BULK_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    201: {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
          "description": "UTF-8 CSV device_id,username,password,publish_filter,broker_url: the passwords, shown "
                         "this once, and where the devices connect"}}
MAX_BULK_BODY_BYTES = 8 * 1024 * 1024


@router.post("/credentials", response_class=Response, status_code=status.HTTP_201_CREATED,
             responses=_BULK_CSV_RESPONSE, openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": BulkCredentialsRequest.model_json_schema()},
                 "text/csv": {"schema": {"type": "string"},
                              "description": "device ids, one a line (a first line 'device_id' is a header)"}}}})
async def issue_bulk_credentials(ctx: Ctx, request: Request, _who: Maintainer) -> Response:
    """New MQTT credentials for many active devices at once (any earlier ones stop working): by building, by kind,
    or a list (CSV) of ids. One change at the broker; the CSV answer holds the passwords, shown only here, once."""
    body = await _body_within(request, MAX_BULK_BODY_BYTES, "the request")
    if request.headers.get("content-type", "").split(";")[0].strip() == "text/csv":
        selection = BulkCredentialsRequest(device_ids=_ids_from_csv(body, _charset(request)))
    else:
        try:
            selection = BulkCredentialsRequest.model_validate(json.loads(body or b"{}"))
        except (ValueError, TypeError) as exc:
            raise Invalid(f"the body must be JSON {{building_id, kind, device_ids}} or a text/csv list of ids: "
                          f"{str(exc).splitlines()[0][:200]}") from None
    device_ids = _select(ctx, selection)
    issued = ctx.broker_access.issue_many(device_ids)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    broker_url = _broker_url(ctx)
    writer.writerow(["device_id", "username", "password", "publish_filter", "broker_url"])
    writer.writerows((i.device_id, i.username, i.password, i.publish_filter, broker_url) for i in issued)
    generation = issued[0].generation if issued else 0
    return Response(out.getvalue(), status_code=status.HTTP_201_CREATED, media_type="text/csv; charset=utf-8",
                    headers={"Cache-Control": "no-store", "X-Broker-Generation": str(generation),
                             "X-Credentials-Issued": str(len(issued)),
                             "Content-Disposition": 'attachment; filename="device-credentials.csv"'})


def _ids_from_csv(body: bytes, charset: str = "") -> list[str]:
    text, _encoding = decode_csv(body, charset)
    ids = [row[0].strip() for row in csv.reader(io.StringIO(text, newline="")) if row and row[0].strip()]
    return ids[1:] if ids and ids[0] == "device_id" else ids


def _select(ctx: Ctx, selection: BulkCredentialsRequest) -> list[str]:
    if not (selection.all or selection.community_id or selection.building_id or selection.kind
            or selection.device_ids is not None):
        raise Invalid("say which devices: all, community_id, building_id, kind or device_ids (a CSV of ids)")
    if selection.building_id and selection.building_id not in ctx.registry.hierarchy.buildings:
        raise Invalid(f"unknown building {selection.building_id!r}")
    if selection.kind and selection.kind not in KINDS:
        raise Invalid(f"unknown device kind {selection.kind!r}; known: {', '.join(KINDS)}")
    if selection.device_ids is not None:
        missing = [d for d in selection.device_ids if ctx.registry.find(d) is None]
        if missing:
            raise NotFound("device", ", ".join(missing[:10]) + (" …" if len(missing) > 10 else ""))
        if not selection.device_ids:
            raise Invalid("the list of device ids is empty")
    wanted = set(selection.device_ids) if selection.device_ids is not None else None
    community: set[str] | None = None
    if selection.community_id:
        found = ctx.registry.hierarchy.communities.get(selection.community_id)
        if found is None:
            raise Invalid(f"unknown community {selection.community_id!r}")
        community = set(found.building_ids)
    chosen = [r.device_id for r in ctx.registry.active()
              if (community is None or r.building_id in community)
              and (not selection.building_id or r.building_id == selection.building_id)
              and (not selection.kind or r.kind == selection.kind)
              and (wanted is None or r.device_id in wanted)]
    if wanted is not None and len(chosen) < len(wanted):
        retired = sorted(wanted - set(chosen))
        if not (selection.building_id or selection.kind or selection.community_id):
            raise Invalid(f"retired devices get no credentials: {', '.join(retired[:10])}")
    if not chosen:
        raise Invalid("no active device matches")
    return chosen


@router.get("/{device_id}", response_model=DevicePublic)
def get_device(ctx: Ctx, device_id: str) -> DevicePublic:
    """One device, with whether the broker admits its credentials now (``access_state``, ``can_connect_now``)."""
    public = _public(ctx, ctx.registry.get(device_id))
    access = ctx.broker_access.access(device_id)
    return public.model_copy(update={"access_state": access.state.value, "can_connect_now": access.can_connect_now})


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
    managed = ctx.broker_access.manages_broker
    return CredentialsPublic(device_id=issued.device_id, username=issued.username, password=issued.password,
                             publish_filter=issued.publish_filter, broker_updated=managed,
                             access_state="pending" if managed else "unmanaged", generation=issued.generation,
                             broker_url=_broker_url(ctx))


def _broker_url(ctx: Ctx) -> str:
    return ctx.settings.resolved_device_broker_url if ctx.settings is not None else ""


@router.post("/{device_id}/retire", response_model=DevicePublic)
def retire_device(ctx: Ctx, device_id: str, body: DeviceRetire, who: Maintainer) -> DevicePublic:
    """Retire a device: from now on its messages are quarantined and its broker credentials revoked."""
    return _public(ctx, ctx.registry.retire(device_id, actor_of(who, body.actor), ctx.clock_ms(), body.reason))


kinds_router = APIRouter(prefix="/api", tags=["devices"], dependencies=VIEWER_ONLY)


@kinds_router.get("/broker-access", response_model=BrokerAccessPublic)
def broker_access_status(ctx: Ctx) -> BrokerAccessPublic:
    """The managed broker's credential generations: requested, confirmed, and the ``broker_access_unconfirmed``
    condition while a change waits longer than its limit."""
    requested, confirmed = ctx.broker_access.generations()
    cond = ctx.broker_access.condition
    return BrokerAccessPublic(managed=ctx.broker_access.manages_broker, requested_generation=requested,
                              confirmed_generation=confirmed, condition=cond.name if cond else None,
                              condition_detail=cond.detail if cond else "",
                              condition_since=ms_to_dt(cond.since_ms) if cond else None,
                              fast_lane_ready=ctx.broker_access.fast_lane_ready,
                              fast_lane_clients=ctx.broker_access.fast_lane_clients)


@kinds_router.get("/device-kinds", response_model=list[DeviceKindPublic])
def device_kinds() -> list[DeviceKindPublic]:
    """Every device kind the system understands (its slice, devices/kinds/), with its labels and message types."""
    return [DeviceKindPublic(name=s.name, label_zh=s.kind.label_zh, short_label=s.short_label, id_prefix=s.id_prefix,
                             placed=s.placement.places_any,
                             heartbeat_s=s.kind.heartbeat_s, messages=s.kind.message_types())
            for s in SLICES.values()]
