"""The alarm path stands alone (issue 13): the real pipeline with its real embedded stores, faults injected.

Telemetry storage that refuses, a disk at the alarm reserve, a device clock that reset, a
sequence number that jumped to 2^53, a device that rebooted, a server clock that runs slow:
in every case the alarm is evaluated and opens its incident, flagged where hygiene found
something; only telemetry degrades, by its stated policy, and is counted.
"""

import json
import os

import pytest

from alerts.context import RegistryContext
from alerts.rules import default_rules
from alerts.service import AlertService
from alerts.store import IncidentStore
from alerts.thresholds import Thresholds
from devices.catalog import KINDS
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from ingest.dead_letters import DeadLetterStore
from ingest.decode import DAY_MS, MINUTE_MS
from ingest.pipeline import IngestPipeline, RawMessage, SpoolRefused, TelemetryHeld, TelemetryOverflow
from ingest.spool import Spool
from foundation.db import create_schema, make_engine
from foundation.disk_guard import DiskGuard

NOW = 1_795_000_000_000
DEVICE = "SD-XQ01-0301"
EVENT = f"safety/v1/wanli/smoke_detector/{DEVICE}/event"
TELEMETRY = f"safety/v1/wanli/smoke_detector/{DEVICE}/telemetry"
STATUS = f"safety/v1/wanli/smoke_detector/{DEVICE}/status"


def body(seq, type_="alarm", ts=NOW - 500, **fields):
    return json.dumps({"v": 1, "ts": ts, "seq": seq, "type": type_, **fields}).encode()


def heartbeat(seq, ts=NOW - 500, device=DEVICE):
    return RawMessage(f"safety/v1/wanli/smoke_detector/{device}/telemetry",
                      body(seq, "heartbeat", ts=ts, battery_pct=90.0, rssi_dbm=-70), NOW)


def alarm(seq, ts=NOW - 400, type_="alarm"):
    return RawMessage(EVENT, body(seq, type_, ts=ts), NOW)


class FakeDisk:
    """statvfs of a disk whose free space the test sets (the real one is tried in tests/reliability)."""

    def __init__(self, total=1_000_000_000, free=900_000_000):
        self.total, self.free = total, free

    def __call__(self, _path):
        block = 4096
        return os.statvfs_result((block, block, self.total // block, self.free // block, self.free // block,
                                  0, 0, 0, 0, 255))


class Env:
    def __init__(self, tmp_path, *, overflow=TelemetryOverflow.HOLD, disk=None, now=NOW):
        self.engine = make_engine(f"sqlite:///{tmp_path / 'wanli.db'}")
        create_schema(self.engine)
        self.registry = DeviceRegistry(self.engine, load_hierarchy())
        self.incidents = IncidentStore(self.engine)
        rules = default_rules()
        ctx = RegistryContext(self.registry, Thresholds(rules, lambda d: ""))
        self.alerts = AlertService(self.incidents, ctx.locate, ctx, self.registry.hierarchy, rules)
        self.spool = Spool(tmp_path / "spool.db")
        self.dead = DeadLetterStore(self.engine)
        self.disk = disk
        guard = DiskGuard([tmp_path], reserve_bytes=100_000_000, statvfs=disk, cache_ms=0) if disk else None
        self.now = now
        self.pipeline = IngestPipeline(KINDS, self.engine, self.registry, self.spool, self.dead, self.alerts,
                                       clock_ms=lambda: self.now, disk_guard=guard, overflow=overflow)
        self.registry.register(DeviceRecord(DEVICE, "smoke_detector", "wanli", "xq-01", 3, "0301"), "test", NOW)

    def process(self, batch, hold=True):
        """As the consumer does: retry at once after SpoolRefused."""
        try:
            return self.pipeline.process(batch, hold_telemetry=hold)
        except SpoolRefused:
            return self.pipeline.process(batch, hold_telemetry=hold)

    def alarm_incident(self):
        return next(i for i in self.incidents.list() if i.condition == "smoke_alarm")


def test_spool_at_its_bound_holds_telemetry_back_and_commits_the_alarm_beside_it(tmp_path):
    env = Env(tmp_path)
    env.spool.max_points = 1
    env.process([heartbeat(1)])  # one point: the spool is now at its bound
    assert env.spool.state().points == 1
    batch = [heartbeat(2, ts=NOW - 300), alarm(3, ts=NOW - 200)]
    with pytest.raises(TelemetryHeld) as held:
        env.process(batch)
    assert held.value.held == 1 and "bound" in held.value.why
    assert env.alarm_incident().event_count == 1  # the alarm did not wait for the spool
    assert env.registry.get(DEVICE).seq_highest == 1  # the held heartbeat was not judged: it comes again

    env.spool.max_points = 100  # the store drained: the broker redelivers the batch
    again = env.process(batch)
    assert (again.readings, again.duplicates) == (1, 1)  # the heartbeat now, the alarm recognised
    assert env.alarm_incident().event_count == 1
    assert env.spool.state().points == 2


