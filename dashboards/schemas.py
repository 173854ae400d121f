"""What the API shows of the domain objects (layered like the FastAPI template: *Public models)."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from alerts.incidents import Action, AuditEntry, Incident
from devices.hierarchy import FireStation, Hierarchy, Location, Responder
from devices.catalog import KINDS
from devices.csv_import import ImportReport
from devices.registry import DeviceRecord, HistoryEntry, Lifecycle, health
from ingest.dead_letters import DeadLetter


def ms_to_dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class LocationPublic(BaseModel):
    street_id: str
    street: str
    area_id: str
    area: str
    community_id: str
    community: str
    building_id: str
    building: str
    floor: int | None
    unit: str
    label: str

    @classmethod
    def of(cls, loc: Location) -> LocationPublic:
        return cls(label=loc.label(), **{f: getattr(loc, f) for f in Location.__slots__})  # type: ignore[attr-defined]


def _ms_as_dt(value: object) -> object:
    """A domain object's milliseconds since the epoch as a UTC datetime (a datetime, or None, as it is)."""
    return ms_to_dt(value) if isinstance(value, int) else value


def _location_public(value: object) -> object:
    return LocationPublic.of(value) if isinstance(value, Location) else value


def _enum_value(value: object) -> object:
    """An enum member as its value (the API shows ``"acknowledged"``, not the member)."""
    return value.value if isinstance(value, Enum) else value


# The domain keeps times as milliseconds (``opened_ms``), the API shows datetimes (``opened_at``).
Ms = Annotated[datetime, BeforeValidator(_ms_as_dt)]
MsOrNone = Annotated[datetime | None, BeforeValidator(_ms_as_dt)]


# An incident as the API shows it, read from the ``Incident`` by name (``of``): the times from its ``…_ms``
# fields, the location in words; a field added to both needs no copying line. (A comment, not a docstring:
# pydantic would put a docstring into the API's schema.)
class IncidentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: str
    title: str
    detail: str
    severity: str
    state: str
    category: str
    condition: str
    device_id: str
    kind: str
    location: Annotated[LocationPublic, BeforeValidator(_location_public)]
    opened_at: Ms = Field(validation_alias="opened_ms")
    first_event_at: Ms = Field(validation_alias="first_event_ms")
    last_event_at: Ms = Field(validation_alias="last_event_ms")
    updated_at: Ms = Field(validation_alias="updated_ms")
    event_count: int
    acknowledged_at: MsOrNone = Field(validation_alias="acknowledged_ms")
    acknowledged_by: str
    closed_at: MsOrNone = Field(validation_alias="closed_ms")
    scope: str = Field(description='"" for one device; "building:xq-01", "street:wanli" for a group incident')
    members: list[str] = Field(description="the devices a group incident gathers")
    subject: str = Field(description="what it is about: the device, or a group's place and how many devices it "
                                     "gathers (楼栋 xq-01：2 个烟感探测器); a group's device_id is the first that raised it")
    escalation_policy: str
    escalation_step: int
    tier: str = Field(description="the highest tier told so far: building, community, area, street or district")
    next_escalation_at: MsOrNone = Field(validation_alias="next_deadline_ms",
                                         description="when it climbs a tier unless acknowledged")
    drill: bool = Field(False, description="raised by a drill's devices (DRILL-…): 演练, left out of the KPIs and risk "
                                           "profiles, its notices only to drill contacts (docs/incidents.md, Drills)")
    flags: list[str] = Field(default_factory=list, description="data-quality flags of the messages it gathered, in "
                             "words (设备时钟落后 8.0 天, 序号跳变): let through, never dropped (docs/mqtt-contract.md)")

    @classmethod
    def of(cls, i: Incident) -> IncidentPublic:
        return cls.model_validate(i)


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: Ms = Field(validation_alias="at_ms")
    actor: str
    action: str
    from_state: Annotated[str | None, BeforeValidator(_enum_value)]
    to_state: Annotated[str, BeforeValidator(_enum_value)]
    note: str

    @classmethod
    def of(cls, a: AuditEntry) -> AuditEntryPublic:
        return cls.model_validate(a)


class IncidentDetail(IncidentPublic):
    audit: list[AuditEntryPublic]


class IncidentActionRequest(BaseModel):
    action: Action
    actor: str = Field(default="", max_length=100,
                       description="ignored: the audit trail records the caller's credential (docs/access.md)")
    note: str = Field(default="", max_length=2000)
    station_id: str = Field(default="", max_length=64,
                            description="a micro fire station answering its dispatch (its app, or an operator "
                                        "relaying its call): acknowledge, dispatch (left), arrive, resolve (finished)")
    dispatch_id: str = Field(default="", max_length=64,
                             description="with station_id: the dispatch answered (default: the station's latest "
                                         "dispatch to this incident)")
    into: str = Field(default="", max_length=32,
                      description="with merge: the active group incident to merge into (it carries this one's device)")


