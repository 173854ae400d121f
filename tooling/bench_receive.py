"""``wanli bench receive``: paho as the service's receiver uses it, against a bulk receiver on the ``mqtt5`` codec.

Issue 18's lead "receive without a Python call per packet": the receiver process costs 18–21 µs
of CPU a message (``wanli bench stages``), most of it paho's, which reads one packet at a time
and calls back into Python for each. This measures what a receiver that reads the socket in
large chunks and parses every complete frame in bulk would cost instead, with ``mqtt5`` (a
sans-I/O MQTT 5 packet codec written in Rust, by aiomqtt's maintainer) doing the parsing.
The service's bulk receiver (ingest/bulk_receiver.py) reads the same way, inside its receiver process.

Against a real Mosquitto (the tests' configuration, ``max_queued_messages`` 1,000,000), two
persistent sessions are made and subscribed to ``safety/#``, then disconnected; one backlog of N
messages of the load mix (``simulators.load``: the simulators' topics and JSON payloads) is
published once and queues for both. Each session then drains its copy:

(a) **paho**, as ``ingest/receiver.py`` drives it (MQTT 3.1.1, ``manual_ack``, one ``on_message``
    call a message, up to 64 ``loop_read`` a wakeup, batches of 2,000 each acknowledged at
    once with ``client.ack`` per message, as ingest does once a batch is safe), in this process
    and without the pipe to ingest;
(b) **bulk**: as ``ingest/bulk_receiver.py`` reads (``WANLI_INGEST_RECEIVER=bulk``), a plain socket, an MQTT 5 CONNECT (clean start false, a session expiry, the same
    receive window of 20,000 as paho's ``max_inflight_messages``) written by ``mqtt5``,
    ``recv_into`` a 4 MiB buffer, every complete frame parsed by ``mqtt5.read`` in a loop
    (``FrameBuffer``), (topic, payload, packet id) collected into batches of 2,000, and the PUBACKs
    of a batch sent together in one ``sendall``.

Both are timed with ``time.process_time()`` of this process (nothing else runs in it while a
session drains) and Mosquitto's CPU from ``/proc/PID/stat``, each per message; both must
receive exactly the N distinct messages published. ``--qos0`` repeats the drain with a QoS 0
backlog (queued for the offline sessions: ``queue_qos0_messages true``). Optionally the
service's own receiver process (with its pipe, ``tooling.bench_stages.measure_receive``) as a
reference row.

Mosquitto's periodic autosave of its persistence file is turned off for this broker (the
backlog is 2N messages: a save landing in one drain and not the other would skew the broker's
figure); everything else is the tests' configuration.
"""

from __future__ import annotations

import argparse
import gc
import os
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mqtt5

from ingest.receiver import pump
from tooling.bench_stages import _cpu_s
from tooling.local_servers import MosquittoServer
from ingest.mqtt_frames import FrameBuffer
from foundation.service_clock import wall_ms

BATCH = 2000  # the receiver's batch_size
BATCH_WAIT_S = 0.02  # the receiver's batch_wait_s: a partial batch goes when nothing more came for this long
RECEIVE_WINDOW = 20_000  # Mosquitto's max_inflight_messages in config/mosquitto/test.conf (paho's window)
MAX_PACKET_BYTES = 1_052_672  # the broker's max_packet_size
SESSION_EXPIRY_S = 14 * 24 * 3600  # as persistent_client_expiration
TOPIC_FILTER = "safety/#"
DRAIN_TIMEOUT_S = 300.0


@dataclass
class Drain:
    name: str
    qos: int
    received: int = 0
    distinct: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    load: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s * 1e6 / max(self.received, 1)

    @property
    def broker_us(self) -> float:
        return self.broker_cpu_s * 1e6 / max(self.received, 1)


def _distinct(batches: Sequence[Sequence[tuple[Any, ...]]]) -> int:
    return len({(m[0], m[1]) for batch in batches for m in batch})


# -- (a) paho, as ingest/receiver.py drives it ------------------------------------------------------

