from alerts.incidents import Severity
from alerts.rules import default_rules
from alerts.thresholds import Thresholds
from devices import charging_station, elderly_alarm, smoke_detector
from devices.reading import Reading
from devices.topics import MessageClass


def reading(kind, message, cls=MessageClass.EVENT, device="D-1"):
    return Reading("wanli", kind, device, cls, message, received_ms=message.ts)


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