@dataclass(frozen=True, slots=True)
class _DeviceView:
    """A device record with what the API adds to it (its kind's label, its health now, its place), read by name."""

    record: DeviceRecord
    location: Location
    now_ms: int

    def __getattr__(self, name: str) -> object:  # the record's own fields
        return getattr(self.record, name)

    @property
    def kind_label(self) -> str:
        kind = self.record.kind
        return KINDS[kind].label_zh if kind in KINDS else kind

    @property
    def health(self) -> Set[str]:
        if self.record.lifecycle is not Lifecycle.ACTIVE:  # a retired device's health means nothing any more
            return set()
        return {h.value for h in health(self.record, self.now_ms)}


# A device as the API shows it, read from the record by name (``of``): the times from its ``…_ms`` fields.
class DevicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    device_id: str
    kind: str
    kind_label: str
    lifecycle: Annotated[str, BeforeValidator(_enum_value)]
    health: Annotated[list[str], BeforeValidator(sorted)]
    label: str
    location: Annotated[LocationPublic, BeforeValidator(_location_public)]
    registered_at: Ms = Field(validation_alias="registered_ms")
    retired_at: MsOrNone = Field(validation_alias="retired_ms")
    last_seen_at: MsOrNone = Field(validation_alias="last_seen_ms")
    last_type: str | None
    battery_pct: float | None
    tampered: bool
    connected: bool | None
    # Broker access (devices/broker_access.py), on the single device's record: none, pending, active, unconfirmed,
    # revoking, revoked or unmanaged; can_connect_now: whether the broker admits its credentials now (null: not known).
    access_state: str | None = None
    can_connect_now: bool | None = None

    @classmethod
    def of(cls, d: DeviceRecord, loc: Location, now_ms: int) -> DevicePublic:
        return cls.model_validate(_DeviceView(d, loc, now_ms))


Actor = Annotated[str, Field(max_length=100,
                            description="ignored: the audit trail records the caller's credential (docs/access.md)")]


class DeviceCreate(BaseModel):
    device_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", examples=["SD-XQ01-0101"])
    kind: str = Field(examples=["smoke_detector"])
    building_id: str = Field(default="", max_length=64, examples=["xq-01"])
    floor: int | None = Field(default=None, ge=-5, le=200)
    unit: str = Field(default="", max_length=16, examples=["0101"])
    label: str = Field(default="", max_length=200)
    actor: Actor = ""


class DeviceMove(BaseModel):
    building_id: str = Field(max_length=64)
    floor: int | None = Field(default=None, ge=-5, le=200)
    unit: str = Field(default="", max_length=16)
    label: str | None = Field(default=None, max_length=200)
    actor: Actor = ""


class DeviceRetire(BaseModel):
    reason: str = Field(default="", max_length=500)
    actor: Actor = ""


class DeviceCounts(BaseModel):
    total: int
    online: int
    offline: int
    low_battery: int
    tampered: int
    never_seen: int


class DeviceKindPublic(BaseModel):
    name: str
    label_zh: str
    short_label: str  # the word on the wall and the testers' page (烟感, 电梯摄像头)
    id_prefix: str  # its devices' ids begin "<prefix>-"
    placed: bool  # a simulated building or street has devices of this kind (its slice's placement)
    heartbeat_s: int | None
    messages: list[str]


class CredentialsPublic(BaseModel):
    device_id: str
    username: str
    password: str
    publish_filter: str
    broker_updated: bool  # false: the broker is not managed by this service; give it the credentials yourself
    access_state: str = "pending"  # "pending" until the broker confirms (GET /api/devices/{id}), "unmanaged" if not managed
    generation: int = 0  # the broker generation that carries them
    broker_url: str = ""  # where the device connects (WANLI_DEVICE_BROKER_URL, else the service's broker)


class BulkCredentialsRequest(BaseModel):
    """Which active devices get new credentials: every one matching all the given filters (at least one)."""

    all: bool = Field(default=False, description="every active device of the street")
    community_id: str = Field(default="", max_length=64)
    building_id: str = Field(default="", max_length=64)
    kind: str = Field(default="", max_length=32)
    device_ids: list[str] | None = Field(default=None, max_length=100_000,
                                         description="these devices (a CSV body of ids does the same)")


class BrokerAccessPublic(BaseModel):
    managed: bool
    requested_generation: int
    confirmed_generation: int
    condition: str | None  # "broker_access_unconfirmed" while raised
    condition_detail: str = ""
    condition_since: datetime | None = None
    # the dynamic-security plugin: whether the next change of a few devices goes there (no reload), and how many
    # clients the writer has given it since the last fold (docs/devices.md)
    fast_lane_ready: bool = False
    fast_lane_clients: int = 0


class DeviceHistoryEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: Ms = Field(validation_alias="at_ms")
    action: str
    actor: str
    detail: str

    @classmethod
    def of(cls, h: HistoryEntry) -> DeviceHistoryEntry:
        return cls.model_validate(h)


class RowErrorPublic(BaseModel):
    line: int
    device_id: str
    reason: str


def _shift_line_refs(reason: str, offset: int) -> str:
    """'duplicate of line N' refers to the same piece; make N the whole file's line too."""
    prefix = "duplicate of line "
    if offset and reason.startswith(prefix) and reason[len(prefix):].isdigit():
        return f"{prefix}{int(reason[len(prefix):]) + offset}"
    return reason


class ImportReportPublic(BaseModel):
    rows: int
    created: int
    unchanged: int
    reactivated: int
    updated: int
    rejected: list[RowErrorPublic]
    retired: list[RowErrorPublic] = Field(default=[], description="rows of retired devices, left retired "
                                                                  "(import with reactivate=true to bring them back)")
    encoding: str = Field(default="utf-8", description="how the file was read: utf-8 or gb18030 (GBK)")

    @classmethod
    def of(cls, r: ImportReport, line_offset: int = 0, encoding: str = "utf-8") -> ImportReportPublic:
        return cls(rows=r.rows, created=r.created, unchanged=r.unchanged, reactivated=r.reactivated, updated=r.updated,
                   rejected=[RowErrorPublic(line=e.line + line_offset, device_id=e.device_id,
                                            reason=_shift_line_refs(e.reason, line_offset)) for e in r.rejected],
                   retired=[RowErrorPublic(line=e.line + line_offset, device_id=e.device_id, reason=e.reason)
                            for e in r.retired], encoding=encoding)


class QuarantinedDevice(BaseModel):
    device_id: str
    kind: str
    reason: str
    messages: int
    first_seen_at: datetime
    last_seen_at: datetime


def _preview(payload: object) -> object:
    """The first 500 bytes of a payload, as text (bytes that are not UTF-8 shown as U+FFFD)."""
    return payload[:500].decode("utf-8", "replace") if isinstance(payload, bytes) else payload


class DeadLetterPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Annotated[int, BeforeValidator(lambda v: v or 0)]
    received_at: Ms = Field(validation_alias="received_ms")
    topic: str
    device_id: str
    reason: str
    detail: str
    payload_size: int
    payload_preview: Annotated[str, BeforeValidator(_preview)] = Field(validation_alias="payload")

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterPublic:
        return cls.model_validate(d)


class ResponderPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    role: str
    role_zh: str
    name: str
    phone: str

    @classmethod
    def of(cls, r: Responder) -> ResponderPublic:
        return cls.model_validate(r)


class TierPublic(BaseModel):
    tier: str
    tier_zh: str
    place_id: str
    place: str
    responders: list[ResponderPublic]


class StationPublic(BaseModel):
    id: str
    name: str
    distance_m: float
    responders: list[ResponderPublic]


class HouseholdPublic(BaseModel):
    unit: str
    resident: str
    contacts: list[ResponderPublic]


class BuildingDetail(BaseModel):
    id: str
    name: str
    floors: int
    units_per_floor: int
    location: LocationPublic
    chain: list[TierPublic]
    nearest_station: StationPublic | None
    stations: list[StationPublic]
    households: list[HouseholdPublic]

    @classmethod
    def of(cls, h: Hierarchy, building_id: str) -> BuildingDetail:
        b = h.building(building_id)

        def station(s: FireStation) -> StationPublic:
            return StationPublic(id=s.id, name=s.name, distance_m=round(h.distance_m(s, b.id), 1),
                                 responders=[ResponderPublic.of(r) for r in s.responders])

        nearest = h.nearest_station(b.id)
        return cls(
            id=b.id, name=b.name, floors=b.floors, units_per_floor=b.units_per_floor,
            location=LocationPublic.of(h.locate(b.id)),
            chain=[TierPublic(tier=t.tier.name.lower(), tier_zh=t.tier.label_zh, place_id=t.place_id, place=t.place,
                              responders=[ResponderPublic.of(r) for r in t.responders]) for t in h.chain(b.id)],
            nearest_station=station(nearest) if nearest else None,
            stations=sorted((station(s) for s in h.stations_covering(b.id)), key=lambda s: s.distance_m),
            households=[HouseholdPublic(unit=hh.unit, resident=hh.resident,
                                        contacts=[ResponderPublic.of(c) for c in hh.contacts])
                        for (bid, _unit), hh in sorted(h.households.items()) if bid == b.id],
        )