def test_drop_policy_acknowledges_telemetry_and_counts_the_points_lost(tmp_path):
    env = Env(tmp_path, overflow=TelemetryOverflow.DROP)
    env.spool.max_points = 1
    env.process([heartbeat(1)])
    result = env.process([heartbeat(2, ts=NOW - 300), alarm(3, ts=NOW - 200)])
    assert result.readings == 2
    assert env.pipeline.counters.telemetry_dropped_points == 2  # the heartbeat's and the alarm's own point
    assert env.alarm_incident().state.value == "open"


def test_the_alarm_lane_never_holds(tmp_path):
    env = Env(tmp_path)
    env.spool.max_points = 1
    env.process([heartbeat(1)])
    result = env.process([alarm(2)], hold=False)
    assert result.readings == 1 and env.pipeline.counters.telemetry_held == 0


def test_a_disk_at_the_alarm_reserve_stops_bulk_writes_and_the_alarm_still_commits(tmp_path):
    disk = FakeDisk()
    env = Env(tmp_path, disk=disk)
    disk.free = 50_000_000  # below the 100 MB reserve
    bad = RawMessage(EVENT, b"{not json", NOW)
    with pytest.raises(TelemetryHeld) as held:
        env.process([heartbeat(1), bad, alarm(2)])
    assert "reserve" in held.value.why
    assert env.alarm_incident().state.value == "open"
    assert env.dead.list() == [] and env.pipeline.counters.dead_letters_unstored == 1  # counted, not stored
    assert env.pipeline.flush_device_states() == 0  # device states wait in memory
    disk.free = 900_000_000
    env.process([heartbeat(1), bad])
    assert [d.reason for d in env.dead.list()] == ["bad_json"]
    assert env.spool.state().points == 1


def test_an_alarm_from_a_device_whose_clock_reset_opens_its_incident_flagged(tmp_path):
    env = Env(tmp_path)
    result = env.process([alarm(1, ts=NOW - 8 * DAY_MS), heartbeat(2, ts=NOW - 8 * DAY_MS)])
    assert (result.readings, result.rejected) == (1, 1)
    incident = env.alarm_incident()
    assert incident.first_event_ms == NOW  # evaluated at the time it arrived, not 8 days ago
    assert incident.flags == ("设备时钟落后 8.0 天（device clock behind by 8.0 days）",)
    assert [d.reason for d in env.dead.list()] == ["ts_past"]  # telemetry with a reset clock is still refused
    ahead = env.process([alarm(3, ts=NOW + 2 * DAY_MS)])
    assert ahead.readings == 1


def test_a_sequence_glitch_to_2_pow_53_does_not_mute_the_device(tmp_path):
    env = Env(tmp_path)
    env.process([heartbeat(4000)])
    glitch = env.process([heartbeat(2**53, ts=NOW - 450)])
    assert glitch.readings == 1 and env.pipeline.counters.seq_jumps == 1
    after = env.process([alarm(4001), heartbeat(4002, ts=NOW - 300)])
    assert (after.readings, after.rejected) == (2, 0)
    assert env.alarm_incident().flags == ()  # the alarm itself was ordinary
    redelivered = env.process([alarm(4001)])
    assert redelivered.duplicates == 1  # a resend is still recognised after the glitch


def test_a_counter_that_really_moved_is_followed_after_two_numbers_in_a_row(tmp_path):
    env = Env(tmp_path)
    env.process([heartbeat(4000)])
    env.process([heartbeat(9_000_000, ts=NOW - 450), heartbeat(9_000_001, ts=NOW - 440)])
    again = env.process([heartbeat(9_000_001, ts=NOW - 440)])
    assert again.duplicates == 1  # the new counter is the window now
    assert env.pipeline.counters.seq_resets == 1


def test_a_reboot_with_a_restarted_counter_is_accepted_from_its_online(tmp_path):
    env = Env(tmp_path)
    env.process([heartbeat(4000), alarm(4001)])
    rebooted = env.process([RawMessage(STATUS, body(100, "online", ts=NOW - 100), NOW),
                            alarm(101, ts=NOW - 90), heartbeat(102, ts=NOW - 80)])
    assert (rebooted.readings, rebooted.rejected) == (3, 0)
    assert env.pipeline.counters.seq_resets == 1


def test_a_server_clock_five_minutes_slow_is_corrected_by_the_devices(tmp_path):
    env = Env(tmp_path)
    devices = [f"SD-XQ01-{floor:02d}01" for floor in range(1, 18)] + [f"SD-XQ01-{floor:02d}02" for floor in range(1, 18)]
    for d in devices[1:]:
        env.registry.register(DeviceRecord(d, "smoke_detector", "wanli", "xq-01", int(d[8:10]), d[8:]), "test", NOW)
    skew = 6 * MINUTE_MS  # every device is 6 minutes ahead of this server
    env.process([heartbeat(1, ts=NOW + skew, device=d) for d in devices])  # refused: ts_future, but heard
    assert env.pipeline.clock_skew.median_ms == skew and env.pipeline.clock_skew.offset_ms == skew
    result = env.process([alarm(50, ts=NOW + skew), heartbeat(51, ts=NOW + skew + 10)])
    assert (result.readings, result.rejected) == (2, 0)
    assert env.alarm_incident().flags == ()
