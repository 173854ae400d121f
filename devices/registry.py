"""The device registry: which devices exist, what kind they are, where they are installed,
and how healthy they look.

Ingest asks it, for every message, whether the device is registered and where it is; so
the registrations are held in memory (tens of thousands of small records) and written
through to the database on every change. Maintainers register, move and retire devices;
each of those is kept in the device's history. Health (last seen, battery, tamper,
connection) is folded in from the readings ingest hands over, one transaction per batch.

Lock order (docs/reliability.md, "Lock order"): the registry's lock comes first. Ingest's
unit of work (``ingest/unit_of_work.py``) holds it from admission to the end of its commit and
takes the spool's, the disk guard's and the alert service's locks under it; nothing here asks
for any of those while holding it, and nothing holding them asks for this one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from operator import attrgetter
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
    update,
)

from devices.catalog import KINDS
from devices.hierarchy import Hierarchy, Location
from devices.messages import Offline, Online
from devices.reading import Reading
from devices.drill import is_drill
from devices.reserved import normalised_logins, refuse_reserved
from devices.topics import MessageClass, is_device_id
from devices.sequence import JUMP_ABOVE, WINDOW, SeqState, Verdict, judge
from foundation.change_bus import DEVICES, ChangeBus, LocalChangeBus
from foundation.db import METADATA, BigId
from foundation.errors import Conflict, Invalid, NotFound

LOW_BATTERY_PCT = 20.0
SILENT_INTERVALS = 3  # a device that missed this many heartbeats counts as offline


class Lifecycle(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class Health(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    LOW_BATTERY = "low_battery"
    TAMPERED = "tampered"
    NEVER_SEEN = "never_seen"


devices_table = Table(
    "devices",
    METADATA,
    Column("device_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("street_id", String(32), nullable=False),
    Column("building_id", String(64), nullable=False),
    Column("floor", Integer, nullable=True),
    Column("unit", String(16), nullable=False),
    Column("label", String(200), nullable=False),
    Column("lifecycle", String(16), nullable=False),
    Column("registered_ms", BigInteger, nullable=False),
    Column("retired_ms", BigInteger, nullable=True),
    Column("last_seen_ms", BigInteger, nullable=True),
    Column("last_type", String(32), nullable=True),
    Column("battery_pct", Float, nullable=True),
    Column("tampered", Boolean, nullable=False),
    Column("connected", Boolean, nullable=True),
    Column("seq_highest", BigInteger, nullable=True),
    Column("seq_window", BigInteger, nullable=False),
    # Events are numbered from the same counter but judged on their own (they may overtake
    # telemetry on ingest's alarm lane): their own highest number and window.
    Column("event_seq_highest", BigInteger, nullable=True),
    Column("event_seq_window", BigInteger, nullable=False),
    # Status messages (online, and the offline last will numbered when the connection opened) are judged on
    # their own too; online_seq says which connection is the current one (see DeviceState.fold).
    Column("status_seq_highest", BigInteger, nullable=True),
    Column("status_seq_window", BigInteger, nullable=False),
    Column("online_seq", BigInteger, nullable=True),
    Index("ix_devices_building", "building_id"),
    Index("ix_devices_kind", "kind"),
)

device_history_table = Table(
    "device_history",
    METADATA,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_device_history_device", "device_id"),
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
    lifecycle: Lifecycle = Lifecycle.ACTIVE
    registered_ms: int = 0
    retired_ms: int | None = None
    # Its state when it was read (DeviceRegistry.get): DeviceState's fields, explained there. A frozen record
    # cannot inherit them from the mutable state, so they stand here again; a unit test keeps the two equal.
    last_seen_ms: int | None = None
    last_type: str | None = None
    battery_pct: float | None = None
    tampered: bool = False
    connected: bool | None = None
    seq_highest: int | None = None
    seq_window: int = 0
    event_seq_highest: int | None = None
    event_seq_window: int = 0
    status_seq_highest: int | None = None
    status_seq_window: int = 0
    online_seq: int | None = None

    @property
    def placement(self) -> tuple[str, str, str, int | None, str]:
        return (self.kind, self.street_id, self.building_id, self.floor, self.unit)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    device_id: str
    at_ms: int
    action: str
    actor: str
    detail: str


class RegisterOutcome(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    UPDATED = "updated"  # same place, new label
    REACTIVATED = "reactivated"


# -- pure parts ------------------------------------------------------------------------


def health(rec: DeviceRecord, now_ms: int) -> frozenset[Health]:
    """What a maintainer's list shows for a device now; a device can be online and low on battery at once."""
    return _health(rec.kind, rec.last_seen_ms, rec.connected, rec.battery_pct, rec.tampered, now_ms)


