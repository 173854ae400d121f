"""One ingest batch's unit of work (ingest/unit_of_work.py) with its real embedded stores (SQLite):
it commits once and says what changed, an exception before the commit leaves memory as it was,
a fence that refuses commits nothing; and through the pipeline a smoke alarm looks its device up
in the registry once."""

import json
import threading

import pytest
from sqlalchemy import func, select

from alerts.context import RegistryContext
from alerts.outbox import Outbox, notifications_table
from alerts.rules import default_rules
from alerts.service import AlertService
from alerts.store import IncidentStore
from alerts.thresholds import Thresholds
from devices.catalog import KINDS
from devices.hierarchy import load_hierarchy
from devices.kinds.smoke_detector import contract as sd
from devices.reading import Reading
from devices.registry import DeviceRecord, DeviceRegistry
from devices.sequence import Verdict
from devices.topics import MessageClass
from ingest.dead_letters import DeadLetter, DeadLetterStore
from ingest.pipeline import IngestPipeline, RawMessage
from ingest.rate_limit import DeviceRateLimits
from ingest.spool import Spool
from ingest.unit_of_work import Committed, IngestUnitOfWork
from foundation.db import create_schema, make_engine
from foundation.leases import Fenced

NOW = 1_795_000_000_000
DEVICE = "SD-XQ01-0301"
ALARM_TOPIC = f"safety/v1/wanli/smoke_detector/{DEVICE}/event"


