"""The spool's two forms of a batch (line protocol for a store that takes it, msgpack points for one that takes
points), read by either kind of store, an old spool's rows included; a write that fails releases nothing."""

import sqlite3

import pytest

from devices.kinds.charging_station import contract as charging_station
from devices.kinds.smoke_detector import contract as smoke_detector
from devices.topics import MessageClass
from ingest.line_protocol import encode_bytes, parse_bytes
from ingest.points import TelemetryPoint, pack, points_of_all
from ingest.spool import Spool, SpoolDrainer
from ingest.telemetry import InfluxV1TelemetryStore, LineProtocolStore, SqliteTelemetryStore
from tests.support.readings import reading
from foundation.errors import StoreUnavailable

NOW = 1_795_000_000_000


class LinesIntoSqlite:
    """A store that takes line protocol (as InfluxDB does), keeping what it was given in a real embedded store;
    ``failures``: how many writes fail first, as InfluxDB's do while it is away."""

    name = "lines"

    def __init__(self, inner: SqliteTelemetryStore, failures: int = 0) -> None:
        self.inner, self.failures, self.bodies = inner, failures, []

    def write_lines(self, body, count):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable(self.name, "away")
        self.bodies.append((body, count))
        assert len(parse_bytes(body)) == count
        return self.inner.write_points(parse_bytes(body))

    def write_points(self, points):
        return self.write_lines(encode_bytes(points), len(points))

    def recent(self, device_id, limit=100):
        return self.inner.recent(device_id, limit)

    def close(self):
        self.inner.close()


def batch(i: int) -> list[TelemetryPoint]:
    """A station snapshot (three points, escapes in its device id and port state) and a fault with a free text."""
    station = charging_station.StationStatus(
        v=1, ts=NOW + i, seq=2 * i, ambient_temp_c=21.5, smoke=False, mains_power=True,
        ports=[charging_station.Port(port=1, state="charging, fast", temperature_c=41.5, power_w=180.0),
               charging_station.Port(port=2, state="idle")])
    fault = smoke_detector.Fault(v=1, ts=NOW + i, seq=2 * i + 1, code='E 1,"x"', detail="line\nbreak")
    return points_of_all([
        reading("charging_station", station, "CS 1,=x", msg_class=MessageClass.TELEMETRY, received_ms=NOW + i),
        reading("smoke_detector", fault, "SD-1", msg_class=MessageClass.EVENT, received_ms=NOW + i)])


def drain(drainer: SpoolDrainer) -> int:
    moved = 0
    while n := drainer.drain_once():
        moved += n
    return moved


def test_the_influxdb_store_takes_lines_and_the_embedded_one_points(tmp_path):
    influx = InfluxV1TelemetryStore("http://127.0.0.1:9", "wanli")  # not reached: only its kind is asked
    embedded = SqliteTelemetryStore(tmp_path / "t.db")
    assert isinstance(influx, LineProtocolStore) and not isinstance(embedded, LineProtocolStore)
    influx.close()
    embedded.close()


def test_a_spool_of_lines_replays_its_rows_as_they_were_built_in_one_write(tmp_path):
    spool = Spool(tmp_path / "spool.db", keep_lines=True)
    batches = [batch(i) for i in range(5)]
    for b in batches:
        spool.append(b, NOW)
    store = LinesIntoSqlite(SqliteTelemetryStore(tmp_path / "t.db"))
    drainer = SpoolDrainer(spool, store, batch_points=1000)
    assert drain(drainer) == 20 and spool.state().points == 0 and spool.drained_points == 20
    assert store.bodies == [(b"\n".join(encode_bytes(b) for b in batches), 20)]  # one request, in order
    assert drainer.publish_to_stored.count == 20


def test_writes_hold_about_batch_points_whole_rows_and_at_least_one(tmp_path):
    spool = Spool(tmp_path / "spool.db", keep_lines=True)
    for i in range(5):
        spool.append(batch(i), NOW)  # four points a row
    store = LinesIntoSqlite(SqliteTelemetryStore(tmp_path / "t.db"))
    assert drain(SpoolDrainer(spool, store, batch_points=9)) == 20
    assert [count for _, count in store.bodies] == [8, 8, 4]
    store.bodies.clear()
    spool.append(batch(9), NOW)
    assert drain(SpoolDrainer(spool, store, batch_points=1)) == 4 and [c for _, c in store.bodies] == [4]


def test_a_failed_write_releases_nothing_and_the_retry_stores_every_point_once(tmp_path):
    spool = Spool(tmp_path / "spool.db", keep_lines=True)
    for i in range(3):
        spool.append(batch(i), NOW)
    store = LinesIntoSqlite(SqliteTelemetryStore(tmp_path / "t.db"), failures=2)
    drainer = SpoolDrainer(spool, store, batch_points=5)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            drainer.drain_once()
        assert spool.state().points == 12 and spool.drained_points == 0
    assert drain(drainer) == 12 and spool.state().points == 0
    assert [p.ts_ms for p in store.recent("SD-1")] == [NOW + 2, NOW + 1, NOW]
    assert {p.fields["detail"] for p in store.recent("SD-1")} == {"line\nbreak"}


def test_rows_of_points_from_before_the_switch_go_to_a_store_of_lines_in_order_with_the_new(tmp_path):
    old = Spool(tmp_path / "spool.db")  # the embedded store's spool, or one written before issue 18
    old.append(batch(0), NOW)
    old.close()
    spool = Spool(tmp_path / "spool.db", keep_lines=True)
    spool.append(batch(1), NOW)
    store = LinesIntoSqlite(SqliteTelemetryStore(tmp_path / "t.db"))
    assert drain(SpoolDrainer(spool, store)) == 8
    assert store.bodies == [(encode_bytes(batch(0)) + b"\n" + encode_bytes(batch(1)), 8)]


def test_rows_of_lines_go_to_a_store_of_points_as_the_points_they_were(tmp_path):
    lines = Spool(tmp_path / "spool.db", keep_lines=True)  # InfluxDB was the store; now the embedded one is
    lines.append(batch(0), NOW)
    lines.close()
    spool = Spool(tmp_path / "spool.db")
    spool.append(batch(1), NOW)
    assert spool.peek(100) == (2, batch(0) + batch(1))
    store = SqliteTelemetryStore(tmp_path / "t.db")
    assert drain(SpoolDrainer(spool, store)) == 8 and spool.state().points == 0
    assert [p.ts_ms for p in store.recent("SD-1")] == [NOW + 1, NOW]


def test_a_spool_file_from_before_the_forms_opens_and_drains(tmp_path):
    path = tmp_path / "spool.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL,"
                 " points INTEGER NOT NULL, body BLOB NOT NULL)")
    conn.execute("INSERT INTO spool (created_ms, points, body) VALUES (?, ?, ?)", (NOW, 4, pack(batch(0))))
    conn.commit()
    conn.close()
    spool = Spool(path, keep_lines=True)
    assert spool.state().points == 4
    store = LinesIntoSqlite(SqliteTelemetryStore(tmp_path / "t.db"))
    assert drain(SpoolDrainer(spool, store)) == 4 and store.bodies == [(encode_bytes(batch(0)), 4)]
