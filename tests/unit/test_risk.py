"""The building risk score (dashboards/risk.py): bounded, explained, and never lower for worse news."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboards.risk import MAX_SCORE, RiskInputs, risk_factors, risk_score

COUNTS = [f.name for f in fields(RiskInputs) if f.type in ("int", int)]
# What makes a building safer when it grows (more coverage): every other count is bad news.
GOOD = {"covered_units", "units", "devices"}
BAD = [name for name in COUNTS if name not in GOOD | {"alarms", "false_alarms", "elderly_alone"}]

small = st.integers(min_value=0, max_value=500)
inputs = st.builds(RiskInputs, **{name: small for name in COUNTS}, high_rise=st.booleans())


def test_a_quiet_low_rise_with_every_household_covered_and_online_scores_zero() -> None:
    calm = RiskInputs(units=12, covered_units=12, devices=13)
    assert risk_score(calm).score == 0
    assert risk_score(calm).level == "low" and risk_score(calm).factors == ()


def test_a_critical_incident_alone_makes_the_building_medium_and_says_why() -> None:
    r = risk_score(RiskInputs(units=12, covered_units=12, devices=13, open_critical=1))
    assert r.score == 40 and r.level_zh == "中"
    assert [(f.code, f.points) for f in r.factors] == [("critical_incident", 40)]
    assert "1 起紧急警情" in r.factors[0].detail_zh


def test_overdue_rectifications_weigh_more_than_hazards_still_in_time() -> None:
    overdue = risk_score(RiskInputs(overdue_rectifications=2)).score
    in_time = risk_score(RiskInputs(open_hazards=2)).score
    assert overdue == 16 and in_time == 6


def test_coverage_and_silent_devices_count_by_share() -> None:
    r = risk_score(RiskInputs(units=100, covered_units=50, devices=10, offline=3, never_seen=2))
    by_code = {f.code: f.points for f in r.factors}
    assert by_code == {"detector_coverage": 8, "devices_silent": 10}  # half uncovered of 15; half silent of 20


def test_false_alarms_count_only_once_there_are_enough_alarms_and_most_were_false() -> None:
    def codes(**kw: int) -> set[str]:
        return {f.code for f in risk_factors(RiskInputs(**kw))}

    assert "false_alarms" in codes(alarms=4, false_alarms=3)
    assert "false_alarms" not in codes(alarms=2, false_alarms=2)  # too few to call it a habit
    assert "false_alarms" not in codes(alarms=4, false_alarms=2)  # half: not most
    assert {f.code: f.points for f in risk_factors(RiskInputs(alarms=4, false_alarms=3))}["alarms"] == 2  # one real


@pytest.mark.parametrize(("x", "score", "level"), [
    (RiskInputs(open_other=3, open_hazards=3), 24, "low"),
    (RiskInputs(open_other=3, open_hazards=3, high_rise=True), 29, "medium"),
    (RiskInputs(open_critical=1, overdue_rectifications=2), 56, "high"),
    (RiskInputs(open_critical=1, overdue_rectifications=3, tampered=3, charging_anomalies=1), 77, "severe"),
    (RiskInputs(open_critical=9, overdue_rectifications=9, tampered=9, charging_anomalies=9, open_other=9), 100, "severe"),
])
def test_levels_follow_the_score(x: RiskInputs, score: int, level: str) -> None:
    r = risk_score(x)
    assert (r.score, r.level) == (score, level)


@given(inputs)
def test_the_score_is_between_0_and_100_and_is_the_capped_sum_of_its_factors(x: RiskInputs) -> None:
    r = risk_score(x)
    assert 0 <= r.score <= MAX_SCORE
    assert r.score == min(MAX_SCORE, sum(f.points for f in r.factors))
    assert all(f.points > 0 and f.label_zh and f.detail_zh for f in r.factors)
    assert [f.points for f in r.factors] == sorted((f.points for f in r.factors), reverse=True)
    assert len({f.code for f in r.factors}) == len(r.factors)


@given(inputs, st.sampled_from(BAD), st.integers(min_value=1, max_value=50))
def test_more_bad_news_never_lowers_the_score(x: RiskInputs, name: str, more: int) -> None:
    worse = replace(x, **{name: getattr(x, name) + more})
    assert risk_score(worse).score >= risk_score(x).score


@given(inputs, st.integers(min_value=1, max_value=50))
def test_covering_more_households_never_raises_the_score(x: RiskInputs, more: int) -> None:
    better = replace(x, covered_units=x.covered_units + more)
    assert risk_score(better).score <= risk_score(x).score


@given(inputs)
def test_the_same_building_always_scores_the_same(x: RiskInputs) -> None:
    assert risk_score(x) == risk_score(replace(x))
