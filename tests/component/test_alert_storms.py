"""A storm of silence through the alert service on SQLite: one grouped incident, told who is back, never reopened."""

from alerts.incidents import Action, Severity, State
from devices.kinds.charging_station import contract as cs
from devices.registry import DeviceRecord
from tests.component.test_alert_checkpoints import Engine

T0 = 1_795_000_000_000
S, MIN = 1000, 60_000
N = 40


def silent_stations(tmp_path):
    engine = Engine(tmp_path / "wanli.db", T0)
    engine.registry.register_many([DeviceRecord(f"CS-{i:02d}", "charging_station", "wanli", "xq-01") for i in range(N)],
                                  actor="test", now_ms=T0)
    engine.alerts.tick(T0)
    engine.alerts.tick(T0 + 3 * MIN + S)  # none of them ever heard from: all overdue at once
    (storm,) = engine.alerts.active()
    return engine, storm


def back(engine, devices, now_ms):
    for d in devices:
        engine.read("charging_station", d, cs.StationStatus(v=1, ts=now_ms, seq=1, ports=[], mains_power=True), now_ms)


def test_forty_stations_silent_at_once_are_one_incident_that_says_what_it_is(tmp_path):
    engine, storm = silent_stations(tmp_path)
    assert (storm.condition, storm.scope, storm.severity, len(storm.members)) == ("mass_offline", "street:wanli",
                                                                                  Severity.HIGH, N)
    assert storm.subject == f"街道 wanli：{N} 个电动车充电桩"
    assert storm.escalation_policy == "maintenance"
    engine.close()


def test_the_storm_incident_follows_the_return_and_drops_to_a_warning_once_all_are_back(tmp_path):
    engine, storm = silent_stations(tmp_path)
    now = T0 + 10 * MIN
    back(engine, [f"CS-{i:02d}" for i in range(30)], now)
    engine.alerts.tick(now + S)
    (updated,) = engine.alerts.active()
    assert updated.id == storm.id and "已有 30 个恢复上报，仍有 10 个离线" in updated.detail
    assert updated.severity is Severity.HIGH
    back(engine, [f"CS-{i:02d}" for i in range(30, N)], now + 2 * S)
    engine.alerts.tick(now + 3 * S)
    (done,) = engine.alerts.active()
    assert done.id == storm.id and done.severity is Severity.WARNING and done.state is State.OPEN  # a person closes it
    assert "已全部恢复上报" in done.detail
    trail = engine.incidents.audit(storm.id)
    assert [a.action for a in trail][-1] == "downgrade_severity"
    engine.close()


def test_news_of_a_storm_a_person_has_already_closed_opens_nothing(tmp_path):
    engine, storm = silent_stations(tmp_path)
    engine.alerts.act(storm.id, Action.FALSE_ALARM, "值班员", "运营商已确认网络割接", T0 + 5 * MIN)
    back(engine, [f"CS-{i:02d}" for i in range(N)], T0 + 10 * MIN)
    engine.alerts.tick(T0 + 10 * MIN + S)
    assert engine.alerts.active() == []
    engine.close()
