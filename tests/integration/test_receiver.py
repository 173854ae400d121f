"""The MQTT receiver process (ingest/receiver.py) against real Mosquitto: bounded, and nothing lost when a process dies.

The tests about the receiver itself run for both of its implementations (``implementation``): paho, and the bulk
receiver (ingest/bulk_receiver.py: MQTT 5, frames parsed in bulk by mqtt5); the same pipe, the same guarantees."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from devices.credentials import BrokerAuthFiles, platform_account, render_broker_auth
from ingest.receiver import BATCH, DISCONNECTED, PENDING, SUBSCRIBED, ReceiverConfig, ReceiverProcess
from tests.fixtures.servers import MosquittoServer, free_port
from tests.fixtures.service import auth_headers, now_ms, publish, register_building, wait_for
from wanli.runtime import WanliService, running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.mosquitto

IMPLEMENTATIONS = ["paho", "bulk"]


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request) -> str:
    return request.param


def config(mosquitto, prefix: str, **overrides) -> ReceiverConfig:
    values = {"batch_size": 50, "batch_wait_s": 0.01, "max_batches_in_flight": 4}
    values.update(overrides)
    return ReceiverConfig(mosquitto.host, mosquitto.port, [f"{prefix}/#"], f"rx-{uuid.uuid4().hex[:8]}", **values)


def frames(rx: ReceiverProcess, seconds: float):
    """Every frame the receiver sends within ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        frame = rx.next_frame(timeout_s=min(left, 0.1))
        if frame is not None:
            yield frame


def subscribed(rx: ReceiverProcess) -> None:
    assert any(kind == SUBSCRIBED for kind, _ in frames(rx, 10)), "the receiver never subscribed"


def traffic(prefix: str, count: int, devices: int = 10) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/dev-{i % devices}", b"%d" % i) for i in range(count)]


def test_the_receiver_holds_at_most_its_bound_and_delivers_everything_in_order_once_acknowledged(mosquitto,
                                                                                                implementation):
    prefix = f"rx-{uuid.uuid4().hex[:8]}"
    rx = ReceiverProcess(config(mosquitto, prefix, implementation=implementation))
    rx.start()
    try:
        subscribed(rx)
        sent = traffic(prefix, 2_000)
        publish(mosquitto.host, mosquitto.port, sent)

        # Ingest is "stuck": nothing is acknowledged. The receiver hands over 4 batches of at most
        # 50 and then stops reading (TCP pushes back; the broker holds the rest for the session).
        held = [body for kind, body in frames(rx, 2.0) if kind == BATCH]
        assert len(held) == 4
        assert 4 <= rx.pending == sum(len(messages) for _no, messages in held) <= 200
        assert not [kind for kind, _ in frames(rx, 1.0) if kind == BATCH], "it kept reading past its bound"

        # Ingest catches up: everything arrives, once, in the order each device published it.
        received = [m for _no, messages in held for m in messages]
        for no, _messages in held:
            rx.acknowledge(no)
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            frame = rx.next_frame(timeout_s=0.5)
            if frame and frame[0] == BATCH:
                no, messages = frame[1]
                received.extend(messages)
                rx.acknowledge(no)
        assert len(received) == len(sent)
        for device in {t for t, _ in sent}:
            assert [p for t, p, *_ in received if t == device] == [p for t, p in sent if t == device]
        assert all(qos == 1 for _t, _p, _ms, qos, _mid in received)
    finally:
        rx.stop()


def test_what_a_receiver_held_unacknowledged_when_ingest_vanished_goes_to_the_next_one(mosquitto, implementation):
    prefix = f"rx-{uuid.uuid4().hex[:8]}"
    cfg = config(mosquitto, prefix, implementation=implementation)
    first = ReceiverProcess(cfg)
    first.start()
    subscribed(first)
    sent = traffic(prefix, 120)
    publish(mosquitto.host, mosquitto.port, sent)
    held = [body for kind, body in frames(first, 1.0) if kind == BATCH]
    assert held
    first._conn.close()  # noqa: SLF001 - ingest "dies": its end of the pipe closes without a word
    first._process.wait(10)  # noqa: SLF001 - and the receiver notices and exits by itself

    second = ReceiverProcess(cfg)  # the same client id: the same persistent session
    second.start()
    try:
        received = []
        for kind, body in frames(second, 5.0):
            if kind == BATCH:
                received.extend(body[1])
                second.acknowledge(body[0])
        assert sorted(p for _t, p, *_ in received) == sorted(p for _t, p in sent)
    finally:
        second.stop()


