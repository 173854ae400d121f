from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.incidents import Severity
from alerts.rules import default_rules
from devices.kinds.inspection_report import contract as ir
from devices.kinds.inspection_report.rules import (
    CATEGORIES,
    CATEGORY_ZH,
    RULES,
    SEVERITY,
    HazardReported,
    RecurringHazard,
    zh_number,
)
from devices.reading import Reading
from tests.support.rules import rule_context, run_rule

T0 = 1_772_352_000_000  # 2026-03-01 08:00 UTC = 16:00 in Shanghai
H, D = 3_600_000, 86_400_000
KIND = "inspection_report"
REPORTER = "IR-RIDER-07"


Ctx = partial(rule_context, RULES)  # Ctx(places=…, overrides={device_id: {threshold: value}})

_ids = iter(range(10**9))


def report(category="fire_lane_blocked", building="xq-01", ts=T0, report_id=None, **fields):
    return ir.HazardReport(v=1, ts=ts, seq=1, report_id=report_id or f"R-{next(_ids)}", category=category,
                           building=building, **fields)


def run(rule, ctx, *messages, device=REPORTER):
    return run_rule(rule, ctx, KIND, device, messages)


def test_the_rules_are_registered():
    assert {type(r) for r in default_rules()} >= set(RULES)


def test_every_category_has_a_name_a_severity_and_a_deadline():
    assert set(CATEGORY_ZH) == set(SEVERITY) == set(CATEGORIES)
    assert {f"deadline_h_{c}" for c in CATEGORIES} <= set(HazardReported.THRESHOLDS[KIND])


@pytest.mark.parametrize(("category", "severity", "hours"), [
    ("fire_lane_blocked", Severity.HIGH, 2), ("flying_wire_charging", Severity.HIGH, 24),
    ("ebike_indoors", Severity.WARNING, 72), ("corridor_clutter", Severity.WARNING, 72),
    ("extinguisher_missing", Severity.WARNING, 72), ("extinguisher_expired", Severity.WARNING, 72),
    ("manhole_damaged", Severity.WARNING, 72), ("other", Severity.INFO, 72),
])
def test_severity_and_deadline_by_category(category, severity, hours):
    (s,) = run(HazardReported(), Ctx(), report(category))
    assert (s.condition, s.category, s.severity) == (f"hazard:{category}", "hazard", severity)
    assert f"{hours} 小时内" in s.detail and CATEGORY_ZH[category] in s.title


def test_the_deadline_is_an_iso_time_in_shanghai():
    (s,) = run(HazardReported(), Ctx(), report("fire_lane_blocked"))
    assert "整改期限 2026-03-01T18:00+08:00" in s.detail
    (s,) = run(HazardReported(), Ctx(), report("corridor_clutter"))
    assert "整改期限 2026-03-04T16:00+08:00" in s.detail


def test_a_phone_clock_ahead_does_not_push_the_deadline_out():
    m = report("fire_lane_blocked", ts=T0 + 5 * H)
    (s,) = HazardReported().on_reading(Reading("wanli", KIND, REPORTER, m.CLASS, m, T0), Ctx(), T0)
    assert "整改期限 2026-03-01T18:00+08:00" in s.detail


def test_the_detail_says_what_where_and_with_what_evidence():
    (s,) = run(HazardReported(), Ctx(), report("flying_wire_charging", community="香泉", location="3单元 5楼窗外",
                                               note="电线从窗户垂下给电瓶车充电", photos=["p/1.jpg", "p/2.jpg"],
                                               reporter="骑手 王师傅"))
    for text in ("飞线充电", "香泉", "xq-01", "3单元 5楼窗外", "电线从窗户垂下", "照片 2 张", "骑手 王师傅"):
        assert text in s.detail


def test_a_report_naming_a_building_is_the_buildings_else_the_reporters():
    (s,) = run(HazardReported(), Ctx(), report(building="xq-01"))
    assert (s.scope, s.members, s.key) == ("building:xq-01", (REPORTER,), "building:xq-01:hazard:fire_lane_blocked")
    (s,) = run(HazardReported(), Ctx(), report(building=""))
    assert (s.scope, s.key) == ("", f"{REPORTER}:hazard:fire_lane_blocked")
    assert "未注明位置" in s.detail


def test_a_shorter_deadline_for_one_reporter_account():
    ctx = Ctx(overrides={REPORTER: {"deadline_h_fire_lane_blocked": 1}})
    (s,) = run(HazardReported(), ctx, report("fire_lane_blocked"))
    assert "整改期限 2026-03-01T17:00+08:00" in s.detail


# --- recurrence -------------------------------------------------------------------------------------------

def test_the_third_report_in_thirty_days_is_a_recurring_hazard():
    rule, ctx = RecurringHazard(), Ctx()
    assert run(rule, ctx, report(ts=T0), report(ts=T0 + 10 * D)) == []
    (s,) = run(rule, ctx, report(ts=T0 + 20 * D))
    assert (s.condition, s.category, s.severity, s.scope) == (
        "recurring_hazard:fire_lane_blocked", "hazard", Severity.HIGH, "building:xq-01")
    assert "三十天内第三次" in s.detail
    (s,) = run(rule, ctx, report(ts=T0 + 21 * D))
    assert "三十天内第四次" in s.detail


def test_the_window_boundary():
    rule, ctx = RecurringHazard(), Ctx()
    run(rule, ctx, report(ts=T0), report(ts=T0 + 10 * D))
    assert len(run(rule, ctx, report(ts=T0 + 30 * D - 1))) == 1
    rule = RecurringHazard()
    run(rule, ctx, report(ts=T0), report(ts=T0 + 10 * D))
    assert run(rule, ctx, report(ts=T0 + 30 * D)) == []  # the first is thirty days old: out


def test_other_buildings_and_other_categories_count_apart():
    rule, ctx = RecurringHazard(), Ctx()
    assert run(rule, ctx, report(building="xq-01"), report(building="xq-02"), report("corridor_clutter"),
               report(building="xq-01")) == []


def test_the_same_report_sent_twice_counts_once():
    rule, ctx = RecurringHazard(), Ctx()
    assert run(rule, ctx, report(report_id="R-1"), report(report_id="R-1", ts=T0 + H), report(ts=T0 + 2 * H)) == []


def test_reports_without_a_building_do_not_recur():
    rule, ctx = RecurringHazard(), Ctx()
    assert run(rule, ctx, *[report(building="") for _ in range(5)]) == []


def test_a_lower_recurrence_count_for_one_reporter():
    rule, ctx = RecurringHazard(), Ctx(overrides={REPORTER: {"recur_count": 2}})
    assert [s.detail.split("次")[0][-1] for s in run(rule, ctx, report(), report(ts=T0 + D))] == ["二"]


@given(st.lists(st.integers(0, 60), min_size=1, max_size=12))
def test_recurrence_counts_reports_within_the_window(days):
    rule, ctx = RecurringHazard(), Ctx()
    times = sorted(T0 + d * D for d in days)
    for k, t in enumerate(times):
        recent = [u for u in times[: k + 1] if u > t - 30 * D]
        assert (run(rule, ctx, report(ts=t)) != []) == (len(recent) >= 3)


@pytest.mark.parametrize(("n", "zh"), [(0, "零"), (3, "三"), (10, "十"), (15, "十五"), (21, "二十一"), (30, "三十"),
                                       (99, "九十九"), (100, "100")])
def test_chinese_numerals(n, zh):
    assert zh_number(n) == zh
