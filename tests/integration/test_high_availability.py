"""Two instances are one service: the ingest holder killed or frozen mid-storm (wanli/chaos_host_loss.py).

Real PostgreSQL and Mosquitto, two ``wanli run`` processes with the same MQTT client id and a
data directory each. A probe alarm's escalation deadline falls inside the takeover.
"""

from __future__ import annotations

import pytest

from wanli.chaos_host_loss import TAKEOVER_TARGET_S, HostLossReport, format_host_loss_table, host_loss

pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres]


def check(report: HostLossReport) -> None:
    table = format_host_loss_table([report])
    print(table)
    assert report.takeovers_s and max(report.takeovers_s) <= TAKEOVER_TARGET_S, table
    assert report.published > 100 and report.opened == report.published, table  # every alarm its incident
    assert report.lost == 0 and report.doubled == 0, table
    assert report.notices_sent > 0 and report.notices_doubled == 0 and report.notices_unsent == 0, table
    assert report.registration_seen_s <= 1.0, table  # registered through one, honoured by the other within 1 s
    assert report.escalation_late_s is not None and report.escalation_late_s <= TAKEOVER_TARGET_S, table
    assert report.session_fights_after == 0, table


def test_the_ingest_holder_killed_mid_storm_is_taken_over_with_nothing_lost_or_sent_twice(
        tmp_path, mosquitto, postgres_url):
    check(host_loss(tmp_path, mosquitto, postgres_url, kills=1, rate=20.0, between_s=0))


def test_the_ingest_holder_frozen_for_30_s_is_taken_over_and_writes_nothing_when_it_wakes(
        tmp_path, mosquitto, postgres_url):
    check(host_loss(tmp_path, mosquitto, postgres_url, freeze_s=30.0, rate=8.0, between_s=0))