def test_a_killed_receiver_is_replaced_and_every_alarm_it_held_still_becomes_one_incident(tmp_path, mosquitto):
    settings = Settings(data_dir=tmp_path / "data", mqtt_url=mosquitto.url, mqtt_client_id=f"wanli-{uuid.uuid4().hex[:8]}",
                        http_port=free_port(), simulate_building=False, ingest_batch_size=20, ingest_queue_size=100,
                        ingest_alarm_lane=True)
    with running_in_thread(settings) as service:
        sim = register_building(service)
        t = now_ms()
        alarms = [d.alarm(t + i) for i, d in enumerate(sim.smoke_detectors())]
        first_pid = service.consumer.receiver_pids["alarms"]  # alarms come on their own lane
        publish(mosquitto.host, mosquitto.port, alarms[:36])
        os.kill(first_pid, signal.SIGKILL)
        publish(mosquitto.host, mosquitto.port, alarms[36:])

        def device_incidents():
            got = httpx.get(f"{service.http_url}/api/incidents", params={"limit": 500}, headers=auth_headers(service)).json()
            return [i for i in got if i["condition"] == "smoke_alarm"]

        opened = wait_for(lambda: len(got := device_incidents()) >= len(alarms) and got, timeout_s=30)
        assert sorted(i["device_id"] for i in opened) == sorted(t.split("/")[4] for t, _ in alarms)
        assert service.consumer.receiver_restarts == 1
        assert service.consumer.receiver_pids["alarms"] != first_pid


def test_an_alarm_overtakes_a_backlog_of_telemetry_and_is_handled_once(tmp_path, mosquitto, implementation):
    settings = Settings(data_dir=tmp_path / "data", mqtt_url=mosquitto.url, mqtt_client_id=f"wanli-{uuid.uuid4().hex[:8]}",
                        http_port=free_port(), simulate_building=False, ingest_batch_size=200, ingest_queue_size=400,
                        ingest_alarm_lane=True, ingest_receiver=implementation,  # the main lane's; the alarm lane's is paho
                        # 20,000 heartbeats from 72 detectors stamped 1 ms apart: 14 a second each by their own
                        # clocks, past the per-device limit (10/s); this test is about the lanes, not that limit
                        ingest_device_messages_per_s=1000)
    with running_in_thread(settings) as service:
        sim = register_building(service)  # and both lanes' sessions exist at the broker from now on
    detectors = sim.smoke_detectors()
    t = now_ms() - 60_000
    backlog = [detectors[i % len(detectors)].heartbeat(t + i) for i in range(20_000)]
    alarm = detectors[5].alarm(t + 30_000)
    publish(mosquitto.host, mosquitto.port, [*backlog, alarm])  # the alarm is the very last one published

    service = WanliService(settings)
    readings_before_the_alarm: list[int] = []  # how much telemetry was handled when the alarm's incident committed
    service.services.alerts.subscribe(
        lambda _changes: readings_before_the_alarm.append(service.services.pipeline.counters.readings))

    async def run() -> dict:
        await service.start()
        try:
            deadline = time.monotonic() + 120
            while service.services.pipeline.counters.readings < len(backlog) + 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return service.snapshot(latency=False)
        finally:
            await service.stop()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever the test runner's thread has
        s = pool.submit(asyncio.run, run()).result(timeout=180)
    assert s["readings"] == len(backlog) + 1 and s["duplicates"] == 0 and not s["rejected"]
    assert len(readings_before_the_alarm) == 1, "one incident, opened once"
    assert readings_before_the_alarm[0] < len(backlog) // 2, "the alarm waited behind the telemetry"


def test_the_mqtt_password_is_neither_on_the_receivers_command_line_nor_in_its_environment(tmp_path, monkeypatch,
                                                                                           implementation):
    """A broker that checks passwords: the receiver logs in with one it got over its socket, and ``ps`` cannot show it."""
    password = f"pw-{uuid.uuid4().hex}"
    (tmp_path / "auth").mkdir()
    files = BrokerAuthFiles(tmp_path / "auth")
    files.write(*render_broker_auth([], {}, {platform_account("rx-svc"): password}))
    broker = MosquittoServer(tmp_path / "broker", port=free_port(), password_file=files.password_path,
                             acl_file=files.acl_path)
    broker.start()
    monkeypatch.setenv("WANLI_MQTT_PASSWORD", password)  # as an operator would pass it to `wanli run`
    rx = ReceiverProcess(ReceiverConfig(broker.host, broker.port, ["safety/#"], "rx-svc", username="rx-svc",
                                        password=password, batch_size=50, batch_wait_s=0.01,
                                        implementation=implementation))
    rx.start()
    try:
        subscribed(rx)  # so the password arrived and the broker took it
        cmdline = Path(f"/proc/{rx.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{rx.pid}/environ").read_bytes()
        assert (b"ingest.receiver" if implementation == "paho" else b"ingest.bulk_receiver") in cmdline
        assert password.encode() not in cmdline
        assert b"PYTHONPATH=" in environ and password.encode() not in environ
    finally:
        rx.stop()
        broker.stop()