def _health(kind: str, last_seen_ms: int | None, connected: bool | None, battery_pct: float | None, tampered: bool,
            now_ms: int) -> frozenset[Health]:
    flags: set[Health] = set()
    if last_seen_ms is None:
        flags.add(Health.NEVER_SEEN)
    else:
        heartbeat_s = KINDS[kind].heartbeat_s if kind in KINDS else None
        silent = heartbeat_s is not None and now_ms - last_seen_ms > SILENT_INTERVALS * heartbeat_s * 1000
        flags.add(Health.OFFLINE if connected is False or silent else Health.ONLINE)
    if battery_pct is not None and battery_pct < LOW_BATTERY_PCT:
        flags.add(Health.LOW_BATTERY)
    if tampered:
        flags.add(Health.TAMPERED)
    return frozenset(flags)


_SEQ_MASK = (1 << WINDOW) - 1  # devices/sequence.py's window of WINDOW bits
JUMP_FOLLOWS = WINDOW  # a jumped number followed this closely by the next one: the counter moved there

# Each message class's sequence window in DeviceState: (highest, window) attribute names.
_OTHER_WINDOW = ("seq_highest", "seq_window")  # telemetry and everything not below
_SEQ_WINDOWS = {MessageClass.EVENT: ("event_seq_highest", "event_seq_window"),
                MessageClass.STATUS: ("status_seq_highest", "status_seq_window")}


