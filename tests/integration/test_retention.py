"""Retention and roll-up against the real stores: the embedded SQLite store and InfluxDB 1.x (Debian's 1.6).

What is observable is tested as such: the policies and continuous query InfluxDB reports, points gone once
InfluxDB's own retention service has dropped their shards (a server of the test's own, checking every
second), and aggregates equal to numpy's over the same points.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

import httpx
import numpy as np
import pytest

from ingest.points import TelemetryPoint
from ingest.retention import (
    CONTINUOUS_QUERY,
    DAY_MS,
    HOUR_MS,
    HOURLY_POLICY,
    RAW_POLICY,
    InfluxV1Retention,
    RetentionPolicy,
    SqliteRetention,
    influx_v1_statements,
)
from ingest.telemetry import InfluxV1TelemetryStore, SqliteTelemetryStore
from tests.fixtures.servers import InfluxV1Server, serve

NOW = 1_796_083_200_000  # 2026-12-01 00:00 UTC, a whole hour


def port_points(ts: np.ndarray, temps: np.ndarray, device: str = "CS-XQ01-01", port: str = "3") -> list[TelemetryPoint]:
    tags = {"street": "wanli", "device": device, "type": "snapshot", "class": "telemetry", "port": port}
    return [TelemetryPoint("charging_station", tags, {"temperature_c": float(v), "seq": int(i), "state": "charging"},
                           int(t)) for i, (t, v) in enumerate(zip(ts, temps, strict=True))]


def expected_hour(ts: np.ndarray, values: np.ndarray, hour_ms: int) -> tuple[int, float, float, float]:
    mask = (ts >= hour_ms) & (ts < hour_ms + HOUR_MS)
    return int(mask.sum()), float(values[mask].mean()), float(values[mask].min()), float(values[mask].max())


# --- SQLite -------------------------------------------------------------------------------------------

def test_sqlite_keeps_30_days_raw_and_hourly_aggregates_equal_to_numpy(tmp_path):
    path = tmp_path / "telemetry.db"
    store = SqliteTelemetryStore(path)
    pauses: list[float] = []
    retention = SqliteRetention(path, RetentionPolicy.from_days(30, 35), batch_rows=1000,
                                pause=lambda s: bool(pauses.append(s)))
    rng = np.random.default_rng(23)
    start = NOW - 40 * DAY_MS
    all_ts, all_temps = [], []
    for day in range(40):  # forty days at one reading a minute, the job running once a day meanwhile
        ts = np.arange(start + day * DAY_MS, start + (day + 1) * DAY_MS, 60_000) + rng.integers(0, 59_000, 1440)
        temps = rng.normal(31.0, 4.0, len(ts)).round(2)
        store.write_points(port_points(ts, temps))
        retention.run_once(start + (day + 1) * DAY_MS)
        all_ts.append(ts)
        all_temps.append(temps)
    ts, temps = np.concatenate(all_ts), np.concatenate(all_temps)

    raw = retention.raw("CS-XQ01-01", "temperature_c", 0, NOW + 1, port="3")
    assert raw[0][0] >= NOW - 30 * DAY_MS and len(raw) == int((ts >= NOW - 30 * DAY_MS).sum())
    hourly = retention.hourly("CS-XQ01-01", "temperature_c", 0, NOW + 1, port="3")
    assert [h for h, *_ in hourly] == list(range(NOW - 35 * DAY_MS, NOW, HOUR_MS))  # 35 days of hours, older pruned
    for hour, n, mean, lo, hi in hourly[::97]:  # hours whose raw readings are long gone among them
        exp_n, exp_mean, exp_lo, exp_hi = expected_hour(ts, temps, hour)
        assert n == exp_n and lo == exp_lo and hi == exp_hi
        assert mean == pytest.approx(exp_mean, rel=1e-12)
    assert retention.hourly("CS-XQ01-01", "seq", 0, NOW + 1, port="3") == []  # counters are not averaged
    assert len(pauses) >= 1440 // 1000  # the prune gave way between its short transactions

    # A reading that arrives late (drained from the spool) is counted once in its hour.
    late_hour = NOW - 2 * HOUR_MS
    store.write_points(port_points(np.array([late_hour + 1234]), np.array([99.5]), port="3"))
    retention.run_once(NOW)
    ts, temps = np.append(ts, late_hour + 1234), np.append(temps, 99.5)
    (row,) = retention.hourly("CS-XQ01-01", "temperature_c", late_hour, late_hour + 1, port="3")
    assert row[1:] == pytest.approx(expected_hour(ts, temps, late_hour))

    resolution, series = retention.series("CS-XQ01-01", "temperature_c", NOW - 365 * DAY_MS, NOW, NOW, port="3")
    assert resolution == "hourly" and len(series) == 35 * 24
    resolution, series = retention.series("CS-XQ01-01", "temperature_c", NOW - DAY_MS, NOW, NOW, port="3")
    assert resolution == "raw" and len(series) == int(((ts >= NOW - DAY_MS) & (ts < NOW)).sum())
    retention.close()
    store.close()


# --- InfluxDB 1.x -------------------------------------------------------------------------------------

def rows(server: InfluxV1Server, q: str, database: str | None = None) -> list[dict[str, object]]:
    body = server.query(q, database)
    out: list[dict[str, object]] = []
    for series in body["results"][0].get("series", []):
        tags: Mapping[str, str] = series.get("tags", {})
        out += [{**tags, **dict(zip(series["columns"], v, strict=True)), "_series": series.get("name")}
                for v in series.get("values", [])]  # a database without continuous queries has none
    return out


@pytest.mark.influxdb
def test_influxdb1_policies_and_continuous_query_are_created_kept_and_corrected(influxdb_v1):
    database = f"ret_{uuid.uuid4().hex[:8]}"
    retention = InfluxV1Retention(influxdb_v1.url, database, RetentionPolicy.from_days(30, 730))
    try:
        first = retention.ensure()
        assert len(first) == 3
        policies = {r["name"]: r for r in rows(influxdb_v1, f'SHOW RETENTION POLICIES ON "{database}"')}
        assert (policies[RAW_POLICY]["duration"], policies[RAW_POLICY]["default"]) == ("720h0m0s", True)
        assert (policies[HOURLY_POLICY]["duration"], policies[HOURLY_POLICY]["default"]) == ("17520h0m0s", False)
        (cq,) = [r for r in rows(influxdb_v1, "SHOW CONTINUOUS QUERIES") if r["_series"] == database]
        assert cq["name"] == CONTINUOUS_QUERY and "RESAMPLE EVERY 1h FOR 2h" in str(cq["query"])
        assert retention.ensure() == []  # kept: nothing to do the second time

        shorter = InfluxV1Retention(influxdb_v1.url, database, RetentionPolicy.from_days(7, 365))
        assert [s.split()[0] for s in shorter.ensure()] == ["ALTER", "ALTER"]
        policies = {r["name"]: r for r in rows(influxdb_v1, f'SHOW RETENTION POLICIES ON "{database}"')}
        assert policies[RAW_POLICY]["duration"] == "168h0m0s" and policies[HOURLY_POLICY]["duration"] == "8760h0m0s"
        shorter.close()
    finally:
        retention.close()
        influxdb_v1.drop_database(database)


def test_the_statements_follow_what_influxdb_reports():
    policy = RetentionPolicy.from_days(30, 730)
    fresh = influx_v1_statements("wanli", policy, {}, {})
    assert fresh[0] == 'CREATE RETENTION POLICY "raw" ON "wanli" DURATION 720h REPLICATION 1 SHARD DURATION 24h DEFAULT'
    assert fresh[1].endswith("DURATION 17520h REPLICATION 1 SHARD DURATION 168h")
    cq = fresh[2]
    assert influx_v1_statements("wanli", policy, {"raw": (720, 24, True), "hourly": (17520, 168, False)},
                                {CONTINUOUS_QUERY: cq}) == []
    changed = influx_v1_statements("wanli", policy, {"raw": (720, 24, False), "hourly": (17520, 168, False)},
                                   {CONTINUOUS_QUERY: cq.replace("mean(*), ", "")})
    assert changed == ['ALTER RETENTION POLICY "raw" ON "wanli" DURATION 720h SHARD DURATION 24h DEFAULT',
                       'DROP CONTINUOUS QUERY "wanli_hourly" ON "wanli"', cq]


@pytest.mark.influxdb
def test_influxdb1_hourly_roll_up_equals_numpy(influxdb_v1):
    database = f"agg_{uuid.uuid4().hex[:8]}"
    retention = InfluxV1Retention(influxdb_v1.url, database, RetentionPolicy.from_days(30, 730))
    store = InfluxV1TelemetryStore(influxdb_v1.url, database)
    try:
        retention.ensure()
        now = int(time.time() * 1000)
        start = now - now % HOUR_MS - 6 * HOUR_MS
        rng = np.random.default_rng(7)
        ts = np.sort(rng.integers(start, start + 5 * HOUR_MS, 3000))
        ts = np.unique(ts)
        temps = rng.normal(33.0, 6.0, len(ts)).round(3)
        store.write_points(port_points(ts, temps))  # lands in "raw", the default policy
        retention.backfill(start, start + 5 * HOUR_MS)
        got = rows(influxdb_v1, f'SELECT * FROM "{database}"."hourly"."charging_station" WHERE port = \'3\'', database)
        assert [r["time"] for r in got] == [
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime((start + k * HOUR_MS) / 1000))}" for k in range(5)]
        for k, row in enumerate(got):
            n, mean, lo, hi = expected_hour(ts, temps, start + k * HOUR_MS)
            assert row["count_temperature_c"] == n and row["min_temperature_c"] == lo and row["max_temperature_c"] == hi
            assert row["mean_temperature_c"] == pytest.approx(mean, rel=1e-9)
            assert row["device"] == "CS-XQ01-01"  # tags kept (GROUP BY *)
    finally:
        store.close()
        retention.close()
        influxdb_v1.drop_database(database)


class FastRetentionInflux(InfluxV1Server):
    """InfluxDB checking retention every second instead of every 30 minutes (its documented env override)."""

    def _env(self):  # type: ignore[no-untyped-def]
        return {**super()._env(), "INFLUXDB_RETENTION_CHECK_INTERVAL": "1s"}


@pytest.mark.influxdb
@pytest.mark.slow
def test_influxdb1_drops_raw_points_past_the_raw_period(tmp_path):
    for server in serve(lambda: FastRetentionInflux(tmp_path / "influx")):
        database = "wanli"
        store = InfluxV1TelemetryStore(server.url, database)
        initial = InfluxV1Retention(server.url, database, RetentionPolicy.from_days(30, 730))
        initial.ensure()
        initial.close()
        now = int(time.time() * 1000)
        old = np.arange(now - 3 * DAY_MS, now - 3 * DAY_MS + 100 * 60_000, 60_000)
        recent = np.arange(now - 30 * 60_000, now, 60_000)
        store.write_points(port_points(old, np.full(len(old), 25.0)) + port_points(recent, np.full(len(recent), 26.0)))

        def count() -> int:
            got = rows(server, 'SELECT count(temperature_c) FROM "raw"."charging_station"', database)
            return int(got[0]["count"]) if got else 0

        assert count() == len(old) + len(recent)
        # Keep raw readings for one hour only: InfluxDB drops the shard groups that ended before that.
        one_hour = InfluxV1Retention(server.url, database, RetentionPolicy(raw_ms=HOUR_MS, aggregate_ms=730 * DAY_MS))
        assert one_hour.ensure()[0].startswith('ALTER RETENTION POLICY "raw"')
        one_hour.close()
        deadline = time.monotonic() + 30
        while count() != len(recent) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count() == len(recent)
        store.close()


# --- Charts over long ranges --------------------------------------------------------------------------

def test_a_years_chart_reads_hourly_aggregates_and_a_days_chart_reads_raw(service_factory):
    from tests.fixtures.service import auth_headers, now_ms, register_building

    service = service_factory()
    register_building(service)
    end = now_ms()
    rng = np.random.default_rng(5)
    ts = np.arange(end - 40 * DAY_MS, end, 10 * 60_000)
    temps = rng.normal(30.0, 3.0, len(ts)).round(2)
    service.services.telemetry.write_points(port_points(ts, temps))  # as the spool drainer would, 40 days' worth
    service.lifecycle.job.run_once()
    url = f"{service.http_url}/api/buildings/xq-01/telemetry"

    year = httpx.get(url, params={"days": 365}, headers=auth_headers(service)).json()
    assert year["resolution"] == "hourly"
    (series,) = year["charging_temperature"]
    cutoff = end - 30 * DAY_MS  # hours that began before the raw period were pruned before any roll-up here
    first_hour = cutoff - cutoff % HOUR_MS + (HOUR_MS if cutoff % HOUR_MS else 0)
    complete = [p for p in series["points"] if first_hour <= p[0] < end - end % HOUR_MS]
    assert len(complete) == (end - end % HOUR_MS - first_hour) // HOUR_MS  # one point an hour, nothing older pruned
    hour, mean = complete[10]
    assert mean == pytest.approx(expected_hour(ts, temps, hour)[1])

    day = httpx.get(url, params={"days": 1}, headers=auth_headers(service)).json()
    assert day["resolution"] == "raw"
    points = day["charging_temperature"][0]["points"]
    # every raw reading of the last day, as stored (the route's clock is a little past ``end``: the first may go)
    assert [v for _t, v in points] == list(temps[ts >= end - DAY_MS][-len(points):]) and len(points) >= 143
    assert httpx.get(url, params={"days": 0}, headers=auth_headers(service)).status_code == 422


def test_an_alarm_is_not_held_up_by_the_telemetry_store_being_locked(service_factory):
    """The pruning job's worst case, a write transaction on telemetry.db that does not end, held here by hand:
    the alarm still becomes an incident (alarms commit in the registry's database; telemetry waits in the spool),
    and the telemetry arrives once the lock goes."""
    import sqlite3

    from tests.fixtures.service import auth_headers, now_ms, publish, register_building, wait_for

    service = service_factory()
    sim = register_building(service)
    detectors = sim.smoke_detectors()
    blocker = sqlite3.connect(service.settings.telemetry_sqlite_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        host, port = service.settings.embedded_broker_host, service.settings.embedded_broker_port
        publish(host, port, [d.heartbeat(now_ms()) for d in detectors[:5]] + [detectors[6].alarm(now_ms())])
        (incident,) = wait_for(lambda: httpx.get(f"{service.http_url}/api/incidents",
                                                 headers=auth_headers(service)).json())
        assert incident["device_id"] == detectors[6].device_id
        assert service.services.telemetry.recent(detectors[0].device_id) == []  # not stored yet: the lock holds
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: service.services.telemetry.recent(detectors[0].device_id), timeout_s=30)


@pytest.mark.influxdb
def test_a_service_on_influxdb1_keeps_its_policies_and_charts_a_year_from_the_hourly_policy(service_factory,
                                                                                          influxdb_v1):
    from tests.fixtures.service import auth_headers, now_ms, publish, register_building, wait_for

    database = f"svc_{uuid.uuid4().hex[:8]}"
    service = service_factory(telemetry_backend="influxdb1", influx_url=influxdb_v1.url, influx_database=database)
    try:
        wait_for(lambda: {r["name"] for r in rows(influxdb_v1, f'SHOW RETENTION POLICIES ON "{database}"')}
                 >= {RAW_POLICY, HOURLY_POLICY})
        assert [r["name"] for r in rows(influxdb_v1, "SHOW CONTINUOUS QUERIES") if r["_series"] == database] == [
            CONTINUOUS_QUERY]
        sim = register_building(service)
        detector = sim.smoke_detectors()[0]
        host, port = service.settings.embedded_broker_host, service.settings.embedded_broker_port
        publish(host, port, [detector.heartbeat(now_ms())])
        wait_for(lambda: rows(influxdb_v1, f'SELECT * FROM "raw"."smoke_detector" WHERE device = '
                                           f"'{detector.device_id}'", database))  # landed in the raw policy

        end = now_ms()
        ts = np.arange(end - 6 * HOUR_MS, end, 5 * 60_000)
        temps = np.random.default_rng(11).normal(29.0, 2.0, len(ts)).round(2)
        service.services.telemetry.write_points(port_points(ts, temps))
        service.lifecycle.history.backfill(end - 6 * HOUR_MS, end)
        url = f"{service.http_url}/api/buildings/xq-01/telemetry"
        year = httpx.get(url, params={"days": 365}, headers=auth_headers(service)).json()
        assert year["resolution"] == "hourly" and year["store"] == "influxdb1"
        (series,) = year["charging_temperature"]
        for hour, mean in series["points"]:
            assert mean == pytest.approx(expected_hour(ts, temps, hour)[1], rel=1e-9)
        assert len(series["points"]) in (6, 7)  # six or seven hours touched, depending on where ``end`` falls
        day = httpx.get(url, params={"days": 1}, headers=auth_headers(service)).json()
        assert day["resolution"] == "raw"
        assert [v for _t, v in day["charging_temperature"][0]["points"]] == list(temps)
    finally:
        influxdb_v1.drop_database(database)
