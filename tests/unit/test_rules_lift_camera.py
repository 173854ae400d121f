from functools import partial

from alerts.incidents import Severity, open_or_update
from alerts.rules import default_rules
from alerts.rules.base import Place
from devices.hierarchy import Location
from devices.kinds.lift_camera import contract as lc
from devices.kinds.lift_camera.rules import RULES, CameraOffline, EbikeInLift
from devices.messages import Offline
from devices.reading import Reading
from tests.support.rules import rule_context, run_rule

T0 = 1_772_352_000_000
KIND = "lift_camera"


Ctx = partial(rule_context, RULES)  # Ctx(places=…, overrides={device_id: {threshold: value}})

CAMERAS = [Place("LC-XQ01-A", KIND, "xq-01", 1, ""), Place("LC-XQ01-B", KIND, "xq-01", 1, ""),
           Place("LC-XQ02-A", KIND, "xq-02", 1, "")]


def detected(confidence, lift="A", action="door_held", ts=T0):
    return lc.EbikeDetected(v=1, ts=ts, seq=1, confidence=confidence, lift=lift, action=action)


def run(message, device="LC-XQ01-A", ctx=None):
    return run_rule(EbikeInLift(), ctx or Ctx(places=CAMERAS), KIND, device, [message])


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


# --- offline ----------------------------------------------------------------------------------------------
# A camera beats every 10 minutes; silent for 30 it is overdue, held storm_window_s (300 s), then offline.

MIN = 60_000
HOLD = 5 * MIN
LIMIT = 30 * MIN


def beat(rule, ctx, device, ts):
    m = lc.Heartbeat(v=1, ts=ts, seq=1)
    rule.on_reading(Reading("wanli", KIND, device, m.CLASS, m, received_ms=ts), ctx, ts)


def test_the_offline_limit_is_three_of_the_kinds_own_heartbeats():
    assert CameraOffline.HEARTBEAT_MS == lc.KIND.heartbeat_s * 1000 == 10 * MIN


def test_a_silent_camera_is_offline_after_three_heartbeats_missed():
    rule, ctx = CameraOffline(), Ctx(places=CAMERAS)
    rule.on_tick(ctx, T0)
    for t in range(10, 50, 10):
        beat(rule, ctx, "LC-XQ01-A", T0 + t * MIN)
        beat(rule, ctx, "LC-XQ02-A", T0 + t * MIN)
    assert rule.on_tick(ctx, T0 + LIMIT) == []  # exactly three heartbeats: not yet
    assert rule.on_tick(ctx, T0 + LIMIT + 1) == []  # LC-XQ01-B, never heard: overdue, held
    (s,) = rule.on_tick(ctx, T0 + LIMIT + 1 + HOLD)
    assert (s.device_id, s.condition, s.category, s.severity) == ("LC-XQ01-B", "offline", "maintenance",
                                                                  Severity.WARNING)
    assert "电梯阻车摄像头" in s.detail and "无法发现和阻止" in s.detail
    assert rule.on_tick(ctx, T0 + 40 * MIN + LIMIT) == []  # the beating ones stay online


def test_the_last_will_is_not_a_sign_of_life_but_a_detection_is():
    rule, ctx = CameraOffline(), Ctx(places=CAMERAS)
    rule.on_tick(ctx, T0)
    m = Offline(v=1, ts=T0 + 20 * MIN, seq=1)
    rule.on_reading(Reading("wanli", KIND, "LC-XQ01-A", m.CLASS, m, received_ms=m.ts), ctx, m.ts)
    d = detected(0.9, ts=T0 + 20 * MIN)
    rule.on_reading(Reading("wanli", KIND, "LC-XQ01-B", d.CLASS, d, received_ms=d.ts), ctx, d.ts)
    rule.on_tick(ctx, T0 + LIMIT + 1)
    assert sorted(s.device_id for s in rule.on_tick(ctx, T0 + LIMIT + 1 + HOLD)) == ["LC-XQ01-A", "LC-XQ02-A"]


def test_many_cameras_silent_at_once_are_one_street_incident():
    places = [Place(f"LC-{i:03d}-A", KIND, f"b-{i:03d}", 1, "") for i in range(30)]
    rule, ctx = CameraOffline(), Ctx(places=places)
    rule.on_tick(ctx, T0)
    (storm,) = rule.on_tick(ctx, T0 + LIMIT + 1)  # more than storm_count (10) at once
    assert (storm.key, storm.severity, len(storm.members)) == ("street:wanli:mass_offline", Severity.HIGH, 30)
    assert [s for t in range(1, 20) for s in rule.on_tick(ctx, T0 + LIMIT + t * MIN)] == []


def test_a_rule_moved_into_its_kinds_folder_keeps_its_checkpoint_name():
    """Rules are checkpointed by name (alerts/rules/base.py): devices/kinds/lift_camera/rules.py names them as
    alerts/rules/lift_camera.py did, so a checkpoint written before the move restores after it."""
    assert [r().name for r in RULES] == ["lift_camera.EbikeInLift", "lift_camera.CameraOffline"]