def test_a_wrong_password_sent_over_the_socket_is_refused_by_the_broker(tmp_path, implementation):
    """The password the receiver uses is the one sent over its socket, not something else that happens to work."""
    (tmp_path / "auth").mkdir()
    files = BrokerAuthFiles(tmp_path / "auth")
    files.write(*render_broker_auth([], {}, {platform_account("rx-svc"): "the-right-one"}))
    broker = MosquittoServer(tmp_path / "broker", port=free_port(), password_file=files.password_path,
                             acl_file=files.acl_path)
    broker.start()
    rx = ReceiverProcess(ReceiverConfig(broker.host, broker.port, ["safety/#"], "rx-svc", username="rx-svc",
                                        password="a-wrong-one", implementation=implementation))
    rx.start()
    try:
        seen = list(frames(rx, 3))
        assert not any(kind == SUBSCRIBED for kind, _ in seen), "it subscribed with a wrong password"
        reasons = [body for kind, body in seen if kind == DISCONNECTED]
        assert reasons, "the refusal was not reported to ingest"
        if implementation == "bulk":  # it names the broker's reason code
            assert all("login refused: NOT_AUTHORIZED" in r for r in reasons), reasons
        assert not any("a-wrong-one" in r for r in reasons)
    finally:
        rx.stop()
        broker.stop()


# -- the connection's corners, for both implementations ---------------------------------------------------------


