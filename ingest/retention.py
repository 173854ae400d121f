"""Telemetry for years: raw readings age out, hourly aggregates stay for charts over long ranges.

Data classes and where each store keeps them (the days come from ``RetentionPolicy``):

* **raw**: every reading as received; kept ``raw_days`` (30 by default).
* **hourly**: per device, message type, port and numeric field and hour: count, mean, min, max;
  kept ``aggregate_days`` (two years by default). Charts over more than ``RAW_CHART_SPAN_MS``
  read these (``chart_resolution``).

Per store:

* ``SqliteRetention`` (the embedded store): a trigger marks each hour a reading lands in; the job
  rolls marked hours up into ``readings_hourly`` (recomputed from raw, so a late reading is
  counted once) and deletes expired rows ``batch_rows`` at a time, each batch its own short
  transaction with a pause after it. ``telemetry.db`` is not on an alarm's path (alarms commit
  in the registry's database; telemetry reaches this file through the spool), and the spool
  drainer waits at most one batch for the write lock.
* ``InfluxV1Retention``: retention policies ``raw`` (DEFAULT, so writes without ``rp`` land in
  it) and ``hourly``, and the continuous query ``wanli_hourly`` that fills ``hourly`` from
  ``raw`` each hour. InfluxDB enforces the durations itself (it drops whole expired shard
  groups every ``[retention] check-interval``). ``ensure`` is idempotent and corrects a
  duration or query that differs; ``backfill`` runs the same roll-up over a past range
  (a continuous query only looks back ``FOR 2h``: readings drained late from the spool).
* ``InfluxV2Retention``: the bucket's retention rule, a ``{bucket}_hourly`` bucket and a task
  ``wanli-hourly`` that rolls up the last two hours every hour.
* VictoriaMetrics has one retention for everything, its ``-retentionPeriod`` flag, and no
  downsampling in its open-source build: set the flag to the raw period (docs/configuration.md).

Time is always passed in (``now_ms``): the job's clock, or a test's.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from foundation.errors import StoreUnavailable
from foundation.service_clock import ClockMs

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# A chart spanning more than this reads hourly aggregates (two days of raw at one reading a minute is
# 2,880 points a series, about what a chart can draw).
RAW_CHART_SPAN_MS = 2 * DAY_MS
# Fields that are counters or identifiers, not measurements: never averaged.
NOT_AGGREGATED = ("seq",)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    raw_ms: int
    aggregate_ms: int

    @classmethod
    def from_days(cls, raw_days: float, aggregate_days: float) -> RetentionPolicy:
        return cls(int(raw_days * DAY_MS), int(aggregate_days * DAY_MS))

    def raw_cutoff(self, now_ms: int) -> int:
        """Raw readings older than this are pruned."""
        return now_ms - self.raw_ms

    def aggregate_cutoff(self, now_ms: int) -> int:
        return now_ms - self.aggregate_ms


def chart_resolution(start_ms: int, end_ms: int, now_ms: int, policy: RetentionPolicy) -> str:
    """``"raw"`` for a short range still inside the raw period, else ``"hourly"``."""
    if end_ms - start_ms <= RAW_CHART_SPAN_MS and start_ms >= policy.raw_cutoff(now_ms):
        return "raw"
    return "hourly"


@dataclass(frozen=True, slots=True)
class RetentionReport:
    hours_rolled_up: int = 0
    raw_pruned: int = 0
    aggregates_pruned: int = 0


# --- SQLite -------------------------------------------------------------------------------------------

_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS readings_hourly (hour_ms INTEGER NOT NULL, kind TEXT NOT NULL,"
    " device_id TEXT NOT NULL, type TEXT NOT NULL, port TEXT NOT NULL, field TEXT NOT NULL,"
    " n INTEGER NOT NULL, mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,"
    " PRIMARY KEY (device_id, field, port, type, hour_ms)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS ix_readings_hourly_hour ON readings_hourly (hour_ms)",
    "CREATE TABLE IF NOT EXISTS readings_dirty_hours (hour_ms INTEGER PRIMARY KEY)",
)
_MARK_TRIGGER = (
    f"CREATE TRIGGER readings_mark_hour AFTER INSERT ON readings BEGIN"
    f" INSERT OR IGNORE INTO readings_dirty_hours VALUES (NEW.ts_ms - NEW.ts_ms % {HOUR_MS}); END"
)
_ROLL_UP = (
    "INSERT INTO readings_hourly (hour_ms, kind, device_id, type, port, field, n, mean, min, max)"
    " SELECT ?, r.kind, r.device_id, r.type, r.port, j.key, count(*), avg(j.value), min(j.value), max(j.value)"
    " FROM readings AS r, json_each(r.fields) AS j"
    f" WHERE r.ts_ms >= ? AND r.ts_ms < ? AND j.type IN ('integer', 'real')"
    f" AND j.key NOT IN ({', '.join(repr(f) for f in NOT_AGGREGATED)})"
    " GROUP BY r.kind, r.device_id, r.type, r.port, j.key"
)


class SqliteRetention:
    """Roll-up and pruning of the embedded telemetry store (``telemetry.db``), on a connection of its own.

    ``pause`` is called between batches (the job passes its stop event's ``wait``, so stopping
    the service cuts a long prune short); it returns True to stop early.
    """

    def __init__(self, path: Path, policy: RetentionPolicy, batch_rows: int = 5_000, pause_s: float = 0.005,
                 pause: Callable[[float], bool] | None = None) -> None:
        self.policy, self.batch_rows, self._pause_s = policy, batch_rows, pause_s
        self._pause = pause or (lambda _s: False)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        self._prepared = False
        with self._lock:
            for ddl in _SQLITE_SCHEMA:  # new, small tables: instant (the service's start waits for this)
                self._conn.execute(ddl)

    def prepare(self) -> None:
        """The time index on readings and the trigger that marks hours, made on the job's first run, not at the
        service's start: on a store that already holds years of readings (an upgrade) they take a while, once."""
        if self._prepared:
            return
        with self._lock:
            self._conn.execute("CREATE INDEX IF NOT EXISTS ix_readings_ts ON readings (ts_ms)")
            has_trigger = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'readings_mark_hour'").fetchone()
            if not has_trigger:  # readings written before the trigger existed: mark their hours, in the same breath
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute(_MARK_TRIGGER)
                    self._conn.execute(f"INSERT OR IGNORE INTO readings_dirty_hours"
                                       f" SELECT DISTINCT ts_ms - ts_ms % {HOUR_MS} FROM readings")
                    self._conn.execute("COMMIT")
                except sqlite3.Error:
                    self._conn.execute("ROLLBACK")
                    raise
        self._prepared = True

    def run_once(self, now_ms: int) -> RetentionReport:
        self.prepare()
        rolled = self.roll_up(now_ms)
        raw = self._prune("readings", "ts_ms", self.policy.raw_cutoff(now_ms))
        aggregates = self._prune("readings_hourly", "hour_ms", self.policy.aggregate_cutoff(now_ms))
        return RetentionReport(rolled, raw, aggregates)

    def roll_up(self, now_ms: int) -> int:
        """Aggregate every marked hour that has ended; an hour whose raw readings are already expired is unmarked."""
        with self._lock:
            hours = [h for (h,) in self._conn.execute(
                "SELECT hour_ms FROM readings_dirty_hours WHERE hour_ms <= ? ORDER BY hour_ms", (now_ms - HOUR_MS,))]
        cutoff, done = self.policy.raw_cutoff(now_ms), 0
        for hour in hours:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if hour >= cutoff:  # (an expired hour's few late readings would replace a full aggregate)
                        self._conn.execute("DELETE FROM readings_hourly WHERE hour_ms = ?", (hour,))
                        self._conn.execute(_ROLL_UP, (hour, hour, hour + HOUR_MS))
                        done += 1
                    self._conn.execute("DELETE FROM readings_dirty_hours WHERE hour_ms = ?", (hour,))
                    self._conn.execute("COMMIT")
                except sqlite3.Error:
                    self._conn.execute("ROLLBACK")
                    raise
            if self._pause(self._pause_s):
                break
        return done

    def _prune(self, table: str, time_column: str, cutoff_ms: int) -> int:
        """Delete rows older than the cutoff: raw ``batch_rows`` at a time, aggregates one hour at a time."""
        total = 0
        while not self._pause(0):
            with self._lock:
                if table == "readings":
                    cur = self._conn.execute(
                        "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings WHERE ts_ms < ? LIMIT ?)",
                        (cutoff_ms, self.batch_rows))
                    more = cur.rowcount == self.batch_rows
                else:  # WITHOUT ROWID: the oldest hour, through its index
                    (oldest,) = self._conn.execute(f"SELECT min({time_column}) FROM {table}").fetchone()
                    if oldest is None or oldest >= cutoff_ms:
                        break
                    cur = self._conn.execute(f"DELETE FROM {table} WHERE {time_column} = ?", (oldest,))
                    more = True
            total += max(cur.rowcount, 0)
            if not more or self._pause(self._pause_s):
                break
        if total:
            log.info("pruned %d rows from %s older than %d", total, table, cutoff_ms,
                     extra={"table": table, "rows": total, "cutoff_ms": cutoff_ms})
        return total

    def hourly(self, device_id: str, field: str, start_ms: int, end_ms: int,
               port: str = "") -> list[tuple[int, int, float, float, float]]:
        """(hour_ms, count, mean, min, max) of one field of one device (and port), oldest first."""
        with self._lock:
            return self._conn.execute(
                "SELECT hour_ms, sum(n), sum(mean * n) / sum(n), min(min), max(max) FROM readings_hourly"
                " WHERE device_id = ? AND field = ? AND port = ? AND hour_ms >= ? AND hour_ms < ?"
                " GROUP BY hour_ms ORDER BY hour_ms", (device_id, field, port, start_ms, end_ms)).fetchall()

    def raw(self, device_id: str, field: str, start_ms: int, end_ms: int, port: str = "") -> list[tuple[int, float]]:
        """(ts_ms, value) of one numeric field of one device (and port), oldest first."""
        with self._lock:
            return self._conn.execute(
                "SELECT r.ts_ms, j.value FROM readings AS r, json_each(r.fields) AS j"
                " WHERE r.device_id = ? AND r.port = ? AND r.ts_ms >= ? AND r.ts_ms < ? AND j.key = ?"
                " AND j.type IN ('integer', 'real') ORDER BY r.ts_ms",
                (device_id, port, start_ms, end_ms, field)).fetchall()

    def series(self, device_id: str, field: str, start_ms: int, end_ms: int, now_ms: int,
               port: str = "") -> tuple[str, list[tuple[int, float]]]:
        """A chart's series over the range, at the resolution the range calls for: (resolution, [(ts_ms, value)])."""
        if chart_resolution(start_ms, end_ms, now_ms, self.policy) == "raw":
            return "raw", [(t, float(v)) for t, v in self.raw(device_id, field, start_ms, end_ms, port)]
        return "hourly", [(h, mean) for h, _n, mean, _lo, _hi in self.hourly(device_id, field, start_ms, end_ms, port)]

    def table_bytes(self) -> dict[str, int]:
        """Bytes on disk per table, indexes counted with their table (SQLite's dbstat)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat AS s"
                " LEFT JOIN sqlite_master AS m ON m.name = s.name GROUP BY 1").fetchall()
        return {name: int(size) for name, size in rows}

    def rows_since(self, since_ms: int) -> dict[str, int]:
        """Rows written per table since ``since_ms`` (by the readings' own time)."""
        with self._lock:
            raw = self._conn.execute("SELECT count(*) FROM readings WHERE ts_ms >= ?", (since_ms,)).fetchone()[0]
            hourly = self._conn.execute("SELECT count(*) FROM readings_hourly WHERE hour_ms >= ?",
                                        (since_ms,)).fetchone()[0]
            totals = self._conn.execute(
                "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM readings_hourly)").fetchone()
        return {"readings": raw, "readings_hourly": hourly, "readings_total": totals[0],
                "readings_hourly_total": totals[1]}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# --- InfluxDB 1.x -------------------------------------------------------------------------------------

RAW_POLICY, HOURLY_POLICY, CONTINUOUS_QUERY = "raw", "hourly", "wanli_hourly"
_AGGREGATES = ("mean", "min", "max", "count")


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influx_duration(ms: int) -> str:
    """An InfluxQL duration literal in whole hours (InfluxDB's smallest retention is one hour)."""
    return f"{max(1, ms // HOUR_MS)}h"


def _duration_hours(text: str) -> int:
    """Hours of an InfluxDB duration as SHOW RETENTION POLICIES prints it ("720h0m0s"; "0s" is infinite)."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    return int(match.group(1) or 0) if match else -1


def roll_up_select(database: str, where: str = "") -> str:
    """The hourly roll-up as InfluxQL (the continuous query's body, and ``backfill``'s)."""
    functions = ", ".join(f"{fn}(*)" for fn in _AGGREGATES)
    return (f"SELECT {functions} INTO {_ident(database)}.{_ident(HOURLY_POLICY)}.:MEASUREMENT"
            f" FROM {_ident(database)}.{_ident(RAW_POLICY)}./.*/{where} GROUP BY time(1h), *")


def continuous_query(database: str) -> str:
    return (f"CREATE CONTINUOUS QUERY {_ident(CONTINUOUS_QUERY)} ON {_ident(database)}"
            f" RESAMPLE EVERY 1h FOR 2h BEGIN {roll_up_select(database)} END")


def shard_duration(duration_ms: int) -> str:
    """InfluxDB's own default shard group duration for a retention duration (set explicitly, so an ALTER to a
    shorter duration is not refused for being shorter than the shards)."""
    if duration_ms < 2 * DAY_MS:
        return "1h"
    return "24h" if duration_ms <= 180 * DAY_MS else "168h"


def influx_v1_statements(database: str, policy: RetentionPolicy, policies: dict[str, tuple[int, int, bool]],
                         queries: dict[str, str]) -> list[str]:
    """What to run so the database has the policies and query wanted (pure: given what SHOW answered).

    ``policies``: name -> (duration hours, shard group duration hours, is default); ``queries``: name -> query text.
    """
    db = _ident(database)
    out: list[str] = []
    for name, duration_ms, default in ((RAW_POLICY, policy.raw_ms, True), (HOURLY_POLICY, policy.aggregate_ms, False)):
        want, shard = influx_duration(duration_ms), shard_duration(duration_ms)
        suffix = f" SHARD DURATION {shard}" + (" DEFAULT" if default else "")
        if name not in policies:
            out.append(f"CREATE RETENTION POLICY {_ident(name)} ON {db} DURATION {want} REPLICATION 1{suffix}")
        elif policies[name][:2] != (int(want[:-1]), int(shard[:-1])) or (default and not policies[name][2]):
            out.append(f"ALTER RETENTION POLICY {_ident(name)} ON {db} DURATION {want}{suffix}")
    wanted = continuous_query(database)
    current = queries.get(CONTINUOUS_QUERY)
    if current is not None and _normalise(current) != _normalise(wanted):
        out.append(f"DROP CONTINUOUS QUERY {_ident(CONTINUOUS_QUERY)} ON {db}")
    if current is None or _normalise(current) != _normalise(wanted):
        out.append(wanted)
    return out


def _normalise(query: str) -> str:
    return re.sub(r'["\s]', "", query).lower()


class InfluxV1Retention:
    """Retention policies and the continuous query of an InfluxDB 1.x database, over its HTTP API."""

    def __init__(self, url: str, database: str, policy: RetentionPolicy, username: str = "", password: str = "",
                 timeout_s: float = 30.0) -> None:
        self.database, self.policy = database, policy
        self._client = httpx.Client(base_url=url, auth=(username, password) if username else None, timeout=timeout_s)

    def ensure(self) -> list[str]:
        """Create or correct the policies and the continuous query; return the statements run."""
        self._run(f"CREATE DATABASE {_ident(self.database)}")
        policies = {str(r["name"]): (_duration_hours(str(r["duration"])),
                                     _duration_hours(str(r["shardGroupDuration"])), bool(r["default"]))
                    for r in self._rows(f"SHOW RETENTION POLICIES ON {_ident(self.database)}")}
        queries = {str(r["name"]): str(r["query"])
                   for r in self._rows("SHOW CONTINUOUS QUERIES", series_name=self.database)}
        statements = influx_v1_statements(self.database, self.policy, policies, queries)
        for statement in statements:
            self._run(statement)
            log.info("InfluxDB retention: %s", statement, extra={"database": self.database})
        return statements

    def backfill(self, start_ms: int, end_ms: int) -> None:
        """Roll up [start, end) now, whole hours (what the continuous query did not see)."""
        start, end = start_ms - start_ms % HOUR_MS, end_ms - end_ms % HOUR_MS + (HOUR_MS if end_ms % HOUR_MS else 0)
        self._run(roll_up_select(self.database, f" WHERE time >= {start}ms AND time < {end}ms"), self.database)

    def series(self, device_id: str, field: str, start_ms: int, end_ms: int, now_ms: int,
               port: str = "") -> tuple[str, list[tuple[int, float]]]:
        """A chart's series, from ``raw`` or ``hourly`` as the range calls for (see ``chart_resolution``)."""
        resolution = chart_resolution(start_ms, end_ms, now_ms, self.policy)
        column = field if resolution == "raw" else f"mean_{field}"
        rp = RAW_POLICY if resolution == "raw" else HOURLY_POLICY
        q = (f"SELECT {_ident(column)} FROM {_ident(rp)}./.*/ WHERE \"device\" = {_literal(device_id)}"
             f" AND \"port\" = {_literal(port)} AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms")
        points = [(int(r["time"]), float(r[column])) for r in self._rows(q, self.database)  # type: ignore[arg-type]
                  if isinstance(r.get(column), int | float)]
        return resolution, sorted(points)

    def run_once(self, now_ms: int) -> RetentionReport:  # noqa: ARG002 - InfluxDB keeps time itself
        self.ensure()
        return RetentionReport()

    def _rows(self, q: str, database: str = "", series_name: str | None = None) -> list[dict[str, object]]:
        body = self._run(q, database)
        rows: list[dict[str, object]] = []
        for series in body["results"][0].get("series", []):
            if series_name is not None and series.get("name") != series_name:  # SHOW CONTINUOUS QUERIES: per database
                continue
            rows.extend(dict(zip(series["columns"], values, strict=True)) for values in series.get("values") or [])
        return rows

    def _run(self, q: str, database: str = "") -> dict:  # type: ignore[type-arg]
        try:
            resp = self._client.post("/query", data={"q": q, **({"db": database} if database else {})},
                                      params={"epoch": "ms"})
        except httpx.HTTPError as exc:
            raise StoreUnavailable("influxdb1", f"{type(exc).__name__}: {exc}") from exc
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        error = body.get("error") or next((r["error"] for r in body.get("results", []) if "error" in r), None)
        if resp.status_code != 200 or error:
            raise StoreUnavailable("influxdb1", f"{q[:80]}: {error or resp.status_code}")
        return body

    def close(self) -> None:
        self._client.close()


