from alerts.incidents import Severity, open_or_update
from alerts.rules import default_rules
from alerts.rules.base import Place
from alerts.rules.lift_camera import RULES, EbikeInLift
from devices import lift_camera as lc
from devices.hierarchy import Location
from devices.reading import Reading
from tests.unit.rule_world import RuleWorld

T0 = 1_772_352_000_000
KIND = "lift_camera"


def Ctx(rules=RULES, places=(), overrides=None):  # noqa: N802 - reads like the class it stands for
    """Overrides per device: {device_id: {threshold: value}}."""
    return RuleWorld(rules, places, {"devices": overrides or {}})

CAMERAS = [Place("LC-XQ01-A", KIND, "xq-01", 1, ""), Place("LC-XQ01-B", KIND, "xq-01", 1, ""),
           Place("LC-XQ02-A", KIND, "xq-02", 1, "")]


def detected(confidence, lift="A", action="door_held", ts=T0):
    return lc.EbikeDetected(v=1, ts=ts, seq=1, confidence=confidence, lift=lift, action=action)


def run(message, device="LC-XQ01-A", ctx=None):
    reading = Reading("wanli", KIND, device, message.CLASS, message, received_ms=message.ts)
    return EbikeInLift().on_reading(reading, ctx or Ctx(places=CAMERAS), message.ts)


def test_the_rules_are_registered():
    assert {type(r) for r in default_rules()} >= set(RULES)


def test_a_confident_detection_is_a_hazard_of_the_building():
    (s,) = run(detected(0.92))
    assert (s.condition, s.category, s.severity, s.scope, s.members) == (
        "ebike_in_lift", "hazard", Severity.WARNING, "building:xq-01", ("LC-XQ01-A",))
    assert s.key == "building:xq-01:ebike_in_lift"
    assert "A 号电梯" in s.detail and "92%" in s.detail and "保持开门" in s.detail


def test_the_confidence_boundary_is_inclusive():
    assert len(run(detected(0.8))) == 1
    assert run(detected(0.79)) == []


def test_what_the_lift_did_is_said():
    (s,) = run(detected(0.9, action="none", lift=""))
    assert "未采取阻止措施" in s.detail and "号电梯" not in s.detail


def test_a_stricter_camera():
    ctx = Ctx(places=CAMERAS, overrides={"LC-XQ01-B": {"min_confidence": 0.9}})
    assert run(detected(0.85), device="LC-XQ01-B", ctx=ctx) == []
    assert run(detected(0.85), device="LC-XQ01-A", ctx=ctx) != []


def test_repeats_in_any_lift_of_the_building_count_on_one_incident():
    loc = Location("wanli", "万里街道", building_id="xq-01")
    (a,) = run(detected(0.9))
    (b,) = run(detected(0.95, lift="B", ts=T0 + 60_000), device="LC-XQ01-B")
    (other,) = run(detected(0.95), device="LC-XQ02-A")
    assert a.key == b.key != other.key
    incident, _ = open_or_update(None, a, loc, T0, "inc_1")
    incident, _ = open_or_update(incident, b, loc, T0 + 60_000, "inc_2")
    assert (incident.id, incident.event_count, incident.members) == ("inc_1", 2, ("LC-XQ01-A", "LC-XQ01-B"))


def test_an_unregistered_camera_is_its_own_scope():
    (s,) = run(detected(0.9), device="LC-NEW")
    assert (s.scope, s.key) == ("", "LC-NEW:ebike_in_lift")
