"""``wanli bench storage``: a year of telemetry at the street's cadence, with and without retention.

How, on a 2-core machine: compressed time and a slice of the street.

* **Cadence exact, devices fewer.** The simulated devices of ``--buildings`` buildings of the sample
  street (default one: 香泉 1号楼, 81 devices: 72 smoke detectors beating every 4 h, a charging
  station reporting every minute with its ports, one-touch alarms, water meters, a lift camera)
  run on a simulated clock through ``--days`` days (default 365), so each series has a year of
  readings at its real cadence. Messages are decoded and turned into points exactly as ingest does.
* **Compressed time.** Nothing waits: a day of the slice is generated and written at once.
  Two embedded stores get the same points: one **without retention**, one **with** the service's
  retention job run once a simulated day (roll-up into hourly aggregates, raw pruned after
  ``--raw-days``, aggregates after ``--aggregate-days``).
* **Scaled to the street.** Disk figures are per stored point and per aggregate row, then
  multiplied out by the rates in docs/scaling.md: the street's simulated 46 points/s and the
  design rate of 300 msg/s (≈1,440 points/s).

Printed: points written, disk in use by each store and table, bytes per point, a one-year chart
of one charging port's temperature read raw (from the store without retention) and from the
hourly aggregates (median of five), and the street's disk per day and at steady state.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from devices.catalog import KINDS
from devices.hierarchy import load_hierarchy
from ingest.decode import DecodeLimits, decode_message
from ingest.points import points_of_all
from ingest.retention import DAY_MS, RetentionPolicy, SqliteRetention
from ingest.telemetry import SqliteTelemetryStore
from simulators.population import Population

STREET_POINTS_PER_S = 46.0  # docs/scaling.md: the street's simulated cadence
DESIGN_POINTS_PER_S = 1_440.0  # 300 msg/s at the same points per message (46 / 9.6)
START_MS = 1_767_196_800_000  # 2026-01-01 00:00 Asia/Shanghai


def _in_use(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count",
                                                                                   "page_size"))
    return (pages - free) * size


def _median_s(fn: Any, repeat: int = 5) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = len(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def run(buildings: int, days: int, raw_days: int, aggregate_days: int, workdir: Path) -> dict[str, Any]:
    hierarchy = load_hierarchy(None)
    building_ids = sorted(hierarchy.buildings, key=lambda b: (b != "xq-01", b))[:buildings]  # 香泉 1号楼 first
    population = Population.of(hierarchy, building_ids=building_ids)
    station = next(d.device_id for d in population.devices.values() if d.kind == "charging_station")
    plain_path, kept_path = workdir / "without-retention.db", workdir / "with-retention.db"
    plain, kept = SqliteTelemetryStore(plain_path), SqliteTelemetryStore(kept_path)
    policy = RetentionPolicy.from_days(raw_days, aggregate_days)
    retention = SqliteRetention(kept_path, policy, batch_rows=5_000, pause_s=0)
    limits = DecodeLimits(max_past_ms=10**15)

    points = messages = 0
    t0 = time.perf_counter()
    retention_s = 0.0
    pending = population.start(START_MS)
    for day in range(days):
        day_end = START_MS + (day + 1) * DAY_MS
        now = START_MS + day * DAY_MS
        batch = []
        while now < day_end:  # the simulated devices an hour at a time, written a day at a time
            now = min(now + 3_600_000, day_end)
            pending += population.tick(now)
            batch += points_of_all([decode_message(topic, payload, now, KINDS, limits) for topic, payload in pending])
            messages += len(pending)
            pending = []
        plain.write_points(batch)
        kept.write_points(batch)
        points += len(batch)
        r0 = time.perf_counter()
        retention.run_once(day_end)
        retention_s += time.perf_counter() - r0
    write_s = time.perf_counter() - t0
    end = START_MS + days * DAY_MS
    plain.close()
    kept.close()

    plain_reader = SqliteRetention(plain_path, RetentionPolicy.from_days(36_500, 36_500), pause_s=0)
    raw_s, raw_n = _median_s(lambda: plain_reader.raw(station, "temperature_c", end - 365 * DAY_MS, end, port="1"))
    hourly_s, hourly_n = _median_s(lambda: retention.hourly(station, "temperature_c", end - 365 * DAY_MS, end,
                                                            port="1"))
    kept_tables, plain_tables = retention.table_bytes(), plain_reader.table_bytes()
    kept_rows = retention.rows_since(end - DAY_MS)
    plain_reader.close()
    retention.close()

    slice_points_per_s = points / (days * 86_400)
    raw_bytes_per_point = plain_tables["readings"] / points
    hourly_rows_per_day = kept_rows["readings_hourly_total"] / min(days, aggregate_days)
    hourly_bytes_per_row = kept_tables.get("readings_hourly", 0) / max(1, kept_rows["readings_hourly_total"])
    out: dict[str, Any] = {
        "buildings": building_ids, "devices": len(population), "days": days, "messages": messages, "points": points,
        "slice_points_per_s": slice_points_per_s, "write_s": write_s, "retention_s": retention_s,
        "without_retention_bytes": _in_use(plain_path), "with_retention_bytes": _in_use(kept_path),
        "plain_tables": plain_tables, "kept_tables": kept_tables,
        "raw_bytes_per_point": raw_bytes_per_point, "hourly_bytes_per_row": hourly_bytes_per_row,
        "hourly_rows_per_day": hourly_rows_per_day,
        "chart_raw": (raw_s, raw_n), "chart_hourly": (hourly_s, hourly_n),
    }
    for name, rate in (("street", STREET_POINTS_PER_S), ("design", DESIGN_POINTS_PER_S)):
        factor = rate / slice_points_per_s
        raw_day = raw_bytes_per_point * rate * 86_400
        hourly_day = hourly_rows_per_day * hourly_bytes_per_row * factor
        out[name] = {"raw_per_day": raw_day, "hourly_per_day": hourly_day, "year_without": raw_day * 365,
                     "steady_with": raw_day * raw_days + hourly_day * aggregate_days}
    return out


class _ColdFlushInflux:
    """InfluxDB 1.x writing its cache to TSM files and compacting them a second after writes stop (the defaults are
    10 minutes and 4 hours), so the disk measured is the compressed, compacted form a long-running server reaches."""

    @staticmethod
    def make(workdir: Path):  # type: ignore[no-untyped-def]
        from tooling.local_servers import InfluxV1Server

        class Server(InfluxV1Server):
            def _env(self):  # type: ignore[no-untyped-def]
                return {**super()._env(), "INFLUXDB_DATA_CACHE_SNAPSHOT_WRITE_COLD_DURATION": "1s",
                        "INFLUXDB_DATA_COMPACT_FULL_WRITE_COLD_DURATION": "1s"}

        return Server(workdir)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_influx(buildings: int, days: int, raw_days: int, workdir: Path) -> dict[str, Any]:
    """The same slice into a real InfluxDB 1.x: bytes per point on disk (TSM, compacted), the raw period's share,
    the hourly roll-up's size, and a one-year chart raw vs hourly over HTTP."""
    import httpx

    from ingest.retention import HOUR_MS, InfluxV1Retention
    from ingest.telemetry import InfluxV1TelemetryStore

    hierarchy = load_hierarchy(None)
    building_ids = sorted(hierarchy.buildings, key=lambda b: (b != "xq-01", b))[:buildings]
    population = Population.of(hierarchy, building_ids=building_ids)
    station = next(d.device_id for d in population.devices.values() if d.kind == "charging_station")
    server = _ColdFlushInflux.make(workdir / "influx")
    server.start()
    try:
        database = "bench"
        # A raw period longer than the simulated year so all of it is accepted; "with retention" is then the share of
        # the raw policy's daily shards that a raw period of ``raw_days`` keeps, plus every hourly shard.
        retention = InfluxV1Retention(server.url, database, RetentionPolicy.from_days(days + 400, 730), timeout_s=300)
        retention.ensure()
        store = InfluxV1TelemetryStore(server.url, database, timeout_s=120)
        limits = DecodeLimits(max_past_ms=10**15)
        now_real = int(time.time() * 1000)
        start = now_real - now_real % DAY_MS - days * DAY_MS
        points = 0
        pending = population.start(start)
        t0 = time.perf_counter()
        for day in range(days):
            now, day_end, batch = start + day * DAY_MS, start + (day + 1) * DAY_MS, []
            while now < day_end:
                now = min(now + HOUR_MS, day_end)
                pending += population.tick(now)
                batch += points_of_all([decode_message(t, p, now, KINDS, limits) for t, p in pending])
                pending = []
            for k in range(0, len(batch), 20_000):
                store.write_points(batch[k:k + 20_000])
            points += len(batch)
        write_s = time.perf_counter() - t0
        end = start + days * DAY_MS
        t0 = time.perf_counter()
        for week in range(0, days, 7):  # the continuous query's roll-up over the past, a week a statement (the
            # test server's query-timeout is 60 s)
            retention.backfill(start + week * DAY_MS, min(end, start + (week + 7) * DAY_MS))
        rollup_s = time.perf_counter() - t0
        time.sleep(5)  # cold for longer than a second: snapshot and full compaction run
        data = server.data_root / "data" / database
        deadline = time.monotonic() + 120
        while any(p.suffix == ".tsm" and ".tmp" in p.name for p in data.rglob("*")) and time.monotonic() < deadline:
            time.sleep(1)
        shards = [r for r in _influx_rows(server.url, "SHOW SHARDS") if r.get("database") == database]
        raw_total = hourly_total = raw_kept = 0
        for shard in shards:
            size = _du(data / str(shard["retention_policy"]) / str(shard["id"]))
            if shard["retention_policy"] == "raw":
                raw_total += size
                if _ms(str(shard["end_time"])) > end - raw_days * DAY_MS:
                    raw_kept += size
            else:
                hourly_total += size
        wal = _du(server.data_root / "wal" / database)
        client = httpx.Client(base_url=server.url, timeout=120)

        def chart(rp: str, column: str) -> list[Any]:
            q = (f'SELECT "{column}" FROM "{rp}"./.*/ WHERE "device" = \'{station}\' AND "port" = \'1\''
                 f" AND time >= {end - 365 * DAY_MS}ms AND time < {end}ms")
            body = client.get("/query", params={"db": database, "q": q, "epoch": "ms"}).json()
            series = body["results"][0].get("series", [])
            return [v for s in series for v in s["values"]]

        raw_s, raw_n = _median_s(lambda: chart("raw", "temperature_c"), repeat=3)
        hourly_s, hourly_n = _median_s(lambda: chart("hourly", "mean_temperature_c"), repeat=3)
        client.close()
        store.close()
        retention.close()
    finally:
        server.stop()
    return {"points": points, "write_s": write_s, "rollup_s": rollup_s, "raw_bytes": raw_total,
            "raw_kept_bytes": raw_kept, "hourly_bytes": hourly_total, "wal_bytes": wal,
            "raw_bytes_per_point": raw_total / max(1, points), "chart_raw": (raw_s, raw_n),
            "chart_hourly": (hourly_s, hourly_n)}


