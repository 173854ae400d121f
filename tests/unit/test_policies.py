"""Escalation policies as data (alerts/policies.py): the document's validation, the shipped file, repeats, an
open incident rebased on a new version, and the dry-run's comparison (wanli/policy_replay.py)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from alerts import escalation
from alerts.incidents import Incident, Severity, State
from alerts.policies import default_document_text, describe_changes, parse_policy_document
from alerts.rules import default_rules
from alerts.thresholds import Thresholds
from devices.hierarchy import load_hierarchy
from foundation.errors import Invalid
from wanli.policy_replay import Fired, compare, replay_history

H = load_hierarchy()
T0 = 1_760_000_000_000
DEFAULTS = Thresholds(default_rules(), lambda d: "").defaults()


def doc() -> dict[str, Any]:
    return copy.deepcopy(json.loads(default_document_text()))


def check(document: Any) -> Any:
    return parse_policy_document(document, threshold_defaults=DEFAULTS)


def test_the_shipped_file_is_the_policies_that_were_constants() -> None:
    policies = check(default_document_text())
    assert policies.policy_for("fire", Severity.HIGH).steps[0].ack_within_s == 60
    assert policies.policy_for("fire", Severity.CRITICAL).steps[0].fire_station
    assert policies.policy_for("fire", Severity.WARNING).name == "fire"  # lower severities share HIGH's
    assert policies.policy_for("anything", Severity.CRITICAL).name == "welfare-critical"
    assert policies.policy_for("anything", Severity.WARNING).name == "maintenance"
    assert policies.policy_for("fire", Severity.HIGH, "dispatch_ack_late:x").name == "response-breach"


@pytest.mark.parametrize(("edit", "says"), [
    (lambda d: d["policies"]["fire"]["steps"][0].update(tiers=["roof"]), "policies.fire.steps.0.tiers.0"),
    (lambda d: d["policies"]["fire"]["steps"][0].update(ack_within_s=5), "greater than or equal to 10"),
    (lambda d: d["policies"]["fire"]["steps"][0].update(ack_within_s=8 * 86400), "less than or equal to 604800"),
    (lambda d: d["policies"]["fire"]["steps"][0].update(roles=["night_watchman"]), "unknown role night_watchman"),
    (lambda d: d["policies"]["fire"].update(steps=[]), "policies.fire.steps"),
    (lambda d: d["policies"]["fire"].update(repeat_last=-1), "repeat_last"),
    (lambda d: d["policies"]["fire"]["steps"][0].update(colour="red"), "Extra inputs are not permitted"),
    (lambda d: d["routes"].append({"category": "fire", "severity": "high", "policy": "nope"}), "'nope'"),
    (lambda d: d["routes"].append(dict(d["routes"][0])), "is given twice"),
    (lambda d: d.update(fallback="gone"), "fallback names policy 'gone'"),
    (lambda d: d.update(format=2), "format"),
    (lambda d: d.update(thresholds={"charging_station": {"port_temp": 50}}), "no rule has this threshold"),
    (lambda d: d.update(thresholds={"charging_station": {"port_temp_c": "hot"}}), "thresholds.charging_station"),
])
def test_a_document_that_does_not_validate_says_what_and_where(edit: Any, says: str) -> None:
    d = doc()
    edit(d)
    with pytest.raises(Invalid, match="policy document invalid") as caught:
        check(d)
    assert says in str(caught.value)


def test_text_that_is_not_json_is_refused_clearly() -> None:
    with pytest.raises(Invalid, match="not JSON"):
        check("{policies: ")
    with pytest.raises(Invalid, match="JSON object"):
        check("[1, 2]")


def test_thresholds_of_the_document_sit_between_the_rules_defaults_and_the_file_overrides() -> None:
    d = doc()
    d["thresholds"] = {"charging_station": {"port_temp_c": 50}}
    policies = check(d)
    thresholds = Thresholds(default_rules(), lambda device: "xq-01",
                            {"devices": {"CS-XQ01-02": {"port_temp_c": 45}}})
    default = thresholds.get("charging_station", "port_temp_c", "CS-XQ01-01")
    thresholds.set_policy_values(policies.thresholds)
    assert default != 50
    assert thresholds.get("charging_station", "port_temp_c", "CS-XQ01-01") == 50
    assert thresholds.get("charging_station", "port_temp_c", "CS-XQ01-02") == 45  # the device's own still wins


def incident(**kw: Any) -> Incident:
    from alerts.incidents import Signal, open_or_update
    sig = Signal("SD-XQ01-0101", "smoke_detector", "smoke_alarm", "fire", Severity.HIGH, "烟感报警", T0, "")
    inc, _ = open_or_update(None, sig, H.locate("xq-01", 1, "0101"), T0, "inc_1")
    return replace(inc, **kw)


def test_the_last_step_repeats_as_many_times_as_the_document_says_then_stops() -> None:
    d = doc()
    d["policies"]["fire"]["repeat_last"] = 1
    policies = check(d)
    inc, _, _ = escalation.start(incident(), H, T0, policies)
    now = T0
    told = []
    while inc.next_deadline_ms is not None:
        now = inc.next_deadline_ms
        inc, notices, entry = escalation.advance(inc, H, now, policies)
        told.append((inc.escalation_step, bool(notices)))
        steps_in_notices = {n.step for n in notices}
        assert steps_in_notices <= {min(inc.escalation_step, 4)}  # a repeat is the last step's (phones not rung twice)
    assert told == [(1, True), (2, True), (3, True), (4, True), (5, True), (5, False)]
    assert "不再通知" in entry.note


def test_an_open_incident_follows_a_new_version_at_once_and_an_acknowledged_one_is_left_alone() -> None:
    current = check(default_document_text()).with_version(1)
    d = doc()
    d["policies"]["fire"]["steps"][0]["ack_within_s"] = 20
    draft = check(d).with_version(2)
    inc, _, _ = escalation.start(incident(), H, T0, current)
    assert inc.next_deadline_ms == T0 + 60_000
    rebased, entry = escalation.rebase(inc, current, draft, T0 + 5_000)  # type: ignore[misc]
    assert rebased.next_deadline_ms == T0 + 20_000 and entry.action == "policy" and "第 2 版" in entry.note
    assert escalation.rebase(rebased, draft, draft, T0 + 6_000) is None  # nothing changed
    acked = replace(rebased, state=State.ACKNOWLEDGED)
    assert escalation.rebase(acked, current, draft, T0 + 6_000) is None


def test_the_changes_of_a_version_are_listed_line_by_line() -> None:
    d = doc()
    d["policies"]["fire"]["steps"][1]["roles"] = ["residents_committee"]
    d["policies"]["charging"]["repeat_last"] = 3
    d["routes"] = [r for r in d["routes"] if r["category"] != "readiness"]
    lines = describe_changes(check(default_document_text()), check(d))
    assert lines == ["charging：最高级重复 直至确认 → 3 次",
                     "fire 第2级：角色 residents_committee,community_police → residents_committee",
                     "路由 readiness/high：readiness → —"]


def test_past_incidents_replayed_under_a_draft_say_which_steps_come_earlier_and_which_never_came() -> None:
    current = check(default_document_text())
    d = doc()
    d["policies"]["fire"]["steps"][1]["ack_within_s"] = 60  # 120 s → 60 s
    draft = check(d)
    past = [incident(state=State.CLOSED, acknowledged_ms=T0 + 150_000)]  # answered after 2.5 minutes
    a = replay_history(past, current, H, lambda i: i.acknowledged_ms)
    b = replay_history(past, draft, H, lambda i: i.acknowledged_ms)
    assert [(f.step, f.at_s) for f in a] == [(0, 0.0), (1, 60.0)]
    assert [(f.step, f.at_s) for f in b] == [(0, 0.0), (1, 60.0), (2, 120.0)]  # the area told before the answer
    diff = compare(a, b)
    assert [(x.step, x.change, x.draft_at_s) for x in diff] == [(2, "added", 120.0)]
    assert any("area_leader" in w for w in diff[0].draft_who)


def test_compare_matches_steps_and_tells_earlier_later_removed_and_other_people() -> None:
    def f(step: int, at: float, who: str = "a") -> Fired:
        return Fired("s", "i", "p", step, at, (who,))
    diff = compare([f(0, 0), f(1, 60), f(2, 120), f(3, 300)], [f(0, 0, "b"), f(1, 30), f(2, 180)])
    assert [(d.step, d.change) for d in diff] == [(0, "recipients"), (1, "earlier"), (2, "later"), (3, "removed")]
