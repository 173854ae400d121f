"""Retention's pure parts: the policy, the chart's resolution, months of the archive, settings without secrets."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from alerts.archive import month_bounds, month_of, previous_month
from ingest.retention import DAY_MS, HOUR_MS, RetentionPolicy, chart_resolution, influx_duration, shard_duration
from wanli.backup import REDACTED, settings_without_secrets
from wanli.settings import Settings

NOW = 1_796_083_200_000


def test_the_defaults_are_the_safe_ones_and_nonsense_is_refused():
    s = Settings()
    assert (s.retention_raw_days, s.retention_aggregate_days, s.retention_incidents_days) == (30, 730, 0)
    assert s.resolved_archive_dir == Path("var") / "archive"
    for bad in ({"retention_raw_days": 0}, {"retention_incidents_days": -1}, {"retention_batch_rows": 10}):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_every_retention_setting_is_in_the_configuration_docs():
    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        if name.startswith(("retention_", "archive_")):
            assert f"`WANLI_{name.upper()}`" in text, name


def test_a_chart_reads_raw_only_for_a_short_range_inside_the_raw_period():
    policy = RetentionPolicy.from_days(30, 730)
    assert chart_resolution(NOW - DAY_MS, NOW, NOW, policy) == "raw"
    assert chart_resolution(NOW - 2 * DAY_MS, NOW, NOW, policy) == "raw"
    assert chart_resolution(NOW - 3 * DAY_MS, NOW, NOW, policy) == "hourly"
    assert chart_resolution(NOW - 365 * DAY_MS, NOW, NOW, policy) == "hourly"
    old = NOW - 40 * DAY_MS  # a short range whose raw readings are gone
    assert chart_resolution(old, old + HOUR_MS, NOW, policy) == "hourly"


def test_influx_durations_are_whole_hours_with_influxdbs_shard_sizes():
    assert influx_duration(30 * DAY_MS) == "720h" and influx_duration(HOUR_MS // 2) == "1h"
    assert [shard_duration(d * DAY_MS) for d in (1, 30, 180, 730)] == ["1h", "24h", "24h", "168h"]


def test_months_are_shanghai_months():
    start, end = month_bounds("2026-12")
    assert month_of(start) == "2026-12" and month_of(start - 1) == "2026-11" and month_of(end) == "2027-01"
    assert (end - start) == 31 * DAY_MS
    assert previous_month("2026-01") == "2025-12"
    with pytest.raises(ValueError):
        month_bounds("2026-13")


def test_settings_in_a_backup_carry_no_secret():
    s = Settings(mqtt_password="mqtt-secret", influx_token="influx-secret", influx_password="influx-pw",
                 database_url="postgresql+psycopg://wanli:db-secret@db.local:5432/wanli",
                 auth_secret_key="k" * 40, webhook_url="https://platform.local/notify?token=hook-secret")
    saved = settings_without_secrets(s)
    text = repr(saved)
    for secret in ("mqtt-secret", "influx-secret", "influx-pw", "db-secret", "k" * 40, "hook-secret"):
        assert secret not in text
    assert saved["mqtt_password"] == saved["auth_secret_key"] == REDACTED
    assert saved["database_url"] == "postgresql+psycopg://wanli:***@db.local:5432/wanli"
    assert saved["mqtt_username"] == "" and saved["street"] == "wanli"  # the rest as it was
