"""Faults injected against real servers, short versions (the heavy ones: ``wanli chaos --heavy``).

The service runs as its own OS process (``python -m wanli.cli run``) on the suite's real
Mosquitto (and InfluxDB 1.x); tooling/chaos.py injects each fault while devices publish and
accounts for every message through the service's API. Complements
tests/integration/test_nothing_lost.py, which shows the same promises for a graceful stop,
a quiet InfluxDB outage and republished messages, in-process.
"""

import pytest

from tooling.chaos import (
    format_table,
    broker_restart_under_load,
    influx_outage_under_load,
    kill_ingest_mid_storm,
    restart_with_pending_deadlines,
)

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


def test_sigkill_mid_storm_every_alarm_opens_exactly_one_incident(tmp_path, mosquitto):
    report = kill_ingest_mid_storm(tmp_path, mosquitto, devices=300, rate=300, kills=1, down_s=1)
    print(format_table([report]))
    received_before_kill = int(report.details["received_before_kill"])
    assert 0 < received_before_kill < report.published  # killed mid-storm, not before or after it
    assert (report.published, report.stored, report.lost, report.duplicates) == (300, 300, 0, 0), report


def test_sigkill_twice_while_devices_repeat_their_alarms_counts_each_alarm_once(tmp_path, mosquitto):
    report = kill_ingest_mid_storm(tmp_path, mosquitto, devices=100, alarms_per_device=3, rate=300, kills=2, down_s=0.5)
    print(format_table([report]))
    assert (report.published, report.stored, report.lost, report.duplicates) == (300, 100, 0, 0), report


@pytest.mark.influxdb
def test_influxdb_down_under_load_loses_no_point_and_the_spool_drains(tmp_path, mosquitto, influxdb_v1):
    report = influx_outage_under_load(tmp_path, mosquitto, influxdb_v1, devices=200, rate=200, before_s=2,
                                      outage_s=5, after_s=2, alarms_during_outage=3)
    print(format_table([report]))
    assert report.details["peak_spool_points"] > 0  # the outage really held points back
    assert report.published > 1000
    assert (report.lost, report.duplicates) == (0, 0), report
    assert report.stored == report.published


def test_broker_restart_under_load_loses_no_qos1_alarm(tmp_path, mosquitto):
    report = broker_restart_under_load(tmp_path, mosquitto, devices=300, rate=100, restarts=1, down_s=1)
    print(format_table([report]))
    assert (report.published, report.stored, report.lost, report.duplicates) == (300, 300, 0, 0), report


def test_deadlines_pending_through_a_crash_fire_late_ones_at_once_and_the_next_on_time(tmp_path, mosquitto):
    report = restart_with_pending_deadlines(tmp_path, mosquitto, incidents=12, downtime_s=70, shift_clock=True)
    print(format_table([report]))
    assert (report.stored, report.lost, report.duplicates) == (12, 0, 0), report  # each climbed exactly one step
    assert float(report.details["late_deadlines_fired_after_start_s"]) < 10
    assert report.details["escalated_before_deadline"] == 0
    assert 0 <= report.details["next_deadline_fired_late_by_ms"] < 5000
