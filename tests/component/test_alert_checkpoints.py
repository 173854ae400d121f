"""The alert service's checkpoints on a real SQLite database: a second engine over the same file picks up where
the first stopped (windows, silence timers, dispatches being timed), on a fake clock."""

import json

from alerts.context import RegistryContext
from alerts.outbox import Outbox
from alerts.rules import default_rules
from alerts.service import URGENT_DELTA, AlertService
from alerts.store import IncidentStore
from alerts.thresholds import Thresholds
from devices.hierarchy import load_hierarchy
from devices.kinds.charging_station import contract as cs
from devices.kinds.fire_station import contract as fs
from devices.kinds.smoke_detector import contract as sd
from devices.reading import Reading
from devices.registry import DeviceRecord, DeviceRegistry
from foundation.db import create_schema, make_engine

T0 = 1_795_000_000_000
S, MIN = 1000, 60_000


class Engine:
    """One start of the alert engine over the database file (what ``build_services`` wires, without I/O threads)."""

    def __init__(self, db, now_ms):
        self.engine = make_engine(f"sqlite:///{db}")
        create_schema(self.engine)
        self.registry = DeviceRegistry(self.engine, load_hierarchy())
        self.incidents = IncidentStore(self.engine)
        rules = default_rules()
        ctx = RegistryContext(self.registry, Thresholds(rules, lambda d: ""))
        self.alerts = AlertService(self.incidents, ctx.locate, ctx, self.registry.hierarchy, rules, Outbox(self.engine),
                                   clock_ms=lambda: now_ms)

    def read(self, kind, device, message, now_ms):
        return self.alerts.handle_batch([Reading("wanli", kind, device, message.CLASS, message, now_ms)], now_ms)

    def conditions(self):
        return sorted(i.condition.split(":")[0] for i in self.alerts.active())

    def close(self):
        self.engine.dispose()


def register(engine, n_stations=15):
    records = [DeviceRecord(f"SD-XQ01-0{f}01", "smoke_detector", "wanli", "xq-01", f, f"0{f}01") for f in (3, 4)]
    records += [DeviceRecord(f"CS-{i:02d}", "charging_station", "wanli", "xq-01") for i in range(n_stations)]
    engine.registry.register_many(records, actor="test", now_ms=T0)


def station_status(ts):
    return cs.StationStatus(v=1, ts=ts, seq=1, ports=[], mains_power=True)


def test_a_restart_keeps_the_correlation_window_and_the_dispatch_and_pages_nobody_for_the_outage(tmp_path):
    db = tmp_path / "wanli.db"
    first = Engine(db, T0)
    register(first)
    first.alerts.tick(T0)
    for i in range(15):
        first.read("charging_station", f"CS-{i:02d}", station_status(T0 + S), T0 + S)
    first.read("smoke_detector", "SD-XQ01-0301", sd.Alarm(v=1, ts=T0 + 2 * S, seq=1), T0 + 2 * S)
    assert first.conditions() == ["smoke_alarm"]  # and the nearest micro fire station dispatched
    first.alerts.checkpoint(T0 + 3 * S)  # what a stop (or the ticker, every ten seconds) does
    first.close()

    back = T0 + 2 * MIN  # two minutes down: within the three-minute window, past the dispatch's minute
    second = Engine(db, back)
    second.alerts.tick(back)
    conditions = second.conditions()
    assert "dispatch_ack_late" in conditions  # the station's minute passed while the engine was down: at once
    assert "offline" not in conditions and "mass_offline" not in conditions
    second.read("smoke_detector", "SD-XQ01-0401", sd.Alarm(v=1, ts=back + S, seq=1), back + S)
    (fire,) = [i for i in second.alerts.active() if i.condition == "suspected_fire"]
    assert fire.members == ("SD-XQ01-0301", "SD-XQ01-0401") and fire.scope == "building:xq-01"
    for t in range(2 * S, 2 * MIN + 50 * S, 10 * S):  # the stations get their minutes back after the outage
        second.alerts.tick(back + t)
    assert "mass_offline" not in second.conditions()
    second.alerts.tick(back + 3 * MIN + S)  # now truly silent: 15 stations at once, one street incident
    assert second.conditions().count("mass_offline") == 1 and "offline" not in second.conditions()
    second.close()


def test_a_dispatch_written_after_the_last_checkpoint_is_found_in_the_outbox(tmp_path):
    db = tmp_path / "wanli.db"
    first = Engine(db, T0)
    register(first, n_stations=0)
    first.alerts.checkpoint(T0)  # a checkpoint from before the alarm, nothing since (a crash)
    first.read("smoke_detector", "SD-XQ01-0301", sd.Alarm(v=1, ts=T0 + S, seq=1), T0 + S)
    first.incidents.save_rule_states({"fire_station.DispatchResponse": None,  # as if the at-once write was lost
                                      "fire_station.DispatchResponse" + URGENT_DELTA: None}, T0)
    first.close()

    second = Engine(db, T0 + 30 * S)
    assert [r["dispatch_id"].endswith("-0") for r in second.alerts.response_times()] == [True]
    second.alerts.tick(T0 + 61 * S + 1)
    assert "dispatch_ack_late" in second.conditions()
    second.close()


