"""Every scenario of the library, played against the whole service on real Mosquitto, its expected outcomes asserted.

Each test starts a service on the scenario's simulated clock (``wanli.embedded_scenario``: the
service reads the same clock, so time can run 60–1,200 times faster and jump a day), plays
the scenario through the broker, and judges the scenario's own expectations through the
HTTP API. A failure prints every expectation with what the API showed.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from simulators.expectations import ExpectIncident
from simulators.scenario import ScenarioResult
from simulators.scenarios import get, scenarios
from wanli.embedded_scenario import run_embedded

pytestmark = pytest.mark.mosquitto


def play(name: str, mosquitto) -> ScenarioResult:  # type: ignore[no-untyped-def]
    return run_embedded(get(name), mqtt_url=mosquitto.url)


def assert_met(result: ScenarioResult) -> None:
    assert result.outcomes, "the scenario judged nothing"
    assert result.ok, result.report()


def test_the_library_has_every_scenario_of_the_issue_each_with_expectations():
    assert set(scenarios()) == {
        "real_fire_spreading", "kitchen_false_alarm", "thermal_runaway_shed", "full_battery_power", "elderly_press",
        "press_then_cancel", "elderly_inactivity_day", "station_slow_ack", "mass_offline", "reconnect_storm",
        "hostile_messages", "kitchen_gas_leak"}
    for scenario in scenarios().values():
        assert scenario.expect and scenario.summary and scenario.title
        # the testers' page reads them in Chinese: no condition codes, mark names or English words
        for text in (scenario.title, scenario.summary, *scenario.expect_zh()):
            assert not re.findall(r"[A-Za-z_]{5,}", text), (scenario.name, text)


@pytest.mark.parametrize("name", ["real_fire_spreading", "kitchen_false_alarm", "thermal_runaway_shed",
                                  "full_battery_power", "elderly_press", "press_then_cancel", "elderly_inactivity_day",
                                  "station_slow_ack", "hostile_messages", "kitchen_gas_leak"])
def test_scenario_meets_its_expected_outcomes(name, mosquitto):
    assert_met(play(name, mosquitto))


def test_an_unmet_expectation_is_reported_as_unmet(mosquitto):
    """The judge can fail: the kitchen scenario's detector does not raise a suspected fire, so expecting one fails."""
    wrong = replace(get("kitchen_false_alarm"), expect=(ExpectIncident("suspected_fire", severity="critical"),
                                                         ExpectIncident("smoke_alarm", severity="critical")))
    result = run_embedded(wrong, mqtt_url=mosquitto.url)
    assert not result.ok
    assert [o.met for o in result.outcomes] == [False, False]
    assert "found 0" in result.outcomes[0].detail and "is high" in result.outcomes[1].detail


def test_reconnect_storm(mosquitto):
    """Every connection of two buildings dies (the broker publishes each will) and returns in the same second."""
    assert_met(play("reconnect_storm", mosquitto))


@pytest.mark.slow
def test_mass_offline(mosquitto):
    """1,000 detectors silenced by one outage are one street incident, not a thousand pages (~40 s: 17 h at ×1,200)."""
    assert_met(play("mass_offline", mosquitto))