class PahoDrain:
    """The receiver's paho loop (``_Receiver._serve_connection``) minus the pipe: batches acknowledged at once."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        from foundation.mqtt import new_client

        self.host, self.port = host, port
        self.client = new_client(client_id, clean_session=False, manual_ack=True)
        self.subscribed = False
        self.batches: list[list[tuple[str, bytes, int, int, int]]] = []
        self._batch: list[tuple[str, bytes, int, int, int]] = []
        self._batch_started = 0.0
        self.received = 0
        self.client.on_connect = lambda c, _u, _f, rc, _p: None if rc.is_failure else c.subscribe(TOPIC_FILTER, 1)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed = True

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")  # noqa: SLF001 - as the receiver does
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append((topic, msg.payload, wall_ms(), msg.qos, msg.mid))
        self.received += 1
        if len(self._batch) >= BATCH:
            self._ship()

    def _ship(self) -> None:
        batch, self._batch = self._batch, []
        self.batches.append(batch)
        for _topic, _payload, _ms, qos, mid in batch:  # ingest said the batch is safe: acknowledge it
            if qos:
                self.client.ack(mid, qos)

    def run_until(self, count: int, until: float) -> None:
        from foundation.mqtt import MQTTErrorCode

        client = self.client
        client.connect(self.host, self.port, keepalive=30)
        while (self.received < count or self._batch) and time.monotonic() < until:
            sock = client.socket()
            if sock is None:
                raise RuntimeError("paho lost its connection")
            wait_s = BATCH_WAIT_S if self._batch else 0.1
            readable, _, _ = select.select([sock], [sock] if client.want_write() else [], [], wait_s)
            rc = pump(client, sock in readable)  # as the service's receiver turns paho's loop
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"paho: {rc}")
            if self._batch and (self.received >= count or time.monotonic() - self._batch_started >= BATCH_WAIT_S):
                self._ship()
        while client.want_write():  # the last PUBACKs out
            client.loop_write()

    def subscribe_and_leave(self) -> None:
        """Make the session and its subscription, then disconnect: the backlog queues for it."""
        self.client.connect(self.host, self.port, keepalive=30)
        deadline = time.monotonic() + 10
        while not self.subscribed and time.monotonic() < deadline:
            self.client.loop(0.1)
        if not self.subscribed:
            raise RuntimeError("paho's session did not subscribe within 10 s")
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(0.1)


# -- (b) a bulk receiver on mqtt5 -------------------------------------------------------------------

class BulkDrain:
    """A plain socket, mqtt5's packets, frames parsed in bulk, a batch's PUBACKs in one ``sendall``."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.batches: list[list[tuple[str, bytes, int, int | None, int]]] = []
        self.received = 0
        self.sock: socket.socket | None = None
        self.frames = FrameBuffer()
        self.early: list[tuple[str, bytes, int, int | None]] = []  # what arrived with the CONNACK

    def _connect(self, clean_start: bool) -> bool:
        self.sock = socket.create_connection((self.host, self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.frames = FrameBuffer()
        self.early = []
        self.sock.sendall(mqtt5.ConnectPacket(
            self.client_id, clean_start=clean_start, keep_alive=30, session_expiry_interval=SESSION_EXPIRY_S,
            receive_max=RECEIVE_WINDOW, max_packet_size=MAX_PACKET_BYTES).write())
        connack = self._next_packet(mqtt5.ConnAckPacket)
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            raise RuntimeError(f"CONNECT refused: {connack.reason_code!r}")
        return bool(connack.session_present)

    def _next_packet(self, kind: type, timeout_s: float = 10.0) -> Any:
        """Read until a packet of ``kind`` arrives; PUBLISH packets that come with it (a queued backlog follows
        the CONNACK in the same read) are kept in ``self.early``."""
        assert self.sock is not None
        self.sock.settimeout(timeout_s)
        others: list[Any] = []
        while True:
            n = self.sock.recv_into(self.frames.space())
            if not n:
                raise RuntimeError("the broker closed the connection")
            self.frames.filled(n)
            self.frames.frames(self.early, others)
            for packet in others:
                if isinstance(packet, kind):
                    self.sock.settimeout(None)
                    return packet

    def subscribe_and_leave(self) -> None:
        assert not self._connect(clean_start=True)
        assert self.sock is not None
        self.sock.sendall(mqtt5.SubscribePacket(1, [mqtt5.TopicFilter(TOPIC_FILTER, max_qos=mqtt5.QoS.AT_LEAST_ONCE)])
                          .write())
        suback = self._next_packet(mqtt5.SubAckPacket)
        if self.early:
            raise RuntimeError("a PUBLISH arrived before the subscription was confirmed")
        if any(int(rc) > 2 for rc in suback.reason_codes):  # the codec's enums are not ints
            raise RuntimeError(f"SUBSCRIBE refused: {suback.reason_codes!r}")
        self.close()

    def run_until(self, count: int, until: float) -> None:
        if not self._connect(clean_start=False):
            raise RuntimeError("the broker did not keep the bulk receiver's session")
        sock, frames = self.sock, self.frames
        assert sock is not None
        sock.setblocking(False)
        puback = mqtt5.PubAckPacket
        publishes, self.early = self.early, []
        self.received = len(publishes)
        others: list[Any] = []
        batch_started = time.monotonic()
        while self.received < count and time.monotonic() < until:
            readable, _, _ = select.select([sock], [], [], BATCH_WAIT_S if publishes else 0.1)
            if readable:
                try:
                    n = sock.recv_into(frames.space())
                except BlockingIOError:
                    n = -1
                if n == 0:
                    raise RuntimeError("the broker closed the connection")
                if n > 0:
                    frames.filled(n)
                    had = len(publishes)
                    got = frames.frames(publishes, others)
                    if got and not had:
                        batch_started = time.monotonic()
                    self.received += got
                    if others:  # PINGRESP and the like: nothing to do in a drain; a DISCONNECT ends it
                        if any(isinstance(p, mqtt5.DisconnectPacket) for p in others):
                            raise RuntimeError(f"the broker disconnected: {others!r}")
                        others.clear()
            if publishes and (len(publishes) >= BATCH or self.received >= count
                              or time.monotonic() - batch_started >= BATCH_WAIT_S):
                ms = wall_ms()  # one receive stamp a batch, not a call a message
                batch = [(topic, payload, ms, qos, pid) for topic, payload, qos, pid in publishes]
                publishes = []
                self.batches.append(batch)
                acks = b"".join([puback(pid).write() for _t, _p, _ms, qos, pid in batch if qos])  # type: ignore[arg-type]
                if acks:  # ingest said the batch is safe: all its PUBACKs in one write
                    sock.setblocking(True)
                    sock.sendall(acks)
                    sock.setblocking(False)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.setblocking(True)
                self.sock.sendall(mqtt5.DisconnectPacket().write())  # the session stays (its expiry)
            finally:
                self.sock.close()
                self.sock = None


# -- the benchmark -----------------------------------------------------------------------------------

def _drain(name: str, receiver: PahoDrain | BulkDrain, count: int, qos: int, broker_pid: int) -> Drain:
    # The benchmark's own heap (the street's 50,000 records) kept out of the collector's way, as the service
    # keeps its own (foundation/heap.py): a receiver process holds little, and a full collection here would walk it all.
    gc.collect()
    gc.freeze()
    result = Drain(name, qos, load=[os.getloadavg()[0]])
    broker_before, cpu_before = _cpu_s(broker_pid), time.process_time()
    started = time.perf_counter()
    receiver.run_until(count, time.monotonic() + DRAIN_TIMEOUT_S)
    result.seconds = time.perf_counter() - started
    result.cpu_s = time.process_time() - cpu_before
    time.sleep(0.3)  # the last acknowledgements reach the broker
    result.broker_cpu_s = _cpu_s(broker_pid) - broker_before
    result.received = receiver.received
    receiver.close()
    gc.unfreeze()
    result.distinct = _distinct(receiver.batches)
    result.load.append(os.getloadavg()[0])
    receiver.batches.clear()
    return result


def parse_only(messages: Sequence[tuple[str, bytes]], chunk: int = 256 * 1024) -> str:
    """The codec's share of the bulk receiver: the same messages as QoS 1 PUBLISH frames (written by mqtt5), in
    memory, fed in chunks of ``chunk`` bytes through ``FrameBuffer.frames``, and their PUBACKs written."""
    from simulators.load import stamp

    stream = b"".join(mqtt5.PublishPacket(topic, stamp(payload, 1_700_000_000_000), qos=mqtt5.QoS.AT_LEAST_ONCE,
                                          packet_id=i % 65_535 + 1).write() for i, (topic, payload) in enumerate(messages))
    frames, puback = FrameBuffer(), mqtt5.PubAckPacket
    publishes: list[tuple[str, bytes, int, int | None]] = []
    others: list[Any] = []
    gc.collect()
    cpu = time.process_time()
    for start in range(0, len(stream), chunk):
        frames.feed(stream[start:start + chunk])
        frames.frames(publishes, others)
    parse_s = time.process_time() - cpu
    acks = b"".join([puback(pid).write() for _t, _p, _q, pid in publishes])  # type: ignore[arg-type]
    total_s = time.process_time() - cpu
    assert len(publishes) == len(messages) and len(acks) == 4 * len(messages), (len(publishes), len(acks))
    n = len(messages)
    return (f"the codec alone, in memory ({len(stream) / n:.0f} bytes a frame, {chunk // 1024} KiB reads): "
            f"parse {parse_s * 1e6 / n:.2f} µs a message, with its PUBACK written {total_s * 1e6 / n:.2f} µs")


def run_receive(workdir: Path, count: int, with_qos0: bool, with_service_receiver: bool) -> tuple[list[Drain], list[str]]:
    from simulators.load import build_messages, publish
    from tooling.street_files import street_records

    notes: list[str] = []
    broker = MosquittoServer(workdir / "mosquitto")
    conf = broker.conf_path.read_text()
    broker.conf_path.write_text(conf.replace("autosave_interval 30", "autosave_interval 0"))
    broker.start()
    try:
        records = street_records()
        host, port, broker_pid = broker.host, broker.port, broker.pid or 0
        tag = time.time_ns()
        paho_id, bulk_id = f"bench-receive-paho-{tag}", f"bench-receive-bulk-{tag}"
        PahoDrain(host, port, paho_id).subscribe_and_leave()
        BulkDrain(host, port, bulk_id).subscribe_and_leave()
        drains: list[Drain] = []
        for qos in (1, 0) if with_qos0 else (1,):
            messages = build_messages(records, count, seed=18 + qos, start_seq=1 + qos * count)
            if qos == 1:
                notes.append(parse_only(messages))
            report = publish(messages, host, port, qos=qos)
            del messages
            notes.append(f"QoS {qos} backlog: {report.summary()}; queued for both sessions")
            drains.append(_drain("paho (the receiver's loop, no pipe)", PahoDrain(host, port, paho_id), count, qos,
                                 broker_pid))
            drains.append(_drain("bulk: recv_into + mqtt5.read", BulkDrain(host, port, bulk_id), count, qos,
                                 broker_pid))
        if with_service_receiver:
            from tooling.bench_stages import measure_receive

            for implementation in ("paho", "bulk"):  # WANLI_INGEST_RECEIVER
                fig = measure_receive(workdir, broker, records, count, implementation)
                service = Drain(f"the service's receiver process ({implementation} + pipe)", 1, received=count,
                                load=fig.load)
                us = list(fig.us.values())
                service.cpu_s, service.broker_cpu_s = us[0] * count / 1e6, us[1] * count / 1e6
                service.distinct = -1  # counted by measure_receive, not checked for distinctness
                notes.extend(f"service receiver ({implementation}): {n}" for n in fig.notes)
                drains.append(service)
        return drains, notes
    finally:
        broker.stop()


def print_receive(drains: list[Drain], notes: list[str], count: int) -> bool:
    ok = True
    print("| receiver | QoS | received (distinct) | msg/s | receiver CPU µs/msg | Mosquitto CPU µs/msg "
          "| both, µs/msg | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for d in drains:
        distinct = "not checked" if d.distinct < 0 else f"{d.distinct:,}"
        rate = f"{d.rate:,.0f}" if d.seconds else "see note"
        print(f"| {d.name} | {d.qos} | {d.received:,} ({distinct}) | {rate} | {d.cpu_us:.1f} | {d.broker_us:.1f} "
              f"| {d.cpu_us + d.broker_us:.1f} | {d.load[0]:.2f} → {d.load[-1]:.2f} |")
        if d.distinct >= 0 and (d.received != count or d.distinct != count):
            ok = False
            print(f"  LOSS OR DUPLICATES: {d.name} at QoS {d.qos} received {d.received:,}, {d.distinct:,} distinct, "
                  f"of {count:,}")
    for qos in (1, 0):
        pair = [d for d in drains if d.qos == qos and d.seconds]
        if len(pair) == 2:
            paho, bulk = pair
            print(f"- QoS {qos}: bulk / paho: {bulk.rate / paho.rate:.2f}x the rate; receiver CPU "
                  f"{bulk.cpu_us / paho.cpu_us:.2f}x ({paho.cpu_us - bulk.cpu_us:.1f} µs a message less); "
                  f"Mosquitto {bulk.broker_us / paho.broker_us:.2f}x")
    for note in notes:
        print(f"- {note}")
    return ok


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-receive-"))
    try:
        drains, notes = run_receive(workdir, args.messages, not args.no_qos0, args.service_receiver)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if print_receive(drains, notes, args.messages) else 1


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("receive", help="paho (as the receiver uses it) against a bulk mqtt5 receiver")
    p.add_argument("--messages", type=int, default=100_000, help="messages in each backlog")
    p.add_argument("--no-qos0", action="store_true", help="skip the QoS 0 drain")
    p.add_argument("--service-receiver", action="store_true",
                   help="also the service's receiver process with its pipe (wanli bench stages' receive step), "
                        "with each of its implementations (paho, bulk)")
    p.add_argument("--keep", action="store_true")
    p.set_defaults(func=main)