def test_checkpoints_are_rows_of_json_per_rule_and_a_rule_with_nothing_to_keep_has_none(tmp_path):
    engine = Engine(tmp_path / "wanli.db", T0)
    register(engine, n_stations=2)
    engine.alerts.tick(T0)
    states = engine.incidents.rule_states()
    assert {"charging_station.StationOffline", "smoke_detector.DetectorSilence"} <= set(states)
    assert "smoke_detector.SuspectedFire" not in states  # no alarm, no window
    saved_ms, offline = states["charging_station.StationOffline"]
    assert saved_ms == T0 and offline["ids"] == "CS-00\nCS-01" and set(offline["last_seen"]) == {"dtype", "b64"}
    engine.close()


def dispatch_rule(engine):
    (rule,) = [r for r in engine.alerts.rules if r.name == "fire_station.DispatchResponse"]
    return rule


def test_an_alarm_writes_only_what_changed_since_the_checkpoint_and_a_crash_keeps_every_answer(tmp_path):
    """A day's 3,000 finished dispatches go with the checkpoint; each alarm's at-once write holds its own dispatch.
    Laid over the checkpoint at the restart, it keeps the station's answers: no false "late" for a station that came."""
    db = tmp_path / "wanli.db"
    first = Engine(db, T0)
    register(first, n_stations=0)
    history = [{"dispatch_id": f"old-{i}", "station": "FS-X", "incident": f"inc-{i}", "dispatched_ms": T0 - 3600 * S + i,
                "ack_ms": T0 - 3600 * S + i + 20 * S, "arrive_ms": T0 - 3600 * S + i + 90 * S} for i in range(3000)]
    dispatch_rule(first).restore({"gen": 0, "dispatches": history, "waiting": []})
    first.alerts.checkpoint(T0)
    first.read("smoke_detector", "SD-XQ01-0301", sd.Alarm(v=1, ts=T0 + S, seq=1), T0 + S)
    delta = first.incidents.rule_states()["fire_station.DispatchResponse" + URGENT_DELTA][1]
    (new,) = delta["dispatches"]
    assert delta["waiting"] == [new["dispatch_id"]] and new["ack_ms"] is None
    station = new["station"]
    for step, at in ((fs.DispatchAck(v=1, ts=T0 + 30 * S, seq=1, dispatch_id=new["dispatch_id"]), 30),
                     (fs.DispatchOnScene(v=1, ts=T0 + 150 * S, seq=2, dispatch_id=new["dispatch_id"]), 150)):
        first.read("fire_station", station, step, T0 + at * S)
    delta = first.incidents.rule_states()["fire_station.DispatchResponse" + URGENT_DELTA][1]
    assert [d["dispatch_id"] for d in delta["dispatches"]] == [new["dispatch_id"]] and delta["waiting"] == []
    first.close()  # a crash: no checkpoint since the alarm

    second = Engine(db, T0 + 200 * S)
    times = {r["dispatch_id"]: r for r in second.alerts.response_times()}
    assert len(times) == 3001 and (times[new["dispatch_id"]]["ack_s"], times[new["dispatch_id"]]["arrive_s"]) == (29, 149)
    second.alerts.tick(T0 + 200 * S)
    assert not [c for c in second.conditions() if c.startswith("dispatch_")]
    second.close()


def test_a_delta_older_than_the_checkpoint_is_not_laid_over_it(tmp_path):
    db = tmp_path / "wanli.db"
    first = Engine(db, T0)
    register(first, n_stations=0)
    first.read("smoke_detector", "SD-XQ01-0301", sd.Alarm(v=1, ts=T0 + S, seq=1), T0 + S)  # the delta: waiting
    (row,) = first.alerts.response_times()
    first.read("fire_station", row["station"], fs.DispatchOnScene(v=1, ts=T0 + 40 * S, seq=1,
                                                                  dispatch_id=row["dispatch_id"]), T0 + 40 * S)
    first.alerts.checkpoint(T0 + 41 * S)  # the checkpoint: answered, nothing waiting
    stale = {"gen": 1, "dispatches": [{**row, "ack_ms": None}], "waiting": [row["dispatch_id"]]}
    first.incidents.save_rule_states({"fire_station.DispatchResponse" + URGENT_DELTA: json.dumps(stale)}, T0 + S)
    first.close()

    second = Engine(db, T0 + 10 * MIN)
    second.alerts.tick(T0 + 10 * MIN)
    assert not [c for c in second.conditions() if c.startswith("dispatch_")]
    assert second.alerts.response_times()[0]["arrive_s"] == 39
    second.close()
