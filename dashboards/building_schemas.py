"""What the map, the building risk profile, the wall's notification list and the KPI panel return."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from dashboards.schemas import BuildingDetail, DevicePublic, IncidentPublic


class BuildingOnMap(BaseModel):
    id: str
    name: str
    community_id: str
    community: str
    area_id: str
    area: str
    floors: int
    high_rise: bool
    x: float
    y: float
    derived: bool = Field(description="placed by the block plan (the hierarchy gives no coordinates)")
    state: str = Field(description="critical, incident, fault, normal or no_devices: the colour on the map")
    active: int = Field(description="active incidents")
    critical: int = Field(description="active incidents at critical severity")
    top_incident: str = Field(description="the title of its most urgent active incident, or empty")
    devices: int
    faults: int = Field(description="active devices offline, low on battery, tampered or never seen")
    overdue: int = Field(description="hazard reports past their rectification deadline")


class CommunityOnMap(BaseModel):
    id: str
    name: str
    area_id: str
    area: str
    road: str


class StationOnMap(BaseModel):
    id: str
    name: str
    x: float
    y: float


class StreetMap(BaseModel):
    street: str
    buildings: list[BuildingOnMap]
    communities: list[CommunityOnMap]
    fire_stations: list[StationOnMap]
    at: datetime


class FactorPublic(BaseModel):
    code: str
    label_zh: str
    points: int
    detail_zh: str


class RiskPublic(BaseModel):
    score: int = Field(ge=0, le=100)
    level: str = Field(description="low, medium, high or severe")
    level_zh: str
    factors: list[FactorPublic] = Field(description="what adds to the score, heaviest first (the sum is capped at 100)")


class KindHealthPublic(BaseModel):
    kind: str
    kind_label: str
    registered: int
    online: int
    offline: int
    low_battery: int
    tampered: int
    never_seen: int


class CoveragePublic(BaseModel):
    units: int = Field(description="households in the building (floors × units per floor)")
    covered_units: int = Field(description="households with a smoke detector registered in them")
    devices: int
    online: int
    online_rate: float | None = Field(description="online / registered, None with no devices")


class RectificationPublic(BaseModel):
    incident: IncidentPublic
    category_zh: str
    deadline_at: datetime
    overdue: bool


class PastIncidentPublic(BaseModel):
    id: str
    title: str
    kind: str
    category: str
    condition: str
    severity: str
    state: str
    device_id: str
    opened_at: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None


class HistoryPublic(BaseModel):
    days: int
    alarms: int = Field(description="devices' fire alarms (smoke alarm, charging-shed smoke), false ones included")
    false_alarms: int
    false_alarm_rate: float | None
    charging_anomalies: int
    hazards: int
    by_category: dict[str, int]
    by_day: list[dict[str, Any]] = Field(description="per day (Shanghai): alarms, false_alarms, charging, hazards")
    recent: list[PastIncidentPublic] = Field(description="newest first, at most 50")


class BuildingProfile(BaseModel):
    building: BuildingDetail
    risk: RiskPublic
    state: str
    coverage: CoveragePublic
    devices: list[KindHealthPublic]
    attention: list[DevicePublic] = Field(description="devices that need a visit (offline, low, tampered, never seen), at most 200")
    active: list[IncidentPublic]
    rectifications: list[RectificationPublic]
    history: HistoryPublic
    at: datetime


class SeriesPublic(BaseModel):
    device_id: str
    label: str
    field: str
    unit: str
    points: list[tuple[int, float]] = Field(description="[time in ms since the epoch, value], oldest first")


class BuildingTelemetry(BaseModel):
    available: bool = Field(description="false: this service has no telemetry store to read back from")
    store: str
    charging_temperature: list[SeriesPublic] = Field(description="per charging port: temperature °C")
    detector_battery: list[SeriesPublic] = Field(description="the smoke detectors lowest on battery: battery %")
    detectors_total: int
    resolution: str = Field(default="recent", description="recent: the newest readings; raw or hourly: over ?days "
                                                          "(hourly aggregates' means beyond two days or the raw period)")


class NotificationPublic(BaseModel):
    step: int
    tier: str
    tier_zh: str
    place_id: str
    role: str
    role_zh: str
    recipient: str
    channel: str
    created_at: datetime
    sent_at: datetime | None
    dispatch_id: str
    # Reaching people (issue 22): one more row per attempt on a person's phone (channel sms, voice, wecom,
    # dingtalk, email), with its status: queued, sent, delivered, answered, failed, cancelled (standby: a
    # stand-in contact point not needed yet). The MQTT/webhook rows say sent or queued, attempt_id null.
    status: str = ""
    attempt_id: int | None = None
    address: str = ""  # masked: 136****0001
    provider: str = ""
    due_at: datetime | None = None
    delivered_at: datetime | None = None
    answered_at: datetime | None = None
    answer: str = ""
    error: str = ""
    drill: bool = False


class RuleFigures(BaseModel):
    """How many met a time rule (acknowledge within 1 minute, on scene within 3)."""

    within_s: int
    total: int = Field(description="how many were measured")
    within: int
    median_s: float | None
    p90_s: float | None
    waiting_past: int = Field(default=0, description="still waiting and already past the rule (not in total)")


class DeviceFigures(BaseModel):
    total: int
    online: int
    offline: int
    low_battery: int
    tampered: int
    never_seen: int
    online_rate: float | None


class BuildingFalseAlarms(BaseModel):
    building_id: str
    building: str
    community: str
    alarms: int
    false_alarms: int
    rate: float


class OverduePublic(BaseModel):
    incident_id: str
    title: str
    place: str
    category_zh: str
    deadline_at: datetime
    overdue_s: int


class KpiPublic(BaseModel):
    at: datetime
    window_hours: int
    active: int
    by_state: dict[str, int]
    by_tier: dict[str, int]
    by_severity: dict[str, int]
    by_tier_state: dict[str, dict[str, int]] = Field(description="tier → state → active incidents")
    acknowledge: RuleFigures = Field(description="incidents opened in the window: opened → acknowledged, against 1 minute")
    arrive: RuleFigures = Field(description="incidents opened in the window: opened → first on scene, against 3 minutes")
    devices: DeviceFigures
    overdue_rectifications: int
    overdue: list[OverduePublic] = Field(description="most overdue first, at most 20")
    false_alarms_by_building: list[BuildingFalseAlarms] = Field(description="buildings with fire alarms in the window, highest rate first")
    # micro fire stations' own answers to dispatches (the rules' memory)
    dispatches: int
    acknowledged_within_1_min: int
    acknowledged: int
    arrived_within_3_min: int
    arrived: int
    recent_dispatches: list[dict[str, Any]]