@dataclass(slots=True, eq=False)
class DeviceState:
    """What ingest learns about a device from its messages: health and sequence state.

    Mutable on purpose: it changes with every message, so it is copied once per device per
    batch and changed in place, rather than rebuilding an immutable record per message.
    Its fields are declared here once: they name the ``devices`` table's state columns, the
    row mapping (``_states_of``), the flush (``write_states``) and a record's snapshot
    (``DeviceRegistry.get``); a ``DeviceRecord`` carries the same fields, read-only, after its
    registration (a unit test keeps the two equal).
    """

    last_seen_ms: int | None = None
    last_type: str | None = None
    battery_pct: float | None = None
    tampered: bool = False
    connected: bool | None = None
    seq_highest: int | None = None  # the sequence-number state (devices/sequence.py), kept with the device
    seq_window: int = 0
    event_seq_highest: int | None = None  # the same for the device's events (judged apart: see judge)
    event_seq_window: int = 0
    status_seq_highest: int | None = None  # and for its status messages (online, its last will)
    status_seq_window: int = 0
    online_seq: int | None = None  # the sequence number of the `online` that opened its current connection
    # The last number that jumped far past the window (kept in memory only, never stored): a next
    # number just after it means the device's counter really moved there.
    jump_seq: int | None = field(default=None, init=False, repr=False)

    FIELDS: ClassVar[tuple[str, ...]] = ()  # the stored fields, in order (every field but jump_seq): set below

    def copy(self) -> DeviceState:
        return _copy_state(self)  # made below from the fields: once a device a batch, on the hot path

    def values(self) -> tuple[object, ...]:
        """The stored fields' values, in ``FIELDS`` order."""
        return _stored_values(self)

    def judge(self, seq: int, msg_class: MessageClass = MessageClass.TELEMETRY, *, restarts: bool = False) -> Verdict:
        """Judge a sequence number and remember it if it is new.

        A device's events, its status messages and the rest are each judged against their own
        window. Events: on ingest's alarm lane an alarm overtakes the telemetry published before
        it, which must not then look like a replay. Status: the ``offline`` last will carries
        the number reserved when its connection opened, and arrives when the connection dies,
        perhaps days and thousands of heartbeats later; among status messages it is still recent.
        A redelivered message comes back on its own lane, so each window still recognises it.

        The first event or the first other message of a device starts from its status window (the
        ``online`` that opened its connection), nothing in it seen: a number far behind the
        connection's own is a replay even when nothing of its class was seen before. A counter
        that restarted (``Verdict.RESET`` in any class) starts every window again: it is one
        counter, and its next alarm must not be judged against the old numbers.

        A device recovers from any counter (docs/mqtt-contract.md, "Sequence numbers"):
        ``restarts`` (an ``online``: the device rebooted and opened a connection) behind or far
        past the windows starts them all again at its number; a jump (``Verdict.JUMP``) leaves the
        windows where they were, unless it is the second number in a row up there (the counter
        really moved), which starts them again at it.
        """
        if msg_class is MessageClass.TELEMETRY and not restarts:
            # Most messages: telemetry with the next numbers of its window. What ``judge_whole_way`` makes of them
            # (NEW, the window shifted), without its SeqState; the rest goes the whole way.
            highest = self.seq_highest
            if highest is not None and highest < seq <= highest + JUMP_ABOVE:
                shift = seq - highest
                self.seq_window = ((self.seq_window << shift) | 1) & _SEQ_MASK if shift < WINDOW else 1
                self.seq_highest = seq
                self.jump_seq = None
                return Verdict.NEW
        return self.judge_whole_way(seq, msg_class, restarts=restarts)

    def judge_whole_way(self, seq: int, msg_class: MessageClass = MessageClass.TELEMETRY, *,
                        restarts: bool = False) -> Verdict:
        """``judge`` without its shortcut for the next telemetry number (its property test's reference)."""
        if restarts and self._restarted_counter(seq):
            self.forget_sequence()
            self.jump_seq = None
            self.status_seq_highest, self.status_seq_window = seq, 1
            return Verdict.RESET
        highest_name, window_name = _SEQ_WINDOWS.get(msg_class, _OTHER_WINDOW)
        highest, window = getattr(self, highest_name), getattr(self, window_name)
        if highest is None and msg_class is not MessageClass.STATUS and self.status_seq_highest is not None:
            highest, window = self.status_seq_highest, 0
        verdict, after = judge(None if highest is None else SeqState(highest, window), seq)
        if verdict is Verdict.JUMP:
            moved = self.jump_seq is not None and 0 < seq - self.jump_seq <= JUMP_FOLLOWS
            self.jump_seq = seq
            if not moved:
                return verdict
            verdict, after = Verdict.RESET, SeqState(seq, 1)
        if verdict in (Verdict.NEW, Verdict.RESET):
            self.jump_seq = None  # only a jump followed at once by its next number moves the counter
        if verdict is Verdict.RESET:  # one counter for all its messages restarted: every window starts again
            self.forget_sequence()
        if after is not None and verdict in (Verdict.NEW, Verdict.RESET):
            setattr(self, highest_name, after.highest)
            setattr(self, window_name, after.window)
        return verdict

    def _restarted_counter(self, seq: int) -> bool:
        """An ``online`` numbered far behind (or absurdly past) the device's highest number of any class: it rebooted."""
        tops = [h for h in (self.seq_highest, self.event_seq_highest, self.status_seq_highest) if h is not None]
        if not tops:
            return False
        top = max(tops)
        return seq + WINDOW <= top or seq > top + JUMP_ABOVE

    def forget_sequence(self) -> None:
        """Every window empty (a counter that restarted, new hardware under the old id)."""
        for highest_name, window_name in (_OTHER_WINDOW, *_SEQ_WINDOWS.values()):
            setattr(self, highest_name, None)
            setattr(self, window_name, 0)

    def fold(self, reading: Reading) -> None:
        """Fold one new reading into health.

        An older reading (buffered, replayed) never moves last-seen, battery or tamper back.
        Connection state follows the connections, not the clock: a device stamps its
        ``offline`` last will when it connects, then says ``online`` with the next sequence
        number (docs/mqtt-contract.md), so the will is older than everything the connection
        sent. The will of the current connection (its number at least the last ``online``'s
        minus one) takes the device offline whatever it sent since; the will of an older
        connection (the broker may publish it late, when the new connection takes the session
        over) changes nothing. An ``online`` opens a new connection when its number is above
        the last one's, or when it is the newest message seen (a device whose counter restarted).
        """
        msg = reading.message
        newest = self.last_seen_ms is None or msg.ts >= self.last_seen_ms
        if isinstance(msg, Online):
            if self.online_seq is None or msg.seq > self.online_seq or newest:
                self.online_seq, self.connected = msg.seq, True
        elif isinstance(msg, Offline) and (self.online_seq is None or msg.seq + 1 >= self.online_seq):
            self.connected = False
        if not newest:
            return
        self.last_seen_ms, self.last_type = msg.ts, msg.type
        battery = getattr(msg, "battery_pct", None)
        if battery is not None:
            self.battery_pct = float(battery)
        tampered = msg.tampered()  # the kind's tamper event, if it has one
        if tampered is not None:
            self.tampered = tampered
        if not isinstance(msg, (Online, Offline)):  # a tuple: isinstance takes it faster than a union
            self.connected = True  # it speaks, so it is connected (devices that never announce their connection)


