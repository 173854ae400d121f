"""Faults of the service itself: raised after their grace period, once (again only when worse), cleared when gone."""

import os

from alerts.incidents import Severity
from alerts.system_faults import SERVICE_ID, SYSTEM_CATEGORY, Fault, SystemFaults
from ingest.hygiene import ClockSkew, clock_flag
from devices.sequence import JUMP_ABOVE, SeqState, Verdict, judge
from foundation.disk_guard import DiskGuard

STORE_DOWN = Fault("telemetry_unreachable", "时序库不可用", "down", after_s=60)


def test_a_fault_becomes_an_incident_only_after_its_grace_period_and_only_once():
    faults = SystemFaults("wanli")
    signals, present = faults.observe([STORE_DOWN], 0)
    assert signals == [] and present == {"street:wanli:telemetry_unreachable"}
    assert faults.observe([STORE_DOWN], 59_999)[0] == []
    (signal,), _ = faults.observe([STORE_DOWN], 60_000)
    assert (signal.kind, signal.category, signal.device_id, signal.scope) == ("system", SYSTEM_CATEGORY, SERVICE_ID,
                                                                             "street:wanli")
    assert faults.observe([STORE_DOWN], 61_000)[0] == []  # still holds: no new signal each tick


def test_a_fault_that_grows_worse_is_raised_again_and_one_that_clears_starts_its_grace_again():
    faults = SystemFaults("wanli")
    warn = Fault("spool_high", "80%", "", severity=Severity.WARNING)
    assert len(faults.observe([warn], 0)[0]) == 1
    worse = Fault("spool_high", "80%", "", severity=Severity.HIGH)
    assert faults.observe([worse], 1000)[0][0].severity is Severity.HIGH
    assert faults.observe([], 2000) == ([], set())  # cleared: the engine closes the incident
    assert faults.observe([STORE_DOWN], 3000)[0] == []  # a new outage waits its full grace again
    assert faults.observe([STORE_DOWN], 62_999)[0] == []


def test_a_device_fault_is_located_at_the_device():
    fault = Fault("dead_letter_flood", "设备持续发送错误消息", "", device_id="SD-XQ01-0301")
    (signal,), present = SystemFaults("wanli").observe([fault], 0)
    assert signal.device_id == "SD-XQ01-0301" and signal.scope == "" and present == {"SD-XQ01-0301:dead_letter_flood"}


class Disk:
    def __init__(self, free):
        self.free = free

    def __call__(self, _path):
        return os.statvfs_result((4096, 4096, 250_000, self.free // 4096, self.free // 4096, 0, 0, 0, 0, 255))


def test_the_disk_guard_stops_bulk_writes_at_the_reserve_and_counts_refusals(tmp_path):
    disk = Disk(free=500_000_000)
    guard = DiskGuard([tmp_path, tmp_path / "not-yet"], reserve_bytes=200_000_000, statvfs=disk, cache_ms=0)
    assert guard.bulk_allowed() and not guard.refuse_bulk()
    (state,) = {s.path: s for s in guard.states()}.values()  # a path not made yet is its parent's disk
    assert round(state.fill, 2) == 0.51 and round(state.fill_before_reserve, 2) == 0.64
    disk.free = 150_000_000
    assert guard.refuse_bulk() and guard.refused_bulk_writes == 1
    assert guard.fill_of(tmp_path / "spool.db").fill_before_reserve == 1.0


def test_the_disk_guard_asks_the_disk_at_most_once_per_cache_period(tmp_path):
    calls = []
    now = [0]

    def statvfs(path):
        calls.append(path)
        return Disk(500_000_000)(path)

    guard = DiskGuard([tmp_path], reserve_bytes=1, statvfs=statvfs, cache_ms=1000, clock_ms=lambda: now[0])
    guard.bulk_allowed(), guard.bulk_allowed()
    now[0] = 999
    guard.bulk_allowed()
    assert len(calls) == 1
    now[0] = 1000
    guard.bulk_allowed()
    assert len(calls) == 2


def test_clock_skew_needs_most_devices_and_ignores_one_broken_clock():
    skew = ClockSkew(devices=100, min_devices=20, alert_ms=120_000)
    for i in range(19):
        skew.observe(f"d{i}", 1_000_000 + 300_000, 1_000_000)
    assert skew.median_ms is None and skew.offset_ms == 0  # too few devices to blame the server
    skew.observe("broken", 0, 1_000_000, live=True)  # one device 16 minutes behind
    assert skew.median_ms == 300_000 and skew.offset_ms == 300_000
    small = ClockSkew(min_devices=1, alert_ms=120_000)
    small.observe("d", 1_060_000, 1_000_000)
    assert small.median_ms == 60_000 and small.offset_ms == 0  # within tolerance: nothing to correct


def test_clock_flags_say_which_way_and_how_far():
    assert clock_flag(-8 * 86_400_000) == "设备时钟落后 8.0 天（device clock behind by 8.0 days）"
    assert clock_flag(6 * 60_000) == "设备时钟超前 6 分钟（device clock ahead by 6 min）"


def test_a_jump_far_past_or_far_behind_leaves_the_window_where_it_was():
    state = SeqState(4000, 1)
    assert judge(state, 2**53) == (Verdict.JUMP, state)
    assert judge(state, 4000 + JUMP_ABOVE + 1) == (Verdict.JUMP, state)
    assert judge(state, 4001)[0] is Verdict.NEW
    absurd = SeqState(2**53, 1)
    assert judge(absurd, 5000) == (Verdict.JUMP, absurd)  # the highest itself was the glitch
    assert judge(absurd, 3)[0] is Verdict.RESET


def test_a_reconnect_storm_flushing_old_readings_is_not_a_server_clock_behind():
    skew = ClockSkew(min_devices=20, alert_ms=120_000, window_ms=120_000)
    now = 10_000_000
    for i in range(50):
        skew.observe(f"d{i}", now - 600_000, now)  # buffered while offline: stamped 10 minutes ago
        skew.observe(f"d{i}", now + 10, now + 10)  # then live
        skew.observe(f"d{i}", now - 300_000, now + 20)  # more of the buffer
    assert skew.median_ms == 0 and skew.offset_ms == 0


def test_a_server_ahead_is_reported_from_live_stamps_but_never_corrected():
    skew = ClockSkew(min_devices=20, alert_ms=120_000)
    for i in range(30):
        skew.observe(f"d{i}", 10_000_000 - 300_000, 10_000_000)  # telemetry 5 min old: perhaps only buffered
    assert skew.median_ms == 0
    for i in range(30):
        skew.observe(f"d{i}", 10_000_000 - 300_000, 10_000_000, live=True)  # `online` stamped 5 min behind
    assert skew.median_ms == -300_000 and skew.offset_ms == 0  # the incident says so; nothing is corrected


def test_a_server_ahead_stays_seen_through_the_heartbeats_that_follow_the_online():
    skew = ClockSkew(min_devices=20, alert_ms=120_000)
    for i in range(30):
        skew.observe(f"d{i}", 10_000_000 - 300_000, 10_000_000, live=True)
        skew.observe(f"d{i}", 10_030_000 - 300_000, 10_030_000)  # its heartbeats, as far behind
    assert skew.median_ms == -300_000


def test_an_absurd_device_clock_is_no_evidence_at_all():
    skew = ClockSkew(min_devices=1, alert_ms=120_000)
    skew.observe("hostile", 91_796_608_208_371, 1_796_608_208_371)
    assert skew.devices == 0 and skew.offset_ms == 0