def batches(rx: ReceiverProcess, seconds: float, until_count: int | None = None) -> list[tuple[int, list]]:
    """The batches the receiver hands over within ``seconds`` (sooner once ``until_count`` messages came)."""
    out: list[tuple[int, list]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        frame = rx.next_frame(timeout_s=min(left, 0.1))
        if frame is not None and frame[0] == BATCH:
            out.append(frame[1])
            if until_count is not None and sum(len(m) for _no, m in out) >= until_count:
                break
    return out


def payloads(got: list[tuple[int, list]]) -> list[bytes]:
    return sorted(p for _no, messages in got for _t, p, *_ in messages)


def own_broker(tmp_path) -> MosquittoServer:
    broker = MosquittoServer(tmp_path / "broker", port=free_port())
    broker.start()
    return broker


def test_only_what_ingest_said_is_safe_is_acknowledged(mosquitto, implementation):
    """Of three batches held, ingest makes one safe (A): the next receiver of the session gets exactly the other two
    again (and what queued meanwhile); once those are made safe too, nothing more."""
    hand_the_session_over(mosquitto, implementation, implementation)


@pytest.mark.parametrize(("before", "after"), [("paho", "bulk"), ("bulk", "paho")])
def test_switching_the_receiver_keeps_the_session_and_what_it_held(mosquitto, before, after):
    """WANLI_INGEST_RECEIVER changed across a restart (MQTT 3.1.1 to 5, or back), the same client id: the broker's
    persistent session carries over, and the new receiver gets exactly what the old one held unacknowledged and what
    queued meanwhile, then nothing more once that is made safe: switching loses nothing and delivers nothing twice."""
    hand_the_session_over(mosquitto, before, after)


def hand_the_session_over(mosquitto, before: str, after: str) -> None:
    """A receiver (``before``) holds a backlog, ingest makes its first batch safe, it stops cleanly; messages queue
    for the session; the next receiver (``after``, the same client id) must get exactly the rest, and a third
    nothing once the second's were made safe."""
    prefix = f"rx-{uuid.uuid4().hex[:8]}"
    # room for all of it unacknowledged: a batch closes early when the worker is idle, so 4 batches may hold < 200
    cfg = config(mosquitto, prefix, implementation=before, max_batches_in_flight=25)
    first = ReceiverProcess(cfg)
    first.start()
    subscribed(first)
    sent = traffic(prefix, 150)
    publish(mosquitto.host, mosquitto.port, sent)
    held = batches(first, 10, until_count=len(sent))
    assert payloads(held) == sorted(p for _t, p in sent)
    safe_no, safe = held[0]
    first.acknowledge(safe_no)
    assert any(kind == PENDING for kind, _ in frames(first, 1.0)), "the receiver did not take the acknowledgement"
    first.stop()  # a clean stop: the session keeps what was not acknowledged
    late = [(f"{prefix}/late/dev-{i % 10}", b"late-%d" % i) for i in range(30)]
    publish(mosquitto.host, mosquitto.port, late)  # queued for the session while no receiver is there

    switched = dataclasses.replace(cfg, implementation=after)
    second = ReceiverProcess(switched)
    second.start()
    try:
        expected = sorted(set(p for _t, p in sent) - {p for _t, p, *_ in safe}) + [p for _t, p in late]
        again = batches(second, 10, until_count=len(expected))
        assert payloads(again) == sorted(expected)
        for no, _messages in again:
            second.acknowledge(no)
        assert any(kind == PENDING for kind, _ in frames(second, 1.0))
    finally:
        second.stop()

    third = ReceiverProcess(switched)
    third.start()
    try:
        subscribed(third)
        assert batches(third, 1.5) == [], "something made safe was delivered again"
    finally:
        third.stop()


def test_a_broker_restart_keeps_the_session_and_loses_nothing(tmp_path, implementation):
    """Mosquitto restarts while the receiver holds messages ingest has not made safe: the receiver tells ingest it
    lost the connection, connects again, subscribes again, and every message (held, and published after) arrives;
    once all are made safe, the session holds nothing more."""
    broker = own_broker(tmp_path)
    try:
        restart_under_a_receiver(broker, implementation)
    finally:
        broker.stop()


def restart_under_a_receiver(broker: MosquittoServer, implementation: str) -> None:
    prefix = f"rx-{uuid.uuid4().hex[:8]}"
    # room for all of it unacknowledged: a batch closes early when the worker is idle, so 4 batches may hold < 200
    cfg = config(broker, prefix, implementation=implementation, keepalive_s=5, max_batches_in_flight=25)
    rx = ReceiverProcess(cfg)
    rx.start()
    try:
        subscribed(rx)
        before = traffic(prefix, 120)
        publish(broker.host, broker.port, before)
        held: list[tuple[int, list]] = []
        other: list[tuple[float, bytes, object]] = []  # what else came meanwhile (for the failure's message)
        started = time.monotonic()
        while sum(len(m) for _no, m in held) < len(before) and time.monotonic() - started < 10:
            frame = rx.next_frame(timeout_s=0.1)
            if frame is not None:
                if frame[0] == BATCH:
                    held.append(frame[1])  # not acknowledged: ingest is "slow"
                else:
                    other.append((round(time.monotonic() - started, 2), *frame))
        assert payloads(held) == sorted(p for _t, p in before), (len(payloads(held)), other)

        broker.restart()
        seen: list[bytes] = []
        got: list[tuple[int, list]] = []
        deadline = time.monotonic() + 20
        while SUBSCRIBED not in seen and time.monotonic() < deadline:
            frame = rx.next_frame(timeout_s=0.2)
            if frame is None:
                continue
            seen.append(frame[0])
            if frame[0] == BATCH:
                got.append(frame[1])
            if frame[0] == DISCONNECTED:
                for no, _messages in held:  # ingest makes the old batches safe now, after the connection was lost
                    rx.acknowledge(no)
        assert DISCONNECTED in seen and SUBSCRIBED in seen and seen.index(DISCONNECTED) < seen.index(SUBSCRIBED), seen

        after = [(t, b"after-" + p) for t, p in traffic(prefix, 60)]
        publish(broker.host, broker.port, after)
        expected = {p for _t, p in [*before, *after]}
        for no, _messages in got:
            rx.acknowledge(no)
        deadline = time.monotonic() + 15
        while set(payloads(got)) != expected and time.monotonic() < deadline:
            for batch in batches(rx, 0.5):
                got.append(batch)
                rx.acknowledge(batch[0])
        # everything arrives on the new connection: what was held unacknowledged is sent again
        assert set(payloads(got)) == expected
        assert any(kind == PENDING for kind, _ in frames(rx, 1.0))
    finally:
        rx.stop()
    again = ReceiverProcess(cfg)
    again.start()
    try:
        subscribed(again)
        assert batches(again, 1.5) == [], "something made safe was delivered again"
    finally:
        again.stop()


def test_keepalive_holds_an_idle_connection_and_a_silent_broker_is_left(tmp_path, implementation):
    """With a keepalive of 1 s the receiver pings an idle broker (Mosquitto drops a client silent for 1.5 s);
    a broker that stops answering (SIGSTOP) is left within a few keepalives, reported to ingest, and the receiver
    connects again once it answers."""
    broker = own_broker(tmp_path)
    prefix = f"rx-{uuid.uuid4().hex[:8]}"
    rx = ReceiverProcess(config(broker, prefix, implementation=implementation, keepalive_s=1))
    rx.start()
    try:
        subscribed(rx)
        assert [kind for kind, _ in frames(rx, 4.0)] == [], "an idle connection was lost"
        publish(broker.host, broker.port, [(f"{prefix}/a", b"1")])
        assert payloads(batches(rx, 5, until_count=1)) == [b"1"]

        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            seen = [kind for kind, _ in frames(rx, 5.0)]
            assert DISCONNECTED in seen, f"a silent broker was not noticed within 5 s: {seen}"
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        subscribed(rx)
        publish(broker.host, broker.port, [(f"{prefix}/a", b"2")])
        assert b"2" in payloads(batches(rx, 10, until_count=1))
    finally:
        rx.stop()
        broker.stop()



def test_the_receiver_leaves_the_session_when_the_grant_passes_without_a_word(mosquitto, implementation):
    """With a grant (several instances: foundation/leases.py), the receiver stays while ingest extends it (G) and
    leaves, disconnecting and exiting, once the deadline passes without a word; what it held stays in the session."""
    prefix = f"rx-{uuid.uuid4().hex[:8]}"
    cfg = config(mosquitto, prefix, implementation=implementation, grant_s=2.0, max_batches_in_flight=25)
    rx = ReceiverProcess(cfg)
    rx.start()
    try:
        subscribed(rx)
        until = time.monotonic() + 3.0
        rx.grant(until)
        sent = traffic(prefix, 30)
        publish(mosquitto.host, mosquitto.port, sent)
        held = batches(rx, 2.0, until_count=len(sent))  # held, never made safe
        assert payloads(held) == sorted(p for _t, p in sent)
        assert rx.alive and time.monotonic() < until, "it left before its grant ran out"
        deadline = until + 3.0
        while rx.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not rx.alive, "it stayed connected past its grant"
        assert time.monotonic() >= until
    finally:
        rx.stop()
    successor = ReceiverProcess(dataclasses.replace(cfg, grant_s=0.0))  # the next holder: the same session
    successor.start()
    try:
        assert payloads(batches(successor, 10, until_count=len(sent))) == sorted(p for _t, p in sent)
    finally:
        successor.stop()


def test_the_bulk_receiver_keeps_its_connection_through_a_long_wait_for_ingest(tmp_path):
    """At its bound (ingest has made nothing safe) the receiver stops reading its socket; the bulk one still pings
    each keepalive, so a wait of several keepalives does not cost the connection (and the window's redelivery).
    (paho's receiver does not ping while it waits: Mosquitto drops it after 1.5 keepalives, and it reconnects.)"""
    broker = own_broker(tmp_path)
    prefix = f"rx-{uuid.uuid4().hex[:8]}"
    rx = ReceiverProcess(config(broker, prefix, implementation="bulk", keepalive_s=1))
    rx.start()
    try:
        subscribed(rx)
        sent = traffic(prefix, 400)  # twice its bound of 4 batches of 50
        publish(broker.host, broker.port, sent)
        got = batches(rx, 5.0)  # held, not made safe, for 5 keepalives
        assert len(got) == 4 and sum(len(m) for _no, m in got) <= 200  # its bound (a batch may close early)
        assert [kind for kind, _ in frames(rx, 0.5) if kind != BATCH] == [], "the connection was lost while waiting"
        acknowledged: set[int] = set()
        deadline = time.monotonic() + 20
        while len(set(payloads(got))) < len(sent) and time.monotonic() < deadline:
            for no, _messages in got:
                if no not in acknowledged:
                    rx.acknowledge(no)
                    acknowledged.add(no)
            got += batches(rx, 0.5)
        assert sorted(set(payloads(got))) == sorted(p for _t, p in sent)
        assert len(payloads(got)) == len(sent), "something was delivered twice: the connection was lost"
    finally:
        rx.stop()
        broker.stop()
