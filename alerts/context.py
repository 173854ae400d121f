"""The rules' view of the world, backed by the registry and the thresholds."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from alerts.rules.base import Place, RuleContext
from alerts.thresholds import Thresholds
from devices.hierarchy import Location
from devices.reading import Reading
from devices.registry import DeviceRecord, DeviceRegistry, Lifecycle


class RegistryContext:
    """The registry as the rules see it.

    ``devices(kind)`` is read every minute by each dead-man timer, so the places of a kind are
    kept, and a registration, move or retirement changes only its devices' places (rebuilding a
    street's 47,000 detectors' places took a third of a second under the engine's lock, and an
    alarm waited for it after every registration a maintainer made). The first reading of
    a kind carries each device's last-seen time from its health: what the timers start from
    after a restart (alerts/rules/silence.py); later readings only need to know who is there.
    Thresholds are looked up once per device and name, again after any registry change (a move
    changes the building whose overrides apply).
    """

    def __init__(self, registry: DeviceRegistry, thresholds: Thresholds) -> None:
        self._registry = registry
        self._thresholds = thresholds
        # kind → device → place, in the registry's order; replaced whole (copy on write), never changed in place,
        # so a ticker reading one while a registration lands sees the one before or the one after.
        self._by_kind: dict[str, dict[str, Place]] = {}
        self._lists: dict[str, list[Place]] = {}
        self._cache_lock = threading.Lock()
        self._read_once: set[str] = set()
        self._thresholds_seen: dict[tuple[str, str, str], float] = {}  # a device's thresholds follow its building
        registry.subscribe(self._registry_changed)

    def _registry_changed(self, records: Sequence[DeviceRecord]) -> None:
        with self._cache_lock:
            self._apply_changes(records)
        self._thresholds_seen = {}

    def _apply_changes(self, records: Sequence[DeviceRecord]) -> None:
        by_kind = dict(self._by_kind)
        for kind in {r.kind for r in records}:
            if kind not in by_kind:
                continue  # not read yet: read whole when first asked
            places = dict(by_kind[kind])
            for rec in (r for r in records if r.kind == kind):
                if rec.lifecycle is Lifecycle.ACTIVE:
                    places[rec.device_id] = self._place(rec)
                else:
                    places.pop(rec.device_id, None)
            by_kind[kind] = places
            self._lists.pop(kind, None)
        self._by_kind = by_kind

    def place(self, device_id: str) -> Place | None:
        rec = self._registry.find(device_id)
        return None if rec is None else self._place(rec)

    def reading_context(self) -> ReadingContext:
        """The context the rules see for a batch's readings, one reading at a time (``ReadingContext.hear``)."""
        return ReadingContext(self, self._place)

    def devices(self, kind: str) -> Sequence[Place]:
        listed = self._lists.get(kind)
        if listed is not None:
            return listed
        with self._cache_lock:  # a registration landing meanwhile must not leave a list from before it
            places = self._by_kind.get(kind)
            if places is None:
                records = [r for r in self._registry.active() if r.kind == kind]
                if kind not in self._read_once:  # with health: a snapshot of each record, once
                    self._read_once.add(kind)
                    records = [self._registry.get(r.device_id) for r in records]
                places = {r.device_id: self._place(r) for r in records}
                self._by_kind = {**self._by_kind, kind: places}
            listed = self._lists[kind] = list(places.values())
        return listed

    def place_of(self, rec: DeviceRecord) -> Place:
        """A registration's place, as ``place`` gives it (its community from the hierarchy)."""
        return self._place(rec)

    def _place(self, rec: DeviceRecord) -> Place:
        building = self._registry.hierarchy.buildings.get(rec.building_id)
        return Place(rec.device_id, rec.kind, rec.building_id, rec.floor, rec.unit,
                     building.community_id if building else "", rec.street_id, rec.last_seen_ms)

    def set_policy_thresholds(self, values: Mapping[str, Mapping[str, float]]) -> None:
        """A policy version was applied: its kinds' thresholds hold from the next reading on."""
        self._thresholds.set_policy_values(values)
        self._thresholds_seen = {}

    def threshold(self, kind: str, name: str, device_id: str) -> float:
        key = (kind, name, device_id)
        value = self._thresholds_seen.get(key)
        if value is None:
            value = self._thresholds_seen[key] = self._thresholds.get(kind, name, device_id)
        return value

    def locate(self, device_id: str, scope: str = "") -> Location:
        """Where an incident is: its scope's place (a building, the street), else its device's."""
        h = self._registry.hierarchy
        if scope.startswith("building:"):
            return h.locate(scope.removeprefix("building:"))
        if scope.startswith(("street:", "community:", "area:")):
            return h.locate()
        rec = self._registry.find(device_id)
        return self._registry.location(rec) if rec else h.locate()

    def threshold_span(self, kind: str, name: str) -> tuple[float, float]:
        """The lowest and highest value of a threshold over every device of the kind (``Thresholds.span``)."""
        return self._thresholds.span(kind, name)


class ReadingContext:
    """The rules' context for the reading they are hearing: made once per batch, told of each reading
    (``hear``) before its rules run. ``place`` of that reading's device is made from the registration it
    carries (``Reading.registration``: ingest looked the device up once), at most once and only if a rule
    asks; every other question, and a reading without a registration, go to the context behind it."""

    __slots__ = ("_ctx", "_place_of", "_registration", "_place")

    def __init__(self, ctx: RuleContext, place_of: Callable[[DeviceRecord], Place]) -> None:
        self._ctx = ctx
        self._place_of = place_of
        self._registration: DeviceRecord | None = None
        self._place: Place | None = None

    def hear(self, reading: Reading) -> None:
        self._registration = reading.registration
        self._place = None

    def place(self, device_id: str) -> Place | None:
        rec = self._registration
        if rec is None or device_id != rec.device_id:
            return self._ctx.place(device_id)
        if self._place is None:
            self._place = self._place_of(rec)
        return self._place

    def devices(self, kind: str) -> Sequence[Place]:
        return self._ctx.devices(kind)

    def threshold(self, kind: str, name: str, device_id: str) -> float:
        return self._ctx.threshold(kind, name, device_id)

    def threshold_span(self, kind: str, name: str) -> tuple[float, float]:
        return self._ctx.threshold_span(kind, name)