class Env:
    def __init__(self, tmp_path):
        self.engine = make_engine(f"sqlite:///{tmp_path / 'wanli.db'}")
        create_schema(self.engine)
        self.registry = DeviceRegistry(self.engine, load_hierarchy())
        self.registry.register(DeviceRecord(DEVICE, "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)
        self.incidents = IncidentStore(self.engine)
        rules = default_rules()
        registry = self.registry
        # the thresholds find a device's building as the service's do (wanli/runtime.py)
        self.ctx = RegistryContext(registry, Thresholds(rules, lambda d: (r.building_id if (r := registry.find(d))
                                                                          else "")))
        self.outbox = Outbox(self.engine)
        self.alerts = AlertService(self.incidents, self.ctx.locate, self.ctx, registry.hierarchy, rules, self.outbox)
        self.dead = DeadLetterStore(self.engine)
        self.rate_limits = DeviceRateLimits()
        self.spool = Spool(tmp_path / "spool.db")

    def unit(self, fences=()):
        return IngestUnitOfWork(self.engine, self.registry, self.alerts, self.dead, self.rate_limits, NOW, fences)

    def alarm(self, seq, ts=NOW - 500):
        return Reading("wanli", "smoke_detector", DEVICE, MessageClass.EVENT, sd.Alarm(v=1, ts=ts, seq=seq),
                       NOW, registration=self.registry.find(DEVICE))

    def rows(self, table):
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    def notices(self):
        return self.rows(notifications_table)


def letter(reason="invalid_field"):
    return DeadLetter(NOW, ALARM_TOPIC, DEVICE, reason, "bad", b"{}", 2)


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_commit_writes_once_and_returns_what_changed(env):
    with env.unit() as uow:
        reading = env.alarm(seq=7)
        assert uow.devices.admit(reading) is Verdict.NEW
        uow.evaluate([reading])
        uow.dead_letters([letter()], {"rate_limited": 2})
        assert env.alerts.active() == [] and env.registry.get(DEVICE).last_seen_ms is None  # nothing before commit
        changed = uow.commit()
        assert uow.committed is changed
    assert isinstance(changed, Committed)
    (change,) = changed.incidents
    assert change.created and change.incident.device_id == DEVICE and change.incident.version >= 1
    assert changed.notices == env.notices() > 0  # queued in the same transaction as the incident
    assert changed.device_states == (DEVICE,)
    assert (changed.dead_letters, changed.unstored) == (1, 2)
    # and memory follows only now: the active incident, the device's state
    assert [i.id for i in env.alerts.active()] == [change.incident.id]
    assert env.registry.get(DEVICE).last_seen_ms == NOW - 500 and env.registry.get(DEVICE).event_seq_highest == 7
    assert [i.id for i in env.incidents.list()] == [change.incident.id]
    assert env.dead.counts() == {"invalid_field": 1, "rate_limited": 2}


def test_a_batch_that_changes_no_incident_begins_no_transaction_and_leaves_its_states_to_the_flush(env):
    with env.unit() as uow:
        uow.devices.admit(Reading("wanli", "smoke_detector", DEVICE, MessageClass.TELEMETRY,
                                  sd.Heartbeat(v=1, ts=NOW - 100, seq=3, battery_pct=80.0, rssi_dbm=-70), NOW))
        uow.evaluate([])
        changed = uow.commit()
    assert changed == Committed()
    assert env.registry.get(DEVICE).last_seen_ms == NOW - 100  # in memory, committed
    assert env.registry.flush_states() == 1  # written by the flush, not by the batch


def test_an_exception_before_commit_leaves_memory_and_the_database_as_they_were(env):
    before = env.registry.get(DEVICE)
    with pytest.raises(RuntimeError, match="the spool broke"):
        with env.unit() as uow:
            reading = env.alarm(seq=7)
            assert env.rate_limits.admit(DEVICE, "telemetry", NOW - 500, NOW)  # a charge, to be taken back
            uow.devices.admit(reading)
            uow.evaluate([reading])
            uow.dead_letters([letter()], {"rate_limited": 1})
            raise RuntimeError("the spool broke")
    assert env.registry.get(DEVICE) == before  # sequence state and health as before
    assert env.alerts.active() == []
    assert env.rate_limits.device(DEVICE) is None  # the charge was refunded
    assert env.incidents.list() == [] and env.dead.counts() == {} and env.notices() == 0
    # the same alarm delivered again is new, and opens its incident
    with env.unit() as uow:
        reading = env.alarm(seq=7)
        assert uow.devices.admit(reading) is Verdict.NEW
        uow.evaluate([reading])
        assert len(uow.commit().incidents) == 1


def test_a_fence_that_refuses_commits_nothing(env):
    def lost_role(conn):
        raise Fenced("ingest", "another instance took it")

    before = env.registry.get(DEVICE)
    with pytest.raises(Fenced):
        with env.unit(fences=[lost_role]) as uow:
            reading = env.alarm(seq=7)
            uow.devices.admit(reading)
            uow.evaluate([reading])
            uow.dead_letters([letter()], {})
            uow.commit()
    assert uow.committed is None
    assert env.incidents.list() == [] and env.notices() == 0 and env.dead.counts() == {}
    assert env.alerts.active() == [] and env.registry.get(DEVICE) == before


def test_a_unit_of_work_commits_once(env):
    with env.unit() as uow:
        uow.evaluate([])
        uow.commit()
        with pytest.raises(RuntimeError, match="commits once"):
            uow.commit()


def test_a_smoke_alarm_looks_its_device_up_in_the_registry_once(env, monkeypatch):
    """The registration found when ingest checks the device travels on the reading: the rules' place
    (SuspectedFire) and the incident's location (SmokeAlarm) come from it. Before: three lookups."""
    pipeline = IngestPipeline(KINDS, env.engine, env.registry, env.spool, env.dead, env.alerts, clock_ms=lambda: NOW)

    def alarm(seq):
        body = json.dumps({"v": 1, "ts": NOW - 500 + seq, "seq": seq, "type": "alarm"}).encode()
        return RawMessage(ALARM_TOPIC, body, NOW)

    pipeline.process([alarm(1)])  # the thresholds' cache filled (it asks for the building once per device)
    found = []
    real_find = env.registry.find
    monkeypatch.setattr(env.registry, "find", lambda d: found.append(d) or real_find(d))
    result = pipeline.process([alarm(2)])
    assert result.readings == 1 and result.incidents_changed == 1
    assert found == [DEVICE]
    (incident,) = env.incidents.list()
    assert incident.location.label() == "香泉居民区 香泉 1号楼 3层 0301室" and incident.event_count == 2


def test_the_listeners_hear_of_a_committed_batch_after_every_lock_is_let_go(env):
    heard = []

    def listener(changes):
        # another thread could take both locks now: nothing of the batch holds them
        for lock in (env.registry._lock, env.alerts._lock):
            took = []
            worker = threading.Thread(target=lambda lk=lock: took.append(lk.acquire(timeout=1) and lk.release() is None))
            worker.start()
            worker.join()
            heard.append(took == [True])
        heard.append(len(changes))

    env.alerts.subscribe(listener)
    with env.unit() as uow:
        reading = env.alarm(seq=7)
        uow.devices.admit(reading)
        uow.evaluate([reading])
        uow.commit()
        assert heard == []  # not before the unit closes
    assert heard == [True, True, 1]


def test_the_listeners_hear_nothing_of_a_batch_that_did_not_commit(env):
    heard = []
    env.alerts.subscribe(heard.append)
    with pytest.raises(RuntimeError):
        with env.unit() as uow:
            reading = env.alarm(seq=7)
            uow.devices.admit(reading)
            uow.evaluate([reading])
            raise RuntimeError("before commit")
    with env.unit() as uow:
        uow.evaluate([env.alarm(seq=8)])  # never committed: closes without commit
    assert heard == []


def test_the_rules_context_places_the_readings_own_device_from_its_registration_and_asks_for_others(env):
    other = DeviceRecord("SD-XQ01-0401", "smoke_detector", "wanli", "xq-01", 4, "0401")
    env.registry.register(other, "test", NOW)
    hearing = env.ctx.reading_context()
    reading = env.alarm(seq=1)
    moved = env.registry.move(DEVICE, "xq-01", 5, "0501", "test", NOW)  # after the reading was admitted
    hearing.hear(reading)
    place = hearing.place(DEVICE)
    assert (place.building_id, place.floor, place.unit, place.community_id) == ("xq-01", 3, "0301",
                                                                              env.ctx.place(DEVICE).community_id)
    assert hearing.place(DEVICE) is place  # made once
    assert hearing.place("SD-XQ01-0401") == env.ctx.place("SD-XQ01-0401")  # another device: asked
    hearing.hear(Reading("wanli", "smoke_detector", DEVICE, MessageClass.EVENT, sd.Alarm(v=1, ts=NOW, seq=2), NOW))
    assert hearing.place(DEVICE).floor == moved.floor == 5  # a reading without its registration: asked
