"""The device registry: which devices exist, what kind they are and where they are installed.

Ingest asks it, for every message, whether the device is registered and where it is; so
the registered devices are held in memory (tens of thousands of small records) and the
database is written through on every change.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import Column, Engine, Index, Integer, String, Table, bindparam, select, update

from devices.catalog import KINDS
from devices.hierarchy import Hierarchy, Location
from wanli.db import METADATA
from wanli.errors import Conflict, NotFound


class DeviceStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


devices_table = Table(
    "devices",
    METADATA,
    Column("device_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("street_id", String(32), nullable=False),
    Column("building_id", String(64), nullable=False, default=""),
    Column("floor", Integer, nullable=True),
    Column("unit", String(16), nullable=False, default=""),
    Column("label", String(200), nullable=False, default=""),
    Column("status", String(16), nullable=False, default=DeviceStatus.ACTIVE.value),
    Column("registered_ms", Integer, nullable=False),
    Column("last_seen_ms", Integer, nullable=True),
    Column("last_type", String(32), nullable=True),
    Index("ix_devices_building", "building_id"),
    Index("ix_devices_kind", "kind"),
)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    kind: str
    street_id: str
    building_id: str = ""
    floor: int | None = None
    unit: str = ""
    label: str = ""
    status: DeviceStatus = DeviceStatus.ACTIVE
    registered_ms: int = 0
    last_seen_ms: int | None = None
    last_type: str | None = None


class DeviceRegistry:
    def __init__(self, engine: Engine, hierarchy: Hierarchy) -> None:
        self._engine = engine
        self._hierarchy = hierarchy
        self._lock = threading.Lock()
        with engine.connect() as conn:
            rows = conn.execute(select(devices_table)).mappings().all()
        self._by_id: dict[str, DeviceRecord] = {r["device_id"]: _record(r) for r in rows}

    @property
    def hierarchy(self) -> Hierarchy:
        return self._hierarchy

    def register(self, record: DeviceRecord) -> DeviceRecord:
        """Register a device, or return the existing identical registration (idempotent)."""
        return self.register_many([record])[0]

    def register_many(self, records: Iterable[DeviceRecord]) -> list[DeviceRecord]:
        out: list[DeviceRecord] = []
        new: list[DeviceRecord] = []
        with self._lock:
            for rec in records:
                self._check(rec)
                existing = self._by_id.get(rec.device_id)
                if existing is not None:
                    if _placement(existing) != _placement(rec):
                        raise Conflict(f"device {rec.device_id} is already registered as {existing.kind} at {existing.building_id}")
                    out.append(existing)
                    continue
                new.append(rec)
                out.append(rec)
            if new:
                with self._engine.begin() as conn:
                    conn.execute(devices_table.insert(), [_row(r) for r in new])
                for rec in new:
                    self._by_id[rec.device_id] = rec
        return out

    def _check(self, rec: DeviceRecord) -> None:
        if rec.kind not in KINDS:
            raise Conflict(f"unknown device kind {rec.kind!r}; known: {', '.join(KINDS)}")
        if rec.building_id:
            self._hierarchy.building(rec.building_id)  # raises NotFound

    def get(self, device_id: str) -> DeviceRecord:
        rec = self._by_id.get(device_id)
        if rec is None:
            raise NotFound("device", device_id)
        return rec

    def find(self, device_id: str) -> DeviceRecord | None:
        """The active registration of a device, or None (the hot-path lookup)."""
        rec = self._by_id.get(device_id)
        return rec if rec is not None and rec.status is DeviceStatus.ACTIVE else None

    def location(self, rec: DeviceRecord) -> Location:
        return self._hierarchy.locate(rec.building_id, rec.floor, rec.unit)

    def list(self, kind: str = "", building_id: str = "", community_id: str = "", limit: int = 1000) -> list[DeviceRecord]:
        buildings = set(self._hierarchy.communities[community_id].building_ids) if community_id in self._hierarchy.communities else None
        if community_id and buildings is None:
            return []
        out = []
        for rec in self._by_id.values():
            if kind and rec.kind != kind:
                continue
            if building_id and rec.building_id != building_id:
                continue
            if buildings is not None and rec.building_id not in buildings:
                continue
            out.append(rec)
            if len(out) >= limit:
                break
        return out

    def mark_seen(self, seen: Mapping[str, tuple[int, str]]) -> None:
        """Record the last message time and type per device (one UPDATE per device, one transaction)."""
        if not seen:
            return
        with self._lock:
            for device_id, (ts_ms, msg_type) in seen.items():
                rec = self._by_id.get(device_id)
                if rec is not None:
                    self._by_id[device_id] = replace(rec, last_seen_ms=ts_ms, last_type=msg_type)
        with self._engine.begin() as conn:
            conn.execute(
                update(devices_table).where(devices_table.c.device_id == bindparam("b_device_id")).values(
                    last_seen_ms=bindparam("b_ts"), last_type=bindparam("b_type")),
                [{"b_device_id": d, "b_ts": ts, "b_type": t} for d, (ts, t) in seen.items()],
            )


def _placement(rec: DeviceRecord) -> tuple[object, ...]:
    return (rec.kind, rec.street_id, rec.building_id, rec.floor, rec.unit)


def _row(rec: DeviceRecord) -> dict[str, object]:
    return {
        "device_id": rec.device_id, "kind": rec.kind, "street_id": rec.street_id, "building_id": rec.building_id,
        "floor": rec.floor, "unit": rec.unit, "label": rec.label, "status": rec.status.value,
        "registered_ms": rec.registered_ms, "last_seen_ms": rec.last_seen_ms, "last_type": rec.last_type,
    }


def _record(row: Mapping[str, object]) -> DeviceRecord:
    return DeviceRecord(
        device_id=str(row["device_id"]), kind=str(row["kind"]), street_id=str(row["street_id"]),
        building_id=str(row["building_id"] or ""), floor=row["floor"],  # type: ignore[arg-type]
        unit=str(row["unit"] or ""), label=str(row["label"] or ""), status=DeviceStatus(str(row["status"])),
        registered_ms=int(row["registered_ms"]), last_seen_ms=row["last_seen_ms"],  # type: ignore[arg-type]
        last_type=row["last_type"],  # type: ignore[arg-type]
    )
