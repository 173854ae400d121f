"""The telemetry store: one interface, three real implementations.

* ``SqliteTelemetryStore``: embedded, for the main job with nothing installed.
* ``InfluxV1TelemetryStore``: InfluxDB 1.x over its HTTP API (``/write``, ``/query``);
  also served by InfluxDB 2.x/3.x compatibility endpoints.
* ``InfluxV2TelemetryStore``: InfluxDB 2.x through influxdb-client's write API (also what
  VictoriaMetrics accepts at ``/api/v2/write``).

Writes take a whole batch of points and make one round trip. A store that cannot write
raises ``StoreUnavailable``; the caller decides whether to retry or spool. The two InfluxDB
stores also take a batch already written as line protocol (``LineProtocolStore.write_lines``):
the spool keeps their batches as lines and replays them as they are (ingest/spool.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from ingest.line_protocol import encode_bytes
from ingest.points import TelemetryPoint
from foundation.errors import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """One stored reading as read back (for the API's charts and for tests)."""

    ts_ms: int
    kind: str
    device_id: str
    type: str
    fields: dict[str, object]


class TelemetryStore(Protocol):
    name: str

    def write_points(self, points: Sequence[TelemetryPoint]) -> int:
        """Store the points (idempotently: the same point twice is stored once); return how many. Raise ``StoreUnavailable``."""
        ...

    def recent(self, device_id: str, limit: int = 100) -> list[StoredPoint]:
        """The newest points of one device, newest first."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LineProtocolStore(TelemetryStore, Protocol):
    """A store that takes InfluxDB line protocol as it is."""

    def write_lines(self, body: bytes, count: int) -> int:
        """Store ``count`` points given as newline-separated lines (millisecond times) in one request; return
        ``count``. Raise ``StoreUnavailable``; nothing is kept unless the whole body was accepted."""
        ...


class _LineProtocolWrites:
    """``write_points`` for a store that writes line protocol: the points encoded, then ``write_lines``."""

    def write_lines(self, body: bytes, count: int) -> int:
        raise NotImplementedError

    def write_points(self, points: Sequence[TelemetryPoint]) -> int:
        return self.write_lines(encode_bytes(points), len(points)) if points else 0


class SqliteTelemetryStore:
    """Readings in one SQLite table, fields as JSON. Good for a building or a drill, not a city."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS readings (ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, device_id TEXT NOT NULL,"
            " type TEXT NOT NULL, port TEXT NOT NULL, fields TEXT NOT NULL,"
            " PRIMARY KEY (device_id, ts_ms, type, port))"  # like a series key + time in InfluxDB: a rewrite replaces
        )

    def write_points(self, points: Sequence[TelemetryPoint]) -> int:
        rows = [
            (p.ts_ms, p.measurement, p.tags["device"], p.tags["type"], p.tags.get("port", ""),
             json.dumps({**_extra_tags(p), **p.fields}, ensure_ascii=False))
            for p in points
        ]
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise StoreUnavailable(self.name, str(exc)) from exc
        return len(rows)

    def recent(self, device_id: str, limit: int = 100) -> list[StoredPoint]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT ts_ms, kind, device_id, type, fields FROM readings WHERE device_id = ? ORDER BY ts_ms DESC LIMIT ?",
                (device_id, limit),
            ).fetchall()
        return [StoredPoint(ts, kind, dev, typ, json.loads(fields)) for ts, kind, dev, typ, fields in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _extra_tags(p: TelemetryPoint) -> dict[str, str]:
    return {k: v for k, v in p.tags.items() if k not in ("street", "device", "type", "class")}


class InfluxV1TelemetryStore(_LineProtocolWrites):
    """InfluxDB 1.x HTTP API: line protocol to ``/write``, InfluxQL to ``/query``."""

    name = "influxdb1"

    def __init__(self, url: str, database: str, username: str = "", password: str = "", timeout_s: float = 10.0) -> None:
        auth = (username, password) if username else None
        self._client = httpx.Client(base_url=url, auth=auth, timeout=timeout_s)
        self._database = database
        self.database_missing = ""  # why the database is missing and could not be made, while it is

    def ensure_database(self) -> None:
        """Create the database if it does not exist (CREATE DATABASE is idempotent in InfluxQL)."""
        self._post_query(f'CREATE DATABASE "{self._database}"')

    def write_lines(self, body: bytes, count: int) -> int:
        """Store ``count`` points given as line protocol (newline-separated, millisecond times) in one request."""
        if not body:
            return 0
        resp = self._post_write(body)
        if resp.status_code == 404 and "database not found" in resp.text:
            # The database was dropped, or never made (the server was away when the service started):
            # make it now and write again, rather than fail every write until someone does it by hand.
            self._create_missing_database(resp.text)
            resp = self._post_write(body)
        if resp.status_code != 204:
            raise StoreUnavailable(self.name, f"/write answered {resp.status_code}: {resp.text[:300]}")
        self.database_missing = ""
        return count

    def _post_write(self, body: bytes) -> httpx.Response:
        try:
            return self._client.post("/write", params={"db": self._database, "precision": "ms"}, content=body)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _create_missing_database(self, answer: str) -> None:
        """CREATE DATABASE after a "database not found"; a server that refuses (no admin rights) is said plainly."""
        try:
            self.ensure_database()
        except StoreUnavailable as exc:
            self.database_missing = (f"InfluxDB database {self._database!r} does not exist and could not be created "
                                     f"({exc.detail}); create it on the server: CREATE DATABASE \"{self._database}\"")
            raise StoreUnavailable(self.name, self.database_missing) from exc
        log.warning("InfluxDB database %s was missing (%s); created it", self._database, answer.strip()[:200])
        self.database_missing = ""

    def query(self, influxql: str) -> list[dict[str, object]]:
        """Rows of the first series of the first statement, as dicts."""
        try:
            resp = self._client.get("/query", params={"db": self._database, "q": influxql, "epoch": "ms"})
        except httpx.HTTPError as exc:
            raise StoreUnavailable(self.name, str(exc)) from exc
        if resp.status_code != 200:
            raise StoreUnavailable(self.name, f"/query answered {resp.status_code}: {resp.text[:300]}")
        result = resp.json()["results"][0]
        if "error" in result:
            raise StoreUnavailable(self.name, result["error"])
        rows: list[dict[str, object]] = []
        for series in result.get("series", []):
            cols = series["columns"]
            rows.extend(dict(zip(cols, values, strict=True)) for values in series["values"])
        return rows

    def recent(self, device_id: str, limit: int = 100) -> list[StoredPoint]:
        escaped = device_id.replace("\\", "\\\\").replace("'", "\\'")
        rows = self.query(f"SELECT * FROM /.*/ WHERE device = '{escaped}' ORDER BY time DESC LIMIT {int(limit)}")
        out = []
        for row in rows:
            fields = {k: v for k, v in row.items() if v is not None and k not in ("time", "device", "street", "type", "class")}
            out.append(StoredPoint(int(row["time"]), "", device_id, str(row.get("type", "")), fields))  # type: ignore[arg-type]
        return sorted(out, key=lambda p: p.ts_ms, reverse=True)[:limit]

    def _post_query(self, q: str) -> None:
        try:
            resp = self._client.post("/query", params={"q": q})
        except httpx.HTTPError as exc:
            raise StoreUnavailable(self.name, str(exc)) from exc
        if resp.status_code != 200:
            raise StoreUnavailable(self.name, f"/query answered {resp.status_code}: {resp.text[:300]}")

    def close(self) -> None:
        self._client.close()


class InfluxV2TelemetryStore(_LineProtocolWrites):
    """InfluxDB 2.x through influxdb-client, writing prebuilt line protocol synchronously."""

    name = "influxdb2"

    def __init__(self, url: str, org: str, bucket: str, token: str, timeout_s: float = 10.0) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._org, self._bucket, self._precision = org, bucket, WritePrecision.MS

    def write_lines(self, body: bytes, count: int) -> int:
        """Store ``count`` points given as line protocol (newline-separated, millisecond times) in one request."""
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        if not body:
            return 0
        try:
            self._write_api.write(bucket=self._bucket, org=self._org, record=body, write_precision=self._precision)
        except (ApiException, Urllib3Error, OSError) as exc:
            raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc
        return count

    def recent(self, device_id: str, limit: int = 100) -> list[StoredPoint]:
        escaped = device_id.replace("\\", "\\\\").replace('"', '\\"')
        flux = (
            f'from(bucket: "{self._bucket}") |> range(start: -30d) |> filter(fn: (r) => r.device == "{escaped}")'
            f' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
            f' |> group() |> sort(columns: ["_time"], desc: true) |> limit(n: {int(limit)})'
        )
        out = []
        for table in self._client.query_api().query(flux, org=self._org):
            for rec in table.records:
                values = rec.values
                fields = {k: v for k, v in values.items() if not k.startswith("_") and k not in ("result", "table", "device", "street", "type", "class")}
                out.append(StoredPoint(int(rec.get_time().timestamp() * 1000), rec.get_measurement() or "", device_id,
                                       str(values.get("type", "")), fields))
        return out

    def close(self) -> None:
        self._write_api.close()
        self._client.close()
