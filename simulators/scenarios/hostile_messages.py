"""Malformed and hostile messages among a building's normal traffic.

While 香泉 1号楼 reports as usual and the detector of 0803 genuinely alarms,
somebody publishes: bad JSON; a wrong type (battery "full"); missing fields (a heartbeat
without its battery, a message without ``seq``); a 1 MB payload; an unknown message type;
a report on a topic class the kind does not use; an alarm from a device nobody registered
(a spoofed id); a detector's id posing as a one-touch alarm; a device id no topic may
carry; the genuine alarm replayed byte for byte; a sequence number far behind the
detector's; timestamps 30 days in the past and a day in the future.

Expected: every bad message kept in the dead-letter store with its reason, exactly one
each (two ``missing_field``); the replay recognised and counted as a duplicate; exactly
one incident (the genuine alarm, counted once), nothing raised by any hostile message;
the building's own traffic unharmed (the detector's last message is its alarm).

Spoofing a registered device's id cannot be told from the device itself on an open
broker: that is what per-device credentials and the broker's ACL are for
(docs/devices.md); run with credentials, the broker drops such a message.
"""

import json

from simulators.expectations import (
    ExpectDeadLetters,
    ExpectDevices,
    ExpectIncident,
    ExpectStat,
)
from simulators.scenario import Scenario, Stage

SD = "safety/v1/wanli/smoke_detector"
REASONS = ("bad_json", "invalid_field", "oversized", "unknown_type", "wrong_class", "unregistered_device",
           "kind_mismatch", "bad_topic", "seq_backwards", "ts_past", "ts_future")


def _body(ts: int, seq: int, msg_type: str, **fields: object) -> bytes:
    return json.dumps({"v": 1, "ts": ts, "seq": seq, "type": msg_type, **fields}).encode()


def play(stage: Stage) -> None:
    stage.wait(10)
    stage.mark("attack")
    now = stage.now_ms()
    genuine = stage.device("SD-XQ01-0803")
    alarm = genuine.alarm(now)  # type: ignore[attr-defined]
    stage.send([alarm])
    stage.say(f"{stage.local_time()} 0803室烟感真实报警")
    stage.wait(5)
    victim = stage.device("SD-XQ01-0101")
    now, seq = stage.now_ms(), victim.seq
    day = 86_400_000
    hostile = [
        (f"{SD}/SD-XQ01-0101/event", b'{"v":1,"ts":' + str(now).encode() + b',"seq":'),  # bad_json
        (f"{SD}/SD-XQ01-0101/telemetry", _body(now, seq + 1, "heartbeat", battery_pct="full", rssi_dbm=-80)),
        (f"{SD}/SD-XQ01-0101/telemetry", _body(now, seq + 2, "heartbeat", rssi_dbm=-80)),  # missing battery
        (f"{SD}/SD-XQ01-0101/event", json.dumps({"v": 1, "ts": now, "type": "alarm"}).encode()),  # missing seq
        (f"{SD}/SD-XQ01-0101/event", _body(now, seq + 3, "alarm", note="x" * (1024 * 1024))),  # 1 MB
        (f"{SD}/SD-XQ01-0101/event", _body(now, seq + 4, "explode")),  # unknown_type
        ("safety/v1/wanli/inspection_report/SD-XQ01-0101/telemetry", _body(now, seq + 5, "heartbeat")),  # wrong_class
        (f"{SD}/SD-XQ01-9999/event", _body(now, 1, "alarm", smoke_density=0.3)),  # unregistered (spoofed) id
        ("safety/v1/wanli/elderly_alarm/SD-XQ01-0202/event", _body(now, 10**12, "press")),  # kind_mismatch
        (f"{SD}/-SD-XQ01-0101/event", _body(now, seq + 6, "alarm")),  # bad_topic: an id cannot start with "-"
        alarm,  # replayed byte for byte: a duplicate
        (f"{SD}/SD-XQ01-0803/telemetry", _body(now, genuine.seq - 1000, "heartbeat", battery_pct=90.0, rssi_dbm=-80)),  # backwards
        (f"{SD}/SD-XQ01-0101/telemetry", _body(now - 30 * day, seq + 7, "heartbeat", battery_pct=90.0, rssi_dbm=-80)),  # ts_past
        (f"{SD}/SD-XQ01-0101/telemetry", _body(now + day, seq + 8, "heartbeat", battery_pct=90.0, rssi_dbm=-80)),  # ts_future
    ]
    victim.seq += 8
    stage.send(hostile)
    stage.say(f"{len(hostile)} 条恶意或畸形消息")
    stage.wait(30)


SCENARIO = Scenario(
    duration_s=45,  # the script's simulated seconds (progress and time left)
    name="hostile_messages", title="畸形与恶意消息", summary="香泉1号楼正常上报、0803室烟感真实报警的同时，有人发布畸形与恶意消息：坏JSON、错误字段、超大消息、未知类型、冒用设备编号、重放、序号倒退、时间戳过旧或超前。",
    marks={"attack": "恶意消息发出"},
    play=play, buildings=("xq-01",), speed=10,
    expect=(
        *(ExpectDeadLetters(reason, count=1) for reason in REASONS),
        ExpectDeadLetters("missing_field", count=2),
        ExpectStat("duplicates", at_least=1),
        ExpectIncident("smoke_alarm", severity="high", device="SD-XQ01-0803", within_s=30, after="attack",
                       max_event_count=1),
        ExpectIncident("*", count=1),
        ExpectDevices(device="SD-XQ01-0803", last_type="alarm"),
    ),
)
