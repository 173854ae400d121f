from alerts.incidents import Severity
from alerts.rules import default_rules
from alerts.thresholds import Thresholds
from devices.kinds.charging_station import contract as charging_station
from devices.kinds.elderly_alarm import contract as elderly_alarm
from devices.kinds.smoke_detector import contract as smoke_detector
from devices.reading import Reading
from devices.topics import MessageClass
from tests.support.readings import reading as support_reading


def reading(kind, message, cls=MessageClass.EVENT, device="D-1"):
    return support_reading(kind, message, device, msg_class=cls)


class DefaultsOnly:
    """A rule context with every rule's default thresholds and no registered places."""

    def __init__(self, rules):
        self._thresholds = Thresholds(rules, lambda device_id: "")

    def place(self, device_id):
        return None

    def devices(self, kind):
        return []

    def threshold(self, kind, name, device_id):
        return self._thresholds.get(kind, name, device_id)


def evaluate(readings):
    rules = default_rules()
    ctx = DefaultsOnly(rules)
    return [s for r in readings for rule in rules if r.kind in rule.kinds for s in rule.on_reading(r, ctx, r.ts_ms)]


def test_a_smoke_alarm_signals_a_possible_fire():
    (s,) = evaluate([reading("smoke_detector", smoke_detector.Alarm(v=1, ts=5, seq=1, smoke_density=0.3))])
    assert (s.condition, s.category, s.severity, s.at_ms, s.device_id) == ("smoke_alarm", "fire", Severity.HIGH, 5, "D-1")
    assert "0.3" in s.detail


def test_heartbeats_and_status_raise_nothing():
    hb = reading("smoke_detector", smoke_detector.Heartbeat(v=1, ts=1, seq=1, battery_pct=90, rssi_dbm=-80), MessageClass.TELEMETRY)
    assert evaluate([hb]) == []


def test_shed_smoke_and_an_elderly_press_are_critical():
    signals = evaluate([
        reading("charging_station", charging_station.SmokeDetected(v=1, ts=1, seq=1)),
        reading("elderly_alarm", elderly_alarm.Press(v=1, ts=2, seq=2)),
    ])
    assert [(s.condition, s.severity) for s in signals] == [("shed_smoke", Severity.CRITICAL), ("emergency_press", Severity.CRITICAL)]


# -- routing: a rule is handed only the message types it declares, so it must ignore every other ---------------------

from hypothesis import given  # noqa: E402 - the routing tests' own imports
from hypothesis import strategies as st  # noqa: E402

from devices.catalog import KINDS  # noqa: E402

_ROUTED = [(rule_type, cls) for rule_type in {type(r) for r in default_rules()} if rule_type.messages is not None
           for kind in rule_type.kinds for cls in KINDS[kind].messages if not issubclass(cls, rule_type.messages)]


@given(st.sampled_from(_ROUTED).flatmap(lambda rc: st.tuples(st.just(rc[0]), st.builds(rc[1], v=st.just(1),
                                                                                        ts=st.just(10**12)))))
def test_a_message_type_a_rule_does_not_declare_changes_nothing_in_it(rule_and_message):
    rule_type, message = rule_and_message
    rule = rule_type()
    ctx = DefaultsOnly([rule])
    (kind,) = rule_type.kinds
    before = rule.snapshot()
    assert rule.on_reading(Reading("wanli", kind, "D-1", message.CLASS, message, 10**12), ctx, 10**12) == []
    assert rule.snapshot() == before


def test_the_engine_hands_a_heartbeat_only_to_the_rules_that_read_heartbeats():
    from alerts.service import AlertService

    class NoStore:
        def active(self):
            return []

        def rule_states(self):
            return {}

    rules = default_rules()
    svc = AlertService(NoStore(), lambda d, s: None, DefaultsOnly(rules), None, rules)  # type: ignore[arg-type]
    names = {type(r).__name__ for r in svc.rules_for_message("smoke_detector", smoke_detector.Heartbeat)}
    assert names == {"DetectorMaintenance", "DetectorSilence"}
    assert {type(r).__name__ for r in svc.rules_for_message("smoke_detector", smoke_detector.Alarm)} == {
        "SmokeAlarm", "SuspectedFire", "AlarmFlapping", "DetectorSilence"}
