"""A device's connection as the registry folds it: `online`, the `offline` last will stamped at connecting, replays.

The contract (docs/mqtt-contract.md) has a device reserve its will's timestamp and sequence
number when it connects and then say `online` with the next number; the broker publishes
the will when the connection dies, perhaps after thousands of heartbeats. These tests drive
``DeviceBatch.admit`` (ingest's path: judge the sequence number, fold what is new).
"""

from __future__ import annotations

import pytest

from devices.kinds.charging_station import contract as charging_station
from devices.kinds.smoke_detector import contract as smoke_detector
from devices.messages import Message, Offline, Online
from devices.reading import Reading
from devices.registry import (
    DeviceBatch,
    DeviceRecord,
    DeviceRegistry,
    DeviceState,
    Health,
    health,
)
from devices.sequence import Verdict
from foundation.db import create_schema, make_engine
from tests.support.readings import reading as support_reading

NOW = 1_795_000_000_000
DEVICE = "SD-XQ01-0101"
MIN = 60_000


class Device:
    """One detector's messages in order, as the simulators make them, fed through ingest's admission."""

    def __init__(self, state: DeviceState | None = None, seq: int = 100) -> None:
        self.state = state or DeviceState()
        self.seq = seq

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def connect(self, ts: int) -> tuple[Offline, Online]:
        """Reserve the will (kept by the broker) and say online: (the will, the online message)."""
        will = Offline(v=1, ts=ts, seq=self.next_seq())
        return will, Online(v=1, ts=ts + 5, seq=self.next_seq())

    def heartbeat(self, ts: int) -> smoke_detector.Heartbeat:
        return smoke_detector.Heartbeat(v=1, ts=ts, seq=self.next_seq(), battery_pct=80, rssi_dbm=-90)

    def admit(self, *messages: Message) -> list[Verdict]:
        batch = DeviceBatch({DEVICE: self.state})
        verdicts = [batch.admit(reading(m)) for m in messages]
        self.state = batch.pending[DEVICE]
        return verdicts


def reading(msg: Message) -> Reading:
    return support_reading("smoke_detector", msg, DEVICE)


def connected_for_hours(device: Device, hours: int = 100) -> Offline:
    """Connect, then a heartbeat every hour (more than a sequence window of them); the will the broker holds."""
    will, online = device.connect(NOW)
    device.admit(online)
    device.admit(*(device.heartbeat(NOW + h * 60 * MIN) for h in range(1, hours + 1)))
    return will


def test_the_will_of_the_current_connection_takes_the_device_offline_however_much_it_sent_since():
    device = Device()
    will = connected_for_hours(device)
    assert device.state.connected is True
    assert device.admit(will) == [Verdict.NEW]  # not a replay: status messages have their own window
    assert device.state.connected is False
    rec = DeviceRecord(DEVICE, "smoke_detector", "wanli", last_seen_ms=device.state.last_seen_ms,
                       connected=device.state.connected)
    assert Health.OFFLINE in health(rec, device.state.last_seen_ms + MIN)
    # The will says nothing about when the device was last heard: that stays the last heartbeat.
    assert device.state.last_seen_ms == NOW + 100 * 60 * MIN and device.state.last_type == "heartbeat"


def test_the_will_of_an_older_connection_published_late_changes_nothing():
    """The broker publishes the old connection's will when the new connection takes the session over."""
    device = Device()
    old_will = connected_for_hours(device, hours=3)
    new_will, online = device.connect(NOW + 4 * 60 * MIN)
    assert device.admit(online, old_will) == [Verdict.NEW, Verdict.NEW]
    assert device.state.connected is True
    assert device.admit(new_will) == [Verdict.NEW]
    assert device.state.connected is False


def test_back_online_after_its_will():
    device = Device()
    will = connected_for_hours(device, hours=2)
    device.admit(will)
    _, online = device.connect(NOW + 3 * 60 * MIN)
    device.admit(online)
    assert device.state.connected is True


def test_a_redelivered_will_is_a_duplicate_and_an_old_one_replayed_past_the_window_is_backwards():
    device = Device()
    will = connected_for_hours(device, hours=1)
    device.admit(will)
    _, online = device.connect(NOW + 2 * 60 * MIN)
    device.admit(online)
    assert device.admit(will) == [Verdict.DUPLICATE]  # the same will again: recognised, not folded
    assert device.state.connected is True
    for h in range(40):  # 40 reconnects later the first will is below the status window
        _, online2 = device.connect(NOW + (3 + h) * 60 * MIN)
        device.admit(online2)
    assert device.admit(Offline(v=1, ts=will.ts, seq=will.seq - 1)) == [Verdict.BACKWARDS]
    assert device.state.connected is True


def test_an_explicit_offline_with_a_fresh_number_takes_the_device_offline():
    device = Device()
    connected_for_hours(device, hours=1)
    device.admit(Offline(v=1, ts=NOW + 61 * MIN, seq=device.next_seq(), reason="shutdown"))
    assert device.state.connected is False


def test_a_device_whose_counter_restarted_comes_online_with_a_small_number():
    device = Device(seq=5_000)
    connected_for_hours(device, hours=1)
    device.seq = 0  # a new board under the old id: its counter starts again
    will, online = device.connect(NOW + 2 * 60 * MIN)
    assert device.admit(online) == [Verdict.RESET]
    assert device.state.connected is True and device.state.online_seq == online.seq
    assert device.admit(will) == [Verdict.NEW] and device.state.connected is False