DeviceState.FIELDS = tuple(f.name for f in fields(DeviceState) if f.init)
_stored_values = attrgetter(*DeviceState.FIELDS)


def _state_copier() -> Callable[[DeviceState], DeviceState]:
    """A copy of a state, every slot (``jump_seq`` too) assigned straight: about half of ``DeviceState(*values)``."""
    names = (*DeviceState.FIELDS, "jump_seq")
    source = ("def copy(state):\n    new = make(DeviceState)\n"
              + "".join(f"    new.{name} = state.{name}\n" for name in names) + "    return new\n")
    scope: dict[str, Any] = {"make": object.__new__, "DeviceState": DeviceState}
    exec(source, scope)  # noqa: S102 - our own field names
    return scope["copy"]  # type: ignore[no-any-return]


_copy_state = _state_copier()


# -- the registry ----------------------------------------------------------------------


class DeviceBatch:
    """The devices touched by one ingest batch: sequence verdicts and health, pending until committed."""

    def __init__(self, states: Mapping[str, DeviceState]) -> None:
        self._states = states
        self.pending: dict[str, DeviceState] = {}
        self.written: set[str] = set()
        self.committed = False

    def admit(self, reading: Reading) -> Verdict:
        """Judge the reading's sequence number; fold a new one into the device's health and sequence state."""
        device_id = reading.device_id
        state = self.pending.get(device_id)
        if state is None:
            current = self._states.get(device_id)
            if current is None:
                return Verdict.NEW
            state = self.pending[device_id] = current.copy()
        verdict = state.judge(reading.seq, reading.msg_class, restarts=isinstance(reading.message, Online))
        if verdict in (Verdict.NEW, Verdict.RESET, Verdict.JUMP):
            state.fold(reading)
        return verdict

    def write(self, conn: Connection, device_ids: Iterable[str]) -> None:
        """Write these devices' pending state in the caller's transaction (those whose messages changed incidents)."""
        ids = [d for d in device_ids if d in self.pending]
        write_states(conn, [(d, self.pending[d]) for d in ids])
        self.written.update(ids)


_STATE_UPDATE = ("UPDATE devices SET " + ", ".join(f"{f} = {{p}}" for f in DeviceState.FIELDS)
                 + " WHERE device_id = {p}")


def write_states(conn: Connection, states: Sequence[tuple[str, DeviceState]]) -> None:
    """One UPDATE per device through the driver's executemany: the ingest hot path, so no per-row ORM work."""
    if states:
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(_STATE_UPDATE.format(p=marker), [(*st.values(), d) for d, st in states])


ChangeListener = Callable[[Sequence[DeviceRecord]], None]


