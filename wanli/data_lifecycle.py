"""Data over years, composed from the settings: retention, the monthly archive and disk growth by data class.

``build_retention_job`` gives the runtime one background job (ingest/retention.py's
``RetentionJob``) that, every ``WANLI_RETENTION_EVERY_S``:

1. keeps the telemetry store's retention and roll-up (SQLite: roll up and prune; InfluxDB 1.x:
   retention policies and the continuous query; 2.x: bucket retention and the task);
2. exports the month's incidents and audit (alerts/archive.py) and prunes the record if asked;
3. measures disk growth by data class (``DiskGrowth``), read by ``/metrics`` and ``/api/system/storage``.

None of it runs on an alarm's path: its own thread, its own connections, short transactions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from alerts.archive import ArchiveJob
from ingest.retention import (
    DAY_MS,
    InfluxV1Retention,
    InfluxV2Retention,
    RetentionJob,
    RetentionPolicy,
    RetentionTarget,
    SqliteRetention,
)
from foundation.service_clock import ClockMs
from wanli.settings import Settings, TelemetryBackend

log = logging.getLogger(__name__)

# Data class -> (table, its time column) in the registry's database.
RECORD_TABLES = {
    "incidents": (("incidents", "opened_ms"), ("incident_audit", "at_ms"), ("notifications", "created_ms")),
    "dead_letters": (("dead_letters", "received_ms"),),
}


@dataclass
class DiskGrowth:
    """Bytes a day by data class: rows written over the last day times the bytes a stored row takes now.

    Classes: ``telemetry_raw`` and ``telemetry_hourly`` (the embedded store; InfluxDB keeps its own
    files, see docs/scaling.md), ``incidents`` (incidents, their audit and notices) and ``dead_letters``.
    """

    engine: Engine
    sqlite_telemetry: SqliteRetention | None = None
    latest: dict[str, float] = field(default_factory=dict)
    stored_bytes: dict[str, int] = field(default_factory=dict)

    def run_once(self, now_ms: int) -> dict[str, float]:
        since = now_ms - DAY_MS
        growth: dict[str, float] = {}
        stored: dict[str, int] = {}
        if self.sqlite_telemetry is not None:
            sizes, rows = self.sqlite_telemetry.table_bytes(), self.sqlite_telemetry.rows_since(since)
            for cls, table in (("telemetry_raw", "readings"), ("telemetry_hourly", "readings_hourly")):
                total = rows[f"{table}_total"]
                stored[cls] = sizes.get(table, 0)
                growth[cls] = rows[table] * stored[cls] / total if total else 0.0
        sizes = self._table_bytes()
        with self.engine.connect() as conn:
            for cls, tables in RECORD_TABLES.items():
                per_day = 0.0
                stored[cls] = 0
                for table, column in tables:
                    recent, total = conn.execute(text(
                        f"SELECT (SELECT count(*) FROM {table} WHERE {column} >= :since), (SELECT count(*) FROM {table})"),
                        {"since": since}).one()
                    stored[cls] += sizes.get(table, 0)
                    per_day += recent * sizes.get(table, 0) / total if total else 0.0
                growth[cls] = per_day
        self.latest, self.stored_bytes = growth, stored
        return growth

    def _table_bytes(self) -> dict[str, int]:
        tables = [t for tables in RECORD_TABLES.values() for t, _c in tables]
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                return {t: int(conn.execute(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"),
                                            {"t": t}).scalar_one()) for t in tables}
            rows = conn.execute(text(
                "SELECT coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat AS s"
                " LEFT JOIN sqlite_master AS m ON m.name = s.name GROUP BY 1")).all()
        return {str(name): int(size) for name, size in rows}


@dataclass
class DataLifecycle:
    job: RetentionJob
    growth: DiskGrowth
    policy: RetentionPolicy
    sqlite_telemetry: SqliteRetention | None
    history: SqliteRetention | InfluxV1Retention | None = None  # charts over a range: raw or hourly (the API)

    def close(self) -> None:
        self.job.stop()
        for target in self.job.targets:
            close = getattr(target, "close", None)
            if close is not None:
                close()


def build_data_lifecycle(settings: Settings, engine: Engine, clock_ms: ClockMs,
                         street_id: str) -> DataLifecycle:
    """The retention job with every target the settings call for (not started)."""
    s = settings
    policy = RetentionPolicy.from_days(s.retention_raw_days, s.retention_aggregate_days)
    job = RetentionJob([], s.retention_every_s, clock_ms)
    targets: list[RetentionTarget] = []
    sqlite_telemetry = None
    history: SqliteRetention | InfluxV1Retention | None = None
    match s.telemetry_backend:
        case TelemetryBackend.SQLITE:
            sqlite_telemetry = SqliteRetention(s.telemetry_sqlite_path, policy, s.retention_batch_rows,
                                               pause=job.stopping.wait)
            targets.append(sqlite_telemetry)
            history = sqlite_telemetry
        case TelemetryBackend.INFLUXDB1:
            history = InfluxV1Retention(s.influx_url, s.influx_database, policy, s.influx_username, s.influx_password)
            targets.append(history)
        case TelemetryBackend.INFLUXDB2:
            targets.append(InfluxV2Retention(s.influx_url, s.influx_org, s.influx_bucket, s.influx_token, policy))
    targets.append(ArchiveJob(engine, street_id, s.resolved_archive_dir, s.retention_incidents_days))
    growth = DiskGrowth(engine, sqlite_telemetry)
    targets.append(growth)
    job.targets = targets
    return DataLifecycle(job, growth, policy, sqlite_telemetry, history)
