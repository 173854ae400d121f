"""The alarm path stands alone (issue 13): each fault injected against real Mosquitto (and InfluxDB 1.x).

Every alarm sent during the fault becomes an incident; the fault itself becomes a system
incident on the wall (and closes itself once the fault is removed); /readyz tells the truth.
The same functions print the table of ``wanli chaos --only alarm-path`` (tooling/chaos_alarm_path.py).
"""

import os

import pytest

from tooling.chaos_alarm_path import (
    database_missing,
    device_clock,
    disk_full,
    flooding_device,
    format_alarm_path_table,
    influx_down,
    sequence_glitch,
    server_clock_slow,
    spool_bound,
)

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


def every_alarm_an_incident(report):
    print(format_alarm_path_table([report]))
    assert report.alarms_sent > 0
    assert report.incidents == report.alarms_sent, report


@pytest.mark.influxdb
def test_influxdb_down_alarms_open_incidents_and_the_outage_is_a_system_incident(tmp_path, mosquitto, influxdb_v1):
    report = influx_down(tmp_path, mosquitto, influxdb_v1, detectors=20)
    every_alarm_an_incident(report)
    assert report.raised_after_s is not None and report.raised_after_s < 30
    assert report.readyz.startswith("200") and "telemetry_unreachable" in report.readyz  # degraded, alarms fine
    assert report.cleared


@pytest.mark.influxdb
def test_a_spool_at_its_bound_holds_telemetry_loses_none_and_never_blocks_an_alarm(tmp_path, mosquitto, influxdb_v1):
    report = spool_bound(tmp_path, mosquitto, influxdb_v1, detectors=20, heartbeats=1500)
    every_alarm_an_incident(report)
    assert report.raised_after_s is not None
    assert report.cleared
    assert report.telemetry.endswith("heartbeats lost 0"), report.telemetry  # held, re-sent by the broker, stored


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_data_disk_at_the_alarm_reserve_keeps_alarms_and_readyz_says_503(tmp_path, mosquitto):
    report = disk_full(tmp_path, mosquitto, detectors=20)
    every_alarm_an_incident(report)
    assert report.raised_after_s is not None and report.raised_after_s < 30
    assert report.readyz.startswith("503") and "disk_reserve" in report.readyz
    assert report.cleared


@pytest.mark.influxdb
def test_the_influxdb_database_dropped_under_the_service_is_created_again(tmp_path, mosquitto, influxdb_v1):
    report = database_missing(tmp_path, mosquitto, influxdb_v1, detectors=20)
    every_alarm_an_incident(report)
    assert " 0 of " in report.telemetry, report.telemetry


def test_a_flooding_device_cannot_stop_other_devices_alarms(tmp_path, mosquitto):
    report = flooding_device(tmp_path, mosquitto, detectors=20, flood_s=6)
    every_alarm_an_incident(report)
    assert report.raised_after_s is not None


def test_alarms_from_devices_whose_clock_reset_open_flagged_incidents(tmp_path, mosquitto):
    report = device_clock(tmp_path, mosquitto, detectors=20)
    every_alarm_an_incident(report)
    assert report.details["incidents_flagged"] == 20


def test_a_sequence_glitch_and_a_reboot_never_mute_a_device(tmp_path, mosquitto):
    report = sequence_glitch(tmp_path, mosquitto, detectors=20)
    every_alarm_an_incident(report)
    assert report.details["first_alarms_opened"] == 20


def test_a_server_clock_five_minutes_slow_still_opens_every_alarm_and_says_so(tmp_path, mosquitto):
    report = server_clock_slow(tmp_path, mosquitto, detectors=30)
    every_alarm_an_incident(report)
    assert report.raised_after_s is not None