def test_devices_that_never_announce_their_connection_are_online_when_they_speak():
    device = Device()
    device.admit(device.heartbeat(NOW))
    assert device.state.connected is True
    device.admit(Offline(v=1, ts=NOW - MIN, seq=device.next_seq()))  # a will, no online ever seen: it counts
    assert device.state.connected is False
    device.admit(device.heartbeat(NOW + MIN))
    assert device.state.connected is True


@pytest.mark.parametrize("then", ["will", "new_connection_then_old_will"])
def test_a_charging_station_that_sent_snapshots_after_connecting_goes_offline_with_its_will(then):
    """The reconnect-storm case: the will is older (by its timestamp) than every snapshot the station sent."""
    batch = DeviceBatch({"CS-1": DeviceState()})

    def admit(msg: Message) -> Verdict:
        return batch.admit(Reading("wanli", "charging_station", "CS-1", msg.CLASS, msg, msg.ts))

    will = Offline(v=1, ts=NOW, seq=1000)
    admit(Online(v=1, ts=NOW + 1, seq=1001))
    for seq in range(1002, 1070):
        admit(charging_station.StationStatus(v=1, ts=NOW + seq * MIN, seq=seq, ambient_temp_c=20.0, smoke=False,
                                             mains_power=True, ports=[]))
    if then == "will":
        assert admit(will) is Verdict.NEW and batch.pending["CS-1"].connected is False
    else:
        # Out of order: the old will after the next connection's online, 70 numbers on. Below the status window it
        # is indistinguishable from a replay: ingest dead-letters it (seq_backwards), and it changes nothing.
        admit(Online(v=1, ts=NOW + 2000 * MIN, seq=1070))
        assert admit(will) is Verdict.BACKWARDS and batch.pending["CS-1"].connected is True


def test_the_connection_survives_a_restart(tmp_path):
    """What decides the next will (the current connection's online number, the status window) is in the database."""
    from devices.hierarchy import load_hierarchy

    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    create_schema(engine)
    registry = DeviceRegistry(engine, load_hierarchy())
    registry.register(DeviceRecord(DEVICE, "smoke_detector", "wanli", "xq-01", 1, "0101"), "x", NOW)
    device = Device()
    old_will = connected_for_hours(device, hours=2)
    new_will, online = device.connect(NOW + 3 * 60 * MIN)
    registry.observe_batch([reading(online)])
    registry.observe_batch([reading(device.heartbeat(NOW + 4 * 60 * MIN))])

    restarted = DeviceRegistry(engine, load_hierarchy())
    assert restarted.get(DEVICE).online_seq == online.seq
    restarted.observe_batch([reading(old_will)])
    assert restarted.get(DEVICE).connected is True
    restarted.observe_batch([reading(new_will)])
    assert DeviceRegistry(engine, load_hierarchy()).get(DEVICE).connected is False


def test_the_first_message_of_a_class_far_behind_the_connection_is_a_replay():
    device = Device(seq=5_000)
    _, online = device.connect(NOW)
    device.admit(online)  # nothing but `online` seen yet: no telemetry, no event
    replayed = smoke_detector.Heartbeat(v=1, ts=NOW + MIN, seq=online.seq - 1000, battery_pct=80, rssi_dbm=-90)
    assert device.admit(replayed) == [Verdict.BACKWARDS]
    assert device.admit(device.heartbeat(NOW + 2 * MIN)) == [Verdict.NEW]
    alarm = smoke_detector.Alarm(v=1, ts=NOW + 3 * MIN, seq=device.next_seq())
    overtaken = device.heartbeat(NOW + 2 * MIN)  # published before the alarm, judged after it (the alarm lane)
    assert device.admit(alarm, overtaken) == [Verdict.NEW, Verdict.NEW]


def test_after_a_counter_restart_every_class_starts_again_so_the_next_alarm_is_new():
    device = Device(seq=5_000)
    connected_for_hours(device, hours=1)
    device.admit(smoke_detector.Alarm(v=1, ts=NOW + 61 * MIN, seq=device.next_seq()))  # events at ~5,000 too
    device.seq = 0  # a new board under the old id
    _, online = device.connect(NOW + 2 * 60 * MIN)
    assert device.admit(online) == [Verdict.RESET]
    assert device.admit(*(device.heartbeat(NOW + (121 + m) * MIN) for m in range(30))) == [Verdict.NEW] * 30
    alarm = smoke_detector.Alarm(v=1, ts=NOW + 160 * MIN, seq=device.next_seq())  # seq 33: past RESET_BELOW
    assert device.admit(alarm) == [Verdict.NEW]


def test_the_state_fields_are_declared_once_and_the_record_and_table_carry_the_same() -> None:
    from dataclasses import fields

    from devices.registry import devices_table

    stored = [f for f in fields(DeviceState) if f.init]
    assert DeviceState.FIELDS == tuple(f.name for f in stored) and "jump_seq" not in DeviceState.FIELDS
    record = {f.name: f for f in fields(DeviceRecord)}
    assert [(f.name, f.type, f.default) for f in stored] == \
        [(record[n].name, record[n].type, record[n].default) for n in DeviceState.FIELDS]
    assert set(DeviceState.FIELDS) <= set(devices_table.c.keys())
    state = DeviceState(*range(len(DeviceState.FIELDS)))
    assert state.values() == tuple(range(len(DeviceState.FIELDS)))
    state.jump_seq = 7
    copy = state.copy()
    assert copy is not state and copy.values() == state.values() and copy.jump_seq == 7
