"""Roles under leases with a fencing token (foundation/leases.py), instances kept in step (foundation/change_bus.py):
on SQLite and on real PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from sqlalchemy import text

from alerts.incidents import Action, Severity, Signal, State, open_or_update
from alerts.store import IncidentStore
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from foundation.change_bus import DEVICES, PostgresChangeBus
from foundation.db import make_engine
from foundation.leases import AlreadyRunning, Fenced, InstanceLock, LeaseKeeper, LeaseStore
from wanli.runtime import running_in_thread
from wanli.settings import Settings
from tests.fixtures.servers import free_port

HIERARCHY = load_hierarchy()


class Clock:
    def __init__(self) -> None:
        self.ms = 1_795_000_000_000

    def __call__(self) -> int:
        return self.ms


def test_a_role_is_held_by_one_at_a_time_passes_on_when_it_lapses_and_the_old_holder_is_fenced(sql_engine):
    clock = Clock()
    store = LeaseStore(sql_engine, clock)
    if sql_engine.dialect.name == "postgresql":  # the database's own clock: move it with a lease of 1 s
        ttl, lapse = 1_000, lambda: time.sleep(1.1)
    else:
        ttl = 5_000

        def lapse() -> None:
            clock.ms += 5_001

    first = store.hold("ingest:x", "host-a", ttl)
    assert first == 1 and store.hold("ingest:x", "host-b", ttl) is None  # held: the other waits
    assert store.hold("ingest:x", "host-a", ttl) == first  # a renewal keeps the token
    with sql_engine.begin() as conn:
        store.fence(conn, "ingest:x", "host-a", first)  # the holder may write

    lapse()
    second = store.hold("ingest:x", "host-b", ttl)
    assert second == first + 1  # taken over: a new token
    with pytest.raises(Fenced, match="held by host-b"), sql_engine.begin() as conn:
        store.fence(conn, "ingest:x", "host-a", first)  # the old holder woke up: its write is refused
    assert store.hold("ingest:x", "host-a", ttl) is None

    store.release("ingest:x", "host-b", second)  # a clean stop gives it up at once
    assert store.hold("ingest:x", "host-a", ttl) == second + 1
    rows, _now = store.rows()
    assert [(r.role, r.holder, r.token) for r in rows] == [("ingest:x", "host-a", second + 1)]


def test_a_keeper_tells_gain_and_loss_and_its_fence_refuses_once_the_lease_lapsed_here(sql_engine):
    store = LeaseStore(sql_engine, lambda: time.time_ns() // 1_000_000)
    said: list[tuple[str, str, int]] = []
    keeper = LeaseKeeper(store, "host-a", ["escalation"], ttl_s=2.0, renew_s=0.5,
                         on_gain=lambda r, t: said.append(("gain", r, t)), on_lose=lambda r, t: said.append(("lose", r, t)))
    keeper.round()  # by hand (the keeper's threads are not started): gain and loss queue up for its second thread
    assert keeper._transitions == [("gain", "escalation", 1)]  # noqa: SLF001
    assert keeper.holds("escalation") and 0 < keeper.remaining_s("escalation") <= 2.0
    with sql_engine.begin() as conn:
        keeper.fence("escalation")(conn)
    grant = keeper.grant("escalation")
    assert grant is not None
    keeper._grants["escalation"] = replace(grant, valid_until=time.monotonic() - 0.001)  # noqa: SLF001 - frozen
    assert not keeper.holds("escalation")
    with pytest.raises(Fenced, match="not held by this instance"), sql_engine.begin() as conn:
        keeper.fence("escalation")(conn)
    keeper.round()  # lapsed here: lost first; still its own in the database, so taken again at once
    assert keeper._transitions[1:] == [("lose", "escalation", 1), ("gain", "escalation", 1)]  # noqa: SLF001
    assert keeper.holds("escalation") and not said


def test_a_second_instance_on_the_same_data_directory_is_refused_clearly(tmp_path):
    first = InstanceLock([tmp_path / "data"])
    try:
        with pytest.raises(AlreadyRunning, match="already runs on .*WANLI_DATA_DIR"):
            InstanceLock([tmp_path / "data"])
        InstanceLock([tmp_path / "other"]).release()  # another data directory is another instance
    finally:
        first.release()
    InstanceLock([tmp_path / "data"]).release()  # free again once the first is gone


def test_wanli_run_refuses_a_second_instance_on_the_same_data(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", simulate_building=False, http_port=free_port(),
                        embedded_broker_port=free_port())
    with running_in_thread(settings):
        with pytest.raises(RuntimeError) as refused, running_in_thread(settings):
            pass
    assert isinstance(refused.value.__cause__, AlreadyRunning)


@pytest.mark.postgres
def test_a_registration_through_one_instance_is_heard_by_the_other_within_a_second(postgres_url):
    engines = [make_engine(postgres_url) for _ in range(2)]
    from foundation.db import create_schema

    create_schema(engines[0])
    buses = [PostgresChangeBus(e, f"host-{i}") for i, e in enumerate(engines)]
    one, two = (DeviceRegistry(e, HIERARCHY, bus=b) for e, b in zip(engines, buses, strict=True))
    buses[1].subscribe(DEVICES, two.reload)
    for b in buses:
        b.start()
    try:
        assert buses[1].wait_connected(10)
        rec = DeviceRecord("SD-HA-0101", "smoke_detector", "wanli", "xq-01", 1, "0101", "一楼")
        one.register(rec, "test", 1)
        began = time.monotonic()
        while two.find(rec.device_id) is None and time.monotonic() - began < 5:
            time.sleep(0.005)
        assert two.find(rec.device_id) is not None and time.monotonic() - began < 1.0
        # a notice lost (the listener away): the device is still looked up before being quarantined
        one.register(replace(rec, device_id="SD-HA-0102", unit="0102"), "test", 2)
        assert two.lookup("SD-HA-0102") is not None
        one.retire("SD-HA-0101", "test", 3, "stolen")
        began = time.monotonic()
        while two.find("SD-HA-0101") is not None and time.monotonic() - began < 5:
            time.sleep(0.005)
        assert two.find("SD-HA-0101") is None and two.is_retired("SD-HA-0101")
    finally:
        for b in buses:
            b.stop()
        for e in engines:
            e.dispose()


@pytest.mark.postgres
def test_an_instance_acting_on_an_incident_another_changed_meanwhile_acts_on_the_fresh_row(postgres_url):
    from alerts.service import AlertService
    from alerts.context import RegistryContext
    from alerts.thresholds import Thresholds
    from alerts.rules import default_rules
    from foundation.db import create_schema

    engines = [make_engine(postgres_url) for _ in range(2)]
    create_schema(engines[0])
    services = []
    for e in engines:
        registry = DeviceRegistry(e, HIERARCHY)
        rules = default_rules()
        ctx = RegistryContext(registry, Thresholds(rules, lambda d: ""))
        services.append(AlertService(IncidentStore(e), ctx.locate, ctx, HIERARCHY, rules))
    a, b = services
    signal = Signal("SD-HA-0301", "smoke_detector", "smoke_alarm", "fire", Severity.HIGH, "烟雾报警", 1, "烟雾浓度 0.3")
    opened, audit = open_or_update(None, signal, HIERARCHY.locate("xq-01", 3, "0301"), 10, "inc_ha_1")
    versions = a.store.save([opened], [audit])
    b.refresh(None)  # both know it, at version 1
    assert b.active_incidents()[0].version == versions["inc_ha_1"] == 1
    a.act("inc_ha_1", Action.ACKNOWLEDGE, "值班员 王", "收到", 20)  # B has not heard (no bus here)
    closed = b.act("inc_ha_1", Action.FALSE_ALARM, "值班员 李", "误报", 30)  # B's copy is stale: read again, applied
    assert closed.state is State.FALSE_ALARM
    trail = [(e.action, e.actor) for e in a.store.audit("inc_ha_1")]
    assert trail[-2:] == [("acknowledge", "值班员 王"), ("false_alarm", "值班员 李")]  # neither overwrote the other
    with engines[0].connect() as conn:
        assert conn.execute(text("SELECT version FROM incidents WHERE id = 'inc_ha_1'")).scalar_one() == 3
    for e in engines:
        e.dispose()