# --- InfluxDB 2.x -------------------------------------------------------------------------------------

TASK_NAME = "wanli-hourly"


def downsampling_flux(bucket: str, hourly_bucket: str, org: str) -> str:
    """The 2.x task: numeric fields of the last two hours, mean per hour, into the hourly bucket."""
    return (
        f'import "types"\n'
        f'option task = {{name: "{TASK_NAME}", every: 1h, offset: 5m}}\n'
        f'from(bucket: "{bucket}")\n'
        f'  |> range(start: -2h)\n'
        f'  |> filter(fn: (r) => r._field != "seq" and (types.isType(v: r._value, type: "float")'
        f' or types.isType(v: r._value, type: "int")))\n'
        f'  |> toFloat()\n'
        f'  |> aggregateWindow(every: 1h, fn: mean, createEmpty: false)\n'
        f'  |> to(bucket: "{hourly_bucket}", org: "{org}")\n'
    )


class InfluxV2Retention:
    """The bucket's retention, an hourly bucket and the downsampling task, through influxdb-client.

    Debian ships no InfluxDB 2.x: a contract test (tests/integration/test_retention_influx2_contract.py) checks the
    requests against a local server answering as the v2 API reference specifies.
    """

    def __init__(self, url: str, org: str, bucket: str, token: str, policy: RetentionPolicy) -> None:
        from influxdb_client import InfluxDBClient

        self._client = InfluxDBClient(url=url, token=token, org=org)
        self.org, self.bucket, self.policy = org, bucket, policy

    def ensure(self) -> list[str]:
        from influxdb_client import BucketRetentionRules

        done: list[str] = []
        buckets = self._client.buckets_api()
        for name, ms in ((self.bucket, self.policy.raw_ms), (f"{self.bucket}_hourly", self.policy.aggregate_ms)):
            rule = BucketRetentionRules(type="expire", every_seconds=ms // 1000)
            found = buckets.find_bucket_by_name(name)
            if found is None:
                buckets.create_bucket(bucket_name=name, retention_rules=[rule], org=self.org)
                done.append(f"create bucket {name}")
            elif [r.every_seconds for r in found.retention_rules or []] != [rule.every_seconds]:
                found.retention_rules = [rule]
                buckets.update_bucket(bucket=found)
                done.append(f"set retention of {name}")
        tasks = self._client.tasks_api()
        flux = downsampling_flux(self.bucket, f"{self.bucket}_hourly", self.org)
        existing = tasks.find_tasks(name=TASK_NAME)
        if not existing:
            org = self._client.organizations_api().find_organizations(org=self.org)[0]
            tasks.create_task(task_create_request=_task_request(flux, org.id))
            done.append(f"create task {TASK_NAME}")
        elif existing[0].flux != flux:
            existing[0].flux = flux
            tasks.update_task(existing[0])
            done.append(f"update task {TASK_NAME}")
        return done

    def run_once(self, now_ms: int) -> RetentionReport:  # noqa: ARG002
        self.ensure()
        return RetentionReport()

    def close(self) -> None:
        self._client.close()


def _task_request(flux: str, org_id: str):  # type: ignore[no-untyped-def]
    from influxdb_client import TaskCreateRequest

    return TaskCreateRequest(flux=flux, org_id=org_id, status="active", description="wanli hourly roll-up")


# --- The job ------------------------------------------------------------------------------------------

class RetentionTarget:
    """What the job runs: ``run_once(now_ms)``; anything with that method (the stores above, the incident archive)."""

    def run_once(self, now_ms: int) -> object: ...


class RetentionJob:
    """Runs each target's ``run_once`` now and every ``every_s``, in a daemon thread, until stopped.

    A target that fails (InfluxDB away, a locked file) is logged and tried again next round; the
    others still run. Each target gets the job's clock.
    """

    def __init__(self, targets: Sequence[RetentionTarget], every_s: float, clock_ms: ClockMs) -> None:
        self.targets, self.every_s, self._clock_ms = list(targets), every_s, clock_ms
        self.stopping = threading.Event()
        self.last_reports: dict[str, object] = {}
        self.runs = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def run_once(self) -> None:
        for target in self.targets:
            if self.stopping.is_set():
                return
            name = type(target).__name__
            try:
                self.last_reports[name] = target.run_once(self._clock_ms())
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("retention: %s failed: %s", name, exc, extra={"target": name})
                self.last_reports[name] = f"failed: {exc}"
        self.runs += 1

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.run_once()
            if self.stopping.wait(self.every_s):
                return

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
