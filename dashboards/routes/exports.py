"""CSV exports of incidents and devices, with the JSON lists' own filters, for Excel and the city's tools.

UTF-8 with a byte-order mark (Excel reads Chinese correctly only with it), times as
``YYYY-MM-DD HH:MM:SS`` in China Standard Time (UTC+8, as Excel reads them), streamed in
blocks. A text cell that Excel would take for a formula (``=``, ``+``, ``-``, ``@``) gets a
leading ``'``: labels and notes are typed by people. The devices file's first six columns are
the import format's, so an export can be edited and imported again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from alerts.incidents import Incident
from dashboards.auth import VIEWER_ONLY
from dashboards.deps import Ctx
from devices.catalog import KINDS
from devices.registry import Health, Lifecycle, health

router = APIRouter(prefix="/api", tags=["exports"], dependencies=VIEWER_ONLY)

CST = timezone(timedelta(hours=8), "CST")
BOM = "\ufeff"
_BLOCK = 500  # rows per chunk sent
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

INCIDENT_COLUMNS = ["id", "opened_at", "severity", "state", "title", "category", "condition", "kind", "device_id",
                    "community", "building_id", "building", "floor", "unit", "location", "event_count", "tier",
                    "escalation_step", "acknowledged_at", "acknowledged_by", "closed_at", "updated_at", "scope",
                    "members", "detail", "drill"]
DEVICE_COLUMNS = ["device_id", "kind", "building_id", "floor", "unit", "label", "kind_label", "lifecycle", "health",
                  "community", "building", "location", "registered_at", "last_seen_at", "last_type", "battery_pct",
                  "tampered", "connected", "retired_at"]

_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
          "description": "UTF-8 CSV with a byte-order mark; the first row names the columns"}}


def _time(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def _stream(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # CRLF: RFC 4180, and what Excel writes
    buf.write(BOM)
    writer.writerow(columns)
    for n, row in enumerate(rows, 1):
        writer.writerow([_cell(v) for v in row])
        if n % _BLOCK == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def _csv_response(name: str, ctx: Ctx, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> StreamingResponse:
    stamp = _time(ctx.clock_ms())[:10].replace("-", "")
    return StreamingResponse(_stream(columns, rows), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'})


def _incident_row(i: Incident) -> list[object]:
    loc = i.location
    return [i.id, _time(i.opened_ms), i.severity.value, i.state.value, i.title, i.category, i.condition, i.kind,
            i.device_id, loc.community, loc.building_id, loc.building, loc.floor, loc.unit, loc.label(), i.event_count,
            i.tier, i.escalation_step, _time(i.acknowledged_ms), i.acknowledged_by, _time(i.closed_ms),
            _time(i.updated_ms), i.scope, " ".join(i.members), i.detail, "演练" if i.drill else ""]


@router.get("/incidents.csv", response_class=StreamingResponse, responses=_CSV_RESPONSE)
def export_incidents(ctx: Ctx, state: Annotated[list[str] | None, Query()] = None, building_id: str = "",
                     active: bool = False, limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> StreamingResponse:
    """The incidents ``GET /api/incidents`` lists for the same filters, newest change first, as CSV."""
    if active:
        found = [i for i in ctx.alerts.active() if not building_id or i.location.building_id == building_id][:limit]
    else:
        found = ctx.incidents.list(state or (), building_id, limit)
    return _csv_response("incidents", ctx, INCIDENT_COLUMNS, map(_incident_row, found))


@router.get("/devices.csv", response_class=StreamingResponse, responses=_CSV_RESPONSE)
def export_devices(ctx: Ctx, kind: str = "", building_id: str = "", community_id: str = "",
                   health_flag: Annotated[Health | None, Query(alias="health")] = None,
                   lifecycle: Lifecycle | None = Lifecycle.ACTIVE,
                   q: Annotated[str, Query(max_length=64, description="part of the device id, any case")] = ""
                   ) -> StreamingResponse:
    """Every device ``GET /api/devices`` lists for the same filters (no page limit), ordered by id, as CSV."""
    now = ctx.clock_ms()

    def page_at(offset: int) -> list[Any]:
        return ctx.registry.list(now_ms=now, kind=kind, building_id=building_id, community_id=community_id,
                                 health_flag=health_flag, lifecycle=lifecycle, limit=1000, offset=offset,
                                 id_contains=q)

    first = page_at(0)  # here, not in the stream: an unknown building or community is a 404, not a file cut short

    def rows() -> Iterator[list[object]]:
        offset, page = 0, first
        while page:
            for d in page:
                loc = ctx.registry.location(d)
                active = d.lifecycle is Lifecycle.ACTIVE
                flags = " ".join(sorted(h.value for h in health(d, now))) if active else ""
                yield [d.device_id, d.kind, d.building_id, d.floor, d.unit, d.label,
                       KINDS[d.kind].label_zh if d.kind in KINDS else d.kind, d.lifecycle.value, flags,
                       loc.community, loc.building, loc.label(), _time(d.registered_ms), _time(d.last_seen_ms),
                       d.last_type or "", d.battery_pct, d.tampered, d.connected, _time(d.retired_ms)]
            offset += len(page)
            page = page_at(offset)

    return _csv_response("devices", ctx, DEVICE_COLUMNS, rows())