def _influx_rows(url: str, q: str) -> list[dict[str, Any]]:
    import httpx

    body = httpx.get(f"{url}/query", params={"q": q}, timeout=30).json()
    out: list[dict[str, Any]] = []
    for series in body["results"][0].get("series", []):
        out += [{**dict(zip(series["columns"], v, strict=True)), "database": series.get("name")} for v in series["values"]]
    return out


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def report_influx(r: dict[str, Any], raw_days: int, aggregate_days: int, days: int) -> str:
    lines = [
        "",
        f"InfluxDB 1.6.7, the same slice: {r['points']:,} points written in {r['write_s']:.0f} s, rolled up"
        f" hourly in {r['rollup_s']:.1f} s",
        "",
        "| | without retention (the year raw) | with retention (raw %d d, hourly %d d) |" % (raw_days, aggregate_days),
        "|---|---|---|",
        f"| disk (TSM, compacted) | {_gb(r['raw_bytes'])} | {_gb(r['raw_kept_bytes'] + r['hourly_bytes'])}"
        f" (raw {_gb(r['raw_kept_bytes'])} + hourly {_gb(r['hourly_bytes'])}) |",
        f"| a one-year chart of one port's temperature, over HTTP | {r['chart_raw'][1]:,} points in "
        f"{r['chart_raw'][0] * 1000:,.0f} ms | {r['chart_hourly'][1]:,} points in "
        f"{r['chart_hourly'][0] * 1000:,.1f} ms |",
        "",
        f"per stored raw point: {r['raw_bytes_per_point']:.1f} bytes (WAL left: {_gb(r['wal_bytes'])}); the street:"
        f" {_gb(r['raw_bytes_per_point'] * STREET_POINTS_PER_S * 86_400)} raw a day at {STREET_POINTS_PER_S:g}"
        f" points/s, {_gb(r['raw_bytes_per_point'] * DESIGN_POINTS_PER_S * 86_400)} at the design rate",
    ]
    del days
    return "\n".join(lines)


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def report(r: dict[str, Any], raw_days: int, aggregate_days: int) -> str:
    lines = [
        f"slice: {r['devices']} devices ({', '.join(r['buildings'])}), {r['days']} simulated days, "
        f"{r['messages']:,} messages, {r['points']:,} points ({r['slice_points_per_s']:.3f} points/s; "
        f"the street: {STREET_POINTS_PER_S:g})",
        f"written in {r['write_s']:.0f} s (both stores), of which the retention job {r['retention_s']:.1f} s "
        f"({r['days']} runs)",
        "",
        "| | without retention | with retention (raw %d d, hourly %d d) |" % (raw_days, aggregate_days),
        "|---|---|---|",
        f"| disk in use | {_gb(r['without_retention_bytes'])} | {_gb(r['with_retention_bytes'])} |",
        f"| raw readings (table + indexes) | {_gb(r['plain_tables'].get('readings', 0))} | "
        f"{_gb(r['kept_tables'].get('readings', 0))} |",
        f"| hourly aggregates | – | {_gb(r['kept_tables'].get('readings_hourly', 0))} |",
        f"| a one-year chart of one port's temperature | {r['chart_raw'][1]:,} points in "
        f"{r['chart_raw'][0] * 1000:,.0f} ms | {r['chart_hourly'][1]:,} points in "
        f"{r['chart_hourly'][0] * 1000:,.1f} ms |",
        "",
        f"per stored raw point: {r['raw_bytes_per_point']:.0f} bytes; per hourly row: "
        f"{r['hourly_bytes_per_row']:.0f} bytes ({r['hourly_rows_per_day']:,.0f} rows a day in the slice)",
        "",
        "| the street (embedded store) | raw a day | hourly a day | a year without retention | steady state with |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("street", f"simulated cadence, {STREET_POINTS_PER_S:g} points/s"),
                        ("design", f"design rate, {DESIGN_POINTS_PER_S:,.0f} points/s")):
        s = r[name]
        lines.append(f"| {label} | {_gb(s['raw_per_day'])} | {_gb(s['hourly_per_day'])} | {_gb(s['year_without'])} | "
                     f"{_gb(s['steady_with'])} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    logging.getLogger("ingest.retention").setLevel(logging.WARNING)  # a line per simulated day otherwise
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-storage-"))
    try:
        if not args.influx_only:
            result = run(args.buildings, args.days, args.raw_days, args.aggregate_days, workdir)
            print(report(result, args.raw_days, args.aggregate_days), flush=True)
        if args.influx or args.influx_only:
            influx = run_influx(args.buildings, args.days, args.raw_days, workdir)
            print(report_influx(influx, args.raw_days, args.aggregate_days, args.days))
    finally:
        if args.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("storage", help="a year of telemetry with and without retention: disk and chart time")
    p.add_argument("--buildings", type=int, default=1, help="buildings of the sample street simulated (default 1)")
    p.add_argument("--days", type=int, default=365, help="simulated days (default a year)")
    p.add_argument("--raw-days", type=int, default=30)
    p.add_argument("--aggregate-days", type=int, default=730)
    p.add_argument("--influx", action="store_true", help="the same slice into a real InfluxDB 1.x too")
    p.add_argument("--influx-only", action="store_true", help="only the InfluxDB 1.x part")
    p.add_argument("--keep", action="store_true", help="keep the two databases for a look afterwards")
    p.set_defaults(func=main)