class DeviceRegistry:
    LOOKUP_AGAIN_MS = 1_000  # a device not found in the database is asked for again after this long

    def __init__(self, engine: Engine, hierarchy: Hierarchy, reserved_logins: Iterable[str] = (),
                 bus: ChangeBus | None = None) -> None:
        self._engine = engine
        self._bus: ChangeBus = bus if bus is not None else LocalChangeBus()
        self._not_found: dict[str, float] = {}  # device id → when the database last did not know it (monotonic)
        self._hierarchy = hierarchy
        self._reserved = normalised_logins(reserved_logins)  # the service's own MQTT logins (devices/reserved.py)
        self._lock = threading.RLock()
        self._listeners: list[ChangeListener] = []
        with engine.connect() as conn:
            rows = conn.execute(select(devices_table)).mappings().all()
        # Registrations (what maintainers change) and states (what messages change) are held apart:
        # the hot path touches only states, and a registration write never overwrites health.
        self._by_id: dict[str, DeviceRecord] = {r["device_id"]: _registration(r) for r in rows}
        self._states: dict[str, DeviceState] = _states_of(rows)
        self._dirty: set[str] = set()

    @property
    def hierarchy(self) -> Hierarchy:
        return self._hierarchy

    def reserve_logins(self, logins: Iterable[str]) -> None:
        """Refuse these (the service's MQTT logins) as device ids too, besides every ``wanli-`` id."""
        self._reserved = self._reserved | normalised_logins(logins)

    def subscribe(self, listener: ChangeListener) -> None:
        """Be told of registrations, moves and retirements (e.g. to regenerate broker credentials)."""
        self._listeners.append(listener)

    # -- maintainers' operations --

    def validate(self, rec: DeviceRecord, drill: bool = False) -> None:
        """Raise ``Invalid`` if the record's values cannot be right, ``Conflict`` if it clashes with the registry.
        ``drill``: a drill's registration, which takes drill ids (``DRILL-…``) only, as every other takes none."""
        if not is_device_id(rec.device_id):
            raise Invalid(f"device id {rec.device_id!r} must be 1-64 of [A-Za-z0-9_-], starting with a letter or digit")
        refuse_reserved(rec.device_id, self._reserved)
        if is_drill(rec.device_id) and not drill:  # its incidents would page no real person: devices/drill.py
            raise Invalid(f"device id {rec.device_id!r} is reserved: ids starting with 'DRILL-' are a drill's simulated "
                          "devices (docs/incidents.md, Drills); choose another id")
        if drill and not is_drill(rec.device_id):
            raise Invalid(f"a drill registers only drill devices (DRILL-…), not {rec.device_id}")
        if rec.kind not in KINDS:
            raise Invalid(f"unknown device kind {rec.kind!r}; known: {', '.join(KINDS)}")
        if rec.street_id != self._hierarchy.street_id:
            raise Invalid(f"street {rec.street_id!r} is not this registry's street {self._hierarchy.street_id!r}")
        if len(rec.label) > 200:
            raise Invalid("label is longer than 200 characters")
        self._check_place(rec.building_id, rec.floor, rec.unit)
        existing = self._by_id.get(rec.device_id)
        if existing is None:
            return
        if existing.kind != rec.kind:
            raise Conflict(f"device {rec.device_id} is registered as a {existing.kind}, not a {rec.kind}")
        if existing.lifecycle is Lifecycle.ACTIVE and existing.placement != rec.placement:
            raise Conflict(f"device {rec.device_id} is already registered at {self.location(existing).label()}; "
                           "move it instead")

    def _check_place(self, building_id: str, floor: int | None, unit: str) -> None:
        if not building_id:
            if floor is not None or unit:
                raise Invalid("a floor or unit needs a building")
            return
        building = self._hierarchy.buildings.get(building_id)
        if building is None:
            raise Invalid(f"unknown building {building_id!r}")
        if floor is not None and (floor == 0 or not -5 <= floor <= building.floors):
            raise Invalid(f"floor {floor} is outside {building.name} (floors 1-{building.floors}, basements -1..-5)")
        if len(unit) > 16:
            raise Invalid(f"unit {unit!r} is longer than 16 characters")

    def register_many(self, records: Sequence[DeviceRecord], actor: str, now_ms: int,
                      drill: bool = False) -> list[RegisterOutcome]:
        """Register devices; idempotent for an identical registration, a conflict for a different one.

        All or nothing: every record is validated before anything is written.
        """
        with self._lock:
            outcomes: list[RegisterOutcome] = []
            writes: list[DeviceRecord] = []
            history: list[HistoryEntry] = []
            seen: set[str] = set()
            for rec in records:
                self.validate(rec, drill)
                if rec.device_id in seen:
                    raise Invalid(f"device {rec.device_id} appears twice")
                seen.add(rec.device_id)
                existing = self._by_id.get(rec.device_id)
                if existing is None:
                    outcome = RegisterOutcome.CREATED
                    write = replace(rec, lifecycle=Lifecycle.ACTIVE, registered_ms=now_ms, retired_ms=None)
                elif existing.lifecycle is Lifecycle.RETIRED:
                    outcome = RegisterOutcome.REACTIVATED
                    write = replace(existing, building_id=rec.building_id, floor=rec.floor, unit=rec.unit,
                                    label=rec.label, lifecycle=Lifecycle.ACTIVE, retired_ms=None)
                    state = self._states.setdefault(rec.device_id, DeviceState())
                    state.forget_sequence()  # perhaps new hardware under the old id
                    state.online_seq = None
                    self._dirty.add(rec.device_id)
                elif existing.label != rec.label:
                    outcome = RegisterOutcome.UPDATED
                    write = replace(existing, label=rec.label)
                else:
                    outcomes.append(RegisterOutcome.UNCHANGED)
                    continue
                outcomes.append(outcome)
                writes.append(write)
                history.append(HistoryEntry(rec.device_id, now_ms, outcome.value, actor, self.location(write).label()))
            if writes:
                self._write(writes, history)
        self._notify(writes)
        return outcomes

    def register(self, rec: DeviceRecord, actor: str, now_ms: int) -> RegisterOutcome:
        return self.register_many([rec], actor, now_ms)[0]

    def move(self, device_id: str, building_id: str, floor: int | None, unit: str, actor: str, now_ms: int,
             label: str | None = None) -> DeviceRecord:
        """Move an active device to another place. Incidents already open keep the place they happened at."""
        with self._lock:
            rec = self._active(device_id, "move")
            refuse_reserved(device_id, self._reserved)  # registered before the rule: retire it, register it anew
            self._check_place(building_id, floor, unit)
            before = self.location(rec).label()
            moved = replace(rec, building_id=building_id, floor=floor, unit=unit,
                            label=rec.label if label is None else label)
            self._write([moved], [HistoryEntry(device_id, now_ms, "moved", actor,
                                               f"{before} → {self.location(moved).label()}")])
        self._notify([moved])
        return moved

    def retire(self, device_id: str, actor: str, now_ms: int, reason: str = "") -> DeviceRecord:
        """Retire a device: its messages are no longer accepted (they go to quarantine) and its credentials lapse."""
        with self._lock:
            rec = self._active(device_id, "retire")
            retired = replace(rec, lifecycle=Lifecycle.RETIRED, retired_ms=now_ms)
            self._write([retired], [HistoryEntry(device_id, now_ms, "retired", actor, reason)])
        self._notify([retired])
        return retired

    def retire_many(self, device_ids: Iterable[str], actor: str, now_ms: int, reason: str = "") -> list[DeviceRecord]:
        """Retire every active device among ``device_ids`` in one write and one notice to the listeners (a drill's
        whole street of twins at its end); unknown or already retired ids are skipped."""
        with self._lock:
            found = [self._by_id.get(d) for d in dict.fromkeys(device_ids)]
            retired = [replace(r, lifecycle=Lifecycle.RETIRED, retired_ms=now_ms) for r in found
                       if r is not None and r.lifecycle is Lifecycle.ACTIVE]
            if retired:
                self._write(retired, [HistoryEntry(r.device_id, now_ms, "retired", actor, reason) for r in retired])
        self._notify(retired)
        return retired

    def _active(self, device_id: str, action: str) -> DeviceRecord:
        rec = self.get(device_id)
        if rec.lifecycle is Lifecycle.RETIRED:
            raise Conflict(f"device {device_id} is retired; cannot {action} it")
        return rec

    def history(self, device_id: str) -> list[HistoryEntry]:
        self.get(device_id)
        t = device_history_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.device_id == device_id).order_by(t.c.id)).mappings().all()
        return [HistoryEntry(r["device_id"], r["at_ms"], r["action"], r["actor"], r["detail"]) for r in rows]

    # -- queries --

    def get(self, device_id: str) -> DeviceRecord:
        """The device's registration with its current health (a snapshot)."""
        rec = self._by_id.get(device_id)
        if rec is None:
            raise NotFound("device", device_id)
        return self._snapshot(rec)

    def _snapshot(self, rec: DeviceRecord) -> DeviceRecord:
        state = self._states.get(rec.device_id)
        return rec if state is None else replace(rec, **dict(zip(DeviceState.FIELDS, state.values(), strict=True)))

    def find(self, device_id: str) -> DeviceRecord | None:
        """The active registration of a device, or None (the hot-path lookup)."""
        rec = self._by_id.get(device_id)
        return rec if rec is not None and rec.lifecycle is Lifecycle.ACTIVE else None

    def is_retired(self, device_id: str) -> bool:
        rec = self._by_id.get(device_id)
        return rec is not None and rec.lifecycle is Lifecycle.RETIRED

    def location(self, rec: DeviceRecord) -> Location:
        return self._hierarchy.locate(rec.building_id, rec.floor, rec.unit)

    def list(self, *, now_ms: int, kind: str = "", building_id: str = "", community_id: str = "",
             health_flag: Health | None = None, lifecycle: Lifecycle | None = Lifecycle.ACTIVE,
             limit: int = 1000, offset: int = 0, id_contains: str = "") -> list[DeviceRecord]:
        """Devices matching every given filter, ordered by id (``id_contains``: part of the id, any case)."""
        out = [rec for rec, flags in self._matching(now_ms, kind, building_id, community_id, lifecycle, id_contains)
               if health_flag is None or health_flag in flags]
        return [self._snapshot(r) for r in out[offset: offset + limit]]

    def count_health(self, *, now_ms: int, kind: str = "", building_id: str = "", community_id: str = "",
                     lifecycle: Lifecycle | None = Lifecycle.ACTIVE, id_contains: str = "",
                     drill: bool | None = None) -> dict[str, int]:
        """How many devices match, in all and per health flag (``drill`` False: real devices only, as the KPIs
        count them; True: a drill's only; None: both)."""
        counts = {"total": 0, **{h.value: 0 for h in Health}}
        for rec, flags in self._matching(now_ms, kind, building_id, community_id, lifecycle, id_contains):
            if drill is not None and is_drill(rec.device_id) is not drill:
                continue
            counts["total"] += 1
            for flag in flags:
                counts[flag.value] += 1
        return counts

    def _matching(self, now_ms: int, kind: str, building_id: str, community_id: str,
                  lifecycle: Lifecycle | None, id_contains: str = "") -> Iterator[tuple[DeviceRecord, frozenset[Health]]]:
        buildings: set[str] | None = None
        needle = id_contains.strip().upper()
        if community_id:
            community = self._hierarchy.communities.get(community_id)
            if community is None:
                raise NotFound("community", community_id)
            buildings = set(community.building_ids)
        for rec in sorted(self._by_id.values(), key=lambda r: r.device_id):
            if (kind and rec.kind != kind) or (building_id and rec.building_id != building_id):
                continue
            if buildings is not None and rec.building_id not in buildings:
                continue
            if needle and needle not in rec.device_id.upper():
                continue
            if lifecycle is not None and rec.lifecycle is not lifecycle:
                continue
            if rec.lifecycle is not Lifecycle.ACTIVE:
                yield rec, frozenset()  # a retired device's health means nothing any more
                continue
            st = self._states.get(rec.device_id) or DeviceState()
            yield rec, _health(rec.kind, st.last_seen_ms, st.connected, st.battery_pct, st.tampered, now_ms)

    def active(self) -> list[DeviceRecord]:
        """Every active registration (without health: cheap, for rendering broker ACLs)."""
        return [r for r in self._by_id.values() if r.lifecycle is Lifecycle.ACTIVE]

    def count(self) -> int:
        return len(self._by_id)

    # -- ingest's hand-over --

    @contextmanager
    def batch(self) -> Iterator[DeviceBatch]:
        """A batch of readings to admit: judged and folded under the lock, applied to memory only if committed.

        States not written in the batch's own transaction are flushed later (``flush_states``).
        """
        with self._lock:
            devices = DeviceBatch(self._states)
            yield devices
            if devices.committed:
                self._states.update(devices.pending)
                self._dirty.update(devices.pending.keys() - devices.written)
                self._dirty.difference_update(devices.written)

    def observe_batch(self, readings: Iterable[Reading]) -> None:
        """Fold readings into device state and write it at once (for callers outside ingest's batches)."""
        with self.batch() as devices:
            for reading in readings:
                devices.admit(reading)
            with self._engine.begin() as conn:
                devices.write(conn, list(devices.pending))
            devices.committed = True

    FLUSH_SLICE = 500  # devices per transaction: an alarm's commit waits for at most one slice, not the street

    def flush_states(self, fences: Sequence[Callable[[Connection], None]] = ()) -> int:
        """Write the states changed since the last flush, a slice per transaction; return how many devices.

        A street's heartbeats leave 50,000 devices dirty; written in one transaction they held
        SQLite's write lock (and, copied in one go, the registry's lock) for most of a second,
        and an alarm arriving meanwhile waited that long for its incident's commit. In slices,
        the locks are let go between them, for as long as the slice took: a lock is not fair
        (released and taken straight back, the waiting worker never gets it) and SQLite's busy
        handler polls, so back-to-back transactions would starve every other writer (the
        alert ticker, an operator's action) for the whole flush. Each slice is read and
        written under the registry's lock, as ingest's batches commit under it: a slice can
        never write a state older than one a batch has committed since. A slice that fails
        goes back to the dirty set with every slice not yet written.
        """
        with self._lock:
            ids = list(self._dirty)
            self._dirty.clear()
        written, took = 0, 0.0
        for start in range(0, len(ids), self.FLUSH_SLICE):
            if start:
                time.sleep(max(took, 0.005))
            began = time.perf_counter()
            with self._lock:
                chunk = [(d, self._states[d]) for d in ids[start:start + self.FLUSH_SLICE] if d in self._states]
                try:
                    with self._engine.begin() as conn:
                        for fence in fences:  # the ingest role's (foundation/leases.py): a lost role writes nothing
                            fence(conn)
                        write_states(conn, chunk)
                except Exception:
                    self._dirty.update(ids[start:])
                    raise
            written += len(chunk)
            took = time.perf_counter() - began
        return written

    # -- storage --

    def _write(self, records: Sequence[DeviceRecord], history: Sequence[HistoryEntry]) -> None:
        """Write registrations (never the state columns of an existing device) and their history."""
        with self._engine.begin() as conn:
            new = [r for r in records if r.device_id not in self._by_id]
            if new:
                conn.execute(devices_table.insert(), [{**_registration_row(r), **_EMPTY_STATE} for r in new])
            for rec in records:
                if rec.device_id in self._by_id:
                    conn.execute(update(devices_table).where(devices_table.c.device_id == rec.device_id)
                                 .values(**_registration_row(rec)))
            self._bus.announce(conn, DEVICES, [r.device_id for r in records])
            if history:
                conn.execute(device_history_table.insert(), [
                    {"device_id": h.device_id, "at_ms": h.at_ms, "action": h.action, "actor": h.actor, "detail": h.detail}
                    for h in history])
        for rec in records:
            self._by_id[rec.device_id] = rec
            self._states.setdefault(rec.device_id, DeviceState())

    # -- other instances' changes (foundation/change_bus.py) --

    def reload(self, device_ids: set[str] | None = None) -> int:
        """Read registrations again from the database (another instance changed them; None: all of them);
        return how many changed here. States are left alone: they are the ingest role's (``reload_states``)."""
        t = devices_table
        q = select(*(t.c[f] for f in _REGISTRATION_FIELDS))
        ids = None if device_ids is None else sorted(device_ids)
        rows: list[Mapping[str, object]] = []
        with self._engine.connect() as conn:
            if ids is None:
                rows = list(conn.execute(q).mappings().all())
            else:
                for start in range(0, len(ids), 500):
                    rows += conn.execute(q.where(t.c.device_id.in_(ids[start:start + 500]))).mappings().all()
        fresh = {str(r["device_id"]): _registration(r) for r in rows}
        with self._lock:
            changed = [rec for d, rec in fresh.items() if self._by_id.get(d) != rec]
            for rec in changed:
                self._by_id[rec.device_id] = rec
                self._states.setdefault(rec.device_id, DeviceState())
                self._not_found.pop(rec.device_id, None)
            gone = [d for d in (self._by_id if ids is None else ids) if d not in fresh and d in self._by_id]
            for d in gone:
                del self._by_id[d]
        self._notify(changed)
        return len(changed) + len(gone)

    def reload_states(self) -> None:
        """Every device's health and sequence state as the database has it (this instance takes over ingest:
        what the last holder committed is the truth; what it held only in memory arrives again from the broker)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(devices_table.c.device_id, *(devices_table.c[f] for f in DeviceState.FIELDS))
                                ).mappings().all()
        with self._lock:
            self._states = _states_of(rows)
            self._dirty.clear()

    def lookup(self, device_id: str) -> DeviceRecord | None:
        """``find``, asking the database when memory does not know the device (registered a moment ago through
        another instance, its notice not heard yet): a device is never quarantined for a stale cache. A device
        the database does not know either is asked for again only after LOOKUP_AGAIN_MS."""
        rec = self.find(device_id)
        if rec is not None or not self._bus.shared:  # one instance: memory is the whole truth
            return rec
        if self._by_id.get(device_id) is None:
            asked = self._not_found.get(device_id)
            if asked is not None and time.monotonic() - asked < self.LOOKUP_AGAIN_MS / 1000:
                return None
        self.reload({device_id})
        rec = self.find(device_id)
        if rec is None and self._by_id.get(device_id) is None:
            if len(self._not_found) > 100_000:
                self._not_found.clear()
            self._not_found[device_id] = time.monotonic()
        return rec

    def _notify(self, records: Sequence[DeviceRecord]) -> None:
        if records:
            for listener in self._listeners:
                listener(records)


# What maintainers change: a record's fields that are not its state.
_REGISTRATION_FIELDS = tuple(f.name for f in fields(DeviceRecord) if f.name not in DeviceState.FIELDS)
_EMPTY_STATE = dict(zip(DeviceState.FIELDS, DeviceState().values(), strict=True))


def _states_of(rows: Iterable[Mapping[str, object]]) -> dict[str, DeviceState]:
    """Each device's health and sequence state, from its row."""
    return {str(r["device_id"]): DeviceState(*(r[f] for f in DeviceState.FIELDS)) for r in rows}


def _registration_row(rec: DeviceRecord) -> dict[str, object]:
    row = {f: getattr(rec, f) for f in _REGISTRATION_FIELDS}
    row["lifecycle"] = rec.lifecycle.value
    return row


def _registration(row: Mapping[str, object]) -> DeviceRecord:
    values = {f: row[f] for f in _REGISTRATION_FIELDS}
    values["lifecycle"] = Lifecycle(str(values["lifecycle"]))
    return DeviceRecord(**values)  # type: ignore[arg-type]
